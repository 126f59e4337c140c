//! Sessions end to end in one process: the host and a client joined by a Unix socket pair,
//! real shells on real ptys. Every test is bounded by [`TEST_LIMIT`] and checks, by PID,
//! that what it started is gone.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use async_net::unix::UnixStream;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use rustix::process::Pid;

use super::client::{self, ExecOptions};
use super::host::{HostConfig, Limits, SessionCounter, SessionEnd, serve_session};
use super::proto::{self, ExitStatus, MAX_PAYLOAD_LEN, Repr, Request, Sig};
use super::{PtyError, sys, with_timeout};
use crate::crypto::{Keypair, PublicKey};

/// Upper bound for any one test.
const TEST_LIMIT: Duration = Duration::from_secs(40);
/// Upper bound for one expected piece of output.
const STEP: Duration = Duration::from_secs(10);
/// Time for a typed command to start before a signal is sent at it (generous: CI machines
/// are shared, and a signal that arrives before the command runs hits the shell instead).
const SETTLE: Duration = Duration::from_millis(1000);
/// The tests that deliver Ctrl-C / job-control signals run one at a time: run side by side
/// (in one process or two), the interactive one's Ctrl-C was seen not to interrupt its
/// `sleep` (cause not found yet; see the closing note of issue 6).
static SIGNAL_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn peer() -> PublicKey {
    *Keypair::from_seed(&[7u8; 32]).public()
}

/// Host settings for tests: the login shell is dash/sh, whatever the environment says.
fn config() -> HostConfig {
    HostConfig {
        shell: Some("/bin/sh".into()),
        ..HostConfig::default()
    }
}

fn run<F: Future>(f: F) -> F::Output {
    async_io::block_on(async {
        with_timeout(TEST_LIMIT, f)
            .await
            .expect("test exceeded its time limit")
    })
}

fn opts() -> ExecOptions {
    ExecOptions {
        timeout: Some(Duration::from_secs(20)),
        env: Vec::new(),
        rows: 24,
        cols: 80,
    }
}

/// Runs `argv` through a host and `client::exec`: (client result, output, host result).
fn exec_with(
    argv: &[&str],
    opts: &ExecOptions,
    cfg: &HostConfig,
    allowed: bool,
) -> (Result<i32, PtyError>, String, Result<SessionEnd, PtyError>) {
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let counter = SessionCounter::new();
        let mut out = Vec::new();
        let argv = argv.iter().map(|s| s.to_string()).collect();
        let (host, code) = future::zip(
            serve_session(a, peer(), allowed, cfg, &counter),
            client::exec(b, argv, opts, &mut out),
        )
        .await;
        assert_eq!(counter.active(), 0);
        (code, String::from_utf8_lossy(&out).into_owned(), host)
    })
}

fn exec(argv: &[&str]) -> (i32, String, SessionEnd) {
    let (code, out, host) = exec_with(argv, &opts(), &config(), true);
    (code.unwrap(), out, host.unwrap())
}

/// Whether `pid` is gone (no such process, or a zombie nobody reaped yet).
fn is_gone(pid: i32) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return true;
    };
    match rustix::process::test_kill_process(p) {
        Err(rustix::io::Errno::SRCH) => true,
        Err(_) => false,
        Ok(()) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_ascii_whitespace()
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
            .unwrap_or(true),
    }
}

async fn wait_gone(pids: &[i32]) -> Vec<i32> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|p| !is_gone(*p)).collect();
        if alive.is_empty() || Instant::now() > end {
            return alive;
        }
        Timer::after(Duration::from_millis(50)).await;
    }
}

/// The number in the first `TAG=<digits>=` of `out` (the typed command echoes `TAG=$!=`,
/// which has no digits, so only the shell's answer matches).
fn marker(out: &str, tag: &str) -> Option<i32> {
    let pat = format!("{tag}=");
    let mut rest = out;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with('=') {
            return digits.parse().ok();
        }
    }
    None
}

/// A test client speaking the protocol frame by frame.
struct Raw {
    s: UnixStream,
    buf: Vec<u8>,
    out: String,
}

