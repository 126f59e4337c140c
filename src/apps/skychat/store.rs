//! Skychat's crash-safe history: an append-only log `<app dir>/history.log` with a RAM index
//! (offsets only, never the bodies), dedupe by `(peer, id)`, limits with oldest-first eviction
//! and compaction (docs/protocol.md "Skychat", design14 §2).
//!
//! Record: `len u32be ‖ crc32(payload) u32be ‖ payload`, payload
//! `ver u8 = 1 ‖ kind u8 ‖ ts_ms u64be ‖ dir u8 ‖ peer [32] ‖ id u64be ‖ reply_to u64be ‖ net u8 ‖ body`
//! (kind 1 = message, 2 = forget-peer, 3 = forget-all; reply_to 0 = none).
//!
//! At open the log is scanned: a record that runs past the end of the file, or a bad last
//! record, is a torn write and is cut off (`OpenReport::torn_bytes`); a bad record with data
//! after it stops the scan, the rest of the file is moved to `history.log.corrupt-<ts>` and the
//! log is cut there (`OpenReport::corrupt_file`), so no readable data is dropped silently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::PublicKey;

#[cfg(test)]
mod tests;

/// The log's file name in the app dir.
pub const FILE_NAME: &str = "history.log";
/// Record header: `len u32be ‖ crc u32be`.
pub const HEADER_LEN: usize = 8;
/// Fixed part of a payload before the body.
pub const FIXED_LEN: usize = 1 + 1 + 8 + 1 + 32 + 8 + 8 + 1;
/// The payload version this code writes and reads.
pub const VERSION: u8 = 1;
/// Largest payload accepted when reading the log (a body of up to 1 MiB); bigger lengths are
/// corruption, not a record.
pub const MAX_PAYLOAD: usize = FIXED_LEN + (1 << 20);
/// Compaction runs when dead bytes exceed live bytes and this many bytes.
pub const COMPACT_MIN_DEAD: u64 = 1 << 20;
/// A duplicate `(peer, id)` is recognised among that peer's last this many messages (a resend
/// comes within minutes; the engine also remembers the last 4,096 ids of everyone). A full
/// id set would cost ~50 bytes per stored message.
pub const DEDUPE_WINDOW: usize = 4_096;

const KIND_MESSAGE: u8 = 1;
const KIND_FORGET_PEER: u8 = 2;
const KIND_FORGET_ALL: u8 = 3;

/// The store's limits (app flags in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Largest body in bytes [--max-message].
    pub max_message: usize,
    /// Records kept per peer; older ones are evicted [--history-per-peer].
    pub per_peer_cap: usize,
    /// Live bytes kept in total (records with headers); oldest evicted first [--history-max-bytes].
    pub total_bytes: u64,
    /// Records older than this are evicted at open and by [`Store::expire`] [--history-ttl-days].
    pub ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_message: 16_384,
            per_peer_cap: 1_000,
            total_bytes: 16 << 20,
            ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Direction of a message, seen from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

impl Dir {
    /// `"in"` or `"out"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
    fn code(self) -> u8 {
        match self {
            Dir::In => 0,
            Dir::Out => 1,
        }
    }
    fn from_code(c: u8) -> Option<Dir> {
        match c {
            0 => Some(Dir::In),
            1 => Some(Dir::Out),
            _ => None,
        }
    }
}

/// The network a message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetKind {
    /// Not known (code 0).
    Unknown,
    /// dmsg (1).
    Dmsg,
    /// A skynet route (2).
    Skynet,
    /// Noise-XK over TCP (3).
    Tcp,
    /// The same process / node (4).
    Local,
}

impl NetKind {
    /// `"unknown"`, `"dmsg"`, `"skynet"`, `"tcp-direct"` or `"local"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetKind::Unknown => "unknown",
            NetKind::Dmsg => "dmsg",
            NetKind::Skynet => "skynet",
            NetKind::Tcp => "tcp-direct",
            NetKind::Local => "local",
        }
    }
    /// The code stored in the log.
    pub fn code(self) -> u8 {
        match self {
            NetKind::Unknown => 0,
            NetKind::Dmsg => 1,
            NetKind::Skynet => 2,
            NetKind::Tcp => 3,
            NetKind::Local => 4,
        }
    }
    /// The kind for a stored code; unknown codes read as [`NetKind::Unknown`].
    pub fn from_code(c: u8) -> NetKind {
        match c {
            1 => NetKind::Dmsg,
            2 => NetKind::Skynet,
            3 => NetKind::Tcp,
            4 => NetKind::Local,
            _ => NetKind::Unknown,
        }
    }
}

