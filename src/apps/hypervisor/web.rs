//! The hypervisor's HTTP surface: the page (embedded, gzip-compressed at build time), the
//! login, and the API the page drives:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/`, `/app.js`, `/app.css` (and `/xterm.js`, `/xterm.css`, `/fit.js` with the terminal) | the page |
//! | POST | `/api/login` `{"password":"…"}` | a session: `Set-Cookie: hv=…`, `{"csrf":"…"}`; 401 wrong password, 429 + `Retry-After` while locked out |
//! | POST | `/api/logout` | ends the session |
//! | GET | `/api/session` | `{"csrf","pk","local","term"}` of the session |
//! | GET | `/api/visors` | every visor: `pk`, `local`, `online`, `since`, `seen`, `links`, `error`, and the last `info`, `apps`, `transports`, `routes` it answered |
//! | any | `/api/visors/<pk>/v1/…` | that visor's RPC route `/v1/…` (`docs/cli.md`), its answer as it gave it; never `/v1/dial` or `/v1/pty` |
//! | GET | `/api/visors/<pk>/term?rows=R&cols=C` + WebSocket upgrade | a shell through the visor's pty app (`term.rs`) |
//!
//! Every request passes the local guard first (a `Host` naming this server, no foreign
//! `Origin`: DNS rebinding and cross-site requests are refused), then everything under
//! `/api/` but the login needs the session cookie, and every method but GET/HEAD the session's
//! CSRF token in `X-CSRF-Token`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miniserde::json::Value;

use super::auth::{self, Denied, PasswordHash, Sessions};
use super::fleet::Fleet;
use crate::app::net::Net;
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out};
use crate::http::server::{Handler, Request, Response};

/// One embedded file: its path, content type and gzip bytes.
struct Asset {
    path: &'static str,
    mime: &'static str,
    gz: &'static [u8],
}

static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        mime: "text/html; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/index.html.gz")),
    },
    Asset {
        path: "/app.js",
        mime: "text/javascript; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/app.js.gz")),
    },
    Asset {
        path: "/app.css",
        mime: "text/css; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/app.css.gz")),
    },
    #[cfg(feature = "hv-term")]
    Asset {
        path: "/xterm.js",
        mime: "text/javascript; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/xterm.js.gz")),
    },
    #[cfg(feature = "hv-term")]
    Asset {
        path: "/xterm.css",
        mime: "text/css; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/xterm.css.gz")),
    },
    #[cfg(feature = "hv-term")]
    Asset {
        path: "/fit.js",
        mime: "text/javascript; charset=utf-8",
        gz: include_bytes!(concat!(env!("OUT_DIR"), "/hv/addon-fit.js.gz")),
    },
];

/// Total compressed bytes of the page (for `make bench`'s transfer size cross-check).
pub fn page_bytes() -> usize {
    ASSETS.iter().map(|a| a.gz.len()).sum()
}

/// Largest login body.
const MAX_LOGIN_BODY: usize = 1024;

/// What the surface serves from.
pub struct Hv {
    /// The visors.
    pub fleet: Arc<Fleet>,
    /// The app's network (the terminal dials the visors' pty with it).
    pub net: Arc<dyn Net>,
    /// The executor (for the terminal bridges).
    pub ex: Arc<async_executor::Executor<'static>>,
    /// The password file.
    pub password_file: std::path::PathBuf,
    password: Mutex<(Option<std::time::SystemTime>, PasswordHash)>,
    sessions: Mutex<Sessions>,
    /// A login is being checked (the slow hash runs one at a time).
    checking: AtomicBool,
    /// Open terminal bridges.
    pub terms: std::sync::atomic::AtomicUsize,
}