impl Raw {
    fn new(s: UnixStream) -> Raw {
        Raw {
            s,
            buf: Vec::new(),
            out: String::new(),
        }
    }

    async fn send(&mut self, r: Repr<'_>) {
        proto::write_frame(&mut self.s, &r).await.unwrap();
        self.s.flush().await.unwrap();
    }

    async fn typed(&mut self, text: &str) {
        self.send(Repr::Stdin(text.as_bytes())).await;
    }

    /// The next frame, as an owned description (stdout is appended to `out`).
    async fn next(&mut self) -> Option<String> {
        let frame = with_timeout(
            STEP,
            proto::read_frame(&mut self.s, &mut self.buf, MAX_PAYLOAD_LEN),
        )
        .await
        .expect("no frame in time")
        .expect("a valid frame")?;
        if let Repr::Stdout(b) = &frame {
            self.out.push_str(&String::from_utf8_lossy(b));
        }
        Some(frame.to_string())
    }

    async fn expect_accepted(&mut self) {
        assert_eq!(self.next().await.as_deref(), Some("pty accepted"));
    }

    /// Reads until the output holds `needle`; panics on an exit or after [`STEP`].
    async fn until(&mut self, needle: &str) {
        let end = Instant::now() + STEP;
        while !self.out.contains(needle) {
            assert!(Instant::now() < end, "no {needle:?} in {:?}", self.out);
            match self.next().await.as_deref() {
                Some(f) if f.starts_with("pty stdout") => {}
                other => panic!(
                    "waiting for {needle:?}: got {other:?}, output {:?}",
                    self.out
                ),
            }
        }
    }

    /// Reads until the exit frame.
    async fn exit(&mut self) -> String {
        loop {
            match self.next().await {
                Some(f) if f.starts_with("pty stdout") => {}
                Some(f) => return f,
                None => panic!("closed without an exit status; output {:?}", self.out),
            }
        }
    }
}

/// Starts a shell session with a raw client; returns the host future's output once the
/// body has run and the client is dropped.
fn with_shell<F, Fut>(body: F) -> Result<SessionEnd, PtyError>
where
    F: FnOnce(Raw) -> Fut,
    Fut: Future<Output = ()>,
{
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = config();
        let counter = SessionCounter::new();
        let mut raw = Raw::new(b);
        let drive = async move {
            raw.send(Repr::Request(Request::shell(24, 80))).await;
            raw.expect_accepted().await;
            body(raw).await;
        };
        let (host, ()) = future::zip(serve_session(a, peer(), true, &cfg, &counter), drive).await;
        host
    })
}

// ---- exec ------------------------------------------------------------------------------------

#[test]
fn exec_arithmetic_prints_42() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let (code, out, host) = exec(&["echo $((6*7))"]);
    assert_eq!(out, "42\n");
    assert_eq!(code, 0);
    assert_eq!(host, SessionEnd::Exited(ExitStatus::Code(0)));
}

#[test]
fn exec_exit_status_is_the_remote_one() {
    let (code, out, host) = exec(&["sh", "-c", "exit 3"]);
    assert_eq!((code, out.as_str()), (3, ""));
    assert_eq!(host, SessionEnd::Exited(ExitStatus::Code(3)));
    let (code, _, host) = exec(&["sh", "-c", "kill -TERM $$"]);
    assert_eq!(code, 128 + 15);
    assert_eq!(host, SessionEnd::Exited(ExitStatus::Signal(15)));
}

#[test]
fn exec_runs_on_a_real_tty() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let (code, out, _) = exec(&["tty"]);
    assert_eq!(code, 0);
    let n = out
        .strip_prefix("/dev/pts/")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a pty: {out:?}"));
    assert!(n.parse::<u32>().is_ok(), "{out:?}");
    // The command leads its own session with the pty as controlling terminal.
    let (code, out, _) = exec(&[
        "sh",
        "-c",
        "cut -d' ' -f6 /proc/$$/stat; echo $$; stty size",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], lines[1], "{out}");
    assert_eq!(lines[2], "24 80");
}