/// One stored message. `id` and `reply_to` are the 8-byte message ids (0 is never an id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Message id.
    pub id: u64,
    /// The other end.
    pub peer: PublicKey,
    /// In or out.
    pub dir: Dir,
    /// Unix time in ms when it was sent (out) or received (in).
    pub ts_ms: u64,
    /// The network it went over.
    pub net: NetKind,
    /// The message it answers.
    pub reply_to: Option<u64>,
    /// The text.
    pub body: String,
}

/// What [`Store::append`] did with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Written and synced.
    Stored,
    /// `(peer, id)` was already stored; nothing written.
    Duplicate,
}

/// What [`Store::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Live message records after the scan.
    pub records: usize,
    /// Bytes of a torn last record cut off the end.
    pub torn_bytes: u64,
    /// Where the unreadable rest of the log was moved, if a record in the middle was bad.
    pub corrupt_file: Option<PathBuf>,
    /// Records dropped by the TTL at open.
    pub expired: usize,
}

/// One peer in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    /// The peer.
    pub peer: PublicKey,
    /// Messages kept.
    pub count: usize,
    /// Newest message's time.
    pub last_ts_ms: u64,
}

/// Counters of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live messages.
    pub records: usize,
    /// Bytes of the live records (headers included).
    pub live_bytes: u64,
    /// Size of the log file.
    pub file_bytes: u64,
    /// Peers with at least one live message.
    pub peers: usize,
    /// fdatasync calls on the log since open (group commit makes this ≪ appends).
    pub fsyncs: u64,
    /// Compactions since open.
    pub compactions: u64,
    /// Entries in the RAM index (per-peer entries + the append-order queue, stale entries
    /// included); bounded by the caps.
    pub index_entries: usize,
}

#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    off: u64,
    len: u32,
    ts_ms: u64,
    id: u64,
}

#[derive(Debug)]
/// The log and its index. Single owner; [`super::writer::StoreHandle`] puts it on a thread.
pub struct Store {
    dir: PathBuf,
    file: File,
    limits: StoreLimits,
    file_len: u64,
    live_bytes: u64,
    peers: HashMap<PublicKey, VecDeque<IndexEntry>>,
    /// Live messages (the sum of the per-peer queues).
    records: usize,
    /// Every record by offset (= append order) with its peer, for oldest-first eviction. An
    /// entry whose record was evicted by its peer's cap or forgotten stays until it reaches the
    /// front (it is skipped then) or the queue is rebuilt from `peers` (when stale entries
    /// outnumber live ones).
    order: VecDeque<(u64, PublicKey)>,
    fsyncs: u64,
    compactions: u64,
    compact_min_dead: u64,
}

/// IEEE CRC-32 (reflected, polynomial 0xEDB88320), nibble table.
pub fn crc32(data: &[u8]) -> u32 {
    const T: [u32; 16] = {
        let mut t = [0u32; 16];
        let mut i = 0;
        while i < 16 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 4 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = T[((c ^ b as u32) & 0xF) as usize] ^ (c >> 4);
        c = T[((c ^ (b as u32 >> 4)) & 0xF) as usize] ^ (c >> 4);
    }
    !c
}

