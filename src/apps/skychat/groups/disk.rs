//! A group's directory (docs/protocol.md "Skychat groups: messages", "On disk"):
//! `feed.log` (records `u32be len ‖ u32be crc32 ‖ sequenced entry`, each appended and
//! `fdatasync`ed on its own: small synchronous writes, one sync each, called from the
//! service while it holds the group), `meta.json` and `keys` (0600), both replaced by a
//! write to a temporary file, a sync and a rename.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use miniserde::json::Value;

use crate::apps::skychat::group::entry::MAX_ENTRY;
use crate::apps::skychat::group::{GroupKey, Keyring};
use crate::apps::skychat::store::crc32;
use crate::crypto::PublicKey;
use crate::crypto::hex;
use crate::http::json::{Fields, Ordered, Out, parse_object, str_array};

/// The append-only entry log of one group.
#[derive(Debug)]
pub struct FeedLog {
    f: File,
}

/// What opening a log found.
#[derive(Debug, Default)]
pub struct LogReport {
    /// Bytes cut off the end (a torn or bad last part).
    pub cut_bytes: u64,
}

impl FeedLog {
    /// Opens (or creates) `path`, returns the good records in order; a torn tail, or the
    /// first bad record and everything after it, is cut off.
    pub fn open(path: &Path) -> Result<(FeedLog, Vec<Vec<u8>>, LogReport), String> {
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let mut all = Vec::new();
        f.read_to_end(&mut all)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        let (entries, good) = scan(&all);
        let mut report = LogReport::default();
        if good < all.len() {
            report.cut_bytes = (all.len() - good) as u64;
            f.set_len(good as u64)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("truncate {}: {e}", path.display()))?;
        }
        Ok((FeedLog { f }, entries, report))
    }

    /// Appends one entry and syncs it.
    pub fn append(&mut self, entry: &[u8]) -> Result<(), String> {
        self.append_all(&[entry])
    }

    /// Appends `entries` in order with one write and one sync (a catch-up batch: one sync
    /// per batch, not per entry).
    pub fn append_all<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let total: usize = entries.iter().map(|e| 8 + e.as_ref().len()).sum();
        let mut rec = Vec::with_capacity(total);
        for e in entries {
            let e = e.as_ref();
            rec.extend_from_slice(&(e.len() as u32).to_be_bytes());
            rec.extend_from_slice(&crc32(e).to_be_bytes());
            rec.extend_from_slice(e);
        }
        self.f
            .write_all(&rec)
            .and_then(|_| self.f.sync_data())
            .map_err(|e| format!("feed log: {e}"))
    }
}

/// The good records of a log's bytes and where the good part ends.
pub fn scan(b: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut off = 0usize;
    while b.len() - off >= 8 {
        let len = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        let crc = u32::from_be_bytes([b[off + 4], b[off + 5], b[off + 6], b[off + 7]]);
        if len == 0 || len > MAX_ENTRY || b.len() - off - 8 < len {
            break;
        }
        let e = &b[off + 8..off + 8 + len];
        if crc32(e) != crc {
            break;
        }
        out.push(e.to_vec());
        off += 8 + len;
    }
    (out, off)
}

fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
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

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Owner (true) or member.
    pub owner_role: bool,
    /// The group's owner.
    pub owner: PublicKey,
    /// The owner's overlay port.
    pub port: u16,
    /// When this visor created or joined it (unix ms).
    pub created_at: u64,
    /// Invite secrets (owner).
    pub secrets: Vec<[u8; 16]>,
}

/// Invite secrets kept per group (the oldest dropped first).
pub const MAX_SECRETS: usize = 64;

