//! Measurement helpers shared by the benches: wall and CPU time, GiB/s, CPU-seconds per GiB,
//! and writing a results section into `docs/benchmarks.md` between markers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
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

/// Bytes the bare forwarder reads (and then writes) at once.
pub const FLOOR_CHUNK: usize = 256 * 1024;

/// The bare forwarder (child process): accepts one connection, connects to `sink`, and moves
/// everything from one to the other with plain read → write of [`FLOOR_CHUNK`] bytes, then
/// prints the CPU-seconds it used. What the kernel needs to pass bytes through a process on
/// loopback with read/write: the floor under any relay.
pub fn child_forward(sink: &str) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", l.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    let (mut a, _) = l.accept().unwrap();
    let mut b = std::net::TcpStream::connect(sink).unwrap();
    let c0 = cpu_seconds();
    let mut buf = vec![0u8; FLOOR_CHUNK];
    loop {
        match a.read(&mut buf).unwrap() {
            0 => break,
            n => b.write_all(&buf[..n]).unwrap(),
        }
    }
    println!("{}", cpu_seconds() - c0);
}

/// Runs [`child_forward`] (this bench's executable with `--child-forward <sink>`: its `main`
/// must dispatch that) between a sender and a sink thread of this process moving `total`
/// bytes; returns the forwarder's CPU-seconds and the wall time.
pub fn bare_forwarder(total: u64) -> (f64, Duration) {
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new(me)
        .args(["--child-forward", &sink_addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let fwd_addr = line.trim().to_string();
    let t0 = Instant::now();
    let reader = std::thread::spawn(move || {
        let (mut r, _) = sink.accept().unwrap();
        let mut buf = vec![0u8; FLOOR_CHUNK];
        let mut got = 0u64;
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break got,
                n => got += n as u64,
            }
        }
    });
    let mut w = std::net::TcpStream::connect(&fwd_addr).unwrap();
    let buf = vec![0x5au8; FLOOR_CHUNK];
    let mut sent = 0u64;
    while sent < total {
        w.write_all(&buf).unwrap();
        sent += FLOOR_CHUNK as u64;
    }
    drop(w);
    assert_eq!(reader.join().unwrap(), sent);
    let wall = t0.elapsed();
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = child.wait();
    (line.trim().parse().unwrap(), wall)
}

/// dropbear on 127.0.0.1:`port` in a private mount namespace where /root/.ssh holds
/// `pubkey`. `None` (with the reason printed) when this machine cannot.
pub fn start_dropbear(dir: &Path, port: u16, pubkey: &str) -> Option<Proc> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        println!("dropbear comparison skipped: needs root (a private mount namespace)");
        return None;
    }
    let host_key = dir.join("db_host");
    let st = Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&host_key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !st.success() {
        println!("dropbear comparison skipped: dropbearkey failed (is dropbear-bin installed?)");
        return None;
    }
    std::fs::write(dir.join("authorized_keys"), format!("{pubkey}\n")).unwrap();
    let sh = format!(
        "mount -t tmpfs -o mode=700 tmpfs /root && mkdir -m 700 /root/.ssh && \
         install -m 600 '{ak}' /root/.ssh/authorized_keys && \
         exec dropbear -F -E -s -p 127.0.0.1:{port} -r '{hk}' 2>/dev/null",
        ak = dir.join("authorized_keys").display(),
        hk = host_key.display()
    );
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &sh])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc(child);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            println!("dropbear comparison skipped: dropbear did not listen");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(p)
}

/// Starts `bin args…` with stderr to `log` (or dropped, `None`) and returns it with its first
/// stdout line; the rest of stdout is drained by a thread so the child never blocks on it.
pub fn spawn_first_line(bin: &str, args: &[&str], log: Option<&Path>) -> (Proc, String) {
    let err = match log {
        Some(f) => Stdio::from(std::fs::File::create(f).unwrap()),
        None => Stdio::null(),
    };
    let mut c = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (Proc(c), line.trim().to_string())
}
