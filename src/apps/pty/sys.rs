//! The operating-system calls of pty sessions: the one module of the app allowed `unsafe`
//! (two blocks, both in [`spawn_on_pty`]), everything else through rustix's safe wrappers.
//!
//! - [`Pty::open`]: a pseudo-terminal pair (`posix_openpt`, `grantpt`, `unlockpt`, then the
//!   slave by `TIOCGPTPEER` or by name), both ends close-on-exec and not our controlling tty.
//! - [`spawn_on_pty`]: a `Command` whose child calls `setsid()` and takes the slave as its
//!   controlling terminal (`TIOCSCTTY`) before `exec`, with stdin, stdout and stderr on it.
//! - [`ExitWatch`]: waits for a child to exit without reaping it (a pidfd registered with
//!   the reactor, or a 100 ms `waitid(WNOWAIT)` poll where pidfds do not exist), so the
//!   session's processes can still be found by session id before the leader is reaped.
//! - [`signal_session`]: signals the leader's process group, the terminal's foreground
//!   group and every live process of the session (found in `/proc`).
//! - [`RawMode`]: the client's local terminal in raw mode, restored when dropped.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_io::{Async, Timer};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use rustix::pty::OpenptFlags;
use rustix::termios::{
    LocalModes, OptionalActions, OutputModes, SpecialCodeIndex, Termios, Winsize,
};

use super::proto::Sig;

/// A pseudo-terminal pair.
#[derive(Debug)]
pub(crate) struct Pty {
    /// The side the host reads and writes.
    pub master: OwnedFd,
    /// The side the child gets as its terminal.
    pub slave: OwnedFd,
}

impl Pty {
    /// Allocates a pty pair.
    pub fn open() -> io::Result<Pty> {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let slave = open_slave(&master)?;
        Ok(Pty { master, slave })
    }
}

fn open_slave(master: &OwnedFd) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    if let Ok(fd) = rustix::pty::ioctl_tiocgptpeer(
        master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    ) {
        return Ok(fd);
    }
    let name = rustix::pty::ptsname(master, Vec::new())?;
    Ok(rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Sets a terminal's window size (on a pty master the kernel then sends SIGWINCH to the
/// slave's foreground process group).
pub(crate) fn set_winsize(fd: impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(fd, ws)?)
}

/// A terminal's window size as (rows, cols), `None` if `fd` is not a terminal or reports 0.
pub(crate) fn winsize(fd: impl AsFd) -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Exec mode's line discipline: no echo of the input, no output post-processing (so `\n`
/// stays `\n`); canonical input and signal characters unchanged.
pub(crate) fn quiet_mode(slave: impl AsFd) -> io::Result<()> {
    let mut t = rustix::termios::tcgetattr(&slave)?;
    t.local_modes
        .remove(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ECHOE | LocalModes::ECHOK);
    t.output_modes.remove(OutputModes::OPOST);
    Ok(rustix::termios::tcsetattr(
        &slave,
        OptionalActions::Now,
        &t,
    )?)
}

/// The terminal's end-of-file character (normally ^D).
pub(crate) fn eof_char(fd: impl AsFd) -> u8 {
    rustix::termios::tcgetattr(fd)
        .map(|t| t.special_codes[SpecialCodeIndex::VEOF])
        .ok()
        .filter(|&c| c != 0)
        .unwrap_or(0x04)
}

/// Spawns `cmd` as the leader of a new session whose controlling terminal is `slave`, with
/// stdin, stdout and stderr on it. The command is consumed so that its copies of the slave
/// are closed before this returns: once the child and its descendants close theirs, reads on
/// the master report the end.
pub(crate) fn spawn_on_pty(mut cmd: Command, slave: &OwnedFd) -> io::Result<Child> {
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It makes two raw system calls through rustix (setsid and the
    // TIOCSCTTY ioctl), which neither allocate, lock nor touch state shared with other
    // threads of the parent; errors are returned as `io::Error::from_raw_os_error` values,
    // which do not allocate either.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            // SAFETY: std has already duplicated the slave onto fd 0 (stdin) in this child
            // and nothing closes it before exec, so fd 0 is open for the borrow's duration.
            let stdin = BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin)?;
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(cmd);
    child
}

