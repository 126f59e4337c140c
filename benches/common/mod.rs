//! Measurement helpers shared by the benches: wall and CPU time, GiB/s, CPU-seconds per GiB,
//! and writing a results section into `docs/benchmarks.md` between markers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use skywire::crypto::noise::CipherState;

/// Process CPU time (user + system, all threads) from `/proc/self/stat`, in seconds.
/// USER_HZ is 100 on every Linux userspace ABI.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Field 2 (comm) may contain spaces; it ends at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After comm: state is field 3, so utime (14) is index 11 and stime (15) index 12.
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Resident set size of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> u64 {
    rss_kib_of("self")
}

/// Resident set size of process `pid` ("self" works) in KiB.
pub fn rss_kib_of(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One throughput measurement.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub wall: Duration,
    /// CPU seconds used by this process during the run.
    pub cpu: f64,
}

impl Sample {
    /// GiB per second of wall time.
    pub fn gib_per_s(&self) -> f64 {
        self.bytes as f64 / (1u64 << 30) as f64 / self.wall.as_secs_f64()
    }

    /// MiB per second of wall time.
    pub fn mib_per_s(&self) -> f64 {
        self.gib_per_s() * 1024.0
    }

    /// CPU seconds spent per GiB moved.
    pub fn cpu_s_per_gib(&self) -> f64 {
        self.cpu / (self.bytes as f64 / (1u64 << 30) as f64)
    }
}

/// Runs `f` and measures wall and CPU time; `f` returns the bytes it moved.
pub fn measure(f: impl FnOnce() -> u64) -> Sample {
    let c0 = cpu_seconds();
    let t0 = Instant::now();
    let bytes = f();
    let wall = t0.elapsed();
    Sample {
        bytes,
        wall,
        cpu: cpu_seconds() - c0,
    }
}

/// The median of `n` runs of `f`, by wall-clock throughput.
pub fn median_of(n: usize, mut f: impl FnMut() -> Sample) -> Sample {
    let mut v: Vec<Sample> = (0..n).map(|_| f()).collect();
    v.sort_by(|a, b| a.gib_per_s().total_cmp(&b.gib_per_s()));
    v[v.len() / 2].clone()
}

/// Whether the bench runs for real (`cargo bench` passes `--bench`) or as a quick smoke test
/// under `cargo test --all-targets`.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Value of `--write FILE` if given.
pub fn write_target() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1).cloned())
}

/// Replaces the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in
/// `file` with `body` (appending the section if the markers are missing).
pub fn write_section(file: &str, name: &str, body: &str) -> std::io::Result<()> {
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let block = format!("{start}\n{body}\n{end}");
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n{block}\n", text.trim_end()),
    };
    let tmp = format!("{file}.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(tmp, file)
}

/// A short description of the machine for the results header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

pub const CHUNK: usize = 64 * 1024;

/// Raw loopback TCP: one writer thread, the reader on this thread.
pub fn raw_tcp(total: u64) -> Sample {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    measure(|| {
        let w = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let buf = vec![0x5au8; CHUNK];
            let mut sent = 0u64;
            while sent < total {
                s.write_all(&buf).unwrap();
                sent += CHUNK as u64;
            }
        });
        let (mut r, _) = l.accept().unwrap();
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break,
                n => got += n as u64,
            }
        }
        w.join().unwrap();
        got
    })
}

/// One ChaCha20-Poly1305 seal pass (our CipherState, as shipped) over `total` bytes in `frame`-sized pieces, one core.
pub fn aead_pass(total: u64, frame: usize) -> Sample {
    let mut cipher = CipherState::new([7u8; 32]);
    let mut buf = vec![0u8; frame];
    measure(|| {
        let mut done = 0u64;
        while done < total {
            let tag = cipher.seal_in_place(&[], &mut buf[..]).unwrap();
            std::hint::black_box(&tag);
            done += frame as u64;
        }
        done
    })
}

/// CPU seconds (user + system) used so far by process `pid`.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// A free loopback TCP port (bound and released; good enough for a bench).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (by its PID, through the handle) and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}