#[test]
fn exec_reports_a_missing_command() {
    let (code, out, host) = exec(&["/nonexistent/command", "arg"]);
    assert_eq!(code, 127);
    assert!(out.contains("cannot run /nonexistent/command"), "{out}");
    assert_eq!(host, SessionEnd::Exited(ExitStatus::Code(127)));
    let (code, _, _) = exec(&["/nonexistent/command"]);
    assert_eq!(code, 127);
}

#[test]
fn exec_passes_only_the_allowed_environment() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let mut o = opts();
    o.env = vec![
        ("TERM".into(), "xterm-test".into()),
        ("LC_ALL".into(), "C".into()),
        ("LD_PRELOAD".into(), "/nonexistent.so".into()),
    ];
    let (code, out, _) = exec_with(
        &["echo $TERM:$LC_ALL:$LD_PRELOAD:$HOME"],
        &o,
        &config(),
        true,
    );
    assert_eq!(code.unwrap(), 0);
    let home = out.trim_end().rsplit(':').next().unwrap().to_owned();
    assert_eq!(out, format!("xterm-test:C::{home}\n"));
    assert!(!home.is_empty());
}

#[test]
fn exec_times_out_with_124_and_leaves_nothing_behind() {
    let mut o = opts();
    o.timeout = Some(Duration::from_millis(1500));
    let (code, out, host) = exec_with(
        &["sh", "-c", "echo P=$$=; exec sleep 30"],
        &o,
        &config(),
        true,
    );
    assert_eq!(code.unwrap(), client::TIMEOUT_EXIT_CODE);
    let pid = marker(&out, "P").unwrap_or_else(|| panic!("no pid in {out:?}"));
    // The host saw SIGKILL delivered, or the stream closed first; either way it is over.
    assert!(host.is_ok(), "{host:?}");
    assert!(run(wait_gone(&[pid])).is_empty(), "{pid} survived");
}

#[test]
fn exec_stdin_and_eof_reach_the_command() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let host = run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = config();
        let counter = SessionCounter::new();
        let mut raw = Raw::new(b);
        let drive = async move {
            raw.send(Repr::Request(Request::exec(vec!["cat".into()], 24, 80)))
                .await;
            raw.expect_accepted().await;
            raw.typed("hello\n").await;
            raw.until("hello\n").await;
            // A partial line needs two EOF characters; the host sends them.
            raw.typed("abc").await;
            raw.send(Repr::StdinEof).await;
            assert_eq!(raw.exit().await, "pty exit (exit code 0)");
            assert_eq!(raw.out, "hello\nabc");
        };
        future::zip(serve_session(a, peer(), true, &cfg, &counter), drive)
            .await
            .0
    });
    assert_eq!(host.unwrap(), SessionEnd::Exited(ExitStatus::Code(0)));
}

// ---- shell -----------------------------------------------------------------------------------

#[test]
fn shell_has_a_tty_follows_resizes_and_exits_with_its_status() {
    let host = with_shell(|mut raw| async move {
        raw.typed("tty\r").await;
        raw.until("/dev/pts/").await;
        raw.send(Repr::Resize {
            rows: 33,
            cols: 101,
        })
        .await;
        raw.typed("stty size\r").await;
        raw.until("33 101").await;
        raw.typed("exit 7\r").await;
        assert_eq!(raw.exit().await, "pty exit (exit code 7)");
    });
    assert_eq!(host.unwrap(), SessionEnd::Exited(ExitStatus::Code(7)));
}

