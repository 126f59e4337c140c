//! The gate in front of an HTTP surface meant for local tools only (the visor RPC; later
//! skychat's and the hypervisor's), against the two ways a web browser on the same machine
//! can be turned against it:
//!
//! - **DNS rebinding**: a page on `evil.example` re-points that name at 127.0.0.1 and reads
//!   the answers as same-origin. Its requests carry `Host: evil.example[:port]`, so only the
//!   served address, `localhost`, `127.0.0.1` and `[::1]` (with the served port) pass; on an
//!   unspecified bind (`0.0.0.0`, `[::]`) any IP literal with the port passes (an IP literal
//!   cannot be rebound).
//! - **Cross-site requests**: a page anywhere `POST`s a "simple" request (`text/plain`, no
//!   preflight) to `http://127.0.0.1:port/…`. Browsers mark those with `Origin` (and
//!   `Sec-Fetch-Site`); our own clients send neither, so any `Origin` is refused (a surface
//!   that serves its own web page may allow exactly its own origin, [`LocalGuard::allow_same_origin`]),
//!   as is `Sec-Fetch-Site` other than `none` (the user typed the URL).
//!
//! Then every request except the open paths (`/health`) must carry `Authorization: Bearer
//! <token>`, compared in constant time. The token lives in a 0600 file that only the
//! daemon's user can read, so the file permissions decide who controls the daemon, as they
//! would for a local admin socket. Refusals are one-line JSON errors: 403 for a foreign
//! `Host`/`Origin`, 401 (with `WWW-Authenticate: Bearer`) for a missing or wrong token.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::server::{Handler, Request, Response};

/// The checks a local HTTP surface applies before its handler sees a request.
#[derive(Debug, Clone)]
pub struct LocalGuard {
    /// The address served (its port is required in `Host`).
    served: SocketAddr,
    /// The bearer token; `None` serves without one (Host/Origin are still checked).
    token: Option<Arc<str>>,
    /// Paths served without the token (exact match, e.g. `/health`).
    open: Vec<String>,
    /// Whether `Origin: http://<an accepted Host>` (the surface's own page) passes.
    same_origin: bool,
    /// Appended to the 401 message: where the token is and who may read it.
    hint: String,
}

impl LocalGuard {
    /// A guard for a listener on `served` requiring `token` (hex or any printable text).
    pub fn new(served: SocketAddr, token: Option<String>) -> LocalGuard {
        LocalGuard {
            served,
            token: token.map(Arc::from),
            open: Vec::new(),
            same_origin: false,
            hint: String::new(),
        }
    }

    /// Serves `path` without the token (the Host/Origin checks still apply).
    pub fn open_path(mut self, path: &str) -> LocalGuard {
        self.open.push(path.to_string());
        self
    }

    /// Lets requests from the surface's own origin (`Origin: http://<accepted Host>`) pass:
    /// for a surface that serves its own web page. The visor RPC does not.
    pub fn allow_same_origin(mut self) -> LocalGuard {
        self.same_origin = true;
        self
    }

    /// Text added to the 401 answer, e.g. where the token file is.
    pub fn hint(mut self, hint: impl Into<String>) -> LocalGuard {
        self.hint = hint.into();
        self
    }

    /// Whether `host` (a `Host` header value) names this server.
    pub fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port_ok = match port {
            Some(p) => p == self.served.port(),
            None => self.served.port() == 80,
        };
        if !port_ok {
            return false;
        }
        match name {
            HostName::Name(n) => n.eq_ignore_ascii_case("localhost"),
            HostName::Ip(ip) => {
                let ip = ip.to_canonical();
                let served = self.served.ip().to_canonical();
                ip == served
                    || ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
                    || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
                    || served.is_unspecified()
            }
        }
    }

    /// `Ok` when the request may reach the handler, else the refusal to send.
    pub fn check(&self, req: &Request) -> Result<(), Response> {
        let all = |name: &'static str| {
            req.headers
                .iter()
                .filter(move |(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let hosts: Vec<&str> = all("host").collect();
        let host = match hosts.as_slice() {
            [h] if self.host_ok(h) => *h,
            [h] => {
                return Err(Response::error(
                    403,
                    format!(
                        "Host {h:?} is not this server ({}, localhost, 127.0.0.1 or [::1] with \
                         port {}): refused (DNS rebinding guard)",
                        self.served,
                        self.served.port()
                    ),
                ));
            }
            [] => return Err(Response::error(403, "a Host header is required")),
            _ => return Err(Response::error(403, "more than one Host header")),
        };
        let origins: Vec<&str> = all("origin").collect();
        match origins.as_slice() {
            [] => {}
            [o] if self.same_origin && same_origin(o, host) => {}
            [o] => {
                return Err(Response::error(
                    403,
                    format!(
                        "requests from web pages (Origin {o:?}) are refused; use the skywire CLI"
                    ),
                ));
            }
            _ => return Err(Response::error(403, "more than one Origin header")),
        }
        for site in all("sec-fetch-site") {
            let ok = site.eq_ignore_ascii_case("none")
                || (self.same_origin && site.eq_ignore_ascii_case("same-origin"));
            if !ok {
                return Err(Response::error(
                    403,
                    format!(
                        "requests from web pages (Sec-Fetch-Site {site:?}) are refused; use the \
                         skywire CLI"
                    ),
                ));
            }
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        if self.open.contains(&req.path) {
            return Ok(());
        }
        let auths: Vec<&str> = all("authorization").collect();
        let given = match auths.as_slice() {
            [a] => bearer(a),
            _ => None,
        };
        let refuse = |what: &str| {
            let msg = if self.hint.is_empty() {
                what.to_string()
            } else {
                format!("{what}; {}", self.hint)
            };
            Response::error(401, msg).with_header("WWW-Authenticate", "Bearer")
        };
        match given {
            None => Err(refuse(
                "this request needs the token (Authorization: Bearer <token>)",
            )),
            Some(t) if ct_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(refuse("wrong token")),
        }
    }

    /// `inner` behind this guard.
    pub fn wrap(self, inner: Handler) -> Handler {
        let guard = Arc::new(self);
        Arc::new(move |req: Request| match guard.check(&req) {
            Ok(()) => inner(req),
            Err(resp) => {
                log::debug!(
                    "{} {} from {:?}: {}",
                    req.method,
                    req.path,
                    req.peer,
                    resp.status
                );
                Box::pin(async move { resp })
            }
        })
    }
}

/// A fresh token: 32 bytes from the OS random source, as 64 hex digits.
pub fn new_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(crate::crypto::hex::encode(&b))
}

/// Equality whose time does not depend on where `a` and `b` differ (only on their lengths,
/// which are not secret: a token has a fixed length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The credentials of `Authorization: Bearer <credentials>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches(' '))
}

