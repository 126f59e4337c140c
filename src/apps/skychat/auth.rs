//! Credentials of skychat's HTTP surface: the bearer token (64 hex, kept in a 0600 file so
//! the file permissions decide who may use it), the `skychat=<token>` cookie that
//! `GET /login?token=` sets for the page, and an optional HTTP basic password whose salted
//! SHA-512 is kept in a password file (`sha512:<salt hex>:<hash hex>`, one line).
//!
//! Every comparison of a secret runs in constant time ([`crate::http::guard::ct_eq`]).

use std::io::Write;
use std::path::Path;

use crate::crypto::hex;
use crate::crypto::hmac::sha512;
use crate::http::guard::ct_eq;

/// Bytes of salt in a password hash.
pub const SALT_LEN: usize = 16;

/// The cookie that carries the token for the page.
pub const COOKIE: &str = "skychat";

/// A parsed password file line: `sha512:<salt hex 32>:<hex sha512(salt ‖ password)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: Vec<u8>,
    hash: [u8; 64],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(sha512:…)")
    }
}

impl PasswordHash {
    /// Parses one line (surrounding whitespace ignored).
    pub fn parse(line: &str) -> Result<PasswordHash, String> {
        let line = line.trim();
        let mut parts = line.split(':');
        let (Some(scheme), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "expected one line `sha512:<salt hex>:<hash hex>` (write it with \
                        `skywire cli skychat passwd -f FILE`)"
                    .into(),
            );
        };
        if scheme != "sha512" {
            return Err(format!("unknown hash scheme {scheme:?} (only sha512)"));
        }
        let salt = hex::decode_vec(salt).map_err(|e| format!("salt: {e}"))?;
        if salt.is_empty() || salt.len() > 64 {
            return Err("salt: expected 1 to 64 bytes of hex".into());
        }
        let hash = hex::decode_array::<64>(hash).map_err(|e| format!("hash: {e}"))?;
        Ok(PasswordHash { salt, hash })
    }

    /// Reads and parses a password file.
    pub fn load(path: &Path) -> Result<PasswordHash, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("password file {}: {e}", path.display()))?;
        PasswordHash::parse(&text).map_err(|e| format!("password file {}: {e}", path.display()))
    }

    /// Whether `pw` is the password (constant time in where it differs).
    pub fn verify(&self, pw: &str) -> bool {
        let h = sha512(&[&self.salt, pw.as_bytes()]);
        ct_eq(&h, &self.hash)
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sha512:{}:{}",
            hex::encode(&self.salt),
            hex::encode(&self.hash)
        )
    }
}

/// The password file line for `pw` with a fresh random salt (what `cli skychat passwd` writes).
pub fn hash_password(pw: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    // An OS without randomness cannot run a visor at all (keys, tokens); a fixed salt would
    // silently weaken the file, so fall back to a salt from the clock and the address space
    // only as a last resort and still never to a constant.
    if getrandom::fill(&mut salt).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let a = &salt as *const _ as usize as u128;
        salt.copy_from_slice(&sha512(&[&t.to_le_bytes(), &a.to_le_bytes()])[..SALT_LEN]);
    }
    hash_with_salt(pw, &salt)
}

/// The password file line for `pw` with `salt`.
pub fn hash_with_salt(pw: &str, salt: &[u8]) -> String {
    PasswordHash {
        salt: salt.to_vec(),
        hash: sha512(&[salt, pw.as_bytes()]),
    }
    .to_string()
}

/// Writes `token` to `path`, readable and writable by its owner only (0600), replacing any
/// older file (its mode is reset too).
pub fn write_token_file(path: &Path, token: &str) -> Result<(), String> {
    let ctx = |e: std::io::Error| format!("token file {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(ctx)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(ctx)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(ctx)?;
    }
    f.write_all(format!("{token}\n").as_bytes()).map_err(ctx)?;
    f.sync_all().map_err(ctx)
}

/// The value of cookie `name` in a `Cookie` header (`a=1; skychat=…`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// The `Set-Cookie` value that hands the page the token.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
}

/// The credentials of `Authorization: <scheme> <credentials>` when the scheme is `scheme`
/// (case-insensitive).
pub fn auth_param<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

/// The password of an `Authorization: Basic base64(user:password)` value (the user name is
/// ignored: the surface has one password). `None` if it is not valid basic credentials.
pub fn basic_password(value: &str) -> Option<String> {
    let raw = crate::crypto::b64::decode_std_padded(auth_param(value, "Basic")?)?;
    let text = String::from_utf8(raw).ok()?;
    let (_, pw) = text.split_once(':')?;
    Some(pw.to_string())
}

/// What a request may present: the token (bearer or cookie) and, when set, the password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The bearer token (64 hex).
    pub token: String,
    /// The basic password, when `--password-file` was given.
    pub password: Option<PasswordHash>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing was presented.
    Missing,
    /// Something was presented and it is wrong.
    Wrong(&'static str),
}

