//! `skywire dmsg cat` delivers everything or says it did not (issue 11 finding 5): a half-close
//! means "I send no more", not "stop". The real binaries, a relay on 127.0.0.1, 64 MiB of a
//! known pattern from the dialler to a listener whose stdin is at EOF (as in the background or
//! under systemd), or held open; and a transfer whose listener is killed halfway.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::dmsg::{
    RelayProc, keypair_hex, start_disc, start_relay, wait_relays_listed, wait_status,
};

const TOTAL: usize = 64 << 20;

/// Byte `i` of the pattern (not periodic at any power of two, so a lost or repeated chunk
/// shows).
fn pattern(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8 ^ (i / 65_521) as u8
}

/// A pause in the feed: after this many bytes, run this (it returns when the feed goes on).
type Pause = (usize, Box<dyn FnOnce() + Send>);

/// Feeds `total` bytes of the pattern into `w` from a thread, pausing once as `pause` says;
/// returns bytes written.
fn feed(
    mut w: impl Write + Send + 'static,
    total: usize,
    pause: Option<Pause>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        let mut pause = pause;
        while sent < total {
            if pause.as_ref().is_some_and(|(at, _)| sent >= *at)
                && let Some((_, wait)) = pause.take()
            {
                wait();
            }
            let n = buf.len().min(total - sent);
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n;
        }
        sent
    })
}

/// Reads `r` to its end from a thread; returns (bytes read, whether they all matched the
/// pattern), and reports progress (bytes so far) on `progress`.
fn drain(
    mut r: impl Read + Send + 'static,
    progress: Option<mpsc::Sender<usize>>,
) -> std::thread::JoinHandle<(usize, bool)> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let (mut got, mut ok) = (0usize, true);
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    ok &= buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(k, b)| *b == pattern(got + k));
                    got += n;
                    if let Some(p) = &progress {
                        let _ = p.send(got);
                    }
                }
            }
        }
        (got, ok)
    })
}

struct Net {
    _disc: common::ChildGuard,
    url: String,
    relay: RelayProc,
}

fn net() -> Net {
    let (disc, url) = start_disc();
    let relay = start_relay(&url, &[]);
    wait_relays_listed(&url, 1);
    Net {
        _disc: disc,
        url,
        relay,
    }
}

