//! The hypervisor's login: one password, kept as a salted slow hash in a 0600 file
//! (`<state>/hypervisor/password`), cookie sessions with a CSRF token each, and a login rate
//! limit. Sans-IO apart from the file: time is passed in.
//!
//! The hash is PBKDF2-HMAC-SHA-512 (RFC 8018 §5.2) with a 16-byte random salt and
//! [`ITERATIONS`] rounds, one line `pbkdf2-sha512:<rounds>:<salt hex>:<hash hex>`. The rounds
//! are in the line, so a file written with more (or fewer) still verifies.
//!
//! Sessions: a 32-byte random id in the cookie `hv` (`HttpOnly; SameSite=Strict; Path=/`),
//! a 32-byte random CSRF token the page reads from `GET /api/session` and sends back in
//! `X-CSRF-Token` on every state-changing request. At most [`MAX_SESSIONS`]; a session ends
//! after [`SESSION_IDLE`] without a request, at logout, or when the password changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::crypto::hex;
use crate::crypto::hmac::hmac_sha512;
use crate::http::guard::ct_eq;

/// PBKDF2 rounds for a new hash: about 0.1 s on an x86 core, about 1 s on a Pi 3 core.
pub const ITERATIONS: u32 = 60_000;
/// Most rounds a password file may ask for (a larger number would make a login a DoS).
pub const MAX_ITERATIONS: u32 = 2_000_000;
/// Salt bytes.
pub const SALT_LEN: usize = 16;
/// The session cookie's name.
pub const COOKIE: &str = "hv";
/// Most sessions at once (a new login beyond it ends the least recently used).
pub const MAX_SESSIONS: usize = 16;
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins from one address before it must wait.
pub const FREE_FAILURES: u32 = 5;
/// The wait after [`FREE_FAILURES`] failures doubles with each further failure, up to this.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// Addresses whose failures are remembered (the oldest is forgotten beyond it).
pub const MAX_TRACKED: usize = 1024;
/// Shortest password `hv password` accepts.
pub const MIN_PASSWORD: usize = 8;

/// PBKDF2-HMAC-SHA-512 with one 64-byte output block (RFC 8018 §5.2, `dkLen` = hLen).
pub fn pbkdf2_sha512(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    // U_1 = PRF(P, S || INT(1)); U_i = PRF(P, U_{i-1}); T_1 = U_1 ^ … ^ U_c.
    let mut u = hmac_sha512(password, &[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..rounds {
        u = hmac_sha512(password, &[&u]);
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    t
}

/// One parsed password file line.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    rounds: u32,
    salt: Vec<u8>,
    hash: [u8; 64],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash(pbkdf2-sha512, {} rounds)", self.rounds)
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pbkdf2-sha512:{}:{}:{}",
            self.rounds,
            hex::encode(&self.salt),
            hex::encode(&self.hash)
        )
    }
}

impl PasswordHash {
    /// The hash of `pw` with a fresh salt and [`ITERATIONS`] rounds.
    pub fn new(pw: &str) -> Result<PasswordHash, String> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness from the OS: {e}"))?;
        Ok(Self::with(pw, &salt, ITERATIONS))
    }

    /// The hash of `pw` with `salt` and `rounds`.
    pub fn with(pw: &str, salt: &[u8], rounds: u32) -> PasswordHash {
        PasswordHash {
            rounds,
            salt: salt.to_vec(),
            hash: pbkdf2_sha512(pw.as_bytes(), salt, rounds),
        }
    }

    /// Parses one line.
    pub fn parse(line: &str) -> Result<PasswordHash, String> {
        let mut p = line.trim().split(':');
        let (Some("pbkdf2-sha512"), Some(rounds), Some(salt), Some(hash), None) =
            (p.next(), p.next(), p.next(), p.next(), p.next())
        else {
            return Err(
                "expected one line `pbkdf2-sha512:<rounds>:<salt hex>:<hash hex>` \
                 (write it with `skywire cli visor hv password`)"
                    .into(),
            );
        };
        let rounds: u32 = rounds
            .parse()
            .ok()
            .filter(|r| (1..=MAX_ITERATIONS).contains(r))
            .ok_or(format!("rounds: expected 1 to {MAX_ITERATIONS}"))?;
        let salt = hex::decode_vec(salt).map_err(|e| format!("salt: {e}"))?;
        if salt.is_empty() || salt.len() > 64 {
            return Err("salt: expected 1 to 64 bytes of hex".into());
        }
        let hash = hex::decode_array::<64>(hash).map_err(|e| format!("hash: {e}"))?;
        Ok(PasswordHash { rounds, salt, hash })
    }

    /// Whether `pw` is the password (constant time in where the hashes differ).
    pub fn verify(&self, pw: &str) -> bool {
        ct_eq(
            &pbkdf2_sha512(pw.as_bytes(), &self.salt, self.rounds),
            &self.hash,
        )
    }
}

