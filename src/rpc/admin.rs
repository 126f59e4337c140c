//! The bodies of the visor's admin routes: its log (`GET /v1/logs`), app settings (`POST
//! /v1/apps/<name>/settings`), and stopping or restarting it (`POST /v1/shutdown`, `POST
//! /v1/restart`), with `/health`'s.

use miniserde::json::Value;

use super::{App, Body, num, objects, text};
use crate::http::json::{Fields, JsonError, Ordered, Out, kind, parse_object, str_array};

/// Lines `GET /v1/logs` answers when no `n` is given.
pub const LOGS_DEFAULT: u32 = 100;
/// The most lines `GET /v1/logs` answers (the visor keeps no more).
pub const LOGS_MAX: u32 = 512;
/// The most arguments an app may be given through the RPC.
pub const MAX_APP_ARGS: usize = 64;
/// The most bytes of arguments (all of them together) an app may be given through the RPC.
pub const MAX_APP_ARGS_BYTES: usize = 4096;

/// `GET /health`: `ok`, and a random id of this start of the visor, so a client can tell a
/// restarted visor from the one it asked to restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// 16 hex digits, new at every start ("" from visors from before it).
    pub boot: String,
}

impl Body for Health {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("status", Out::Str(self.status.clone()))
            .field("boot", Out::Str(self.boot.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Health {
            status: text(f, "status")?,
            boot: f.opt_str("boot")?.unwrap_or_default().to_string(),
        })
    }
}

/// `POST /v1/shutdown` and `POST /v1/restart` (202): `shutting down` / `restarting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What the visor is doing.
    pub status: String,
}

impl Body for Status {
    fn to_json(&self) -> Ordered {
        Ordered::new().field("status", Out::Str(self.status.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Status {
            status: text(f, "status")?,
        })
    }
}

/// One line of the visor's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its number (from 1 at the visor's start, one up per line).
    pub seq: u64,
    /// When it was logged, Unix seconds.
    pub time: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`.
    pub level: String,
    /// `[target] message`.
    pub text: String,
}

impl Body for LogLine {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("seq", Out::U64(self.seq))
            .field("time", Out::U64(self.time))
            .field("level", Out::Str(self.level.clone()))
            .field("text", Out::Str(self.text.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(LogLine {
            seq: num(f, "seq")?,
            time: num(f, "time")?,
            level: text(f, "level")?,
            text: text(f, "text")?,
        })
    }
}

/// `GET /v1/logs`: lines, oldest first, and the `since` to ask for the lines after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// The lines.
    pub lines: Vec<LogLine>,
    /// The seq after the last line (the next line's, when there is none).
    pub next: u64,
}

impl Body for Logs {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field(
                "lines",
                Out::Arr(self.lines.iter().map(|l| Out::Obj(l.to_json())).collect()),
            )
            .field("next", Out::U64(self.next))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Logs {
            lines: objects(f, "lines")?,
            next: num(f, "next")?,
        })
    }
}

/// The body of `POST /v1/apps/<name>/settings`: what to change in the app's
/// `launcher.apps[]` entry (`None`: leave it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// The app's arguments, all of them (`Some(vec![])` clears them).
    pub args: Option<Vec<String>>,
    /// Start it with the visor.
    pub auto_start: Option<bool>,
    /// Its route policy (`auto`, `dmsg`, `direct`, `hops:K`, `via:<pk>[,<pk>…]`, `mux:N`;
    /// a visor without skynet refuses it).
    pub route: Option<String>,
}

impl AppSettings {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.args.is_none() && self.auto_start.is_none() && self.route.is_none()
    }

    /// Reads a request body strictly, as the visor does: a JSON object of only these
    /// fields, `args` an array of at most [`MAX_APP_ARGS`] strings of at most
    /// [`MAX_APP_ARGS_BYTES`] in all, and at least one field. The error says what is wrong.
    pub fn parse(body: &str) -> Result<AppSettings, String> {
        let o = parse_object(body).map_err(|e| format!("the body is not a JSON object: {e}"))?;
        let mut f = Fields::new(&o, "");
        let s = Self::read(&mut f).map_err(|e| e.to_string())?;
        f.deny_unknown().map_err(|e| e.to_string())?;
        if let Some(a) = &s.args {
            if a.len() > MAX_APP_ARGS {
                return Err(format!(
                    "args: {} arguments, at most {MAX_APP_ARGS}",
                    a.len()
                ));
            }
            let bytes: usize = a.iter().map(String::len).sum();
            if bytes > MAX_APP_ARGS_BYTES {
                return Err(format!(
                    "args: {bytes} bytes in all, at most {MAX_APP_ARGS_BYTES}"
                ));
            }
        }
        if s.is_empty() {
            return Err("nothing to change: give args, auto_start or route".into());
        }
        Ok(s)
    }
}

impl Body for AppSettings {
    fn to_json(&self) -> Ordered {
        let mut o = Ordered::new();
        if let Some(a) = &self.args {
            o = o.field("args", str_array(a.iter().cloned()));
        }
        if let Some(b) = self.auto_start {
            o = o.field("auto_start", Out::Bool(b));
        }
        if let Some(r) = &self.route {
            o = o.field("route", Out::Str(r.clone()));
        }
        o
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        let present = f.has("args");
        let args = match f.opt_array("args")? {
            _ if !present => None,
            items => Some(
                items
                    .into_iter()
                    .map(|(path, v)| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(JsonError {
                            path,
                            msg: format!("expected a string, got {}", kind(other)),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(AppSettings {
            args,
            auto_start: f.opt_bool("auto_start")?,
            route: f.opt_str("route")?.map(String::from),
        })
    }
}

/// `POST /v1/apps/<name>/settings`: the app as `GET /v1/apps/<name>` shows it, and whether it
/// runs with other settings than those saved (restart it to use them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettingsSaved {
    /// The app.
    pub app: App,
    /// It is running, and its arguments or route changed.
    pub restart_needed: bool,
}

impl Body for AppSettingsSaved {
    fn to_json(&self) -> Ordered {
        self.app
            .to_json()
            .field("restart_needed", Out::Bool(self.restart_needed))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(AppSettingsSaved {
            app: App::read(f)?,
            restart_needed: super::flag(f, "restart_needed")?,
        })
    }

    fn from_object(o: &miniserde::json::Object) -> Result<Self, JsonError> {
        Ok(AppSettingsSaved {
            app: App::from_object(o)?,
            restart_needed: super::flag(&mut Fields::new(o, ""), "restart_needed")?,
        })
    }
}
