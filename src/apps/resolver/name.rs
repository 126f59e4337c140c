//! Sans-IO: the overlay names the resolvers serve, and the virtual-host rewrite.
//!
//! Grammar (case-insensitive, as DNS names are): `[<label>.]<pk>.<tld>[:<port>]` where `<pk>`
//! is the 64-hex-digit public key, `<tld>` is `dmsg` or `skynet`, and `<label>` (one or more
//! DNS labels of `a-z 0-9 -`, dot-separated) is a virtual host. A name whose last label is
//! neither `dmsg` nor `skynet` is not an overlay name ([`parse`] answers `Ok(None)`: it goes
//! upstream or is refused); a name ending in one of them that does not follow the grammar is
//! an error (it is refused, never sent upstream: it was meant for the overlay).
//!
//! The port: an explicit `:<port>` in the name wins; otherwise the SOCKS5 request's port is
//! used (which curl and browsers fill with 80 for `http://`). The PK and TLD come back
//! lowercased, the label lowercased too (HTTP hosts are case-insensitive).
//!
//! Go's routing prefix `<server-pk>.<dest-pk>.dmsg` (pinning the dmsg server) is not
//! supported: a label that is itself a 64-hex-digit PK is refused with that reason, rather
//! than sent as a `Host:` header.

use core::fmt;

use crate::crypto::PublicKey;

/// Which overlay a name is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tld {
    /// `.dmsg`: dialled over dmsg.
    Dmsg,
    /// `.skynet`: dialled over a skynet route.
    Skynet,
}

impl Tld {
    /// `dmsg` or `skynet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tld::Dmsg => "dmsg",
            Tld::Skynet => "skynet",
        }
    }
}

/// An overlay name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayName {
    /// The peer.
    pub pk: PublicKey,
    /// Its network.
    pub tld: Tld,
    /// The virtual host (lowercase), if a label was given left of the PK.
    pub vhost: Option<String>,
    /// The overlay port.
    pub port: u16,
}

/// Why a name ending in `.dmsg` / `.skynet` is not a valid overlay name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing, or not 64 hex digits, where the PK goes.
    BadPk(String),
    /// A label that is not `a-z 0-9 -` (1-63 characters), or an empty one.
    BadLabel(String),
    /// The `:<port>` is not 1-65535.
    BadPort(String),
    /// `<server-pk>.<pk>`: pinning a dmsg server is not supported.
    Pinned,
    /// Longer than 253 characters.
    TooLong,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::BadPk(s) => write!(
                f,
                "{s:?} is not a public key (64 hex digits expected left of the .dmsg/.skynet)"
            ),
            NameError::BadLabel(s) => write!(f, "virtual host label {s:?}: 1-63 of a-z, 0-9, '-'"),
            NameError::BadPort(s) => write!(f, "port {s:?}: expected 1-65535"),
            NameError::Pinned => f.write_str(
                "<server-pk>.<pk> (pinning a dmsg server) is not supported; give <pk>.dmsg",
            ),
            NameError::TooLong => f.write_str("name longer than 253 characters"),
        }
    }
}

fn is_pk_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_label(l: &str) -> Result<(), NameError> {
    let ok = (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::BadLabel(l.to_string()))
    }
}