/// Where the password file of a state directory is.
pub fn password_file(state_dir: &Path) -> PathBuf {
    state_dir.join("hypervisor").join("password")
}

/// Reads the password file.
pub fn load(file: &Path) -> Result<PasswordHash, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("password file {}: {e}", file.display()))?;
    PasswordHash::parse(&text).map_err(|e| format!("password file {}: {e}", file.display()))
}

/// Writes `h` to `file` (0600, atomically: a temporary file, fsync, rename).
pub fn save(file: &Path, h: &PasswordHash) -> Result<(), String> {
    let ctx = |e: std::io::Error| format!("password file {}: {e}", file.display());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(ctx)?;
    }
    let tmp = file.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = opts.open(&tmp).map_err(ctx)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(ctx)?;
        f.write_all(format!("{h}\n").as_bytes()).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
    }
    std::fs::rename(&tmp, file).map_err(ctx)
}

/// A password for a first start: 16 characters from an alphabet without look-alikes.
pub fn generate_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness from the OS: {e}"))?;
    // 256 % 56 = 32: the first 32 letters are a little likelier; 16 of them are still > 90
    // bits.
    Ok(b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect())
}

/// A logged-in session.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    last: Instant,
}

/// The sessions and the login limiter.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    failures: HashMap<std::net::IpAddr, (u32, Instant)>,
}

/// Why a request's session does not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No (live) session cookie: 401.
    NoSession,
    /// A state-changing request without the session's CSRF token: 403.
    Csrf,
}

impl Sessions {
    /// A new session; its (id, CSRF token).
    pub fn open(&mut self, now: Instant) -> Result<(String, String), String> {
        self.expire(now);
        if self.by_id.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            self.by_id.remove(&oldest);
        }
        let id = crate::http::guard::new_token()?;
        let csrf = crate::http::guard::new_token()?;
        self.by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last: now,
            },
        );
        Ok((id, csrf))
    }

    /// Checks a request's session id (from the cookie) and, when `changes` (any method but
    /// GET/HEAD), its CSRF token. Returns the CSRF token; touches the session.
    pub fn check(
        &mut self,
        id: Option<&str>,
        csrf: Option<&str>,
        changes: bool,
        now: Instant,
    ) -> Result<String, Denied> {
        self.expire(now);
        let s = id
            .and_then(|id| self.by_id.get_mut(id))
            .ok_or(Denied::NoSession)?;
        if changes && !csrf.is_some_and(|c| ct_eq(c.as_bytes(), s.csrf.as_bytes())) {
            return Err(Denied::Csrf);
        }
        s.last = now;
        Ok(s.csrf.clone())
    }

    /// Ends one session.
    pub fn close(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Ends every session (the password changed).
    pub fn close_all(&mut self) {
        self.by_id.clear();
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.by_id
            .retain(|_, s| now.saturating_duration_since(s.last) < SESSION_IDLE);
    }

    /// How long `ip` must still wait before its next login attempt (`None`: it may try).
    pub fn wait(&self, ip: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let (n, at) = self.failures.get(&ip)?;
        let lock = lockout(*n)?;
        let until = *at + lock;
        (until > now).then(|| until - now)
    }

    /// Records a login result for `ip`.
    pub fn record(&mut self, ip: std::net::IpAddr, ok: bool, now: Instant) {
        if ok {
            self.failures.remove(&ip);
            return;
        }
        if !self.failures.contains_key(&ip)
            && self.failures.len() >= MAX_TRACKED
            && let Some(old) = self
                .failures
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
        {
            self.failures.remove(&old);
        }
        let e = self.failures.entry(ip).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }
}

/// The wait after `failures` failed logins.
fn lockout(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    let secs = 1u64.checked_shl(over.min(16)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_LOCKOUT))
}