/// The child's pid as a rustix `Pid`.
pub(crate) fn pid_of(child: &Child) -> Pid {
    Pid::from_child(child)
}

/// The foreground process group of the terminal whose master is `master`.
pub(crate) fn foreground_group(master: impl AsFd) -> Option<Pid> {
    rustix::termios::tcgetpgrp(master)
        .ok()
        .filter(|p| p.as_raw_nonzero().get() > 1 && *p != rustix::process::getpgrp())
}

/// The signal for a protocol code.
pub(crate) fn to_signal(sig: Sig) -> Signal {
    match sig {
        Sig::Hup => Signal::HUP,
        Sig::Int => Signal::INT,
        Sig::Quit => Signal::QUIT,
        Sig::Kill => Signal::KILL,
        Sig::Usr1 => Signal::USR1,
        Sig::Usr2 => Signal::USR2,
        Sig::Term => Signal::TERM,
        Sig::Cont => Signal::CONT,
        Sig::Stop => Signal::STOP,
        Sig::Tstp => Signal::TSTP,
        Sig::Winch => Signal::WINCH,
    }
}

/// Sends `sig` to the terminal's foreground process group, or to the leader's group when
/// the terminal has none.
pub(crate) fn signal_foreground(master: impl AsFd, leader: Pid, sig: Signal) -> io::Result<()> {
    let group = foreground_group(master).unwrap_or(leader);
    Ok(rustix::process::kill_process_group(group, sig)?)
}

/// Live (not zombie) processes whose session id is `sid`, from `/proc` (empty where there
/// is no `/proc`).
pub(crate) fn session_members(sid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, session)) = parse_stat(&stat)
            && session == sid.as_raw_nonzero().get()
            && state != 'Z'
            && state != 'X'
            && let Some(p) = Pid::from_raw(pid)
        {
            out.push(p);
        }
    }
    out
}

/// (state, session) from a `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp session …`.
/// The command name may hold spaces and parentheses, so fields are counted after the last
/// `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some((state, session))
}

/// Sends `sig` to the session led by `sid`: its process group, the terminal's foreground
/// group `fg`, and every live process `/proc` lists in the session. A SIGHUP is followed by
/// SIGCONT so stopped jobs see it. Returns how many processes of the session were found.
pub(crate) fn signal_session(sid: Pid, fg: Option<Pid>, sig: Signal) -> usize {
    let ours = rustix::process::getpgrp();
    let mut groups = vec![sid];
    if let Some(g) = fg
        && g != sid
        && g != ours
    {
        groups.push(g);
    }
    let members = session_members(sid);
    let send = |sig: Signal| {
        for g in &groups {
            let _ = rustix::process::kill_process_group(*g, sig);
        }
        for p in &members {
            let _ = rustix::process::kill_process(*p, sig);
        }
    };
    send(sig);
    if sig == Signal::HUP {
        send(Signal::CONT);
    }
    members.len()
}

/// Waits for a child to exit without reaping it.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    pid: Pid,
    pidfd: Option<Async<OwnedFd>>,
}

/// Poll interval where pidfds are not available.
const EXIT_POLL: Duration = Duration::from_millis(100);

impl ExitWatch {
    /// Watches `pid`, a child of this process.
    pub fn new(pid: Pid) -> ExitWatch {
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(io::Error::from)
            .and_then(Async::new);
        if let Err(e) = &pidfd {
            log::debug!("pty: no pidfd for {pid} ({e}); polling for its exit");
        }
        ExitWatch {
            pid,
            pidfd: pidfd.ok(),
        }
    }

