//! Helpers for tests that run a dmsg network: the real `skywire dmsg disc` and `skywire dmsg
//! server` processes on 127.0.0.1, `skywire dmsg …` tool processes, and raw Noise XK peers
//! driven over blocking sockets (the attacker's view of a relay).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use skywire::crypto::noise::{Handshake, xk_initiator};
use skywire::crypto::{Keypair, PublicKey};
use skywire::dmsg::disc_client::DiscClient;

use super::{ChildGuard, skywire_bin};

/// A relay process.
pub struct RelayProc {
    pub proc: ChildGuard,
    pub pk: PublicKey,
    pub addr: String,
    /// Kept open so the relay's later output has somewhere to go.
    pub _out: BufReader<ChildStdout>,
}

impl RelayProc {
    /// `<pk>@<addr>`, as `--relay` takes it.
    pub fn arg(&self) -> String {
        format!("{}@{}", self.pk, self.addr)
    }
}

fn spawn_first_line(args: &[&str]) -> (ChildGuard, String, BufReader<ChildStdout>) {
    let mut child = Command::new(skywire_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (ChildGuard(Some(child)), line.trim().to_string(), out)
}

/// Starts a discovery; returns it and its URL.
pub fn start_disc() -> (ChildGuard, String) {
    let (g, line, _out) = spawn_first_line(&[
        "dmsg",
        "disc",
        "--addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]);
    let url = line
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    (g, url)
}

/// Starts a relay registered in `disc_url`, with `extra` flags.
pub fn start_relay(disc_url: &str, extra: &[&str]) -> RelayProc {
    let mut args = vec![
        "dmsg",
        "server",
        "--addr",
        "127.0.0.1:0",
        "--disc",
        disc_url,
        "--log-level",
        "warn",
    ];
    args.extend_from_slice(extra);
    let (proc, line, out) = spawn_first_line(&args);
    // relay <pk> listening on <addr>
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"relay"), "{line}");
    RelayProc {
        proc,
        pk: PublicKey::from_hex(parts[1]).unwrap(),
        addr: parts[4].to_string(),
        _out: out,
    }
}

/// Waits until discovery lists at least `n` relays.
pub fn wait_relays_listed(url: &str, n: usize) {
    let c = DiscClient::new(url).unwrap();
    let t0 = Instant::now();
    while block_on(c.relays()).map(|r| r.len()).unwrap_or(0) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "relays not in discovery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `skywire dmsg …` tool process with piped stdio.
pub fn tool(args: &[&str]) -> Child {
    Command::new(skywire_bin())
        .arg("dmsg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a line on `child`'s stderr starting with `prefix`; returns it and the rest.
pub fn wait_stderr_line(
    child: &mut Child,
    prefix: &str,
) -> (String, BufReader<std::process::ChildStderr>) {
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no {prefix:?} line");
        if line.starts_with(prefix) {
            return (line.trim().to_string(), err);
        }
    }
}

/// Waits (at most `secs`, a hang guard) for `child` to exit; kills it and panics otherwise.
pub fn wait_status(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh key as hex seed, and its PK.
pub fn keypair_hex() -> (String, PublicKey) {
    let k = Keypair::generate().unwrap();
    (skywire::crypto::hex::encode(k.seed()), *k.public())
}

/// A valid XK message 1 to `relay` from a throwaway key, framed as on the wire
/// (`u16be length ‖ message`), with the handshake to continue it.
pub fn xk_msg1(relay: &PublicKey) -> (Handshake, Vec<u8>) {
    let keys = Keypair::generate().unwrap();
    let mut hs = xk_initiator(&keys, relay);
    let mut buf = [0u8; 256];
    let n = hs.write_message(&mut buf).unwrap();
    let mut frame = (n as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf[..n]);
    (hs, frame)
}

/// What the relay did with a connection that sent message 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It answered with message 2: it did the handshake's Diffie-Hellman work.
    Msg2,
    /// It closed the connection without a word.
    Closed,
}

/// Reads the relay's reaction on `s` (which has sent message 1): message 2, or a close.
/// `guard` bounds the wait (a relay that neither answers nor closes fails the test).
pub fn answer(s: &mut TcpStream, guard: Duration) -> Answer {
    s.set_read_timeout(Some(guard)).unwrap();
    let mut b = [0u8; 2];
    match s.read(&mut b[..1]) {
        Ok(0) => Answer::Closed,
        Ok(_) => Answer::Msg2,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("the relay neither answered nor closed within {guard:?}")
        }
        Err(_) => Answer::Closed,
    }
}

/// Runs a whole XK handshake with the relay at `addr` over a blocking socket; `Some(socket)`
/// (the session up, from the relay's side) or `None` if the relay closed the connection.
pub fn raw_xk_session(addr: &str, relay: &PublicKey) -> Option<TcpStream> {
    let (mut hs, frame) = xk_msg1(relay);
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    if tcp.write_all(&frame).is_err() {
        return None;
    }
    let mut len = [0u8; 2];
    if tcp.read_exact(&mut len).is_err() {
        return None;
    }
    let n = u16::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; n];
    tcp.read_exact(&mut buf).ok()?;
    hs.read_message(&buf).unwrap();
    let mut out = [0u8; 256];
    let n = hs.write_message(&mut out).unwrap();
    tcp.write_all(&(n as u16).to_be_bytes()).ok()?;
    tcp.write_all(&out[..n]).ok()?;
    assert!(hs.is_finished());
    Some(tcp)
}