impl Credentials {
    /// Checks the `Authorization` and `Cookie` headers of a request (all of them: any one
    /// valid credential passes). Bearer and cookie carry the token, Basic the password.
    pub fn check<'a>(
        &self,
        authorization: impl IntoIterator<Item = &'a str>,
        cookies: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Refusal> {
        let mut wrong = None;
        for a in authorization {
            if let Some(t) = auth_param(a, "Bearer") {
                if ct_eq(t.as_bytes(), self.token.as_bytes()) {
                    return Ok(());
                }
                wrong = Some("wrong token");
            } else if auth_param(a, "Basic").is_some() {
                match (&self.password, basic_password(a)) {
                    (Some(h), Some(pw)) if h.verify(&pw) => return Ok(()),
                    (Some(_), _) => wrong = Some("wrong password"),
                    (None, _) => wrong = Some("no password is set (use the token)"),
                }
            } else {
                wrong = Some("unknown Authorization scheme (Bearer or Basic)");
            }
        }
        for c in cookies {
            if let Some(t) = cookie(c, COOKIE) {
                if ct_eq(t.as_bytes(), self.token.as_bytes()) {
                    return Ok(());
                }
                wrong = wrong.or(Some(
                    "wrong token in the cookie (open the link of `skywire cli skychat web` again)",
                ));
            }
        }
        match wrong {
            Some(w) => Err(Refusal::Wrong(w)),
            None => Err(Refusal::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        crate::crypto::b64::encode_std_padded(s.as_bytes())
    }

    #[test]
    fn password_hash_round_trips_and_verifies() {
        let line = hash_password("hunter2");
        let parts: Vec<&str> = line.split(':').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "sha512");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 128);
        let h = PasswordHash::parse(&format!("  {line}\n")).unwrap();
        assert!(h.verify("hunter2"));
        assert!(!h.verify("hunter3"));
        assert!(!h.verify(""));
        assert_eq!(h.to_string(), line);
        // Two hashes of one password differ (fresh salt).
        assert_ne!(hash_password("hunter2"), line);
    }

    #[test]
    fn known_vector() {
        // sha512("salt" ‖ "pw") computed independently: the hash is over salt then password.
        let line = hash_with_salt("pw", b"salt");
        let h = PasswordHash::parse(&line).unwrap();
        assert!(h.verify("pw"));
        assert_eq!(
            line.split(':').nth(2).unwrap(),
            hex::encode(&sha512(&[b"saltpw"]))
        );
    }

    #[test]
    fn bad_password_lines_are_refused() {
        for bad in [
            "",
            "sha512",
            "sha512:00",
            "md5:00:00",
            "sha512:zz:00",
            "sha512::00",
            &format!("sha512:00:{}", "0".repeat(126)),
            &format!("sha512:00:{}:x", "0".repeat(128)),
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn token_file_is_0600_and_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skychat-auth-{}", std::process::id()));
        let path = dir.join("sub/skychat-http-8001.token");
        write_token_file(&path, "ab").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_token_file(&path, "cd").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cd\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cookie_and_basic_parsing() {
        assert_eq!(cookie("a=1; skychat=xyz; b=2", "skychat"), Some("xyz"));
        assert_eq!(cookie("skychatx=1", "skychat"), None);
        assert_eq!(cookie("", "skychat"), None);
        assert_eq!(
            basic_password(&format!("Basic {}", b64("u:p:q"))).as_deref(),
            Some("p:q")
        );
        assert_eq!(
            basic_password(&format!("basic {}", b64(":pw"))).as_deref(),
            Some("pw")
        );
        assert_eq!(basic_password("Basic !!!!"), None);
        assert_eq!(basic_password(&format!("Basic {}", b64("nocolon"))), None);
        assert_eq!(basic_password("Basic A"), None);
        assert_eq!(
            crate::crypto::b64::decode_std_padded("aGVsbG8=").unwrap(),
            b"hello"
        );
        assert_eq!(
            crate::crypto::b64::decode_std_padded("aGVsbG8").unwrap(),
            b"hello"
        );
        assert!(set_cookie("t").contains("HttpOnly; SameSite=Strict; Path=/"));
    }

    #[test]
    fn credentials_accept_each_kind_and_refuse_wrong_ones() {
        let token = "a".repeat(64);
        let c = Credentials {
            token: token.clone(),
            password: Some(PasswordHash::parse(&hash_password("pw")).unwrap()),
        };
        let bearer = format!("Bearer {token}");
        let cookie_ok = format!("x=1; skychat={token}");
        let basic_ok = format!("Basic {}", b64("me:pw"));
        let basic_bad = format!("Basic {}", b64("me:nope"));
        assert_eq!(c.check([bearer.as_str()], []), Ok(()));
        assert_eq!(c.check([], [cookie_ok.as_str()]), Ok(()));
        assert_eq!(c.check([basic_ok.as_str()], []), Ok(()));
        assert_eq!(c.check([], []), Err(Refusal::Missing));
        assert_eq!(c.check([], ["other=1"]), Err(Refusal::Missing));
        assert!(matches!(
            c.check([basic_bad.as_str()], []),
            Err(Refusal::Wrong(_))
        ));
        assert!(matches!(
            c.check(["Bearer aaaa"], []),
            Err(Refusal::Wrong(_))
        ));
        assert!(matches!(c.check(["Digest x"], []), Err(Refusal::Wrong(_))));
        assert!(matches!(
            c.check([], ["skychat=bbb"]),
            Err(Refusal::Wrong(_))
        ));
        // A wrong bearer does not hide a good cookie.
        assert_eq!(c.check(["Bearer x"], [cookie_ok.as_str()]), Ok(()));
        let no_pw = Credentials {
            token,
            password: None,
        };
        assert!(matches!(
            no_pw.check([basic_ok.as_str()], []),
            Err(Refusal::Wrong(_))
        ));
    }
}