/// The value of cookie `name` in a `Cookie` header (`a=1; hv=…`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/")
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    #[test]
    fn pbkdf2_matches_known_answers() {
        // RFC 6070-style vectors for PBKDF2-HMAC-SHA-512 (first 64 bytes), as published with
        // the RFC 7914 test suite and cross-checked with Python's hashlib.pbkdf2_hmac.
        assert_eq!(
            pbkdf2_sha512(b"password", b"salt", 1).to_vec(),
            unhex(
                "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
                 c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
            )
        );
        assert_eq!(
            pbkdf2_sha512(b"password", b"salt", 2).to_vec(),
            unhex(
                "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c\
                 f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e"
            )
        );
    }

    #[test]
    fn a_hash_line_round_trips_and_verifies() {
        let h = PasswordHash::with("correct horse", b"0123456789abcdef", 10);
        let line = h.to_string();
        assert!(line.starts_with("pbkdf2-sha512:10:30313233"));
        let back = PasswordHash::parse(&line).unwrap();
        assert!(back.verify("correct horse"));
        assert!(!back.verify("correct horsf"));
        assert!(!back.verify(""));
        for bad in [
            "",
            "sha512:aa:bb",
            "pbkdf2-sha512:0:aa:bb",
            "pbkdf2-sha512:99999999:aa:bb",
            "pbkdf2-sha512:10::00",
            "pbkdf2-sha512:10:zz:00",
            &format!("pbkdf2-sha512:10:aa:{}", "0".repeat(126)),
            &format!("{line}:extra"),
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_file_is_written_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hv-auth-{}", std::process::id()));
        let file = password_file(&dir);
        let h = PasswordHash::with("pw", b"salt", 3);
        save(&file, &h).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&file).unwrap(), h);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sessions_need_their_cookie_and_csrf_token() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let (id, csrf) = s.open(t0).unwrap();
        assert_eq!(s.check(Some(&id), None, false, t0), Ok(csrf.clone()));
        assert_eq!(s.check(Some(&id), None, true, t0), Err(Denied::Csrf));
        assert_eq!(s.check(Some(&id), Some("x"), true, t0), Err(Denied::Csrf));
        assert_eq!(s.check(Some(&id), Some(&csrf), true, t0), Ok(csrf.clone()));
        assert_eq!(
            s.check(Some("nope"), None, false, t0),
            Err(Denied::NoSession)
        );
        assert_eq!(s.check(None, None, false, t0), Err(Denied::NoSession));
        let later = t0 + SESSION_IDLE;
        assert_eq!(
            s.check(Some(&id), None, false, later),
            Err(Denied::NoSession)
        );
        let (id2, _) = s.open(later).unwrap();
        s.close(&id2);
        assert!(s.is_empty());
    }

    #[test]
    fn at_most_max_sessions_and_the_oldest_goes() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let (first, _) = s.open(t0).unwrap();
        for i in 1..=MAX_SESSIONS as u64 {
            s.open(t0 + Duration::from_secs(i)).unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let now = t0 + Duration::from_secs(100);
        assert_eq!(
            s.check(Some(&first), None, false, now),
            Err(Denied::NoSession)
        );
    }

    #[test]
    fn failed_logins_lock_an_address_out_with_a_growing_wait() {
        let t0 = Instant::now();
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let mut s = Sessions::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(s.wait(ip, t0), None);
            s.record(ip, false, t0);
        }
        assert_eq!(s.wait(ip, t0), Some(Duration::from_secs(1)));
        s.record(ip, false, t0);
        assert_eq!(s.wait(ip, t0), Some(Duration::from_secs(2)));
        assert_eq!(s.wait(ip, t0 + Duration::from_secs(2)), None);
        assert_eq!(s.wait(other, t0), None);
        for _ in 0..40 {
            s.record(ip, false, t0);
        }
        assert_eq!(s.wait(ip, t0), Some(MAX_LOCKOUT));
        s.record(ip, true, t0);
        assert_eq!(s.wait(ip, t0), None);
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        assert_eq!(cookie("a=1; hv=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("hvx=abc", COOKIE), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict; Path=/"));
        assert!(clear_cookie().contains("Max-Age=0"));
        let pw = generate_password().unwrap();
        assert_eq!(pw.len(), 16);
    }
}
