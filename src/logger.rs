//! The process's logger: `LEVEL [target] message` lines on stderr, no colours, no timestamps
//! (journald and the RPC log add them) — the format simple_logger printed with those turned
//! off, in the few lines this needs (`make size`).
//!
//! The visor also keeps the most recent lines in memory ([`keep_lines`], [`tail`]), for
//! `GET /v1/logs` and `skywire cli visor log`: at most [`RING_LINES`] lines holding at most
//! [`RING_BYTES`] of text, each line cut at [`LINE_MAX`] bytes, each numbered (from 1, one up
//! per line) and stamped with the Unix time in seconds. It takes what stderr got (so it
//! follows the log level), costs one mutex and the line's own allocation per line, and drops
//! the oldest lines when full.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The most lines the ring keeps.
pub const RING_LINES: usize = 512;
/// The most text the ring keeps (the lines' allocations, in bytes).
pub const RING_BYTES: usize = 64 * 1024;
/// The longest line kept (bytes); a longer one is cut and ends in `…`.
pub const LINE_MAX: usize = 1024;

struct Stderr;

static LOGGER: Stderr = Stderr;

/// Whether lines are kept ([`keep_lines`]).
static KEEP: AtomicBool = AtomicBool::new(false);

static RING: Mutex<Ring> = Mutex::new(Ring {
    lines: VecDeque::new(),
    bytes: 0,
    next: 1,
});

struct Ring {
    lines: VecDeque<Line>,
    /// The capacity of the lines' texts.
    bytes: usize,
    /// The seq of the next line.
    next: u64,
}

/// One kept line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its number: 1 for the first line logged, one more for each next.
    pub seq: u64,
    /// When it was logged, Unix seconds.
    pub time: u64,
    /// Its level.
    pub level: Level,
    /// `[target] message`, at most [`LINE_MAX`] bytes.
    pub text: String,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = match record.target() {
            "" => record.module_path().unwrap_or_default(),
            t => t,
        };
        let level = record.level();
        if !KEEP.load(Ordering::Relaxed) {
            // A closed stderr must not end the process: the line is dropped.
            let _ = writeln!(
                std::io::stderr().lock(),
                "{:<5} [{target}] {}",
                level.as_str(),
                record.args()
            );
            return;
        }
        let mut text = String::new();
        let _ = write!(text, "[{target}] {}", record.args());
        let _ = writeln!(std::io::stderr().lock(), "{:<5} {text}", level.as_str());
        keep(level, text);
    }

    fn flush(&self) {}
}

/// Cuts `text` to [`LINE_MAX`] bytes (at a character boundary, ending in `…`).
fn cut(text: &mut String) {
    if text.len() <= LINE_MAX {
        return;
    }
    let mut end = LINE_MAX - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text.shrink_to_fit();
}

fn keep(level: Level, mut text: String) {
    cut(&mut text);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut r = RING.lock().unwrap_or_else(|p| p.into_inner());
    if r.lines.capacity() == 0 {
        r.lines.reserve_exact(RING_LINES);
    }
    while r.lines.len() >= RING_LINES || r.bytes + text.capacity() > RING_BYTES {
        let Some(old) = r.lines.pop_front() else {
            break;
        };
        r.bytes -= old.text.capacity();
    }
    let seq = r.next;
    r.next += 1;
    r.bytes += text.capacity();
    r.lines.push_back(Line {
        seq,
        time,
        level,
        text,
    });
}

/// Keeps the lines logged from now on in the ring (the visor does; other commands only
/// write stderr).
pub fn keep_lines() {
    KEEP.store(true, Ordering::Relaxed);
}

/// Kept lines and the seq to ask for next: with `since`, the oldest `n` lines numbered
/// `since` or more (a poller passes the `next` it was given); without, the newest `n`. A
/// `since` beyond the next line's seq (the numbering started over: the process restarted)
/// counts as none.
pub fn tail(since: Option<u64>, n: usize) -> (Vec<Line>, u64) {
    let r = RING.lock().unwrap_or_else(|p| p.into_inner());
    let lines: Vec<Line> = match since.filter(|s| *s <= r.next) {
        Some(s) => r
            .lines
            .iter()
            .filter(|l| l.seq >= s)
            .take(n)
            .cloned()
            .collect(),
        None => r
            .lines
            .iter()
            .skip(r.lines.len().saturating_sub(n))
            .cloned()
            .collect(),
    };
    let next = lines.last().map_or(r.next, |l| l.seq + 1);
    (lines, next)
}

/// Installs the logger at `level`. A second call (tests running commands in one process)
/// keeps the first logger and only changes the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test touches the ring (it is the process's), so nothing runs beside it.
    #[test]
    fn the_ring_is_bounded_numbered_and_paged() {
        let (_, start) = tail(None, 0);
        for i in 0..600 {
            keep(Level::Info, format!("[t] line {i}"));
        }
        let (all, next) = tail(None, usize::MAX);
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(next, start + 600);
        assert_eq!(all.last().unwrap().text, "[t] line 599");
        assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        // Paging forward from a seq, and the newest n.
        let (page, after) = tail(Some(next - 10), 4);
        assert_eq!(page.len(), 4);
        assert_eq!(page[0].seq, next - 10);
        assert_eq!(after, next - 6);
        assert_eq!(tail(Some(next), 100), (Vec::new(), next));
        assert_eq!(tail(None, 2).0[1].text, "[t] line 599");
        // A seq from a previous process reads as none.
        assert_eq!(tail(Some(next + 1000), 3).0.len(), 3);

        // Long lines are cut (on a character boundary) and the bytes are bounded.
        keep(Level::Warn, "é".repeat(4000));
        let (last, _) = tail(None, 1);
        assert!(last[0].text.len() <= LINE_MAX && last[0].text.ends_with('…'));
        for _ in 0..100 {
            keep(Level::Warn, "x".repeat(5000));
        }
        let r = RING.lock().unwrap();
        assert!(r.bytes <= RING_BYTES, "{}", r.bytes);
        assert_eq!(
            r.bytes,
            r.lines.iter().map(|l| l.text.capacity()).sum::<usize>()
        );
        assert!(r.lines.len() < RING_LINES);
    }
}
