//! The host side of a pty session (`app-pty`).
//!
//! [`serve_session`] runs one session on any byte stream:
//!
//! 1. It reads the first frame (at most [`Limits::max_request`] bytes, within
//!    [`Limits::request_timeout`]) — always, even from a peer it will refuse, so the refusal
//!    is not lost to a reset of a connection closed with unread bytes.
//! 2. It refuses (one `Refused` frame, then close) a peer the caller says is not
//!    whitelisted (`not whitelisted: <pk>`, logged as a warning with the PK), a session over
//!    [`Limits::max_sessions`] (`too many sessions`), an oversize request (`request too
//!    large: …`) and anything that is not a valid request (`bad request: …`).
//! 3. It allocates a pty, sets its size, and spawns the command as the leader of a new
//!    session with the pty as its controlling terminal:
//!    - exec with one argument runs `<shell> -c <argument>` (so `echo $((6*7))` works as
//!      typed); with several, runs them directly (`argv[0]` searched in `PATH`);
//!    - shell runs the login shell with `argv[0]` = `-<name>` (a login shell);
//!    - the shell is [`HostConfig::shell`] if set, else `$SHELL`, else the user's entry
//!      in `/etc/passwd`, else `/bin/sh` (the first that is an absolute path to a file);
//!    - the environment is rebuilt, not inherited: `HOME`, `USER`, `LOGNAME`, `SHELL`,
//!      `PATH` (the host's, or a standard one), `TERM` (`dumb` unless the client sends one)
//!      plus the client's `COLORTERM`, `LANG`, `LANGUAGE` and `LC_*`; others are dropped;
//!    - the working directory is the user's home;
//!    - exec runs with echo and output post-processing off (bytes arrive as written).
//!
//!    A command that cannot be started is reported like a shell would: a message on stdout
//!    and exit status 127 (not found) or 126 (any other error).
//! 4. Then, concurrently and without blocking the executor (the master is an
//!    `async_io::Async`): stdin frames are written to the pty, resize frames set its size
//!    (the kernel sends SIGWINCH), signal frames go to the pty's foreground process group,
//!    and stdin-eof writes the EOF character (twice after a partial line); pty output goes
//!    out in stdout frames of up to 16 KiB.
//! 5. When the child exits, the output still in the pty is drained (until the pty reports
//!    its end, 100 ms of quiet, or 2 s), what is left of the session gets SIGHUP, the child
//!    is reaped and `Exit` is sent: `Code(n)`, or `Signal(s)` (the client shows 128+s).
//! 6. If the stream ends or fails first, or the client sends a frame that is invalid or out
//!    of place, every process of the session (leader's group, foreground group, every
//!    process `/proc` lists with that session id) gets SIGHUP and SIGCONT, then SIGKILL after
//!    [`Limits::kill_grace`] for whatever is still alive, and the leader is reaped: no orphans.
//!
//! Writing stdin to the pty waits when the program does not read it; while it waits, later
//! frames of the same client (and the end of its stream) are not read. Exec keeps the pty's
//! canonical (line) input mode so that stdin-eof works: lines longer than the kernel's line
//! buffer (4,095 bytes on Linux) are cut there.
//!
//! Processes still in the session when its leader exits normally get SIGHUP, as on a
//! terminal hang-up; only a dropped connection escalates to SIGKILL.

use core::fmt;
use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustix::process::{Pid, Signal};

use super::proto::{
    self, ExitStatus, Frame, FrameType, HEADER_LEN, MAX_PAYLOAD_LEN, Mode, Repr, Request,
};
use super::{PtyError, sys, with_timeout};
use crate::crypto::PublicKey;

/// Per-host limits on sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sessions running at once; one more is refused with `too many sessions`.
    pub max_sessions: usize,
    /// Largest request payload accepted (the frame's length field caps it at 65,535).
    pub max_request: usize,
    /// Time a peer has to send its request.
    pub request_timeout: Duration,
    /// After a dropped connection: time between SIGHUP and SIGKILL.
    pub kill_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 8,
            max_request: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            kill_grace: Duration::from_secs(1),
        }
    }
}