/// A parsed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A message (the peer bytes are checked by the caller).
    Message {
        /// ts_ms.
        ts_ms: u64,
        /// Direction.
        dir: Dir,
        /// Peer key bytes.
        peer: [u8; 32],
        /// Id.
        id: u64,
        /// 0 = none.
        reply_to: u64,
        /// Network.
        net: NetKind,
        /// Body.
        body: String,
    },
    /// Forget one peer.
    ForgetPeer([u8; 32]),
    /// Forget everything.
    ForgetAll,
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parses one payload (the bytes after the record header). Never panics.
pub fn parse_payload(p: &[u8]) -> Result<Payload, String> {
    if p.len() < FIXED_LEN {
        return Err(format!(
            "record of {} bytes, the fixed part is {FIXED_LEN}",
            p.len()
        ));
    }
    if p[0] != VERSION {
        return Err(format!(
            "record version {}, this build reads {VERSION}",
            p[0]
        ));
    }
    let ts_ms = be64(&p[2..10]);
    let dir = Dir::from_code(p[10]).ok_or_else(|| format!("record dir {}", p[10]))?;
    let mut peer = [0u8; 32];
    peer.copy_from_slice(&p[11..43]);
    let id = be64(&p[43..51]);
    let reply_to = be64(&p[51..59]);
    let net = NetKind::from_code(p[59]);
    let body = &p[FIXED_LEN..];
    match p[1] {
        KIND_MESSAGE => {
            let body = std::str::from_utf8(body)
                .map_err(|e| format!("record body is not UTF-8: {e}"))?
                .to_string();
            Ok(Payload::Message {
                ts_ms,
                dir,
                peer,
                id,
                reply_to,
                net,
                body,
            })
        }
        KIND_FORGET_PEER => Ok(Payload::ForgetPeer(peer)),
        KIND_FORGET_ALL => Ok(Payload::ForgetAll),
        k => Err(format!("record kind {k}")),
    }
}

#[allow(clippy::too_many_arguments)] // the fields of one record, in their wire order
fn put_record(
    out: &mut Vec<u8>,
    kind: u8,
    ts_ms: u64,
    dir: Dir,
    peer: &[u8; 32],
    id: u64,
    reply_to: u64,
    net: NetKind,
    body: &[u8],
) {
    let len = FIXED_LEN + body.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.push(dir.code());
    out.extend_from_slice(peer);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&reply_to.to_be_bytes());
    out.push(net.code());
    out.extend_from_slice(body);
    let crc = crc32(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Appends the record of message `r` (header included) to `out`.
fn put_message(out: &mut Vec<u8>, r: &Record) {
    put_record(
        out,
        KIND_MESSAGE,
        r.ts_ms,
        r.dir,
        r.peer.as_bytes(),
        r.id,
        r.reply_to.unwrap_or(0),
        r.net,
        r.body.as_bytes(),
    );
}

/// The full record bytes (header included) of a message, as the log holds it.
pub fn encode_record(r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + FIXED_LEN + r.body.len());
    put_message(&mut v, r);
    v
}

/// The record bytes of a forget record (`None` = forget everything).
pub fn encode_forget(peer: Option<&PublicKey>, ts_ms: u64) -> Vec<u8> {
    let (kind, key) = match peer {
        Some(pk) => (KIND_FORGET_PEER, *pk.as_bytes()),
        None => (KIND_FORGET_ALL, [0; 32]),
    };
    let mut v = Vec::with_capacity(HEADER_LEN + FIXED_LEN);
    put_record(
        &mut v,
        kind,
        ts_ms,
        Dir::In,
        &key,
        0,
        0,
        NetKind::Unknown,
        &[],
    );
    v
}

/// Why the scan of the log stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte was a good record.
    Clean,
    /// The record at `off` runs past the end or is bad and last: cut there.
    Torn {
        /// Offset of the torn record.
        off: u64,
    },
    /// The record at `off` is bad and more bytes follow.
    Corrupt {
        /// Offset of the bad record.
        off: u64,
        /// What is wrong.
        why: String,
    },
}

/// Scans a log read from `r` (of `total` bytes), calling `f(off, payload)` for each good record.
/// Sans-IO apart from the reader; the fuzz target drives it over arbitrary bytes.
pub fn scan<R: Read>(
    r: R,
    total: u64,
    mut f: impl FnMut(u64, &[u8], Payload),
) -> std::io::Result<ScanEnd> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut off = 0u64;
    let mut buf = Vec::new();
    loop {
        if off == total {
            return Ok(ScanEnd::Clean);
        }
        let left = total - off;
        if left < HEADER_LEN as u64 {
            return Ok(ScanEnd::Torn { off });
        }
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h)?;
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let end = off + HEADER_LEN as u64 + len as u64;
        if !(FIXED_LEN..=MAX_PAYLOAD).contains(&len) {
            // A length that cannot be a record: if it would run past the end, it is the
            // start of a torn write only when nothing readable could follow anyway.
            if end >= total {
                return Ok(ScanEnd::Torn { off });
            }
            return Ok(ScanEnd::Corrupt {
                off,
                why: format!("record length {len}"),
            });
        }
        if end > total {
            return Ok(ScanEnd::Torn { off });
        }
        buf.resize(len, 0);
        r.read_exact(&mut buf)?;
        let bad = if crc32(&buf) != crc {
            Some("crc mismatch".to_string())
        } else {
            match parse_payload(&buf) {
                Ok(p) => {
                    f(off, &buf, p);
                    None
                }
                Err(e) => Some(e),
            }
        };
        if let Some(why) = bad {
            if end == total {
                return Ok(ScanEnd::Torn { off });
            }
            return Ok(ScanEnd::Corrupt { off, why });
        }
        off = end;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))
}