#[test]
fn shell_ctrl_c_ctrl_z_and_signal_frames_reach_the_foreground() {
    let _one = SIGNAL_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let host = with_shell(|mut raw| async move {
        // Ctrl-C as a byte: the remote line discipline interrupts `sleep 30`.
        raw.typed("echo START$((1+1)); sleep 30\r").await;
        raw.until("START2").await;
        Timer::after(SETTLE).await;
        raw.typed("\x03").await;
        raw.typed("echo DONE$((2+3))\r").await;
        raw.until("DONE5").await;
        // A signal frame does the same.
        raw.typed("echo AGAIN$((3+4)); sleep 30\r").await;
        raw.until("AGAIN7").await;
        Timer::after(SETTLE).await;
        raw.send(Repr::Signal(Sig::Int)).await;
        raw.typed("echo BACK$((4+5))\r").await;
        raw.until("BACK9").await;
        // Ctrl-Z stops the foreground job; the shell says so and prompts again.
        raw.typed("echo Z$((5+6)); sleep 30\r").await;
        raw.until("Z11").await;
        Timer::after(SETTLE).await;
        raw.typed("\x1a").await;
        raw.until("Stopped").await;
        raw.typed("echo ALIVE$((6+7))\r").await;
        raw.until("ALIVE13").await;
        // Dropping the client now leaves a stopped job behind on the host: it is killed.
    });
    assert_eq!(host.unwrap(), SessionEnd::Dropped);
}

#[test]
fn dropping_the_client_kills_the_whole_session() {
    let mut pids = Vec::new();
    let host = with_shell(|mut raw| {
        let pids = &mut pids;
        async move {
            raw.typed("echo SH=$$=\r").await;
            raw.until("SH=").await;
            raw.typed("sleep 31 & echo BG=$!=\r").await;
            raw.until("BG=").await;
            raw.typed("sh -c 'trap \"\" HUP; exec sleep 33' & echo NH=$!=\r")
                .await;
            raw.until("NH=").await;
            raw.typed("echo FG$((1+1)); sleep 32\r").await;
            raw.until("FG2").await;
            let out = raw.out.clone();
            let shell = marker(&out, "SH").unwrap_or_else(|| panic!("no shell pid in {out:?}"));
            for tag in ["BG", "NH"] {
                pids.push(marker(&out, tag).unwrap_or_else(|| panic!("no {tag} in {out:?}")));
            }
            pids.push(shell);
            // The foreground sleep: found through its session.
            let end = Instant::now() + STEP;
            loop {
                let members = sys::session_members(Pid::from_raw(shell).unwrap());
                if members.len() >= 4 {
                    for m in members {
                        let m = m.as_raw_nonzero().get();
                        if !pids.contains(&m) {
                            pids.push(m);
                        }
                    }
                    break;
                }
                assert!(Instant::now() < end, "session has {members:?}");
                Timer::after(Duration::from_millis(50)).await;
            }
            drop(raw);
        }
    });
    assert_eq!(host.unwrap(), SessionEnd::Dropped);
    assert_eq!(pids.len(), 4, "{pids:?}");
    let alive = run(wait_gone(&pids));
    assert!(alive.is_empty(), "still alive: {alive:?} of {pids:?}");
}

// ---- refusals and hostile input ---------------------------------------------------------------

#[test]
fn a_peer_not_whitelisted_is_refused_with_its_key() {
    let (code, out, host) = exec_with(&["true"], &opts(), &config(), false);
    let want = format!("not whitelisted: {}", peer());
    match code {
        Err(PtyError::Refused(why)) => assert_eq!(why, want),
        other => panic!("{other:?}"),
    }
    assert_eq!(out, "");
    assert_eq!(host.unwrap(), SessionEnd::Refused(want.clone()));
    let text = PtyError::Refused(want).to_string();
    assert!(
        text.contains("refused by the host: not whitelisted: "),
        "{text}"
    );
}

#[test]
fn session_limit_and_request_size_limit() {
    let mut cfg = config();
    cfg.limits = Limits {
        max_sessions: 0,
        ..Limits::default()
    };
    let (code, _, host) = exec_with(&["true"], &opts(), &cfg, true);
    assert!(
        matches!(code, Err(PtyError::Refused(ref w)) if w == "too many sessions"),
        "{code:?}"
    );
    assert_eq!(
        host.unwrap(),
        SessionEnd::Refused("too many sessions".into())
    );

    let mut cfg = config();
    cfg.limits.max_request = 64;
    let long = "x".repeat(100);
    let (code, _, host) = exec_with(&["echo", &long], &opts(), &cfg, true);
    let want = "request too large: 117 bytes, at most 64";
    assert!(
        matches!(code, Err(PtyError::Refused(ref w)) if w == want),
        "{code:?}"
    );
    assert_eq!(host.unwrap(), SessionEnd::Refused(want.into()));
}