fn cat(net: &Net, args: &[&str], stdin: Stdio) -> Child {
    let r = net.relay.arg();
    Command::new(common::skywire_bin())
        .args(["dmsg", "cat"])
        .args(args)
        .args(["--disc", &net.url, "--relay", &r])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a listener on port 9 with `stdin`; returns it, its pk and its stderr after the
/// "listening on" line.
fn listener(
    net: &Net,
    stdin: Stdio,
) -> (Child, String, std::io::BufReader<std::process::ChildStderr>) {
    let (sk, pk) = keypair_hex();
    let mut l = cat(net, &["-l", "9", "--sk", &sk], stdin);
    let (_, err) = common::dmsg::wait_stderr_line(&mut l, "listening on");
    (l, format!("{pk}:9"), err)
}

fn stderr_of(c: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// A complete transfer to a listener whose stdin is at EOF from the start: the listener's
/// half-close must not stop the sender (before: ~2 s later it stopped, a fraction arrived and
/// both exited 0). The sender's input pauses for 3 s halfway, as a slow producer does.
#[test]
fn listener_with_stdin_at_eof_receives_everything() {
    let net = net();
    let (mut l, target, mut l_err) = listener(&net, Stdio::null());
    let got = drain(l.stdout.take().unwrap(), None);
    let mut d = cat(&net, &[&target], Stdio::piped());
    let pause: Pause = (
        8 << 20,
        Box::new(|| std::thread::sleep(Duration::from_secs(3))),
    );
    let fed = feed(d.stdin.take().unwrap(), TOTAL, Some(pause));
    let d_st = wait_status(&mut d, 120, "the sender");
    let d_err = stderr_of(&mut d);
    let l_st = wait_status(&mut l, 60, "the listener");
    let mut l_msg = String::new();
    let _ = l_err.read_to_string(&mut l_msg);
    let (n, ok) = got.join().unwrap();
    assert_eq!(fed.join().unwrap(), TOTAL);
    assert_eq!(
        n, TOTAL,
        "bytes received (sender: {d_err}; listener: {l_msg})"
    );
    assert!(ok, "the bytes received differ from those sent");
    assert!(d_st.success(), "sender: {d_st}: {d_err}");
    assert!(l_st.success(), "listener: {l_st}: {l_msg}");
}

/// The same with the listener's stdin held open (and silent) all along: the sender finishes,
/// the listener gets everything, and both exit 0 (before: the sender exited 1, "connection
/// lost", after a complete transfer).
#[test]
fn listener_with_stdin_held_open_receives_everything() {
    let net = net();
    let (mut l, target, mut l_err) = listener(&net, Stdio::piped());
    let _held = l.stdin.take().unwrap();
    let got = drain(l.stdout.take().unwrap(), None);
    let mut d = cat(&net, &[&target], Stdio::piped());
    let fed = feed(d.stdin.take().unwrap(), TOTAL, None);
    let d_st = wait_status(&mut d, 120, "the sender");
    let d_err = stderr_of(&mut d);
    let l_st = wait_status(&mut l, 60, "the listener");
    let mut l_msg = String::new();
    let _ = l_err.read_to_string(&mut l_msg);
    let (n, ok) = got.join().unwrap();
    assert_eq!(fed.join().unwrap(), TOTAL);
    assert_eq!(
        n, TOTAL,
        "bytes received (sender: {d_err}; listener: {l_msg})"
    );
    assert!(ok, "the bytes received differ from those sent");
    assert!(d_st.success(), "sender: {d_st}: {d_err}");
    assert!(l_st.success(), "listener: {l_st}: {l_msg}");
}

/// The other way round: the dialler's stdin is at EOF and the listener sends a file; the
/// dialler gets all of it.
#[test]
fn dialler_with_stdin_at_eof_receives_everything() {
    let net = net();
    let total = 16 << 20;
    let (mut l, target, _l_err) = listener(&net, Stdio::piped());
    let fed = feed(l.stdin.take().unwrap(), total, None);
    let _l_out = drain(l.stdout.take().unwrap(), None);
    let mut d = cat(&net, &[&target], Stdio::null());
    let got = drain(d.stdout.take().unwrap(), None);
    let d_st = wait_status(&mut d, 120, "the dialler");
    let d_err = stderr_of(&mut d);
    let l_st = wait_status(&mut l, 60, "the listener");
    let (n, ok) = got.join().unwrap();
    assert_eq!(fed.join().unwrap(), total);
    assert_eq!(n, total, "{d_err}");
    assert!(ok);
    assert!(d_st.success(), "{d_err}");
    assert!(l_st.success());
}

/// The listener is killed in the middle of the transfer: the sender did not deliver
/// everything and must exit non-zero with one line saying so.
#[test]
fn sender_exits_nonzero_when_its_listener_dies_midway() {
    let net = net();
    let (mut l, target, _l_err) = listener(&net, Stdio::null());
    let (ptx, prx) = mpsc::channel();
    let got = drain(l.stdout.take().unwrap(), Some(ptx));
    let mut d = cat(&net, &[&target], Stdio::piped());
    let (gotx, gorx) = mpsc::channel();
    // 4 MiB, then (once the listener is dead) the rest.
    let pause: Pause = (
        4 << 20,
        Box::new(move || {
            let _ = gorx.recv_timeout(Duration::from_secs(30));
        }),
    );
    let fed = feed(d.stdin.take().unwrap(), TOTAL, Some(pause));
    // Kill the listener once a first MiB has arrived.
    loop {
        let n = prx
            .recv_timeout(Duration::from_secs(30))
            .expect("the listener received nothing in 30 s");
        if n >= 1 << 20 {
            break;
        }
    }
    l.kill().unwrap();
    l.wait().unwrap();
    let _ = gotx.send(());
    let d_st = wait_status(&mut d, 60, "the sender");
    let d_err = stderr_of(&mut d);
    let _ = fed.join();
    let (n, _) = got.join().unwrap();
    eprintln!(
        "listener killed after {n} bytes; the sender said: {}",
        d_err.trim()
    );
    assert!(n < TOTAL);
    assert!(
        !d_st.success(),
        "the sender exited 0 after its listener died: {d_err}"
    );
    assert_eq!(d_st.code(), Some(1), "{d_err}");
    let lines: Vec<&str> = d_err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{d_err}");
    assert!(lines[0].starts_with("skywire: error: "), "{d_err}");
}