impl Store {
    /// Opens (or creates) `<dir>/history.log`, repairing a torn tail and moving a corrupt
    /// rest aside, then applies the limits (TTL included).
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<(Store, OpenReport), String> {
        Self::open_at(dir, limits, now_ms())
    }

    /// [`Store::open`] with the clock given (tests).
    pub fn open_at(
        dir: &Path,
        limits: StoreLimits,
        now_ms: u64,
    ) -> Result<(Store, OpenReport), String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let total = file
            .metadata()
            .map_err(|e| format!("stat {}: {e}", path.display()))?
            .len();
        let mut st = Store {
            dir: dir.to_path_buf(),
            file,
            limits,
            file_len: total,
            live_bytes: 0,
            peers: HashMap::new(),
            records: 0,
            order: VecDeque::new(),
            fsyncs: 0,
            compactions: 0,
            compact_min_dead: COMPACT_MIN_DEAD,
        };
        // Keys met in the log, validated once each.
        let mut keys: HashMap<[u8; 32], Option<PublicKey>> = HashMap::new();
        let reader = st
            .file
            .try_clone()
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let end = scan(reader, total, |off, raw, p| {
            st.replay(&mut keys, off, raw.len() as u32, p)
        })
        .map_err(|e| format!("read {}: {e}", path.display()))?;
        let mut report = OpenReport::default();
        match end {
            ScanEnd::Clean => {}
            ScanEnd::Torn { off } => {
                report.torn_bytes = total - off;
                st.cut(off)?;
                log::warn!(
                    "skychat history: cut a torn last record of {} bytes at offset {off}",
                    total - off
                );
            }
            ScanEnd::Corrupt { off, why } => {
                let aside = dir.join(format!("{FILE_NAME}.corrupt-{now_ms}"));
                let mut rest = vec![0u8; (total - off) as usize];
                st.file
                    .read_exact_at(&mut rest, off)
                    .map_err(|e| format!("read {}: {e}", path.display()))?;
                let mut f =
                    File::create(&aside).map_err(|e| format!("create {}: {e}", aside.display()))?;
                f.write_all(&rest)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("write {}: {e}", aside.display()))?;
                st.cut(off)?;
                log::warn!(
                    "skychat history: bad record at offset {off} ({why}); {} bytes from there moved to {}",
                    total - off,
                    aside.display()
                );
                report.corrupt_file = Some(aside);
            }
        }
        report.expired = st.expire(now_ms)?;
        st.enforce_caps();
        st.maybe_compact()?;
        report.records = st.records;
        Ok((st, report))
    }

    /// Applies one record of the log (at `off`, `len` payload bytes) to the index.
    fn replay(
        &mut self,
        keys: &mut HashMap<[u8; 32], Option<PublicKey>>,
        off: u64,
        len: u32,
        p: Payload,
    ) {
        let mut key = |b: [u8; 32]| {
            *keys
                .entry(b)
                .or_insert_with(|| PublicKey::from_bytes(&b).ok())
        };
        match p {
            Payload::Message {
                ts_ms, peer, id, ..
            } => {
                // A record for a key that is not a valid point cannot have been written by us:
                // skip it (it stays dead bytes until compaction).
                let Some(pk) = key(peer) else { return };
                if !self.contains(&pk, id) {
                    self.index(
                        pk,
                        IndexEntry {
                            off,
                            len,
                            ts_ms,
                            id,
                        },
                    );
                }
            }
            Payload::ForgetPeer(b) => {
                if let Some(pk) = key(b) {
                    self.forget_index(Some(&pk));
                }
            }
            Payload::ForgetAll => self.forget_index(None),
        }
    }

    /// Adds a live message record to the index.
    fn index(&mut self, pk: PublicKey, e: IndexEntry) {
        self.order.push_back((e.off, pk));
        self.records += 1;
        self.live_bytes += HEADER_LEN as u64 + e.len as u64;
        self.peers.entry(pk).or_default().push_back(e);
    }

    /// Whether the order entry `(off, pk)` is still a live record.
    fn live(&self, off: u64, pk: &PublicKey) -> bool {
        self.peers
            .get(pk)
            .is_some_and(|q| q.binary_search_by_key(&off, |e| e.off).is_ok())
    }

    /// Drops stale entries from the front of `order`; rebuilds it from the per-peer queues
    /// when stale entries outnumber the live ones (so it stays within twice the records).
    fn tidy_order(&mut self) {
        while let Some((off, pk)) = self.order.front()
            && self
                .peers
                .get(pk)
                .and_then(|q| q.front())
                .is_none_or(|e| e.off != *off)
        {
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.records + 64 {
            let mut all: Vec<(u64, PublicKey)> = Vec::with_capacity(self.records);
            for (pk, q) in &self.peers {
                all.extend(q.iter().map(|e| (e.off, *pk)));
            }
            crate::sort::sort_by_cmp(&mut all, |a, b| a.0.cmp(&b.0));
            self.order = all.into();
        }
    }

    /// Drops one peer's messages (or everyone's) from the index.
    fn forget_index(&mut self, peer: Option<&PublicKey>) {
        match peer {
            Some(pk) => {
                if let Some(q) = self.peers.remove(pk) {
                    for e in q {
                        self.drop_index(*pk, &e);
                    }
                }
            }
            None => {
                self.peers.clear();
                self.order.clear();
                self.records = 0;
                self.live_bytes = 0;
            }
        }
        self.tidy_order();
    }

    fn cut(&mut self, off: u64) -> Result<(), String> {
        self.file
            .set_len(off)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| format!("truncate {}: {e}", self.path().display()))?;
        self.file_len = off;
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The limits in force.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Sets the dead-byte floor of compaction (default [`COMPACT_MIN_DEAD`]; tests lower it).
    pub fn set_compact_min_dead(&mut self, bytes: u64) {
        self.compact_min_dead = bytes;
    }

    /// Checks one record against the limits.
    pub fn check(&self, r: &Record) -> Result<(), String> {
        if r.body.len() > self.limits.max_message {
            return Err(format!(
                "message of {} bytes, the limit is {}",
                r.body.len(),
                self.limits.max_message
            ));
        }
        if r.id == 0 {
            return Err("message id 0 is not an id".into());
        }
        Ok(())
    }

    /// Appends the batch with one write and one fdatasync. Every record is checked first; if
    /// one is invalid nothing is written. Duplicates (stored or earlier in the batch) are
    /// reported and skipped.
    pub fn append(&mut self, recs: &[Record]) -> Result<Vec<Appended>, String> {
        for r in recs {
            self.check(r)?;
        }
        let mut out = Vec::with_capacity(recs.len());
        let mut buf = Vec::new();
        let mut fresh: Vec<(u64, u32, &Record)> = Vec::new();
        let mut batch_ids = HashSet::new();
        for r in recs {
            if self.contains(&r.peer, r.id) || !batch_ids.insert((r.peer, r.id)) {
                out.push(Appended::Duplicate);
                continue;
            }
            let off = self.file_len + buf.len() as u64;
            let before = buf.len();
            put_message(&mut buf, r);
            fresh.push((off, (buf.len() - before - HEADER_LEN) as u32, r));
            out.push(Appended::Stored);
        }
        if buf.is_empty() {
            return Ok(out);
        }
        self.write_synced(&buf)?;
        for (off, len, r) in fresh {
            let e = IndexEntry {
                off,
                len,
                ts_ms: r.ts_ms,
                id: r.id,
            };
            self.index(r.peer, e);
        }
        self.enforce_caps();
        self.maybe_compact()?;
        Ok(out)
    }

    /// Writes `buf` at the end and fdatasyncs; on failure the file is cut back.
    fn write_synced(&mut self, buf: &[u8]) -> Result<(), String> {
        let at = self.file_len;
        let r = self
            .file
            .write_all_at(buf, at)
            .and_then(|_| self.file.sync_data());
        self.fsyncs += 1;
        if let Err(e) = r {
            let _ = self.file.set_len(at);
            return Err(format!("write {}: {e}", self.path().display()));
        }
        self.file_len = at + buf.len() as u64;
        Ok(())
    }

    /// Whether `(peer, id)` is among that peer's last [`DEDUPE_WINDOW`] stored messages.
    pub fn contains(&self, peer: &PublicKey, id: u64) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|q| q.iter().rev().take(DEDUPE_WINDOW).any(|e| e.id == id))
    }

    fn read_entry(&self, peer: PublicKey, e: &IndexEntry) -> Result<Record, String> {
        let mut buf = vec![0u8; HEADER_LEN + e.len as usize];
        self.file
            .read_exact_at(&mut buf, e.off)
            .map_err(|err| format!("read {}: {err}", self.path().display()))?;
        let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if crc32(&buf[HEADER_LEN..]) != crc {
            return Err(format!(
                "history record at offset {} changed on disk (crc mismatch)",
                e.off
            ));
        }
        match parse_payload(&buf[HEADER_LEN..])? {
            Payload::Message {
                ts_ms,
                dir,
                id,
                reply_to,
                net,
                body,
                ..
            } => Ok(Record {
                id,
                peer,
                dir,
                ts_ms,
                net,
                reply_to: (reply_to != 0).then_some(reply_to),
                body,
            }),
            _ => Err(format!(
                "history record at offset {} is not a message",
                e.off
            )),
        }
    }

    /// The last `limit` messages (with one peer, or all), oldest first.
    pub fn history(&self, peer: Option<&PublicKey>, limit: usize) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        match peer {
            Some(pk) => {
                if let Some(q) = self.peers.get(pk) {
                    let skip = q.len().saturating_sub(limit);
                    for e in q.iter().skip(skip) {
                        out.push(self.read_entry(*pk, e)?);
                    }
                }
            }
            None => {
                let mut picked: Vec<(u64, PublicKey)> = self
                    .order
                    .iter()
                    .rev()
                    .filter(|(o, p)| self.live(*o, p))
                    .take(limit)
                    .copied()
                    .collect();
                picked.reverse();
                for (off, pk) in picked {
                    let q = &self.peers[&pk];
                    let i = q
                        .binary_search_by_key(&off, |e| e.off)
                        .map_err(|_| "history index out of step".to_string())?;
                    out.push(self.read_entry(pk, &q[i])?);
                }
            }
        }
        Ok(out)
    }

    /// Every peer with messages, newest conversation first.
    pub fn peers(&self) -> Vec<PeerSummary> {
        let mut v: Vec<PeerSummary> = self
            .peers
            .iter()
            .map(|(pk, q)| PeerSummary {
                peer: *pk,
                count: q.len(),
                last_ts_ms: q.back().map_or(0, |e| e.ts_ms),
            })
            .collect();
        crate::sort::sort_by_cmp(&mut v, |a, b| {
            b.last_ts_ms.cmp(&a.last_ts_ms).then(a.peer.cmp(&b.peer))
        });
        v
    }

    /// Forgets one peer's messages (or all): writes a synced forget record, drops them from
    /// the index. Returns how many were forgotten.
    pub fn forget(&mut self, peer: Option<&PublicKey>) -> Result<usize, String> {
        let n = match peer {
            Some(pk) => self.peers.get(pk).map_or(0, |q| q.len()),
            None => self.records,
        };
        let rec = encode_forget(peer, now_ms());
        self.write_synced(&rec)?;
        self.forget_index(peer);
        self.maybe_compact()?;
        Ok(n)
    }

    /// Accounts for one record gone from its peer's queue (its `order` entry goes stale).
    fn drop_index(&mut self, _pk: PublicKey, e: &IndexEntry) {
        self.records -= 1;
        self.live_bytes -= HEADER_LEN as u64 + e.len as u64;
    }

    /// Evicts the oldest record overall (by append order).
    fn evict_oldest(&mut self) -> bool {
        self.tidy_order();
        let Some((_, pk)) = self.order.pop_front() else {
            return false;
        };
        let q = self
            .peers
            .get_mut(&pk)
            .expect("a live order entry has its peer");
        let e = q.pop_front().expect("a live order entry has its record");
        if q.is_empty() {
            self.peers.remove(&pk);
        }
        self.drop_index(pk, &e);
        true
    }

    fn enforce_caps(&mut self) {
        let cap = self.limits.per_peer_cap.max(1);
        let over: Vec<PublicKey> = self
            .peers
            .iter()
            .filter(|(_, q)| q.len() > cap)
            .map(|(p, _)| *p)
            .collect();
        for pk in over {
            while self.peers.get(&pk).is_some_and(|q| q.len() > cap) {
                let e = self
                    .peers
                    .get_mut(&pk)
                    .and_then(|q| q.pop_front())
                    .expect("non-empty");
                self.drop_index(pk, &e);
            }
        }
        while self.live_bytes > self.limits.total_bytes && self.evict_oldest() {}
        self.tidy_order();
    }

    /// Evicts records older than the TTL (in append order, stopping at the first young one);
    /// returns how many. The writer thread calls it hourly.
    pub fn expire(&mut self, now_ms: u64) -> Result<usize, String> {
        let cutoff = now_ms.saturating_sub(self.limits.ttl.as_millis() as u64);
        let mut n = 0;
        loop {
            self.tidy_order();
            let Some(&(off, pk)) = self.order.front() else {
                break;
            };
            let old = self
                .peers
                .get(&pk)
                .and_then(|q| q.front())
                .is_some_and(|e| e.off == off && e.ts_ms < cutoff);
            if !old || !self.evict_oldest() {
                break;
            }
            n += 1;
        }
        if n > 0 {
            self.maybe_compact()?;
        }
        Ok(n)
    }

    fn maybe_compact(&mut self) -> Result<(), String> {
        let dead = self.file_len.saturating_sub(self.live_bytes);
        if dead > self.live_bytes && dead > self.compact_min_dead {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the live records to `history.log.tmp`, fsyncs it, renames it over the log and
    /// fsyncs the directory; the index then points into the new file.
    pub fn compact(&mut self) -> Result<(), String> {
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut out = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        // Live records in append order, each peer's in its queue's order: a cursor per peer
        // finds each one's entry without a map of every offset.
        self.tidy_order();
        let mut cursor: HashMap<PublicKey, usize> = HashMap::with_capacity(self.peers.len());
        let mut new_off: Vec<u64> = Vec::with_capacity(self.records);
        let mut at = 0u64;
        let mut chunk = Vec::with_capacity(256 * 1024);
        for &(off, pk) in &self.order {
            let Some(q) = self.peers.get(&pk) else {
                continue;
            };
            let c = cursor.entry(pk).or_insert(0);
            if q.get(*c).is_none_or(|e| e.off != off) {
                continue; // stale
            }
            let n = HEADER_LEN + q[*c].len as usize;
            *c += 1;
            let s = chunk.len();
            chunk.resize(s + n, 0);
            self.file
                .read_exact_at(&mut chunk[s..], off)
                .map_err(|e| format!("read {}: {e}", self.path().display()))?;
            new_off.push(at);
            at += n as u64;
            if chunk.len() >= 256 * 1024 {
                out.write_all(&chunk)
                    .map_err(|e| format!("write {}: {e}", tmp.display()))?;
                chunk.clear();
            }
        }
        if new_off.len() != self.records {
            return Err("history index out of step".to_string());
        }
        out.write_all(&chunk)
            .and_then(|_| out.sync_all())
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        drop(out);
        fs::rename(&tmp, self.path()).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path())
            .map_err(|e| format!("open {}: {e}", self.path().display()))?;
        // The same walk again, now rewriting the offsets.
        cursor.clear();
        let mut order = VecDeque::with_capacity(self.records);
        let mut next = new_off.into_iter();
        for &(off, pk) in &self.order {
            let Some(q) = self.peers.get_mut(&pk) else {
                continue;
            };
            let c = cursor.entry(pk).or_insert(0);
            match q.get_mut(*c) {
                Some(e) if e.off == off => {
                    let n = next.next().expect("counted above");
                    e.off = n;
                    order.push_back((n, pk));
                    *c += 1;
                }
                _ => {}
            }
        }
        self.order = order;
        self.file_len = at;
        self.compactions += 1;
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            records: self.records,
            live_bytes: self.live_bytes,
            file_bytes: self.file_len,
            peers: self.peers.len(),
            fsyncs: self.fsyncs,
            compactions: self.compactions,
            index_entries: self.records + self.order.len(),
        }
    }
}