impl Meta {
    /// Writes `<dir>/meta.json`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let o = Ordered::new()
            .field(
                "role",
                Out::Str(if self.owner_role { "owner" } else { "member" }.into()),
            )
            .field("owner_pk", Out::Str(self.owner.to_hex()))
            .field("port", Out::U64(self.port.into()))
            .field("created_at", Out::U64(self.created_at))
            .field(
                "secrets",
                str_array(self.secrets.iter().map(|s| hex::encode(s))),
            );
        replace(&dir.join("meta.json"), o.to_pretty().as_bytes(), 0o600)
    }

    /// Reads `<dir>/meta.json`.
    pub fn load(dir: &Path) -> Result<Meta, String> {
        let p = dir.join("meta.json");
        let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let obj = parse_object(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut f = Fields::new(&obj, "");
        let err = |e: String| format!("{}: {e}", p.display());
        let owner_role = match f.str("role").map_err(|e| err(e.to_string()))? {
            "owner" => true,
            "member" => false,
            r => return Err(err(format!("role {r:?}"))),
        };
        let owner = PublicKey::from_hex(f.str("owner_pk").map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
        let port = f
            .opt_u64("port", u16::MAX.into())
            .map_err(|e| err(e.to_string()))?
            .unwrap_or(1) as u16;
        let created_at = f
            .opt_u64("created_at", u64::MAX)
            .map_err(|e| err(e.to_string()))?
            .unwrap_or(0);
        let mut secrets = Vec::new();
        for (_, v) in f.opt_array("secrets").map_err(|e| err(e.to_string()))? {
            if let Value::String(s) = v
                && let Ok(b) = hex::decode_array::<16>(s)
            {
                secrets.push(b);
            }
        }
        Ok(Meta {
            owner_role,
            owner,
            port,
            created_at,
            secrets,
        })
    }
}

/// Writes `<dir>/keys` (0600): `epoch key-hex` per line.
pub fn save_keys(dir: &Path, ring: &Keyring) -> Result<(), String> {
    let mut s = String::new();
    for e in ring.epochs() {
        if let Some(k) = ring.get(e) {
            s.push_str(&format!("{e} {}\n", k.to_hex()));
        }
    }
    replace(&dir.join("keys"), s.as_bytes(), 0o600)
}

/// Reads `<dir>/keys` (none: an empty ring).
pub fn load_keys(dir: &Path) -> Keyring {
    let mut ring = Keyring::new();
    if let Ok(text) = fs::read_to_string(dir.join("keys")) {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if let (Some(e), Some(k)) = (it.next(), it.next())
                && let (Ok(e), Ok(k)) = (e.parse::<u32>(), GroupKey::from_hex(k))
            {
                ring.insert(e, k);
            }
        }
    }
    ring
}

/// `<app dir>/groups`.
pub fn groups_dir(app_dir: &Path) -> PathBuf {
    app_dir.join("groups")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_cut_and_good_records_stay() {
        let dir = std::env::temp_dir().join(format!("sc-groups-disk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("feed.log");
        {
            let (mut l, e, _) = FeedLog::open(&p).unwrap();
            assert!(e.is_empty());
            l.append(b"one").unwrap();
            l.append(b"two").unwrap();
        }
        let mut raw = fs::read(&p).unwrap();
        raw.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
        fs::write(&p, &raw).unwrap();
        let (mut l, e, r) = FeedLog::open(&p).unwrap();
        assert_eq!(e, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(r.cut_bytes, 6);
        l.append(b"three").unwrap();
        l.append_all(&[b"four".as_slice(), b"five"]).unwrap();
        l.append_all::<&[u8]>(&[]).unwrap();
        drop(l);
        let (_, e, r) = FeedLog::open(&p).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[3..], [b"four".to_vec(), b"five".to_vec()]);
        assert_eq!(r.cut_bytes, 0);
        // A flipped byte ends the replay there.
        let mut raw = fs::read(&p).unwrap();
        raw[9] ^= 1;
        assert_eq!(scan(&raw).0.len(), 0);

        let pk = *crate::crypto::Keypair::from_seed(&[3; 32]).public();
        let m = Meta {
            owner_role: true,
            owner: pk,
            port: 1,
            created_at: 5,
            secrets: vec![[1; 16]],
        };
        m.save(&dir).unwrap();
        assert_eq!(Meta::load(&dir).unwrap(), m);
        let mut ring = Keyring::new();
        ring.insert(1, GroupKey::from_bytes([7; 32]));
        ring.insert(2, GroupKey::from_bytes([8; 32]));
        save_keys(&dir, &ring).unwrap();
        let back = load_keys(&dir);
        assert_eq!(back.get(2), ring.get(2));
        assert_eq!(back.len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("keys")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = fs::remove_dir_all(&dir);
    }
}