/// `Origin` equal to `http://<host>` (the Host already accepted).
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

enum HostName<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

/// `host[:port]` / `[v6][:port]` into its parts; `None` when it is not that shape.
fn split_host(h: &str) -> Option<(HostName<'_>, Option<u16>)> {
    let port = |p: &str| -> Option<Option<u16>> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok().map(Some)
    };
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            a => port(a.strip_prefix(':')?)?,
        };
        return Some((HostName::Ip(IpAddr::V6(ip)), port));
    }
    let (name, p) = match h.rsplit_once(':') {
        Some((n, p)) => (n, port(p)?),
        None => (h, None),
    };
    if name.is_empty() || name.contains(':') {
        return None;
    }
    match name.parse::<Ipv4Addr>() {
        Ok(ip) => Some((HostName::Ip(IpAddr::V4(ip)), p)),
        Err(_) => Some((HostName::Name(name), p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: path.into(),
            query: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: None,
            peer_pk: None,
        }
    }

    fn guard() -> LocalGuard {
        LocalGuard::new("127.0.0.1:3435".parse().unwrap(), Some("t0k".into())).open_path("/health")
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "127.0.0.1:3435",
            "localhost:3435",
            "LOCALHOST:3435",
            "[::1]:3435",
        ] {
            assert!(g.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example:3435",
            "evil.example",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.0.0.2:3435",
            "localhost.:3435",
            "127.0.0.1:+3435",
            "127.0.0.1:3435:3435",
            "[::1]",
            "[::1]3435",
            "",
            ":3435",
        ] {
            assert!(!g.host_ok(bad), "{bad}");
        }
        let any = LocalGuard::new("0.0.0.0:80".parse().unwrap(), None);
        assert!(any.host_ok("192.168.1.5") && any.host_ok("[fe80::1]:80"));
        assert!(!any.host_ok("board.lan") && !any.host_ok("192.168.1.5:81"));
    }

    #[test]
    fn origin_host_and_token() {
        let g = guard();
        let h = ("host", "127.0.0.1:3435");
        let auth = ("authorization", "Bearer t0k");
        assert!(g.check(&req("/v1/x", &[h, auth])).is_ok());
        assert!(
            g.check(&req("/v1/x", &[h, ("authorization", "bearer  t0k")]))
                .is_ok()
        );
        assert!(g.check(&req("/health", &[h])).is_ok());
        let status = |r: Request| g.check(&r).err().map(|e| e.status);
        assert_eq!(status(req("/v1/x", &[h])), Some(401));
        assert_eq!(
            status(req("/v1/x", &[h, ("authorization", "Bearer t0K")])),
            Some(401)
        );
        assert_eq!(
            status(req("/v1/x", &[h, ("authorization", "Basic t0k")])),
            Some(401)
        );
        assert_eq!(status(req("/v1/x", &[h, auth, auth])), Some(401));
        assert_eq!(
            status(req("/v1/x", &[("host", "evil.example:3435"), auth])),
            Some(403)
        );
        assert_eq!(
            status(req("/health", &[("host", "evil.example")])),
            Some(403)
        );
        assert_eq!(status(req("/v1/x", &[auth])), Some(403));
        assert_eq!(status(req("/v1/x", &[h, h, auth])), Some(403));
        for o in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:3435",
            "http://localhost:8000",
        ] {
            assert_eq!(
                status(req("/v1/x", &[h, auth, ("origin", o)])),
                Some(403),
                "{o}"
            );
        }
        assert_eq!(
            status(req("/health", &[h, ("sec-fetch-site", "cross-site")])),
            Some(403)
        );
        assert!(
            g.check(&req("/health", &[h, ("sec-fetch-site", "none")]))
                .is_ok()
        );
        // A surface with its own page admits exactly its own origin.
        let ui = guard().allow_same_origin();
        assert!(
            ui.check(&req(
                "/v1/x",
                &[h, auth, ("origin", "http://127.0.0.1:3435")]
            ))
            .is_ok()
        );
        assert!(
            ui.check(&req(
                "/v1/x",
                &[h, auth, ("origin", "http://localhost:3435")]
            ))
            .is_err()
        );
    }

    #[test]
    fn tokens() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token().unwrap());
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab") && !ct_eq(b"", b"a"));
    }
}