    /// Whether the child has exited (it stays waitable: the caller reaps it). A child that
    /// is already gone counts as exited.
    pub fn has_exited(&self) -> bool {
        match rustix::process::waitid(
            WaitId::Pid(self.pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(rustix::io::Errno::INTR) => false,
            Err(_) => true,
        }
    }

    /// Resolves once the child has exited.
    pub async fn wait(&self) {
        while !self.has_exited() {
            match &self.pidfd {
                Some(fd) => {
                    if fd.readable().await.is_err() {
                        Timer::after(EXIT_POLL).await;
                    }
                }
                None => {
                    Timer::after(EXIT_POLL).await;
                }
            }
        }
    }
}

/// Opens the terminal behind `fd` afresh, read-write and non-blocking. A new open file
/// description means the non-blocking flag does not leak to the shell that shares our
/// stdin. Fails with `None` if `fd` is not a terminal.
pub(crate) fn reopen_terminal(fd: BorrowedFd<'_>) -> Option<io::Result<File>> {
    if !rustix::termios::isatty(fd) {
        return None;
    }
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    Some(
        rustix::fs::open(
            path.as_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(io::Error::from),
    )
}

/// A terminal in raw mode; dropping it restores the settings it had.
#[derive(Debug)]
pub(crate) struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal behind `fd` in raw mode (no echo, no line editing, no signal
    /// characters, no output processing: every key goes through as typed).
    pub fn enter(fd: impl AsFd) -> io::Result<RawMode> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        let saved = rustix::termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = rustix::termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved) {
            log::warn!("pty: cannot restore the terminal settings: {e}");
        }
    }
}

/// False under an emulator that lacks the termios ioctls (qemu-user answers ENOSYS for some
/// targets): tests that need a working terminal say so and skip there. Any other failure
/// counts as "works", so a real error still fails the test that meets it.
#[cfg(test)]
pub(crate) fn termios_works() -> bool {
    let Ok(p) = Pty::open() else {
        return true;
    };
    let nosys = |e: rustix::io::Errno| e == rustix::io::Errno::NOSYS;
    match rustix::termios::tcgetattr(&p.slave) {
        Ok(t) => !rustix::termios::tcsetattr(&p.slave, OptionalActions::Now, &t).is_err_and(nosys),
        Err(e) => !nosys(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("42 (sh) S 1 42 42 34816 42 4194560 0 0"),
            Some(('S', 42))
        );
        assert_eq!(parse_stat("7 (a) b (c)) Z 1 7 9 0"), Some(('Z', 9)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 0 1"), None);
    }

    #[test]
    fn pty_pair_sizes_and_raw_mode() {
        if !termios_works() {
            eprintln!("skipped: this emulator lacks the termios ioctls (qemu-user)");
            return;
        }
        let pty = Pty::open().unwrap();
        set_winsize(&pty.master, 33, 101).unwrap();
        assert_eq!(winsize(&pty.slave), Some((33, 101)));
        let before = rustix::termios::tcgetattr(&pty.slave).unwrap();
        assert!(before.local_modes.contains(LocalModes::ICANON));
        {
            let _raw = RawMode::enter(&pty.slave).unwrap();
            let t = rustix::termios::tcgetattr(&pty.slave).unwrap();
            assert!(!t.local_modes.contains(LocalModes::ICANON));
            assert!(!t.local_modes.contains(LocalModes::ISIG));
        }
        let after = rustix::termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes);
        assert_eq!(after.output_modes, before.output_modes);
        assert_eq!(eof_char(&pty.master), 0x04);
        quiet_mode(&pty.slave).unwrap();
        let q = rustix::termios::tcgetattr(&pty.slave).unwrap();
        assert!(!q.local_modes.contains(LocalModes::ECHO));
        assert!(!q.output_modes.contains(OutputModes::OPOST));
        assert!(reopen_terminal(pty.slave.as_fd()).unwrap().is_ok());
        let (r, _w) = std::io::pipe().unwrap();
        assert!(reopen_terminal(r.as_fd()).is_none());
    }
}