/// Feeds `bytes` to a host as the whole client stream (then closes its write side, unless
/// `hold`); returns the host's result and what it sent back.
fn host_fed(bytes: &[u8]) -> (Result<SessionEnd, PtyError>, Vec<u8>) {
    host_fed_with(bytes, false)
}

fn host_fed_with(bytes: &[u8], hold: bool) -> (Result<SessionEnd, PtyError>, Vec<u8>) {
    run(async {
        let (a, mut b) = UnixStream::pair().unwrap();
        let cfg = HostConfig {
            limits: Limits {
                request_timeout: Duration::from_millis(500),
                ..Limits::default()
            },
            ..config()
        };
        let counter = SessionCounter::new();
        let feed = async {
            b.write_all(bytes).await.unwrap();
            b.flush().await.unwrap();
            if !hold {
                b.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut back = Vec::new();
            let _ = b.read_to_end(&mut back).await;
            back
        };
        let (host, back) = future::zip(serve_session(a, peer(), true, &cfg, &counter), feed).await;
        assert_eq!(counter.active(), 0);
        (host, back)
    })
}

#[test]
fn garbage_first_frames_are_refused_cleanly() {
    let cases: [(&[u8], &str); 5] = [
        (&[0xff, 0, 0], "bad request: unknown pty frame type 0xff"),
        (
            &[0x04, 0, 1, b'x'],
            "bad request: expected a request, got a stdin frame",
        ),
        (
            &[0x01, 0, 3, 9, 9, 9],
            "bad request: invalid request mode: 9",
        ),
        (
            &[0x01, 0, 5, 0, 0, 1, 0, 1],
            "bad request: truncated pty frame: need 7 bytes, have 5",
        ),
        (
            &[0x02, 0, 0],
            "bad request: expected a request, got a accepted frame",
        ),
    ];
    for (bytes, why) in cases {
        let (host, back) = host_fed(bytes);
        assert_eq!(
            host.unwrap(),
            SessionEnd::Refused(why.into()),
            "{bytes:02x?}"
        );
        let refused = Repr::Refused(why).to_vec().unwrap();
        assert_eq!(back, refused);
    }
    // A stream that ends inside the header, or sends nothing within the request timeout.
    let (host, _) = host_fed(&[0x01, 0]);
    assert!(matches!(host, Err(PtyError::Closed)), "{host:?}");
    let (host, _) = host_fed(&[]);
    assert!(matches!(host, Err(PtyError::Closed)), "{host:?}");
    let (host, back) = host_fed_with(&[0x01, 0, 9, 1], true);
    assert!(matches!(host, Err(PtyError::Timeout(_))), "{host:?}");
    let refused = Repr::Refused("timed out waiting for the request");
    assert_eq!(back, refused.to_vec().unwrap());
}

#[test]
fn random_bytes_never_panic_the_host() {
    // xorshift: reproducible noise, some of it starting with a valid type byte.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..24 {
        let len = 1 + (round * 7) % 40;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if round % 2 == 0 {
            bytes[0] = 0x01;
        }
        let (host, _) = host_fed(&bytes);
        match host {
            Ok(SessionEnd::Refused(_)) | Err(_) => {}
            other => panic!("{bytes:02x?} gave {other:?}"),
        }
    }
}

