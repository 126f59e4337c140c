//! The client side of a pty session: `pty exec` and `pty start`.
//!
//! - [`exec`] sends an exec request, no input (stdin-eof right after acceptance), copies the
//!   remote output to a writer and returns the remote exit status (a signal death is
//!   128+signo); with a timeout it returns [`TIMEOUT_EXIT_CODE`] (124) after asking the host
//!   for SIGKILL and closing the stream (the host kills the whole session on close).
//! - [`interactive`] runs the remote login shell on the terminal of this process's stdin.
//!   The terminal is reopened (a new open file description, so making it non-blocking does
//!   not touch the parent shell's), read and written through the reactor — nothing blocks the
//!   executor, no thread is started. After the host accepts, the terminal goes into raw mode
//!   and a guard restores it when the session ends, whatever the path (exit status, error,
//!   dropped connection, SIGTERM/SIGHUP/SIGINT/SIGQUIT sent to the client, which end the
//!   session with [`PtyError::Interrupted`]). In raw mode Ctrl-C and Ctrl-Z are plain bytes
//!   (0x03, 0x1a) for the remote pty, whose line discipline signals the remote foreground
//!   process group. SIGWINCH is caught (async-signal) and sent as a resize. Output is
//!   written to the same terminal.
//!
//! A refusal comes back as [`PtyError::Refused`] with the host's reason, e.g.
//! `not whitelisted: <pk>`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use async_io::Async;
use async_signal::{Signal as LocalSignal, Signals};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_lite::stream::StreamExt;

use super::proto::{self, MAX_PAYLOAD_LEN, Repr, Request, Sig};
use super::{PtyError, sys, with_timeout};

/// What [`exec`] returns when its timeout expires (the `timeout(1)` convention).
pub const TIMEOUT_EXIT_CODE: i32 = 124;
/// How long to wait for the host to accept or refuse.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Terminal size sent when there is no local terminal.
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// Options of [`exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// Give up after this long: the remote command is killed and [`exec`] returns 124.
    pub timeout: Option<Duration>,
    /// Environment to pass (the host keeps `TERM`, `COLORTERM`, `LANG`, `LANGUAGE`, `LC_*`).
    pub env: Vec<(String, String)>,
    /// Size of the remote pty.
    pub rows: u16,
    /// Size of the remote pty.
    pub cols: u16,
}

impl Default for ExecOptions {
    /// No timeout, this process's [`local_env`] and [`local_size`].
    fn default() -> ExecOptions {
        let (rows, cols) = local_size();
        ExecOptions {
            timeout: None,
            env: local_env(),
            rows,
            cols,
        }
    }
}

/// The environment variables of this process a pty host accepts.
pub fn local_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            matches!(k.as_str(), "TERM" | "COLORTERM" | "LANG" | "LANGUAGE") || k.starts_with("LC_")
        })
        .collect()
}

/// The size of the terminal on stdout or stdin, else [`DEFAULT_SIZE`].
pub fn local_size() -> (u16, u16) {
    sys::winsize(io::stdout().as_fd())
        .or_else(|| sys::winsize(io::stdin().as_fd()))
        .unwrap_or(DEFAULT_SIZE)
}

/// Runs `argv` on the host at the other end of `stream` and copies its output (stdout and
/// stderr, merged by the pty) to `out`. One argument is run by the host's shell
/// (`sh -c` semantics), several are run directly. Returns the remote exit status, or
/// [`TIMEOUT_EXIT_CODE`] when `opts.timeout` expires first.
pub async fn exec<S, W>(
    stream: S,
    argv: Vec<String>,
    opts: &ExecOptions,
    out: &mut W,
) -> Result<i32, PtyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let req = Request::exec(argv, opts.rows, opts.cols).with_env(opts.env.clone());
    req.validate()?;
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let session = async {
        let mut buf = Vec::new();
        proto::write_frame(&mut wr, &Repr::Request(req)).await?;
        wr.flush().await?;
        await_accept(&mut rd, &mut buf).await?;
        // A command that ends at once may have closed the session already: its exit status
        // is still to be read, so a failure to send here is not the end.
        let eof = async {
            proto::write_frame(&mut wr, &Repr::StdinEof).await?;
            wr.flush().await?;
            Ok::<_, PtyError>(())
        };
        if let Err(e) = eof.await {
            log::debug!("pty: stdin-eof not sent: {e}");
        }
        downlink(&mut rd, out, &mut buf).await
    };
    let result = match opts.timeout {
        Some(t) => with_timeout(t, session).await,
        None => Some(session.await),
    };
    match result {
        Some(r) => {
            let _ = with_timeout(Duration::from_secs(1), wr.close()).await;
            r
        }
        None => {
            log::info!("pty: exec timed out; asking the host to kill it");
            let _ = with_timeout(Duration::from_secs(1), async {
                proto::write_frame(&mut wr, &Repr::Signal(Sig::Kill)).await?;
                wr.flush().await?;
                wr.close().await?;
                Ok::<_, PtyError>(())
            })
            .await;
            Ok(TIMEOUT_EXIT_CODE)
        }
    }
}

/// Runs the remote login shell on this process's terminal (the one on stdin); see the
/// module documentation. Returns the shell's exit status.
pub async fn interactive<S>(stream: S) -> Result<i32, PtyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let terminal = match sys::reopen_terminal(io::stdin().as_fd()) {
        None => return Err(PtyError::NotATerminal),
        Some(t) => t?,
    };
    interactive_on(stream, terminal.into()).await
}