impl Hv {
    /// The surface's state.
    pub fn new(
        fleet: Arc<Fleet>,
        net: Arc<dyn Net>,
        ex: Arc<async_executor::Executor<'static>>,
        password_file: std::path::PathBuf,
        hash: PasswordHash,
    ) -> Arc<Hv> {
        let mtime = mtime(&password_file);
        Arc::new(Hv {
            fleet,
            net,
            ex,
            password_file,
            password: Mutex::new((mtime, hash)),
            sessions: Mutex::new(Sessions::default()),
            checking: AtomicBool::new(false),
            terms: Default::default(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the password file when it changed (`hv password` while we run): every
    /// session ends then. Called every few seconds.
    pub fn reload_password(&self) {
        let now = mtime(&self.password_file);
        let mut p = self.password.lock().unwrap_or_else(|p| p.into_inner());
        if now == p.0 {
            return;
        }
        match auth::load(&self.password_file) {
            Ok(h) => {
                if h != p.1 {
                    log::info!("hypervisor: the password changed; every session ends");
                    self.sessions().close_all();
                }
                *p = (now, h);
            }
            Err(e) => log::warn!("hypervisor: {e}; the previous password stays"),
        }
    }
}

impl std::fmt::Debug for Hv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hv")
            .field("fleet", &self.fleet)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

fn mtime(f: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(f).and_then(|m| m.modified()).ok()
}

/// The routes (behind the guard the caller wraps them in).
pub fn routes(hv: Arc<Hv>) -> Handler {
    Arc::new(move |req: Request| {
        let hv = hv.clone();
        Box::pin(async move { route(&hv, req).await })
    })
}

fn json(status: u16, o: Ordered) -> Response {
    Response::json(status, o.to_compact() + "\n")
}

async fn route(hv: &Arc<Hv>, req: Request) -> Response {
    let m = req.method.as_str();
    if !req.path.starts_with("/api/") {
        if m != "GET" {
            return Response::error(405, "the page is GET only").with_header("Allow", "GET, HEAD");
        }
        return match ASSETS.iter().find(|a| a.path == req.path) {
            Some(a) => Response {
                status: 200,
                content_type: a.mime,
                body: a.gz.to_vec(),
                ..Response::text(200, "")
            }
            .with_header("Content-Encoding", "gzip")
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Frame-Options", "DENY")
            .with_header("Content-Security-Policy", CSP),
            None => Response::error(404, format!("no page {}", req.path)),
        };
    }
    if req.path == "/api/login" {
        return match m {
            "POST" => login(hv, &req).await,
            _ => Response::error(405, "POST your password").with_header("Allow", "POST"),
        };
    }
    let id = req
        .headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .find_map(|(_, v)| auth::cookie(v, auth::COOKIE))
        .map(str::to_string);
    let changes = !matches!(m, "GET" | "HEAD");
    let csrf = req.header("x-csrf-token");
    let checked = hv
        .sessions()
        .check(id.as_deref(), csrf, changes, Instant::now());
    let csrf = match checked {
        Ok(c) => c,
        Err(Denied::NoSession) => return Response::error(401, "log in first (POST /api/login)"),
        Err(Denied::Csrf) => {
            return Response::error(
                403,
                "this request changes something and needs the session's X-CSRF-Token",
            );
        }
    };
    let segs: Vec<&str> = req.segments();
    match (m, segs.as_slice()) {
        ("GET", ["api", "session"]) => json(
            200,
            Ordered::new()
                .field("csrf", Out::Str(csrf))
                .field(
                    "local",
                    Out::Str(hv.fleet.local_pk().map(|k| k.to_hex()).unwrap_or_default()),
                )
                .field("term", Out::Bool(cfg!(feature = "hv-term")))
                .field("version", Out::Str(crate::VERSION.into())),
        ),
        ("POST", ["api", "logout"]) => {
            if let Some(id) = id {
                hv.sessions().close(&id);
            }
            json(
                200,
                Ordered::new().field("status", Out::Str("logged out".into())),
            )
            .with_header("Set-Cookie", auth::clear_cookie())
        }
        ("GET", ["api", "visors"]) => visors(hv),
        (_, ["api", "visors", pk, rest @ ..]) => {
            let pk = match PublicKey::from_hex(pk) {
                Ok(k) => k,
                Err(e) => return Response::error(400, format!("{pk:?} is {e}")),
            };
            match rest {
                #[cfg(feature = "hv-term")]
                ["term"] => super::term::open(hv, pk, &req, &csrf),
                ["v1", "dial", ..] => Response::error(
                    403,
                    "the dial upgrade is not offered through the hypervisor",
                ),
                ["v1", "pty"] => Response::error(
                    403,
                    "the link's pty upgrade is the terminal's (/api/visors/<pk>/term)",
                ),
                ["v1", ..] => forward(hv, &pk, &req).await,
                _ => Response::error(404, format!("no route {m} {}", req.path)),
            }
        }
        _ => Response::error(404, format!("no route {m} {}", req.path)),
    }
}

/// The page's policy: only our own scripts, styles and connections.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

async fn login(hv: &Arc<Hv>, req: &Request) -> Response {
    let Some(ip) = req.peer.map(|p| p.ip()) else {
        return Response::error(400, "no peer address");
    };
    if req.body.len() > MAX_LOGIN_BODY {
        return Response::error(413, "the login body is larger than 1 KiB");
    }
    let pw = match std::str::from_utf8(&req.body)
        .ok()
        .and_then(|t| miniserde::json::from_str::<Value>(t).ok())
    {
        Some(Value::Object(o)) => match o.get("password") {
            Some(Value::String(s)) => s.clone(),
            _ => return Response::error(400, "expected {\"password\": \"…\"}"),
        },
        _ => return Response::error(400, "expected a JSON body {\"password\": \"…\"}"),
    };
    if let Some(wait) = hv.sessions().wait(ip, Instant::now()) {
        let secs = wait.as_secs().max(1);
        return Response::error(
            429,
            format!("too many wrong passwords from {ip}; try again in {secs} s"),
        )
        .with_header("Retry-After", secs.to_string());
    }
    if hv.checking.swap(true, Ordering::AcqRel) {
        return Response::error(429, "another login is being checked; try again in a moment")
            .with_header("Retry-After", "1");
    }
    let hash = hv
        .password
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .1
        .clone();
    let ok = verify_off_thread(hash, pw).await;
    hv.checking.store(false, Ordering::Release);
    hv.sessions().record(ip, ok, Instant::now());
    if !ok {
        log::warn!("hypervisor: wrong password from {ip}");
        return Response::error(401, "wrong password");
    }
    match hv.sessions().open(Instant::now()) {
        Ok((id, csrf)) => {
            log::info!("hypervisor: login from {ip}");
            json(200, Ordered::new().field("csrf", Out::Str(csrf)))
                .with_header("Set-Cookie", auth::set_cookie(&id))
        }
        Err(e) => Response::error(500, e),
    }
}

/// Runs the slow hash on a thread of its own, so the executor keeps serving.
async fn verify_off_thread(hash: PasswordHash, pw: String) -> bool {
    let cell = Arc::new(Mutex::new(None::<bool>));
    let c2 = cell.clone();
    let spawned = std::thread::Builder::new()
        .name("hv-login".into())
        .spawn(move || {
            let ok = hash.verify(&pw);
            *c2.lock().unwrap_or_else(|p| p.into_inner()) = Some(ok);
        });
    if spawned.is_err() {
        return false;
    }
    loop {
        if let Some(ok) = *cell.lock().unwrap_or_else(|p| p.into_inner()) {
            return ok;
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
}

/// `/api/visors`: the rows, with each visor's last readings embedded as they came.
fn visors(hv: &Hv) -> Response {
    let raw = |s: &Option<String>| match s {
        // Checked once: a visor's body that is not JSON is shown as null, never spliced in.
        Some(t) if miniserde::json::from_str::<Value>(t).is_ok() => Out::Raw(t.clone()),
        Some(_) => Out::Null,
        None => Out::Null,
    };
    let items: Vec<Out> = hv
        .fleet
        .rows()
        .iter()
        .map(|r| {
            Out::Obj(
                Ordered::new()
                    .field("pk", Out::Str(r.pk.to_hex()))
                    .field("local", Out::Bool(r.local))
                    .field("online", Out::Bool(r.online))
                    .field("since", Out::U64(r.since))
                    .field("seen", Out::U64(r.seen))
                    .field("links", Out::U64(r.links as u64))
                    .field(
                        "error",
                        r.snap.error.clone().map(Out::Str).unwrap_or(Out::Null),
                    )
                    .field("info", raw(&r.snap.info))
                    .field("apps", raw(&r.snap.apps))
                    .field("transports", raw(&r.snap.transports))
                    .field("routes", raw(&r.snap.routes)),
            )
        })
        .collect();
    json(200, Ordered::new().field("items", Out::Arr(items)))
}

/// Passes the request to the visor's RPC (the path after `/api/visors/<pk>`).
async fn forward(hv: &Hv, pk: &PublicKey, req: &Request) -> Response {
    let prefix = format!("/api/visors/{}", pk.to_hex());
    let path = req
        .path
        .get(prefix.len()..)
        .filter(|_| req.path.starts_with(&prefix))
        .unwrap_or("/");
    let mut target = path.to_string();
    if let Some(q) = &req.query {
        target.push('?');
        target.push_str(q);
    }
    // Only our own URL characters go on (the path was parsed by the server; a CR/LF cannot
    // be in it, and a space or control character is refused here).
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Response::error(400, "the path holds a control character or a space");
    }
    let body = (!req.body.is_empty()).then_some(req.body.as_slice());
    match hv.fleet.call(pk, &req.method, &target, body).await {
        Ok((status, body)) => Response::json(status, String::from_utf8_lossy(&body).into_owned()),
        Err((status, msg)) => Response::error(status, msg),
    }
}