/// Parses `name` (the SOCKS5 request's domain) with `socks_port` (its port). `Ok(None)`: not
/// an overlay name.
pub fn parse(name: &str, socks_port: u16) -> Result<Option<OverlayName>, NameError> {
    // One trailing dot is the DNS root ("x.dmsg." is "x.dmsg").
    let (host, port) = match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (name, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let lower = host.to_ascii_lowercase();
    let Some((rest, tld)) = lower.rsplit_once('.') else {
        return Ok(None);
    };
    let tld = match tld {
        "dmsg" => Tld::Dmsg,
        "skynet" => Tld::Skynet,
        _ => return Ok(None),
    };
    if name.len() > 253 {
        return Err(NameError::TooLong);
    }
    let port = match port {
        None => socks_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(NameError::BadPort(p.to_string())),
        },
    };
    if port == 0 {
        return Err(NameError::BadPort("0".into()));
    }
    let (label, pk) = match rest.rsplit_once('.') {
        Some((l, pk)) => (Some(l), pk),
        None => (None, rest),
    };
    if !is_pk_hex(pk) {
        return Err(NameError::BadPk(pk.to_string()));
    }
    let pk = PublicKey::from_hex(pk).map_err(|_| NameError::BadPk(pk.to_string()))?;
    let vhost = match label {
        None => None,
        Some(l) => {
            let labels: Vec<&str> = l.split('.').collect();
            if labels.last().is_some_and(|x| is_pk_hex(x)) {
                return Err(NameError::Pinned);
            }
            for x in &labels {
                check_label(x)?;
            }
            Some(l.to_string())
        }
    };
    Ok(Some(OverlayName {
        pk,
        tld,
        vhost,
        port,
    }))
}

/// The largest request head [`rewrite_host`] looks at.
pub const MAX_HEAD: usize = 8 * 1024;

/// What became of the first bytes of a connection with a virtual host.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// A complete HTTP/1.x request head: these bytes replace it (its `Host:` header — every
    /// one, should there be several — now says the virtual host; one is added after the
    /// request line if there was none). Bytes after the head are unchanged.
    Done(Vec<u8>),
    /// Not yet a whole head: read more (up to [`MAX_HEAD`]).
    Partial,
    /// Not an HTTP/1.x request (or its head is over [`MAX_HEAD`]): pass the bytes on unchanged.
    NotHttp,
}

