//! `skywire cli skychat chat -t <peer>`: a split-pane chat in the terminal — the
//! conversation above (history first, then live messages), the input line below.
//!
//! The terminal (`/dev/tty`) goes into raw mode and the alternate screen; a guard
//! ([`Screen`]) puts both back when dropped, so every way out restores it: Ctrl-C, Ctrl-D on
//! an empty line, SIGTERM/SIGHUP/SIGINT/SIGQUIT, an error. SIGWINCH redraws. Everything runs
//! on one executor: the keyboard, the event stream ([`Follow`]), the signals and each send
//! are tasks that post to one inbox the screen loop reads, so no key waits for a send.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_executor::Executor;
use async_io::Async;
use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use miniserde::json::Value;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{OptionalActions, Termios};

use super::skychat_http::{Follow, Structured, Surface, array, quote, str_of, ts_ms, u64_of};
use super::{CmdError, CmdResult};

/// Lines of history loaded at start.
const HISTORY: u32 = 200;
/// Lines kept on screen (older ones are dropped).
const KEEP: usize = 2000;

/// Opens the controlling terminal.
fn open_tty(nonblock: bool) -> io::Result<File> {
    let mut flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    if nonblock {
        flags |= OFlags::NONBLOCK;
    }
    Ok(File::from(rustix::fs::open(
        "/dev/tty",
        flags,
        Mode::empty(),
    )?))
}

/// The terminal in raw mode on the alternate screen; dropping it restores both.
struct Screen {
    tty: File,
    saved: Termios,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        let tty = open_tty(false)?;
        let saved = rustix::termios::tcgetattr(&tty)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&tty, OptionalActions::Now, &raw)?;
        let s = Screen { tty, saved };
        (&s.tty).write_all(b"\x1b[?1049h\x1b[H\x1b[2J")?;
        Ok(s)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = (&self.tty).write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = rustix::termios::tcsetattr(&self.tty, OptionalActions::Now, &self.saved);
    }
}

/// A queue many tasks post to and one loop reads.
struct Inbox<T> {
    q: Mutex<(VecDeque<T>, Option<Waker>)>,
}