#[test]
fn garbage_mid_session_kills_the_command() {
    let mut pid = 0;
    let host = run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = config();
        let counter = SessionCounter::new();
        let mut raw = Raw::new(b);
        let pid = &mut pid;
        let drive = async move {
            raw.send(Repr::Request(Request::exec(
                vec!["echo P=$$=; exec sleep 30".into()],
                24,
                80,
            )))
            .await;
            raw.expect_accepted().await;
            raw.until("P=").await;
            *pid = marker(&raw.out, "P").unwrap();
            raw.s.write_all(&[0x7f, 0, 0]).await.unwrap();
            raw.s.flush().await.unwrap();
            // The host closes without an exit status (possibly with a reset: it stopped
            // reading at the bad type byte).
            let last = with_timeout(
                STEP,
                proto::read_frame(&mut raw.s, &mut raw.buf, MAX_PAYLOAD_LEN),
            )
            .await
            .expect("the host closes");
            assert!(matches!(last, Ok(None) | Err(_)), "{last:?}");
        };
        future::zip(serve_session(a, peer(), true, &cfg, &counter), drive)
            .await
            .0
    });
    assert!(
        matches!(
            host,
            Err(PtyError::Proto(proto::ProtoError::UnknownType(0x7f)))
        ),
        "{host:?}"
    );
    assert!(run(wait_gone(&[pid])).is_empty(), "{pid} survived");
}

#[test]
fn the_client_rejects_a_hostile_host() {
    // A fake host: each script is what it sends after reading the request.
    let scripts: [(&[u8], &str); 4] = [
        (&[0x02, 0, 0, 0x7f, 0, 0], "unknown pty frame type 0x7f"),
        (
            &[0x02, 0, 0, 0x09, 0, 1, 0],
            "pty exit frame with a 1-byte payload",
        ),
        (&[0x02, 0, 0, 0x06, 0, 9, b'x'], "connection closed"),
        (
            &[0x06, 0, 1, b'x'],
            "expected accepted or refused, got a stdout frame",
        ),
    ];
    for (script, want) in scripts {
        let got = run(async {
            let (mut a, b) = UnixStream::pair().unwrap();
            let fake = async {
                let mut buf = Vec::new();
                let req = proto::read_frame(&mut a, &mut buf, MAX_PAYLOAD_LEN)
                    .await
                    .unwrap();
                assert!(matches!(req, Some(Repr::Request(_))));
                a.write_all(script).await.unwrap();
                a.flush().await.unwrap();
                // Read what the client still sends, so closing does not reset the stream.
                let mut rest = Vec::new();
                let _ = with_timeout(Duration::from_millis(300), a.read_to_end(&mut rest)).await;
                drop(a);
            };
            let mut out = Vec::new();
            let (code, ()) = future::zip(
                client::exec(b, vec!["true".into()], &opts(), &mut out),
                fake,
            )
            .await;
            code
        });
        let err = got.expect_err(want).to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    }
}

// ---- the interactive client, on a local pty standing for the user's terminal -------------------

/// Reads the user's side of the local pty until `acc` holds `needle`.
async fn user_until(term: &Async<File>, acc: &mut String, needle: &str) {
    let mut r: &Async<File> = term;
    let mut buf = [0u8; 4096];
    let end = Instant::now() + STEP;
    while !acc.contains(needle) {
        assert!(Instant::now() < end, "no {needle:?} in {acc:?}");
        match with_timeout(STEP, r.read(&mut buf)).await {
            Some(Ok(n)) if n > 0 => acc.push_str(&String::from_utf8_lossy(&buf[..n])),
            other => panic!("user terminal: {other:?}; waiting for {needle:?} in {acc:?}"),
        }
    }
}

