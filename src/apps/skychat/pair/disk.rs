//! Pairing on disk (docs/architecture.md "Skychat pairing"), in the app's directory:
//!
//! - `pairs.json` (0600): `{"version":1,"pairs":[{"peer_pk","status","since","last_msg_at"}]}`,
//!   replaced whole by a write to `pairs.tmp`, an fsync and a rename (then a sync of the
//!   directory), so a crash leaves the old or the new file, never a mix;
//! - `pair-inbox.log` (0600): the received pair messages, records `u32be len ‖ u32be crc32 ‖
//!   JSON {"peer_pk","id","text","ts"}`, each appended and `fdatasync`ed before the message
//!   is acked; rewritten (same tmp + rename) with only the kept messages when it holds twice
//!   [`super::INBOX_CAP`].
//!
//! A torn last record (a crash mid-append) is cut off; anything else that does not parse is
//! refused with the file's name and what to do, never half-read.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use miniserde::json::Value;

use super::book::{Pair, Status};
use super::wire::MAX_TEXT;
use crate::apps::skychat::proto::MsgId;
use crate::apps::skychat::store::crc32;
use crate::crypto::PublicKey;
use crate::http::json::{Fields, Ordered, Out, parse_object};

/// The pair book's file.
pub const PAIRS_FILE: &str = "pairs.json";
/// The inbox log.
pub const INBOX_FILE: &str = "pair-inbox.log";
/// The largest inbox record (a text of [`MAX_TEXT`] bytes, every one escaped as `\u00XX`).
pub const MAX_RECORD: usize = 6 * MAX_TEXT + 256;

/// One received pair message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InMsg {
    /// Its sender.
    pub peer: PublicKey,
    /// Its id.
    pub id: MsgId,
    /// The text.
    pub text: String,
    /// When it arrived (unix ms).
    pub ts_ms: u64,
}