/// [`interactive`] on a given terminal: `terminal` is read for input, written with the
/// output, put in raw mode (restored before this returns) and asked for its size. It is
/// made non-blocking; pass a descriptor of its own (see [`interactive`]).
pub async fn interactive_on<S>(stream: S, terminal: OwnedFd) -> Result<i32, PtyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !rustix::termios::isatty(&terminal) {
        return Err(PtyError::NotATerminal);
    }
    let term = Async::new(File::from(terminal))?;
    let size = sys::winsize(term.get_ref()).unwrap_or(DEFAULT_SIZE);
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let req = Request::shell(size.0, size.1).with_env(local_env());
    proto::write_frame(&mut wr, &Repr::Request(req)).await?;
    wr.flush().await?;
    let mut buf = Vec::new();
    await_accept(&mut rd, &mut buf).await?;

    let signals = Signals::new([
        LocalSignal::Winch,
        LocalSignal::Term,
        LocalSignal::Hup,
        LocalSignal::Int,
        LocalSignal::Quit,
    ])?;
    let raw = sys::RawMode::enter(term.get_ref())?;
    let mut term_out: &Async<File> = &term;
    // Each way polled only when woken: output from the host costs no failed read of the
    // terminal.
    let result = crate::spawn::race(downlink(&mut rd, &mut term_out, &mut buf), async {
        match uplink(&term, &signals, &mut wr, size).await {
            // The stream failed on our side: the downlink sees it too, and returns an exit
            // status that arrived before the failure.
            Err(PtyError::Io(e)) => {
                log::debug!("pty: cannot send to the host: {e}");
                future::pending().await
            }
            other => other,
        }
    })
    .await;
    drop(raw);
    let _ = with_timeout(Duration::from_secs(1), wr.close()).await;
    result
}

/// Waits for `Accepted` (or a refusal, as an error).
async fn await_accept<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), PtyError> {
    match with_timeout(REPLY_TIMEOUT, proto::read_frame(rd, buf, MAX_PAYLOAD_LEN)).await {
        None => Err(PtyError::Timeout("the host to accept the session")),
        Some(Err(e)) => Err(e),
        Some(Ok(None)) => Err(PtyError::Closed),
        Some(Ok(Some(Repr::Accepted))) => Ok(()),
        Some(Ok(Some(Repr::Refused(why)))) => Err(PtyError::Refused(why.to_owned())),
        Some(Ok(Some(other))) => Err(PtyError::Unexpected {
            expected: "accepted or refused",
            got: other.frame_type().name(),
        }),
    }
}

/// Host → local: output until the exit status.
async fn downlink<R, W>(rd: &mut R, out: &mut W, buf: &mut Vec<u8>) -> Result<i32, PtyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        match proto::read_frame(rd, buf, MAX_PAYLOAD_LEN).await? {
            None => return Err(PtyError::Closed),
            Some(Repr::Stdout(data)) => {
                out.write_all(data).await?;
                out.flush().await?;
            }
            Some(Repr::Exit(status)) => {
                log::debug!("pty: remote {status}");
                return Ok(status.code());
            }
            Some(other) => {
                return Err(PtyError::Unexpected {
                    expected: "stdout or exit",
                    got: other.frame_type().name(),
                });
            }
        }
    }
}

/// What the uplink woke up for.
enum Up {
    Input(io::Result<usize>),
    Signal(Option<io::Result<LocalSignal>>),
}

/// Local → host: terminal input as stdin frames, SIGWINCH as resize; a terminating signal
/// ends the session. Never returns `Ok`.
async fn uplink<W: AsyncWrite + Unpin>(
    term: &Async<File>,
    signals: &Signals,
    wr: &mut W,
    mut size: (u16, u16),
) -> Result<i32, PtyError> {
    let mut input: &Async<File> = term;
    let mut sigs: &Signals = signals;
    let mut buf = vec![0u8; 4096];
    let mut input_open = true;
    let eio = rustix::io::Errno::IO.raw_os_error();
    loop {
        let ev = if input_open {
            future::or(async { Up::Input(input.read(&mut buf).await) }, async {
                Up::Signal(sigs.next().await)
            })
            .await
        } else {
            Up::Signal(sigs.next().await)
        };
        match ev {
            Up::Input(Ok(n)) if n > 0 => {
                proto::write_frame(wr, &Repr::Stdin(&buf[..n])).await?;
            }
            Up::Input(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Up::Input(Err(e)) if e.raw_os_error() != Some(eio) => return Err(e.into()),
            Up::Input(_) => {
                // End of input (or a hung-up terminal): the remote pty gets its EOF.
                input_open = false;
                proto::write_frame(wr, &Repr::StdinEof).await?;
            }
            Up::Signal(Some(Ok(LocalSignal::Winch))) => match sys::winsize(term.get_ref()) {
                Some(now) if now != size => {
                    size = now;
                    proto::write_frame(
                        wr,
                        &Repr::Resize {
                            rows: now.0,
                            cols: now.1,
                        },
                    )
                    .await?;
                }
                _ => continue,
            },
            Up::Signal(Some(Ok(sig))) => {
                return Err(PtyError::Interrupted(match sig {
                    LocalSignal::Term => "TERM",
                    LocalSignal::Hup => "HUP",
                    LocalSignal::Int => "INT",
                    LocalSignal::Quit => "QUIT",
                    _ => "(other)",
                }));
            }
            Up::Signal(Some(Err(e))) => return Err(e.into()),
            Up::Signal(None) => return Err(PtyError::Closed),
        }
        wr.flush().await?;
    }
}