/// Rewrites the `Host:` header of the request head at the start of `b` to `vhost`.
pub fn rewrite_host(b: &[u8], vhost: &str) -> Rewrite {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if b.len() < MAX_HEAD => return Rewrite::Partial,
        _ => return Rewrite::NotHttp,
    };
    if head_len > MAX_HEAD {
        return Rewrite::NotHttp;
    }
    let head = &b[..head_len];
    let mut out = Vec::with_capacity(b.len() + vhost.len());
    let mut lines = head.split_inclusive(|&c| c == b'\n');
    // The request line, then the headers as sent, each Host: line replaced.
    let Some(first) = lines.next() else {
        return Rewrite::NotHttp;
    };
    out.extend_from_slice(first);
    let mut seen = false;
    for line in lines {
        let name_end = line.iter().position(|&c| c == b':');
        let is_host = name_end.is_some_and(|i| line[..i].eq_ignore_ascii_case(b"host"));
        if is_host {
            seen = true;
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(vhost.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if !seen && (line == b"\r\n" || line == b"\n") {
            // The end of the head, no Host: header seen.
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(vhost.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(line);
            seen = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&b[head_len..]);
    Rewrite::Done(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pk() -> PublicKey {
        PublicKey::from_hex(PK).unwrap()
    }

    #[test]
    fn overlay_names() {
        let n = parse(&format!("{PK}.dmsg"), 80).unwrap().unwrap();
        assert_eq!((n.pk, n.tld, n.vhost, n.port), (pk(), Tld::Dmsg, None, 80));
        let n = parse(&format!("{PK}.skynet"), 8080).unwrap().unwrap();
        assert_eq!((n.tld, n.port), (Tld::Skynet, 8080));
        // An explicit port in the name wins over the request's.
        let n = parse(&format!("{PK}.dmsg:22"), 80).unwrap().unwrap();
        assert_eq!(n.port, 22);
        // A trailing root dot.
        assert!(parse(&format!("{PK}.dmsg."), 80).unwrap().is_some());
    }

    #[test]
    fn labels_are_virtual_hosts() {
        let n = parse(&format!("www.{PK}.dmsg"), 80).unwrap().unwrap();
        assert_eq!(n.vhost.as_deref(), Some("www"));
        let n = parse(&format!("Example.COM.{PK}.skynet"), 80)
            .unwrap()
            .unwrap();
        assert_eq!(n.vhost.as_deref(), Some("example.com"));
        assert_eq!(n.tld, Tld::Skynet);
        for bad in ["-x", "a_b", "", "x..y"] {
            let e = parse(&format!("{bad}.{PK}.dmsg"), 80).unwrap_err();
            assert!(matches!(e, NameError::BadLabel(_)), "{bad}: {e}");
        }
        let long = "g".repeat(64);
        assert!(matches!(
            parse(&format!("{long}.{PK}.dmsg"), 80),
            Err(NameError::BadLabel(_))
        ));
        assert_eq!(
            parse(&format!("{PK}.{PK}.dmsg"), 80).unwrap_err(),
            NameError::Pinned
        );
    }

    #[test]
    fn uppercase_is_the_same_name() {
        let up = PK.to_ascii_uppercase();
        let n = parse(&format!("{up}.DMSG"), 80).unwrap().unwrap();
        assert_eq!((n.pk, n.tld), (pk(), Tld::Dmsg));
        let n = parse(&format!("WWW.{up}.SkyNet"), 80).unwrap().unwrap();
        assert_eq!((n.tld, n.vhost.as_deref()), (Tld::Skynet, Some("www")));
    }

    #[test]
    fn other_names_are_not_overlay_names() {
        for n in [
            "example.com",
            "localhost",
            "dmsg",
            "dmsg.example.com",
            &format!("{PK}.com"),
            "",
            "::1",
            "[::1]:80",
        ] {
            assert_eq!(parse(n, 80), Ok(None), "{n}");
        }
    }

    #[test]
    fn garbage_and_wrong_pk_lengths_are_errors() {
        for n in [
            ".dmsg".to_string(),
            "x.dmsg".to_string(),
            format!("{}.dmsg", &PK[..63]),
            format!("{PK}0.dmsg"),
            format!("{}.skynet", &PK[..62]),
            format!("{}g.dmsg", &PK[..63]),
            "\u{e9}\u{e9}.dmsg".to_string(),
        ] {
            assert!(
                matches!(parse(&n, 80), Err(NameError::BadPk(_))),
                "{n}: {:?}",
                parse(&n, 80)
            );
        }
        for p in ["0", "65536", "x", ""] {
            assert!(
                matches!(
                    parse(&format!("{PK}.dmsg:{p}"), 80),
                    Err(NameError::BadPort(_))
                ),
                "{p}"
            );
        }
        let long = format!("{}.{PK}.dmsg", "a.".repeat(100));
        assert_eq!(parse(&long, 80), Err(NameError::TooLong));
    }

    #[test]
    fn host_rewritten_in_the_first_head_only() {
        let r = rewrite_host(
            b"GET /x HTTP/1.1\r\nhost: abc.dmsg\r\nAccept: */*\r\n\r\nbody",
            "www",
        );
        assert_eq!(
            r,
            Rewrite::Done(b"GET /x HTTP/1.1\r\nHost: www\r\nAccept: */*\r\n\r\nbody".to_vec())
        );
        // No Host: one is added.
        let r = rewrite_host(b"GET / HTTP/1.0\r\nA: b\r\n\r\n", "v.example");
        assert_eq!(
            r,
            Rewrite::Done(b"GET / HTTP/1.0\r\nA: b\r\nHost: v.example\r\n\r\n".to_vec())
        );
        assert_eq!(
            rewrite_host(b"GET / HTTP/1.1\r\nHost: x", "w"),
            Rewrite::Partial
        );
        assert_eq!(rewrite_host(b"\x16\x03\x01\x02\x00", "w"), Rewrite::NotHttp);
        assert_eq!(rewrite_host(b"SSH-2.0-OpenSSH\r\n", "w"), Rewrite::NotHttp);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(rewrite_host(&big, "w"), Rewrite::NotHttp);
    }
}
