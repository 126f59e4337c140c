//! Reading a password: twice on the terminal without echo, or one line of stdin when it is
//! not a terminal (`cli skychat passwd`, `cli visor hv password`).

use std::fs::File;
use std::io::{self, Write};

use rustix::fs::{Mode, OFlags};
use rustix::termios::{LocalModes, OptionalActions, Termios};

use super::CmdError;

/// Asks for a line on the terminal without echo (for `passwd`).
pub fn ask_hidden(prompt: &str) -> Result<String, CmdError> {
    let fail = |e: io::Error| CmdError::fail(format!("reading the password: {e}"));
    let tty = File::from(
        rustix::fs::open(
            "/dev/tty",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?,
    );
    let saved = rustix::termios::tcgetattr(&tty).map_err(|e| fail(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    struct Restore<'a>(&'a File, Termios);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = rustix::termios::tcsetattr(self.0, OptionalActions::Now, &self.1);
        }
    }
    rustix::termios::tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| fail(e.into()))?;
    let _restore = Restore(&tty, saved);
    (&tty).write_all(prompt.as_bytes()).map_err(fail)?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match io::Read::read(&mut &tty, &mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' || b[0] == b'\r' => break,
            Ok(_) if line.len() < 4096 => line.push(b[0]),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
    }
    String::from_utf8(line).map_err(|_| CmdError::usage("the password is not UTF-8"))
}

/// The password: twice on the terminal without echo, else the first line of stdin.
pub fn read_password() -> Result<String, CmdError> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CmdError::fail(format!("reading the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let a = ask_hidden("Password: ")?;
    let b = ask_hidden("Again: ")?;
    if a != b {
        return Err(CmdError::usage("the two passwords differ; nothing written"));
    }
    Ok(a)
}