impl<T> Inbox<T> {
    fn new() -> Arc<Inbox<T>> {
        Arc::new(Inbox {
            q: Mutex::new((VecDeque::new(), None)),
        })
    }
    fn push(&self, t: T) {
        let w = {
            let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
            q.0.push_back(t);
            q.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
    async fn recv(&self) -> T {
        futures_lite::future::poll_fn(|cx| {
            let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
            match q.0.pop_front() {
                Some(t) => Poll::Ready(t),
                None => {
                    q.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// What the screen loop hears.
enum Ev {
    Keys(Vec<u8>),
    /// The terminal ended (`None`: end of input) or failed.
    KeysEnd(Option<String>),
    Event(Structured),
    StreamGone(String),
    Sent(u64, Outcome),
    Signal(Signal),
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mark {
    None,
    Pending,
    Acked(u64),
    Read,
    Failed(String),
}

/// The result of one `POST /message`.
pub(super) struct Outcome {
    id: Option<String>,
    mark: Mark,
}

/// One line of the conversation.
struct Line {
    id: Option<String>,
    local: Option<u64>,
    out: bool,
    ts_ms: u64,
    text: String,
    mark: Mark,
}

/// The screen's state (pure: tested without a terminal).
pub(super) struct View {
    peer: String,
    name: String,
    lines: Vec<Line>,
    input: String,
    pending: Vec<u8>,
    note: String,
    next_local: u64,
}

/// What a key press asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    Send(u64, String),
    Quit,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl View {
    pub(super) fn new(peer: String, name: String) -> View {
        View {
            peer,
            name,
            lines: Vec::new(),
            input: String::new(),
            pending: Vec::new(),
            note: String::new(),
            next_local: 1,
        }
    }

    fn known(&self, id: &str) -> bool {
        self.lines.iter().any(|l| l.id.as_deref() == Some(id))
    }

    fn push(&mut self, l: Line) {
        self.lines.push(l);
        if self.lines.len() > KEEP {
            self.lines.drain(..self.lines.len() - KEEP);
        }
    }

    /// A stored message from `GET /history`.
    fn history(&mut self, m: &miniserde::json::Object) {
        let id = str_of(m, "id").map(str::to_string);
        if id.as_deref().is_some_and(|i| self.known(i)) {
            return;
        }
        self.push(Line {
            id,
            local: None,
            out: str_of(m, "dir") == Some("out"),
            ts_ms: ts_ms(m, "ts").unwrap_or(0),
            text: str_of(m, "message").unwrap_or("").to_string(),
            mark: Mark::None,
        });
    }

    /// A live event; returns the id of an incoming message to mark read.
    pub(super) fn event(&mut self, e: &Structured) -> Option<String> {
        let (from, to) = (e.get("from"), e.get("to"));
        let ours = from.eq_ignore_ascii_case(&self.peer) || to.eq_ignore_ascii_case(&self.peer);
        if !ours || e.get("channel") == "system" {
            return None;
        }
        let id = e.get("id").to_string();
        if !e.is_message() {
            let mark = match e.get("status") {
                "read" => Mark::Read,
                "failed" => Mark::Failed("failed".into()),
                _ => return None,
            };
            if let Some(l) = self
                .lines
                .iter_mut()
                .find(|l| l.out && l.id.as_deref() == Some(&id))
            {
                l.mark = mark;
            }
            return None;
        }
        if !id.is_empty() && self.known(&id) {
            return None;
        }
        let out = e.get("dir") == "out";
        let text = e.get("text").to_string();
        if out
            && let Some(l) = self
                .lines
                .iter_mut()
                .find(|l| l.local.is_some() && l.id.is_none() && l.text == text)
        {
            l.id = Some(id);
            return None;
        }
        self.push(Line {
            id: (!id.is_empty()).then(|| id.clone()),
            local: None,
            out,
            ts_ms: ts_ms(&e.obj, "ts").unwrap_or_else(now_ms),
            text,
            mark: Mark::None,
        });
        (!out && !id.is_empty()).then_some(id)
    }

    /// A send finished.
    pub(super) fn sent(&mut self, local: u64, o: Outcome) {
        // The event for it may have come first and been shown as a line of its own.
        if let Some(id) = &o.id
            && let Some(i) = self
                .lines
                .iter()
                .position(|l| l.id.as_deref() == Some(id) && l.local.is_none())
            && self.lines.iter().any(|l| l.local == Some(local))
        {
            self.lines.remove(i);
        }
        if let Some(l) = self.lines.iter_mut().find(|l| l.local == Some(local)) {
            if l.id.is_none() {
                l.id = o.id;
            }
            if l.mark != Mark::Read {
                l.mark = o.mark;
            }
        }
    }

    /// Key bytes; what they ask for, in order.
    pub(super) fn keys(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut acts = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match b {
                0x03 => {
                    acts.push(Action::Quit);
                    return acts;
                }
                0x04 if self.input.is_empty() => {
                    acts.push(Action::Quit);
                    return acts;
                }
                b'\r' | b'\n' => {
                    let text = self.input.trim().to_string();
                    self.input.clear();
                    if !text.is_empty() {
                        let local = self.next_local;
                        self.next_local += 1;
                        self.push(Line {
                            id: None,
                            local: Some(local),
                            out: true,
                            ts_ms: now_ms(),
                            text: text.clone(),
                            mark: Mark::Pending,
                        });
                        acts.push(Action::Send(local, text));
                    }
                }
                0x7f | 0x08 => {
                    self.input.pop();
                }
                0x15 => self.input.clear(),
                0x1b => {
                    // An escape sequence (arrows, function keys): skipped.
                    let mut j = i + 1;
                    if j >= buf.len() {
                        self.pending = buf[i..].to_vec();
                        return acts;
                    }
                    if buf[j] == b'[' || buf[j] == b'O' {
                        j += 1;
                        while j < buf.len() && !(0x40..=0x7e).contains(&buf[j]) {
                            j += 1;
                        }
                        if j >= buf.len() {
                            self.pending = buf[i..].to_vec();
                            return acts;
                        }
                    }
                    i = j + 1;
                    continue;
                }
                0..0x20 => {}
                _ => {
                    let len = match b {
                        0xc0..0xe0 => 2,
                        0xe0..0xf0 => 3,
                        0xf0..0xf8 => 4,
                        0x80..0xc0 | 0xf8.. => {
                            i += 1;
                            continue;
                        }
                        _ => 1,
                    };
                    if i + len > buf.len() {
                        self.pending = buf[i..].to_vec();
                        return acts;
                    }
                    if let Ok(s) = std::str::from_utf8(&buf[i..i + len])
                        && self.input.len() < 16 * 1024
                    {
                        self.input.push_str(s);
                    }
                    i += len;
                    continue;
                }
            }
            i += 1;
        }
        acts
    }

    /// The whole screen for a terminal of `rows`×`cols`.
    pub(super) fn render(&self, rows: u16, cols: u16) -> String {
        let (rows, cols) = (usize::from(rows.max(4)), usize::from(cols.max(20)));
        let mut out = String::from("\x1b[?25l\x1b[H\x1b[2J");
        let head = format!(
            "skychat with {} — Enter sends, Ctrl-C leaves{}",
            self.name,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", self.note)
            }
        );
        out.push_str("\x1b[7m");
        out.push_str(&fit(&head, cols));
        out.push_str("\x1b[0m\r\n");
        let body = rows - 3;
        let mut vis: Vec<String> = Vec::new();
        for l in &self.lines {
            let who = if l.out { "me" } else { self.name.as_str() };
            let mark = match &l.mark {
                Mark::None => String::new(),
                Mark::Pending => " …".into(),
                Mark::Acked(ms) => format!(" ✓ {ms}ms"),
                Mark::Read => " ✓✓".into(),
                Mark::Failed(why) => format!(" ✗ {why}"),
            };
            let text = format!("{} {who}: {}{mark}", hhmm(l.ts_ms), l.text);
            vis.extend(wrap(&text, cols));
        }
        let start = vis.len().saturating_sub(body);
        let shown = &vis[start..];
        for _ in shown.len()..body {
            out.push_str("\r\n");
        }
        for v in shown {
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&"─".repeat(cols));
        out.push_str("\r\n> ");
        let chars: Vec<char> = self.input.chars().collect();
        let room = cols - 3;
        let tail: String = chars[chars.len().saturating_sub(room)..].iter().collect();
        out.push_str(&tail);
        out.push_str("\x1b[?25h");
        out
    }
}

/// `s` cut to `cols` characters.
fn fit(s: &str, cols: usize) -> String {
    s.chars().take(cols).collect()
}

/// `s` (control characters shown as spaces) in lines of at most `cols` characters.
fn wrap(s: &str, cols: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut n = 0;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if n == cols {
            out.push(String::new());
            n = 0;
        }
        if let Some(l) = out.last_mut() {
            l.push(c);
        }
        n += 1;
    }
    out
}

/// `HH:MM` (UTC).
fn hhmm(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// One `POST /message`.
async fn send_one(s: &Surface, pk: &str, text: &str, wait: Duration, net: &str) -> Outcome {
    let body = format!(
        "{{\"recipient\":{},\"message\":{},\"network\":{},\"wait_ms\":{}}}",
        quote(pk),
        quote(text),
        quote(net),
        wait.as_millis()
    );
    match s
        .call(
            "POST",
            "/message",
            Some(&body),
            wait + Duration::from_secs(15),
        )
        .await
    {
        Ok(r) => {
            let o = match r.json() {
                Value::Object(o) => o,
                _ => Default::default(),
            };
            let id = str_of(&o, "id").map(str::to_string);
            let mark = match r.status {
                200 => Mark::Acked(u64_of(&o, "ms").unwrap_or(0)),
                202 => Mark::None,
                504 => Mark::Failed(format!(
                    "not acked within {} s: {}",
                    wait.as_secs(),
                    r.error()
                )),
                502 => Mark::Failed(format!("unreachable: {}", r.error())),
                _ => Mark::Failed(r.error()),
            };
            Outcome { id, mark }
        }
        Err(e) => Outcome {
            id: None,
            mark: Mark::Failed(e.msg),
        },
    }
}

/// Runs the chat with `pk` until the user leaves.
pub async fn run(s: Surface, pk: String, wait: Duration, net: String) -> CmdResult {
    if !rustix::termios::isatty(io::stdin().as_fd()) {
        return Err(CmdError::usage(
            "chat needs a terminal (stdin is not one); in scripts use send, listen and events",
        ));
    }
    let name = super::skychat_http::Names::load(&s)
        .await
        .of(&pk)
        .to_string();
    let mut view = View::new(pk.clone(), name);
    // Check the surface answers before touching the terminal.
    match s
        .call(
            "GET",
            &format!("/history?peer={pk}&limit={HISTORY}"),
            None,
            Duration::from_secs(15),
        )
        .await?
    {
        r if r.status == 200 => {
            for m in array(&r.json()) {
                if let Value::Object(m) = m {
                    view.history(m);
                }
            }
        }
        r if r.status == 503 => view.note = "history is off".into(),
        r => view.note = format!("no history: {}", r.error()),
    }
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let fail = |e: io::Error| CmdError::fail(format!("the terminal: {e}"));
    let signals = Signals::new([
        Signal::Winch,
        Signal::Term,
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
    ])
    .map_err(fail)?;
    let screen = Screen::enter().map_err(fail)?;
    let term = Arc::new(Async::new(open_tty(true).map_err(fail)?).map_err(fail)?);
    let inbox: Arc<Inbox<Ev>> = Inbox::new();
    let res = ex
        .run(async {
            {
                let (term, inbox) = (term.clone(), inbox.clone());
                ex.spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match (&*term).read(&mut buf).await {
                            Ok(0) => return inbox.push(Ev::KeysEnd(None)),
                            Ok(n) => inbox.push(Ev::Keys(buf[..n].to_vec())),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e)
                                if e.raw_os_error()
                                    == Some(rustix::io::Errno::IO.raw_os_error()) =>
                            {
                                return inbox.push(Ev::KeysEnd(None));
                            }
                            Err(e) => return inbox.push(Ev::KeysEnd(Some(e.to_string()))),
                        }
                    }
                })
                .detach();
            }
            {
                let inbox = inbox.clone();
                let mut sigs = signals;
                ex.spawn(async move {
                    while let Some(Ok(sig)) = sigs.next().await {
                        inbox.push(Ev::Signal(sig));
                    }
                })
                .detach();
            }
            {
                let inbox = inbox.clone();
                let mut f = Follow::new(s.clone(), "dm", None);
                ex.spawn(async move {
                    loop {
                        match f.next().await {
                            Ok(e) => inbox.push(Ev::Event(e)),
                            Err(e) => return inbox.push(Ev::StreamGone(e.msg)),
                        }
                    }
                })
                .detach();
            }
            loop {
                let (rows, cols) = rustix::termios::tcgetwinsize(&screen.tty)
                    .map(|w| (w.ws_row, w.ws_col))
                    .unwrap_or((24, 80));
                (&*term)
                    .write_all(view.render(rows, cols).as_bytes())
                    .await
                    .map_err(fail)?;
                (&*term).flush().await.map_err(fail)?;
                match inbox.recv().await {
                    Ev::Keys(b) => {
                        for a in view.keys(&b) {
                            match a {
                                Action::Quit => return Ok(()),
                                Action::Send(local, text) => {
                                    let (s, pk, net, inbox) =
                                        (s.clone(), pk.clone(), net.clone(), inbox.clone());
                                    ex.spawn(async move {
                                        let o = send_one(&s, &pk, &text, wait, &net).await;
                                        inbox.push(Ev::Sent(local, o));
                                    })
                                    .detach();
                                }
                            }
                        }
                    }
                    Ev::KeysEnd(None) => return Ok(()),
                    Ev::KeysEnd(Some(e)) => {
                        return Err(CmdError::fail(format!("reading the terminal: {e}")));
                    }
                    Ev::Event(e) => {
                        if let Some(id) = view.event(&e) {
                            let (s, pk) = (s.clone(), pk.clone());
                            ex.spawn(async move {
                                let body =
                                    format!("{{\"peer\":{},\"id\":{}}}", quote(&pk), quote(&id));
                                let _ = s
                                    .call("POST", "/read", Some(&body), Duration::from_secs(10))
                                    .await;
                            })
                            .detach();
                        }
                    }
                    Ev::StreamGone(why) => view.note = format!("no live updates: {why}"),
                    Ev::Sent(local, o) => view.sent(local, o),
                    Ev::Signal(Signal::Winch) => {}
                    Ev::Signal(sig) => {
                        let (name, n) = match sig {
                            Signal::Term => ("SIGTERM", 15),
                            Signal::Hup => ("SIGHUP", 1),
                            Signal::Int => ("SIGINT", 2),
                            _ => ("SIGQUIT", 3),
                        };
                        return Err(CmdError {
                            msg: format!("chat ended by {name}"),
                            code: 128 + n,
                        });
                    }
                }
            }
        })
        .await;
    drop(term);
    drop(screen);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> Structured {
        let Ok(Value::Object(obj)) = miniserde::json::from_str::<Value>(json) else {
            panic!("{json}")
        };
        Structured {
            raw: json.into(),
            obj,
        }
    }

    #[test]
    fn keys_edit_send_and_quit() {
        let mut v = View::new("p".into(), "bob".into());
        assert!(v.keys("héllo".as_bytes()).is_empty());
        // A split UTF-8 character and an arrow key split across reads.
        assert!(v.keys(&[0xc3]).is_empty());
        assert!(v.keys(&[0xa9, 0x1b, b'[']).is_empty());
        assert!(v.keys(b"D\x7f").is_empty());
        assert_eq!(v.input, "héllo");
        assert_eq!(v.keys(b"!\r"), vec![Action::Send(1, "héllo!".into())]);
        assert_eq!(v.input, "");
        assert_eq!(v.lines[0].mark, Mark::Pending);
        assert!(v.keys(b"  \r").is_empty(), "blank lines are not sent");
        assert_eq!(v.keys(b"x\x15\x04"), vec![Action::Quit]);
        assert_eq!(v.keys(b"\x03"), vec![Action::Quit]);
    }

    #[test]
    fn events_and_acks_merge_by_id() {
        let mut v = View::new("aa".into(), "bob".into());
        v.keys(b"hi\r");
        // The out event comes before the POST answer: it names the pending line.
        let out = ev(
            r#"{"seq":1,"id":"0000000000000001","type":"message","dir":"out","from":"me","to":"aa","text":"hi","ts":1000}"#,
        );
        assert_eq!(v.event(&out), None);
        assert_eq!(v.lines.len(), 1);
        v.sent(
            1,
            Outcome {
                id: Some("0000000000000001".into()),
                mark: Mark::Acked(12),
            },
        );
        assert_eq!(v.lines.len(), 1);
        assert_eq!(v.lines[0].mark, Mark::Acked(12));
        let inc = ev(
            r#"{"seq":2,"id":"0000000000000002","type":"message","dir":"in","from":"aa","to":"me","text":"yo","ts":2000}"#,
        );
        assert_eq!(v.event(&inc).as_deref(), Some("0000000000000002"));
        assert_eq!(v.event(&inc), None, "a message is shown once");
        let other = ev(
            r#"{"seq":3,"id":"0000000000000003","type":"message","dir":"in","from":"cc","to":"me","text":"no"}"#,
        );
        assert_eq!(v.event(&other), None);
        assert_eq!(v.lines.len(), 2);
        let read = ev(
            r#"{"seq":4,"id":"0000000000000001","type":"status","status":"read","dir":"out","from":"me","to":"aa"}"#,
        );
        v.event(&read);
        assert_eq!(v.lines[0].mark, Mark::Read);
        let screen = v.render(10, 40);
        assert!(screen.contains("me: hi ✓✓"), "{screen}");
        assert!(screen.contains("bob: yo"), "{screen}");
        assert!(screen.ends_with("> \x1b[?25h"), "{screen:?}");
    }

    #[test]
    fn a_failed_send_says_why_and_long_lines_wrap() {
        let mut v = View::new("aa".into(), "bob".into());
        v.keys(format!("{}\r", "x".repeat(50)).as_bytes());
        v.sent(
            1,
            Outcome {
                id: Some("0000000000000009".into()),
                mark: Mark::Failed("not acked within 5 s: timeout".into()),
            },
        );
        let screen = v.render(8, 30);
        assert!(screen.contains("✗ not acked"), "{screen}");
        assert_eq!(
            wrap("abcdef", 4),
            vec!["abcd".to_string(), "ef".to_string()]
        );
    }
}