/// The host's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// Limits.
    pub limits: Limits,
    /// The shell for shell sessions and one-string execs; `None` finds the user's login
    /// shell (`$SHELL`, `/etc/passwd`, `/bin/sh`).
    pub shell: Option<PathBuf>,
}

/// Counts running sessions, for [`Limits::max_sessions`]. Share one per host.
#[derive(Debug, Default)]
pub struct SessionCounter {
    active: AtomicUsize,
}

impl SessionCounter {
    /// No sessions.
    pub const fn new() -> SessionCounter {
        SessionCounter {
            active: AtomicUsize::new(0),
        }
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn try_acquire(&self, max: usize) -> Option<SessionSlot<'_>> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot(self))
    }
}

/// One running session; frees its place when dropped.
struct SessionSlot<'a>(&'a SessionCounter);

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a session ended (errors are `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Refused before anything ran; the reason sent to the client.
    Refused(String),
    /// The command ran and ended with this status, which the client was sent.
    Exited(ExitStatus),
    /// The client closed the stream before the command ended; its processes were killed.
    Dropped,
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Refused(why) => write!(f, "refused ({why})"),
            SessionEnd::Exited(st) => write!(f, "{st}"),
            SessionEnd::Dropped => f.write_str("dropped by the client"),
        }
    }
}

/// Time allowed for sending a refusal or the exit status and closing.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the client has to close its side after our last frame…
const LINGER: Duration = Duration::from_secs(1);
/// …and bytes it may still send meanwhile.
const LINGER_MAX: usize = 64 * 1024;
/// Largest stdout frame payload.
const CHUNK: usize = 16 * 1024;
/// After the child exits: stop draining the pty after this much quiet…
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// …or after this long in all.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// `PATH` when the host has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Serves one pty session on `stream` from `peer`. `allowed` is the whitelist's verdict on
/// `peer`; `active` is the host's session counter. See the module documentation for the
/// sequence. Returns how the session ended; `Err` for I/O failures and for a client that
/// broke the protocol mid-session (its processes are killed first).
pub async fn serve_session<S>(
    stream: S,
    peer: PublicKey,
    allowed: bool,
    config: &HostConfig,
    active: &SessionCounter,
) -> Result<SessionEnd, PtyError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = &config.limits;
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let mut buf = Vec::new();
    let first = with_timeout(
        limits.request_timeout,
        read_first(&mut rd, &mut buf, limits.max_request),
    )
    .await
    .unwrap_or(Err(PtyError::Timeout("the session request")));

    if !allowed {
        log::warn!("pty: refused {peer}: not whitelisted");
        return Ok(refuse(&mut rd, &mut wr, format!("not whitelisted: {peer}")).await);
    }
    let request = match first {
        Ok(First::Frame) => match Frame::new_checked(&buf[..]).and_then(|f| Repr::parse(&f)) {
            Ok(Repr::Request(r)) => r,
            Ok(other) => {
                let why = format!(
                    "bad request: expected a request, got a {} frame",
                    other.frame_type()
                );
                log::warn!("pty: refused {peer}: {why}");
                return Ok(refuse(&mut rd, &mut wr, why).await);
            }
            Err(e) => {
                log::warn!("pty: refused {peer}: bad request: {e}");
                return Ok(refuse(&mut rd, &mut wr, format!("bad request: {e}")).await);
            }
        },
        Ok(First::TooLarge(len)) => {
            let why = format!(
                "request too large: {len} bytes, at most {}",
                limits.max_request
            );
            log::warn!("pty: refused {peer}: {why}");
            return Ok(refuse(&mut rd, &mut wr, why).await);
        }
        Ok(First::Eof) => return Err(PtyError::Closed),
        Err(e) => {
            log::warn!("pty: no request from {peer}: {e}");
            if matches!(e, PtyError::Timeout(_)) {
                refuse(
                    &mut rd,
                    &mut wr,
                    "timed out waiting for the request".to_owned(),
                )
                .await;
            }
            return Err(e);
        }
    };
    let Some(_slot) = active.try_acquire(limits.max_sessions) else {
        log::warn!(
            "pty: refused {peer}: too many sessions ({} running)",
            active.active()
        );
        return Ok(refuse(&mut rd, &mut wr, "too many sessions".to_owned()).await);
    };
    run(&mut rd, &mut wr, peer, request, config).await
}

/// What the first read found.
enum First {
    /// A frame within the limit, in the buffer.
    Frame,
    /// A frame over the limit, of this payload length, read and discarded.
    TooLarge(usize),
    /// The stream ended before a frame began.
    Eof,
}

/// Reads the first frame into `buf`; one over `max` bytes is read and discarded (at most
/// 65,535 bytes, so the refusal is not lost to a reset), never stored.
async fn read_first<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<First, PtyError> {
    let mut header = [0u8; HEADER_LEN];
    let n = r.read(&mut header[..1]).await?;
    if n == 0 {
        return Ok(First::Eof);
    }
    r.read_exact(&mut header[1..]).await.map_err(eof_closed)?;
    let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
    if len > max {
        let discarded =
            futures_lite::io::copy((&mut *r).take(len as u64), futures_lite::io::sink()).await?;
        if discarded < len as u64 {
            return Err(PtyError::Closed);
        }
        return Ok(First::TooLarge(len));
    }
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(HEADER_LEN + len, 0);
    r.read_exact(&mut buf[HEADER_LEN..])
        .await
        .map_err(eof_closed)?;
    Ok(First::Frame)
}

fn eof_closed(e: io::Error) -> PtyError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        PtyError::Closed
    } else {
        PtyError::Io(e)
    }
}

/// Sends `Refused(reason)` and closes, giving up after [`CLOSE_TIMEOUT`].
async fn refuse<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    reason: String,
) -> SessionEnd {
    let sent = with_timeout(CLOSE_TIMEOUT, async {
        proto::write_frame(wr, &Repr::Refused(&reason)).await?;
        wr.flush().await?;
        wr.close().await?;
        Ok::<_, PtyError>(())
    })
    .await;
    match sent {
        Some(Ok(())) => {}
        Some(Err(e)) => log::debug!("pty: refusal not delivered: {e}"),
        None => log::debug!("pty: refusal not delivered in time"),
    }
    linger(rd).await;
    SessionEnd::Refused(reason)
}

/// After the last frame and our close: waits (at most [`LINGER`]) for the client to close its
/// side, discarding what it still sends. Closing a connection with unread bytes resets it,
/// and a TCP reset can destroy our last frame before the client has read it.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let _ = with_timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < LINGER_MAX {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Sends the final frames and closes (best effort: the client may be gone).
async fn finish<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    frames: &[Repr<'_>],
) {
    let sent = with_timeout(CLOSE_TIMEOUT, async {
        for f in frames {
            proto::write_frame(wr, f).await?;
        }
        wr.flush().await?;
        wr.close().await?;
        Ok::<_, PtyError>(())
    })
    .await;
    match sent {
        Some(Ok(())) => {}
        Some(Err(e)) => log::debug!("pty: exit status not delivered: {e}"),
        None => log::debug!("pty: exit status not delivered in time"),
    }
    linger(rd).await;
}

/// Runs an accepted request to its end.
async fn run<R, W>(
    rd: &mut R,
    wr: &mut W,
    peer: PublicKey,
    req: Request,
    config: &HostConfig,
) -> Result<SessionEnd, PtyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let user = current_user();
    let shell = login_shell(config.shell.as_deref(), &user);
    let what = match req.mode {
        Mode::Exec => format!("exec {:?}", req.argv),
        Mode::Shell => format!("shell {}", shell.display()),
    };
    log::info!(
        "pty: session from {peer}: {what} on {}x{}",
        req.rows,
        req.cols
    );

    let pty = match sys::Pty::open() {
        Ok(p) => p,
        Err(e) => {
            log::error!("pty: cannot allocate a pty for {peer}: {e}");
            refuse(rd, wr, format!("cannot allocate a pty: {e}")).await;
            return Err(e.into());
        }
    };
    if req.rows > 0
        && req.cols > 0
        && let Err(e) = sys::set_winsize(&pty.master, req.rows, req.cols)
    {
        log::debug!("pty: cannot set the initial size: {e}");
    }
    if req.mode == Mode::Exec
        && let Err(e) = sys::quiet_mode(&pty.slave)
    {
        log::debug!("pty: cannot turn echo off for an exec: {e}");
    }
    let cmd = build_command(&req, &shell, &user);
    let sys::Pty { master, slave } = pty;
    let spawned = sys::spawn_on_pty(cmd, &slave);
    drop(slave);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let program = match req.mode {
                Mode::Exec if req.argv.len() > 1 => req.argv[0].clone(),
                _ => shell.display().to_string(),
            };
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            log::info!("pty: session from {peer}: cannot run {program}: {e}");
            let nl = if req.mode == Mode::Exec { "\n" } else { "\r\n" };
            let msg = format!("skywire pty: cannot run {program}: {e}{nl}");
            let status = ExitStatus::Code(code);
            finish(
                rd,
                wr,
                &[
                    Repr::Accepted,
                    Repr::Stdout(msg.as_bytes()),
                    Repr::Exit(status),
                ],
            )
            .await;
            return Ok(SessionEnd::Exited(status));
        }
    };
    let pid = sys::pid_of(&child);
    let watch = sys::ExitWatch::new(pid);
    let master = match Async::new(File::from(master)) {
        Ok(m) => m,
        Err(e) => {
            kill_and_reap(&mut child, pid, None, &watch, config.limits.kill_grace).await;
            return Err(e.into());
        }
    };

    let accepted = async {
        proto::write_frame(wr, &Repr::Accepted).await?;
        wr.flush().await?;
        Ok::<_, PtyError>(())
    }
    .await;
    let pumped = match accepted {
        Err(e) => Pump::NetEnded(Some(e)),
        Ok(()) => {
            let mut in_buf = Vec::new();
            // Each way polled only when woken: a keystroke costs no failed read of the pty.
            crate::spawn::race(
                async {
                    match net_to_pty(rd, &master, pid, &mut in_buf).await {
                        Ok(()) => Pump::NetEnded(None),
                        Err(e) => Pump::NetEnded(Some(e)),
                    }
                },
                async {
                    match pty_to_net(&master, wr, &watch).await {
                        Ok(()) => Pump::Exited,
                        Err(e) => Pump::NetEnded(Some(e)),
                    }
                },
            )
            .await
        }
    };

    match pumped {
        Pump::Exited => {
            let fg = sys::foreground_group(master.get_ref());
            let left = sys::signal_session(pid, fg, Signal::HUP);
            if left > 0 {
                log::debug!("pty: {left} processes of session {pid} outlived it; sent SIGHUP");
            }
            let status = reap(&mut child, pid);
            drop(master);
            finish(rd, wr, &[Repr::Exit(status)]).await;
            log::info!("pty: session from {peer} ended: {status}");
            Ok(SessionEnd::Exited(status))
        }
        Pump::NetEnded(err) => {
            match &err {
                None => log::info!("pty: {peer} closed the session; killing its processes"),
                Some(e) => {
                    log::info!("pty: session from {peer} failed ({e}); killing its processes")
                }
            }
            let fg = sys::foreground_group(master.get_ref());
            kill_and_reap(&mut child, pid, fg, &watch, config.limits.kill_grace).await;
            match err {
                None => Ok(SessionEnd::Dropped),
                // A client that goes away with bytes in flight resets the connection instead
                // of closing it: that is a drop too, not a failure.
                Some(PtyError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    Ok(SessionEnd::Dropped)
                }
                Some(e) => Err(e),
            }
        }
    }
}

/// How the pumping ended.
enum Pump {
    /// The child exited and its output was sent.
    Exited,
    /// The client's stream ended (`None`) or failed.
    NetEnded(Option<PtyError>),
}

/// Client → pty: until the client's stream ends (`Ok`) or breaks the protocol.
async fn net_to_pty<R: AsyncRead + Unpin>(
    rd: &mut R,
    master: &Async<File>,
    leader: Pid,
    buf: &mut Vec<u8>,
) -> Result<(), PtyError> {
    let mut out: &Async<File> = master;
    let mut at_line_start = true;
    let mut writable = true;
    loop {
        let Some(frame) = proto::read_frame(rd, buf, MAX_PAYLOAD_LEN).await? else {
            return Ok(());
        };
        let bytes: &[u8] = match frame {
            Repr::Stdin(data) => {
                if let Some(&last) = data.last() {
                    at_line_start = last == b'\n' || last == b'\r';
                }
                data
            }
            Repr::StdinEof => {
                let eof = sys::eof_char(master.get_ref());
                let n = if at_line_start { 1 } else { 2 };
                at_line_start = true;
                &[eof, eof][..n]
            }
            Repr::Resize { rows, cols } => {
                if let Err(e) = sys::set_winsize(master.get_ref(), rows, cols) {
                    log::debug!("pty: resize to {rows}x{cols} failed: {e}");
                }
                continue;
            }
            Repr::Signal(sig) => {
                log::debug!("pty: {sig} for the foreground of session {leader}");
                if let Err(e) =
                    sys::signal_foreground(master.get_ref(), leader, sys::to_signal(sig))
                {
                    log::debug!("pty: {sig} not delivered: {e}");
                }
                continue;
            }
            other => {
                return Err(PtyError::Unexpected {
                    expected: "stdin, stdin-eof, resize or signal",
                    got: other.frame_type().name(),
                });
            }
        };
        // A pty that stopped taking input (its last reader is gone) is not the client's
        // fault: keep reading frames, the output side reports the exit.
        if writable && let Err(e) = out.write_all(bytes).await {
            log::debug!("pty: input dropped: {e}");
            writable = false;
        }
    }
}

/// Pty → client: until the child has exited and its output is drained (`Ok`), or the
/// stream fails.
async fn pty_to_net<W: AsyncWrite + Unpin>(
    master: &Async<File>,
    wr: &mut W,
    watch: &sys::ExitWatch,
) -> Result<(), PtyError> {
    let mut input: &Async<File> = master;
    let mut buf = vec![0u8; HEADER_LEN + CHUNK];
    let mut pty_open = true;
    // One wait for the whole session: a fresh one per output chunk would cost a waitid(2)
    // and a reactor re-registration of the pidfd (epoll_ctl) on every keystroke echo.
    let exited = watch.wait();
    futures_lite::pin!(exited);
    loop {
        if !pty_open {
            exited.as_mut().await;
            break;
        }
        let ev = future::or(
            async { Some(read_pty(&mut input, &mut buf[HEADER_LEN..]).await) },
            async {
                exited.as_mut().await;
                None
            },
        )
        .await;
        match ev {
            None => break,
            Some(Ok(0)) => pty_open = false,
            Some(Ok(n)) => send_stdout(wr, &mut buf, n).await?,
            Some(Err(e)) => return Err(e.into()),
        }
    }
    if pty_open {
        let end = Instant::now() + DRAIN_MAX;
        while Instant::now() < end {
            let ev = future::or(
                async { Some(read_pty(&mut input, &mut buf[HEADER_LEN..]).await) },
                async {
                    Timer::after(DRAIN_IDLE).await;
                    None
                },
            )
            .await;
            match ev {
                None | Some(Ok(0)) => break,
                Some(Ok(n)) => send_stdout(wr, &mut buf, n).await?,
                Some(Err(e)) => {
                    log::debug!("pty: draining the output: {e}");
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Reads the pty master; its end (EIO on Linux once no process holds the slave) is `Ok(0)`.
async fn read_pty(r: &mut &Async<File>, buf: &mut [u8]) -> io::Result<usize> {
    let eio = rustix::io::Errno::IO.raw_os_error();
    loop {
        match r.read(buf).await {
            Err(e) if e.raw_os_error() == Some(eio) => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sends the `n` bytes at `buf[HEADER_LEN..]` as a stdout frame, header written in place.
async fn send_stdout<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut [u8],
    n: usize,
) -> Result<(), PtyError> {
    let mut frame = Frame::new_unchecked(&mut buf[..HEADER_LEN + n]);
    frame.set_frame_type(FrameType::Stdout);
    frame.set_payload_len(n as u16);
    wr.write_all(&buf[..HEADER_LEN + n]).await?;
    wr.flush().await?;
    Ok(())
}

/// Hangs up the session led by `pid`, kills what survives `grace`, and reaps the leader.
async fn kill_and_reap(
    child: &mut Child,
    pid: Pid,
    fg: Option<Pid>,
    watch: &sys::ExitWatch,
    grace: Duration,
) {
    sys::signal_session(pid, fg, Signal::HUP);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if watch.has_exited() && sys::session_members(pid).is_empty() {
            break;
        }
        Timer::after(Duration::from_millis(20)).await;
    }
    let left = sys::signal_session(pid, fg, Signal::KILL);
    if left > 0 {
        log::info!("pty: {left} processes of session {pid} outlived SIGHUP; sent SIGKILL");
    }
    if with_timeout(Duration::from_secs(5), watch.wait())
        .await
        .is_none()
    {
        log::warn!("pty: session leader {pid} still alive after SIGKILL");
        return;
    }
    reap(child, pid);
}

/// Reaps an exited child and converts its status.
fn reap(child: &mut Child, pid: Pid) -> ExitStatus {
    match child.try_wait() {
        Ok(Some(st)) => {
            if let Some(code) = st.code() {
                ExitStatus::Code(code as u8)
            } else if let Some(sig) = st.signal() {
                ExitStatus::Signal(sig.clamp(1, 127) as u8)
            } else {
                ExitStatus::Code(255)
            }
        }
        Ok(None) => {
            log::warn!("pty: session leader {pid} has not exited");
            ExitStatus::Code(255)
        }
        Err(e) => {
            log::warn!("pty: cannot reap session leader {pid}: {e}");
            ExitStatus::Code(255)
        }
    }
}

/// Environment names a client may set.
fn env_allowed(name: &str) -> bool {
    matches!(name, "TERM" | "COLORTERM" | "LANG" | "LANGUAGE") || name.starts_with("LC_")
}

/// The command for a request (see the module documentation).
fn build_command(req: &Request, shell: &Path, user: &User) -> Command {
    let mut cmd = match req.mode {
        Mode::Exec if req.argv.len() == 1 => {
            let mut c = Command::new(shell);
            c.arg("-c").arg(&req.argv[0]);
            c
        }
        Mode::Exec => {
            let mut c = Command::new(&req.argv[0]);
            c.args(&req.argv[1..]);
            c
        }
        Mode::Shell => {
            let mut c = Command::new(shell);
            let name = shell
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sh".to_owned());
            c.arg0(format!("-{name}"));
            c
        }
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    cmd.env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("SHELL", shell)
        .env("PATH", path)
        .env("TERM", "dumb");
    for (k, v) in &req.env {
        if env_allowed(k) {
            cmd.env(k, v);
        } else {
            log::debug!("pty: client environment {k} ignored");
        }
    }
    if user.home.is_dir() {
        cmd.current_dir(&user.home);
    }
    cmd
}

/// The account the host runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
    home: PathBuf,
    shell: Option<PathBuf>,
}

/// The current user, from `/etc/passwd`, else the environment.
fn current_user() -> User {
    let uid = rustix::process::getuid().as_raw();
    if let Some(u) = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| passwd_entry(&p, uid))
    {
        return u;
    }
    User {
        name: std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
        home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
        shell: None,
    }
}

/// The `/etc/passwd` line for `uid`: `name:password:uid:gid:gecos:home:shell`.
fn passwd_entry(passwd: &str, uid: u32) -> Option<User> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[2].parse::<u32>().ok()? != uid {
            return None;
        }
        Some(User {
            name: f[0].to_owned(),
            home: PathBuf::from(f[5]),
            shell: (!f[6].is_empty()).then(|| PathBuf::from(f[6])),
        })
    })
}

/// The login shell: the configured one, `$SHELL`, the passwd entry's, `/bin/sh` — the first
/// that is an absolute path to a file.
fn login_shell(configured: Option<&Path>, user: &User) -> PathBuf {
    let env = std::env::var_os("SHELL").map(PathBuf::from);
    [configured.map(Path::to_path_buf), env, user.shell.clone()]
        .into_iter()
        .flatten()
        .find(|p| p.is_absolute() && p.is_file())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn passwd_lines() {
        let p = "root:x:0:0:root:/root:/bin/bash\nbad line\npi:x:1000:1000::/home/pi:\n";
        assert_eq!(
            passwd_entry(p, 0),
            Some(User {
                name: "root".into(),
                home: "/root".into(),
                shell: Some("/bin/bash".into())
            })
        );
        assert_eq!(passwd_entry(p, 1000).unwrap().shell, None);
        assert_eq!(passwd_entry(p, 7), None);
    }

    #[test]
    fn shell_choice_and_env_filter() {
        let user = User {
            name: "u".into(),
            home: "/nonexistent".into(),
            shell: Some("/nonexistent/shell".into()),
        };
        assert_eq!(
            login_shell(Some(Path::new("/bin/sh")), &user),
            PathBuf::from("/bin/sh")
        );
        assert!(login_shell(Some(Path::new("sh")), &user).is_absolute());
        assert!(env_allowed("TERM") && env_allowed("LC_ALL") && env_allowed("LANG"));
        assert!(!env_allowed("LD_PRELOAD") && !env_allowed("PATH") && !env_allowed("HOME"));
    }

    #[test]
    fn session_slots() {
        let c = SessionCounter::new();
        let a = c.try_acquire(2).unwrap();
        let _b = c.try_acquire(2).unwrap();
        assert!(c.try_acquire(2).is_none());
        assert_eq!(c.active(), 2);
        drop(a);
        assert!(c.try_acquire(2).is_some());
        assert_eq!(c.active(), 1);
    }

    #[test]
    fn commands() {
        let user = User {
            name: "u".into(),
            home: "/".into(),
            shell: None,
        };
        let sh = Path::new("/bin/sh");
        let one = build_command(&Request::exec(vec!["echo hi".into()], 1, 1), sh, &user);
        assert_eq!(one.get_program(), "/bin/sh");
        assert_eq!(one.get_args().collect::<Vec<_>>(), ["-c", "echo hi"]);
        let many = build_command(
            &Request::exec(vec!["sh".into(), "-c".into(), "exit 3".into()], 1, 1),
            sh,
            &user,
        );
        assert_eq!(many.get_program(), "sh");
        let env = build_command(
            &Request::shell(1, 1).with_env(vec![
                ("TERM".into(), "xterm".into()),
                ("LD_PRELOAD".into(), "/evil.so".into()),
            ]),
            sh,
            &user,
        );
        let vars: Vec<_> = env.get_envs().collect();
        assert!(vars.contains(&("TERM".as_ref(), Some("xterm".as_ref()))));
        assert!(!vars.iter().any(|(k, _)| *k == "LD_PRELOAD"));
    }
}