#[test]
fn interactive_client_raw_mode_resize_ctrl_c_and_exit_status() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let _one = SIGNAL_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let local = sys::Pty::open().unwrap();
    sys::set_winsize(&local.master, 30, 90).unwrap();
    let before = rustix::termios::tcgetattr(&local.slave).unwrap();
    let slave_for_client = local.slave.try_clone().unwrap();
    let user = Async::new(File::from(local.master)).unwrap();
    let (code, host) = run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = config();
        let counter = SessionCounter::new();
        let drive = async {
            let mut w: &Async<File> = &user;
            let mut seen = String::new();
            // Type only once the client has put the terminal in raw mode.
            let end = Instant::now() + STEP;
            while rustix::termios::tcgetattr(&local.slave)
                .unwrap()
                .local_modes
                .contains(rustix::termios::LocalModes::ICANON)
            {
                assert!(Instant::now() < end, "terminal never went raw");
                Timer::after(Duration::from_millis(20)).await;
            }
            w.write_all(b"tty; stty size\r").await.unwrap();
            user_until(&user, &mut seen, "30 90").await;
            assert!(seen.contains("/dev/pts/"), "{seen}");
            // The user's terminal grows: SIGWINCH reaches the client, which sends a resize.
            sys::set_winsize(user.get_ref(), 40, 120).unwrap();
            rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::WINCH,
            )
            .unwrap();
            Timer::after(SETTLE).await;
            w.write_all(b"stty size\r").await.unwrap();
            user_until(&user, &mut seen, "40 120").await;
            // Ctrl-C goes through as a byte and interrupts the remote `sleep 30`.
            w.write_all(b"echo START$((1+1)); sleep 30\r")
                .await
                .unwrap();
            user_until(&user, &mut seen, "START2").await;
            Timer::after(SETTLE).await;
            w.write_all(b"\x03").await.unwrap();
            w.write_all(b"echo DONE$((2+3))\r").await.unwrap();
            user_until(&user, &mut seen, "DONE5").await;
            w.write_all(b"exit 5\r").await.unwrap();
        };
        let (host, (code, ())) = future::zip(
            serve_session(a, peer(), true, &cfg, &counter),
            future::zip(client::interactive_on(b, slave_for_client), drive),
        )
        .await;
        (code, host)
    });
    assert_eq!(code.unwrap(), 5);
    assert_eq!(host.unwrap(), SessionEnd::Exited(ExitStatus::Code(5)));
    let after = rustix::termios::tcgetattr(&local.slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes);
    assert_eq!(after.input_modes, before.input_modes);
    assert_eq!(after.output_modes, before.output_modes);
}

#[test]
fn interactive_client_restores_the_terminal_on_refusal_and_drop() {
    if !sys::termios_works() {
        eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
        return;
    }
    let local = sys::Pty::open().unwrap();
    let before = rustix::termios::tcgetattr(&local.slave).unwrap();
    // Refused: the terminal was never touched, the reason comes back.
    let err = run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = config();
        let counter = SessionCounter::new();
        let (_, code) = future::zip(
            serve_session(a, peer(), false, &cfg, &counter),
            client::interactive_on(b, local.slave.try_clone().unwrap()),
        )
        .await;
        code.unwrap_err()
    });
    assert!(
        matches!(err, PtyError::Refused(ref w) if w.starts_with("not whitelisted: ")),
        "{err}"
    );
    // The host vanishes mid-session: an error, and the terminal is restored.
    let err = run(async {
        let (mut a, b) = UnixStream::pair().unwrap();
        let fake = async {
            let mut buf = Vec::new();
            let _ = proto::read_frame(&mut a, &mut buf, MAX_PAYLOAD_LEN).await;
            a.write_all(&Repr::Accepted.to_vec().unwrap())
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = with_timeout(Duration::from_millis(300), a.read_to_end(&mut rest)).await;
            drop(a);
        };
        let (code, ()) = future::zip(
            client::interactive_on(b, local.slave.try_clone().unwrap()),
            fake,
        )
        .await;
        code.unwrap_err()
    });
    assert!(matches!(err, PtyError::Closed), "{err}");
    let after = rustix::termios::tcgetattr(&local.slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes);
    // A pipe is not a terminal.
    let (r, _w) = std::io::pipe().unwrap();
    let (_, b) = UnixStream::pair().unwrap();
    let err = run(client::interactive_on(
        b,
        r.as_fd().try_clone_to_owned().unwrap(),
    ))
    .unwrap_err();
    assert!(matches!(err, PtyError::NotATerminal));
}

#[test]
fn serve_session_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cfg = config();
    let counter = SessionCounter::new();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let a = Async::new(a).unwrap();
    let fut = serve_session(a, peer(), true, &cfg, &counter);
    assert_send(&fut);
}