/// Writes `data` to `path` through `<path>.tmp`, fsync and rename (mode 0600).
pub fn replace(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
    if let Some(d) = path.parent() {
        let _ = File::open(d).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// `pairs.json`'s text of `pairs`.
pub fn pairs_json(pairs: &[Pair]) -> String {
    let items = pairs
        .iter()
        .map(|p| {
            Out::Obj(
                Ordered::new()
                    .field("peer_pk", Out::Str(p.peer.to_hex()))
                    .field("status", Out::Str(p.status.as_str().into()))
                    .field("since", Out::U64(p.since))
                    .field("last_msg_at", Out::U64(p.last_msg_at)),
            )
        })
        .collect();
    Ordered::new()
        .field("version", Out::U64(1))
        .field("pairs", Out::Arr(items))
        .to_pretty()
}

/// Parses `pairs.json`'s text.
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>, String> {
    let obj = parse_object(text).map_err(|e| e.to_string())?;
    let mut f = Fields::new(&obj, "");
    let s = |e: crate::http::json::JsonError| e.to_string();
    match f.opt_u64("version", u64::MAX).map_err(s)? {
        Some(1) => {}
        Some(v) => return Err(format!("version {v}: this skychat reads version 1")),
        None => return Err("field `version`: missing (required)".into()),
    }
    let mut out = Vec::new();
    for (path, v) in f.opt_array("pairs").map_err(s)? {
        let Value::Object(o) = v else {
            return Err(format!("field `{path}`: expected an object"));
        };
        let mut g = Fields::new(o, path.clone());
        let peer = PublicKey::from_hex(g.str("peer_pk").map_err(s)?)
            .map_err(|e| format!("field `{path}.peer_pk`: {e}"))?;
        let st = g.str("status").map_err(s)?;
        let status = Status::parse(st).ok_or_else(|| {
            format!("field `{path}.status`: {st:?} is not pending-out, pending-in or paired")
        })?;
        let since = g.opt_u64("since", u64::MAX).map_err(s)?.unwrap_or(0);
        let last_msg_at = g.opt_u64("last_msg_at", u64::MAX).map_err(s)?.unwrap_or(0);
        g.deny_unknown().map_err(s)?;
        out.push(Pair {
            peer,
            status,
            since,
            last_msg_at,
        });
    }
    f.deny_unknown().map_err(s)?;
    Ok(out)
}

/// Writes `<dir>/pairs.json`.
pub fn save_pairs(dir: &Path, pairs: &[Pair]) -> Result<(), String> {
    replace(&dir.join(PAIRS_FILE), pairs_json(pairs).as_bytes())
}

/// Reads `<dir>/pairs.json` (none yet: no pairs).
pub fn load_pairs(dir: &Path) -> Result<Vec<Pair>, String> {
    let p = dir.join(PAIRS_FILE);
    let text = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let refuse = |e: String| {
        format!(
            "{}: {e}; it is not a pair book this skychat wrote: move it away to start with no \
             pairs",
            p.display()
        )
    };
    let text = String::from_utf8(text).map_err(|_| refuse("not UTF-8".into()))?;
    parse_pairs(&text).map_err(refuse)
}

/// An inbox record's bytes.
pub fn encode_msg(m: &InMsg) -> Vec<u8> {
    let json = Ordered::new()
        .field("peer_pk", Out::Str(m.peer.to_hex()))
        .field("id", Out::Str(m.id.to_string()))
        .field("text", Out::Str(m.text.clone()))
        .field("ts", Out::U64(m.ts_ms))
        .to_compact();
    let mut rec = Vec::with_capacity(8 + json.len());
    rec.extend_from_slice(&(json.len() as u32).to_be_bytes());
    rec.extend_from_slice(&crc32(json.as_bytes()).to_be_bytes());
    rec.extend_from_slice(json.as_bytes());
    rec
}

/// Parses one record's JSON.
pub fn decode_msg(b: &[u8]) -> Result<InMsg, String> {
    let text = std::str::from_utf8(b).map_err(|_| "not UTF-8".to_string())?;
    let obj = parse_object(text).map_err(|e| e.to_string())?;
    let mut f = Fields::new(&obj, "");
    let s = |e: crate::http::json::JsonError| e.to_string();
    let peer = PublicKey::from_hex(f.str("peer_pk").map_err(s)?)
        .map_err(|e| format!("field `peer_pk`: {e}"))?;
    let raw = f.str("id").map_err(s)?;
    let id = MsgId::parse(raw).ok_or_else(|| format!("field `id`: {raw:?} is not 16 hex"))?;
    let text = f.str("text").map_err(s)?.to_string();
    if text.len() > MAX_TEXT {
        return Err(format!(
            "a text of {} bytes (at most {MAX_TEXT})",
            text.len()
        ));
    }
    let ts_ms = f
        .opt_u64("ts", u64::MAX)
        .map_err(s)?
        .ok_or("field `ts`: missing (required)")?;
    f.deny_unknown().map_err(s)?;
    Ok(InMsg {
        peer,
        id,
        text,
        ts_ms,
    })
}

/// Reads a log's bytes: the messages and the length of the good part (a torn last record
/// ends it); `Err` names the first record that is complete but bad.
pub fn scan(b: &[u8]) -> Result<(Vec<InMsg>, usize), String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while b.len() - off >= 8 {
        let len = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        let crc = u32::from_be_bytes([b[off + 4], b[off + 5], b[off + 6], b[off + 7]]);
        let at = || format!("record {} at byte {off}", out.len() + 1);
        if len == 0 || len > MAX_RECORD {
            return Err(format!(
                "{}: length {len} is outside 1..={MAX_RECORD}",
                at()
            ));
        }
        if b.len() - off - 8 < len {
            break; // torn: the crash came mid-append
        }
        let rec = &b[off + 8..off + 8 + len];
        if crc32(rec) != crc {
            return Err(format!("{}: bad checksum", at()));
        }
        out.push(decode_msg(rec).map_err(|e| format!("{}: {e}", at()))?);
        off += 8 + len;
    }
    Ok((out, off))
}

/// The inbox log, open for appends.
#[derive(Debug)]
pub struct InboxLog {
    path: PathBuf,
    f: File,
    /// Records in the file.
    pub records: usize,
}

impl InboxLog {
    /// Opens (or creates) `path`: the log, its messages in order and the bytes of a torn
    /// tail cut off.
    pub fn open(path: &Path) -> Result<(InboxLog, Vec<InMsg>, u64), String> {
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let mut all = Vec::new();
        f.read_to_end(&mut all)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        let (msgs, good) = scan(&all).map_err(|e| {
            format!(
                "{}: {e}; it is not an inbox this skychat wrote: move it away to start with \
                 an empty pair inbox",
                path.display()
            )
        })?;
        let cut = (all.len() - good) as u64;
        if cut > 0 {
            f.set_len(good as u64)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("truncate {}: {e}", path.display()))?;
        }
        let records = msgs.len();
        Ok((
            InboxLog {
                path: path.to_path_buf(),
                f,
                records,
            },
            msgs,
            cut,
        ))
    }

    /// Appends one message and syncs it.
    pub fn append(&mut self, m: &InMsg) -> Result<(), String> {
        self.f
            .write_all(&encode_msg(m))
            .and_then(|_| self.f.sync_data())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.records += 1;
        Ok(())
    }

    /// Replaces the file with `keep` only (tmp + fsync + rename) and reopens it.
    pub fn rewrite<'a>(&mut self, keep: impl Iterator<Item = &'a InMsg>) -> Result<(), String> {
        let mut data = Vec::new();
        let mut n = 0;
        for m in keep {
            data.extend_from_slice(&encode_msg(m));
            n += 1;
        }
        replace(&self.path, &data)?;
        self.f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("open {}: {e}", self.path.display()))?;
        self.records = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(n: u8) -> PublicKey {
        *crate::crypto::Keypair::from_seed(&[n; 32]).public()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sc-pair-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn pairs_file_round_trips_and_garbage_is_refused() {
        let dir = tmpdir("book");
        assert_eq!(load_pairs(&dir).unwrap(), vec![]);
        let pairs = vec![
            Pair {
                peer: pk(1),
                status: Status::PendingIn,
                since: 5,
                last_msg_at: 0,
            },
            Pair {
                peer: pk(2),
                status: Status::Paired,
                since: 6,
                last_msg_at: 9,
            },
        ];
        save_pairs(&dir, &pairs).unwrap();
        assert_eq!(load_pairs(&dir).unwrap(), pairs);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(PAIRS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.join("pairs.tmp").exists());
        let good = pairs_json(&pairs);
        for (bad, says) in [
            ("garbage".to_string(), "move it away"),
            ("\u{0}\u{1}".to_string(), "move it away"),
            (
                good.replace("\"version\": 1", "\"version\": 9"),
                "version 9",
            ),
            (good.replace("paired", "friends"), "is not pending-out"),
            (good.replace(&pk(1).to_hex(), "abcd"), "peer_pk"),
            (good.replace("\"since\"", "\"sincere\""), "sincere"),
            ("{\"pairs\":[]}".into(), "version"),
        ] {
            fs::write(dir.join(PAIRS_FILE), &bad).unwrap();
            let e = load_pairs(&dir).unwrap_err();
            assert!(e.contains(says) && e.contains(PAIRS_FILE), "{bad}: {e}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn inbox_log_cuts_a_torn_tail_refuses_corruption_and_compacts() {
        let dir = tmpdir("inbox");
        let p = dir.join(INBOX_FILE);
        let m = |i: u64| InMsg {
            peer: pk(1),
            id: MsgId(i + 1),
            text: format!("hello {i} \"é\""),
            ts_ms: 1000 + i,
        };
        {
            let (mut l, got, cut) = InboxLog::open(&p).unwrap();
            assert!(got.is_empty() && cut == 0);
            for i in 0..3 {
                l.append(&m(i)).unwrap();
            }
        }
        let mut raw = fs::read(&p).unwrap();
        let whole = raw.len();
        raw.extend_from_slice(&encode_msg(&m(9))[..10]);
        fs::write(&p, &raw).unwrap();
        let (mut l, got, cut) = InboxLog::open(&p).unwrap();
        assert_eq!(got, vec![m(0), m(1), m(2)]);
        assert_eq!(cut, 10);
        assert_eq!(fs::metadata(&p).unwrap().len() as usize, whole);
        l.rewrite([m(2)].iter()).unwrap();
        l.append(&m(3)).unwrap();
        drop(l);
        let (_, got, _) = InboxLog::open(&p).unwrap();
        assert_eq!(got, vec![m(2), m(3)]);
        // A flipped byte in a complete record, a wild length, text in place of records.
        let mut raw = fs::read(&p).unwrap();
        raw[12] ^= 1;
        fs::write(&p, &raw).unwrap();
        let e = InboxLog::open(&p).unwrap_err();
        assert!(
            e.contains("record 1 at byte 0: bad checksum") && e.contains("move it away"),
            "{e}"
        );
        fs::write(&p, b"this is not a log at all").unwrap();
        let e = InboxLog::open(&p).unwrap_err();
        assert!(e.contains("length"), "{e}");
        // A good checksum over bad JSON.
        let mut rec = Vec::new();
        rec.extend_from_slice(&4u32.to_be_bytes());
        rec.extend_from_slice(&crc32(b"nope").to_be_bytes());
        rec.extend_from_slice(b"nope");
        assert!(scan(&rec).unwrap_err().contains("record 1"));
        let _ = fs::remove_dir_all(&dir);
    }
}
