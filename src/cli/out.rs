//! Output: stdout writes that report their failure (module docs of `cli`), and the
//! printers the visor commands share (tables, durations, JSON, one app's status).

use miniserde::json::{Object, Value};

use crate::rpc::App;

use super::{CmdError, CmdResult};

/// The first stdout write error of this process, for `cli::run_parsed` to report.
static STDOUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

/// Writes and flushes `bytes` on stdout, remembering the first failure.
pub(super) fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let res = out.write_all(bytes).and_then(|()| out.flush());
    if let Err(e) = &res {
        let mut first = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(std::io::Error::new(e.kind(), io_reason(e)));
        }
    }
    res
}

pub(super) fn take_stdout_error() -> Option<std::io::Error> {
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// An I/O error's reason without the "(os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(super) fn stdout_failure(e: &std::io::Error) -> String {
    format!("cannot write to stdout: {}", io_reason(e))
}

/// Prints `text` as is on stdout. A failure ends the command (module docs): exit 1 with
/// "cannot write to stdout: …", or quietly for a closed pipe.
pub fn print_out(text: &str) -> CmdResult {
    write_stdout(text.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Quiet; run_parsed turns the recorded EPIPE into the command's own status.
            CmdError {
                msg: String::new(),
                code: 0,
            }
        } else {
            CmdError::fail(stdout_failure(&e))
        }
    })
}

/// [`print_out`] of one line.
pub fn print_line(line: &str) -> CmdResult {
    print_out(&format!("{line}\n"))
}

/// Prints a line on stdout for a long-running command: a failure does not stop it (it must
/// not die because whoever read its first line went away); it is reported when the command
/// ends (module docs).
pub fn say(line: &str) {
    let _ = write_stdout(format!("{line}\n").as_bytes());
}

/// [`say`] on stderr; a failure there has nowhere to be reported and is ignored.
pub fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Prints a JSON object compactly (keys sorted, as miniserde writes them).
pub fn print_json(o: Object) {
    say(&miniserde::json::to_string(&Value::Object(o)));
}

/// `num / den` in decimal with `places` digits after the point, rounded half up — integer
/// arithmetic only, so that the binary carries no float formatting (`make size`).
pub fn decimal(num: u64, den: u64, places: u32) -> String {
    let scale = 10u64.pow(places);
    let den = den.max(1);
    let v = num.saturating_mul(scale).saturating_add(den / 2) / den;
    if places == 0 {
        return v.to_string();
    }
    format!("{}.{:0w$}", v / scale, v % scale, w = places as usize)
}

/// `3d4h`, `5m12s`, `40s`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Prints rows as columns, each as wide as its widest cell (the last one not padded).
pub fn table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        say(line.trim_end());
    }
}

/// One app's status, with its connections when the answer has them.
pub fn print_app(a: &App) {
    say(&format!("{}: {}", a.name, a.state));
    say(&format!(
        "  mode {}, port {}, wave {}, autostart {}, restart {}, restarts {}{}",
        a.mode,
        dash(&a.port),
        a.wave,
        if a.auto_start { "on" } else { "off" },
        a.restart_policy,
        a.restarts,
        if a.critical { ", critical" } else { "" }
    ));
    if !a.args.is_empty() {
        say(&format!("  args {}", a.args.join(" ")));
    }
    if !a.route.is_empty() {
        say(&format!("  route {}", a.route));
    }
    if a.state == "running" {
        say(&format!("  up {}", human_secs(a.uptime_secs)));
    }
    for (label, d) in [("requires", &a.requires), ("wants", &a.wants)] {
        if !d.is_empty() {
            say(&format!("  {label} {}", d.join(",")));
        }
    }
    if !a.last_error.is_empty() {
        say(&format!("  last error: {}", a.last_error));
    }
    if !a.detail.is_empty() {
        say(&format!("  {}", a.detail));
    }
    match &a.connections {
        Some(conns) if conns.is_empty() => say("  no connections"),
        Some(conns) => {
            let mut rows = vec![row(&["PEER", "PORT", "NET", "DIR", "RX", "TX", "AGE"])];
            for c in conns {
                rows.push(vec![
                    c.peer.clone(),
                    format!("{}→{}", c.local_port, c.remote_port),
                    c.network.clone(),
                    c.direction.clone(),
                    c.rx_bytes.to_string(),
                    c.tx_bytes.to_string(),
                    human_secs(c.age_secs),
                ]);
            }
            table(&rows);
        }
        None => {}
    }
}

/// A table row of fixed cells (a header).
pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// `-` for an empty cell.
pub fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

#[cfg(any(
    feature = "app-skysocks-client",
    feature = "app-resolver",
    feature = "app-vpn"
))]
/// The string field `k` of an RPC answer ("" where it is missing or not a string).
pub fn obj_str<'a>(o: &'a Object, k: &str) -> &'a str {
    match o.get(k) {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

#[cfg(any(feature = "app-skysocks-client", feature = "app-vpn"))]
/// The unsigned number field `k` of an RPC answer (0 where it is missing or not one).
pub fn obj_u64(o: &Object, k: &str) -> u64 {
    match o.get(k) {
        Some(Value::Number(miniserde::json::Number::U64(n))) => *n,
        _ => 0,
    }
}

#[cfg(any(feature = "app-skysocks-client", feature = "app-vpn"))]
/// A byte count for people: `512 B`, `3.2 KiB`, `41.0 MiB`.
pub fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{} KiB", decimal(b, 1024, 1)),
        _ => format!("{} MiB", decimal(b, 1_048_576, 1)),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a unix time in ms.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian, eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_rounds_half_up_with_integers() {
        assert_eq!(decimal(1234, 1000, 2), "1.23");
        assert_eq!(decimal(1235, 1000, 2), "1.24");
        assert_eq!(decimal(1, 3, 3), "0.333");
        assert_eq!(decimal(2, 3, 0), "1");
        assert_eq!(decimal(1 << 30, 1 << 20, 1), "1024.0");
        assert_eq!(decimal(7, 0, 1), "7.0"); // a zero denominator counts as 1
        assert_eq!(decimal(50, 1000, 3), "0.050");
    }
}
