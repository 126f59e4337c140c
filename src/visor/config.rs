//! `skywire-config.json`: the visor's configuration (field names follow Go Skywire where it has
//! one; see `docs/config.md`).
//!
//! Loading is strict: a missing required field, a wrong type, an unknown field (usually a typo)
//! or a secret key that does not produce the file's `pk` is an error naming the field and the
//! file. Files holding a secret key are written 0600, atomically (write, fsync, rename).

use core::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::addr::{PkAddr, check_host_port};
use crate::app::settings::{AppEntry, RestartPolicy};
use crate::crypto::{IdentityError, Keypair, PublicKey};
use crate::http::json::{self, Fields, JsonError, Ordered, Out};

/// The config format version this build reads and writes.
pub const CONFIG_VERSION: &str = "1";
/// The conventional file name.
pub const DEFAULT_FILE: &str = "skywire-config.json";
/// Default visor RPC address (DESIGN.md §4): loopback only.
pub const DEFAULT_CLI_ADDR: &str = "127.0.0.1:3435";
/// Default state directory, relative to the config file's directory.
pub const DEFAULT_LOCAL_PATH: &str = "./local";
/// The most PKs `pty.whitelist` may hold (each edit rewrites the file; beyond this a list is
/// better kept elsewhere). A config with more is refused at load; an RPC add beyond it is
/// answered 409.
pub const MAX_PTY_WHITELIST: usize = 1024;
/// The visor RPC's bearer token, in the state directory (0600, new at every start).
pub const RPC_TOKEN_FILE: &str = "rpc.token";

/// Why a config could not be loaded or written.
#[derive(Debug)]
pub struct ConfigError {
    /// The file concerned.
    pub file: PathBuf,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// The kinds of config failure.
#[derive(Debug)]
pub enum ConfigErrorKind {
    /// The file does not exist.
    Missing,
    /// The file exists and `--force` was not given.
    Exists,
    /// Reading or writing failed.
    Io(std::io::Error),
    /// The JSON is malformed or a field is wrong.
    Json(JsonError),
    /// A key field is wrong.
    Key {
        field: &'static str,
        err: IdentityError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.kind {
            ConfigErrorKind::Missing => write!(
                f,
                "{file}: no such file; create one with `skywire config gen -o {file}`"
            ),
            ConfigErrorKind::Exists => write!(
                f,
                "{file}: already exists; pass --force to overwrite it (its keys will be lost)"
            ),
            ConfigErrorKind::Io(e) => write!(f, "{file}: {e}"),
            ConfigErrorKind::Json(e) => write!(f, "{file}: {e}"),
            ConfigErrorKind::Key {
                field,
                err: IdentityError::Mismatch,
            } => write!(
                f,
                "{file}: field `{field}`: the secret key `sk` does not produce the public key \
                 `pk`; fix one of them or generate a new config"
            ),
            ConfigErrorKind::Key { field, err } => write!(f, "{file}: field `{field}`: {err}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Verbose.
    Debug,
    /// Very verbose.
    Trace,
}

impl LogLevel {
    const ALL: [(&'static str, LogLevel); 5] = [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];

    /// Parses a level name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, l)| *l)
    }

    /// The level's name.
    pub fn as_str(&self) -> &'static str {
        Self::ALL.iter().find(|(_, l)| l == self).expect("all").0
    }

    /// The matching `log` filter.
    pub fn filter(&self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// The `dmsg` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsgConfig {
    /// Discovery URL (`http://host:port`); empty means "host an embedded relay + discovery".
    pub discovery: String,
    /// How many relay sessions to keep.
    pub sessions_count: u32,
    /// Relays to use directly, besides those discovery lists.
    pub servers: Vec<PkAddr>,
    /// The embedded relay + discovery hosted when neither `discovery` nor `servers` is set.
    pub embedded: EmbeddedConfig,
}

/// `dmsg.embedded`: where a visor with no network configured hosts its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The relay's listen address (`:8080` = every interface: other boards connect here).
    pub relay_addr: String,
    /// The address other boards use to reach the relay (`host:port`); empty = guess from
    /// the bound address and the machine's interfaces.
    pub public_addr: String,
    /// Discovery's listen address (loopback by default: local tools find the relay there).
    pub disc_addr: String,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            relay_addr: DEFAULT_EMBEDDED_RELAY.into(),
            public_addr: String::new(),
            disc_addr: DEFAULT_EMBEDDED_DISC.into(),
        }
    }
}

/// Default listen address of the embedded relay.
pub const DEFAULT_EMBEDDED_RELAY: &str = ":8080";
/// Default listen address of the embedded discovery.
pub const DEFAULT_EMBEDDED_DISC: &str = "127.0.0.1:9090";

impl Default for DmsgConfig {
    fn default() -> Self {
        DmsgConfig {
            discovery: String::new(),
            sessions_count: 1,
            servers: Vec::new(),
            embedded: EmbeddedConfig::default(),
        }
    }
}

/// Default listen address of the stcp transport (DESIGN.md §3.7).
pub const DEFAULT_STCP_LISTEN: &str = "0.0.0.0:7777";
/// The transport types a config may name (`transports[].type`).
pub const TRANSPORT_TYPES: [&str; 2] = ["stcp", "dmsg"];
/// The most persistent transports a config may list.
pub const MAX_TRANSPORTS: usize = 256;
/// The most `stcp.peers` a config may list.
pub const MAX_STCP_PEERS: usize = 1024;

/// One `transports[]` entry: a skynet transport the visor keeps up (dials at start, redials
/// with backoff when it drops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentTransport {
    /// The peer visor.
    pub pk: PublicKey,
    /// `stcp` or `dmsg` (one of [`TRANSPORT_TYPES`]).
    pub kind: String,
}

/// The `stcp` section: the direct TCP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StcpConfig {
    /// Where the visor accepts stcp transports (`host:port`, `:port`); empty = it does not
    /// listen (it can still dial out).
    pub listen: String,
    /// Addresses of peers' stcp listeners (`<pk>@host:port`), besides the ones their
    /// discovery entries publish.
    pub peers: Vec<PkAddr>,
}

impl Default for StcpConfig {
    fn default() -> Self {
        StcpConfig {
            listen: DEFAULT_STCP_LISTEN.into(),
            peers: Vec::new(),
        }
    }
}

/// The whole configuration.
#[derive(Debug)]
pub struct Config {
    /// The node identity (`pk` + `sk`).
    pub keys: Keypair,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// State directory (relative paths are relative to the config file's directory).
    pub local_path: String,
    /// Visor RPC address.
    pub cli_addr: String,
    /// dmsg settings.
    pub dmsg: DmsgConfig,
    /// PKs of hypervisors allowed to manage this visor.
    pub hypervisors: Vec<PublicKey>,
    /// Where a TCP-standalone hypervisor listens (`"pk@host:port"` entries of
    /// `hypervisors`): the link to it is Noise-XK over TCP instead of dmsg.
    pub hypervisor_addrs: Vec<(PublicKey, String)>,
    /// PKs allowed to open a shell with the pty app (`pty.whitelist`), besides this visor's
    /// own PK and its hypervisors.
    pub pty_whitelist: Vec<PublicKey>,
    /// Per-app settings.
    pub apps: Vec<AppEntry>,
    /// Skynet transports kept up from the start (`transports`).
    pub transports: Vec<PersistentTransport>,
    /// The stcp transport (`stcp`).
    pub stcp: StcpConfig,
}

impl Config {
    /// A config with fresh keys and every default.
    pub fn generate() -> Result<Self, IdentityError> {
        Ok(Self::with_keys(Keypair::generate()?))
    }

    /// A config with the given keys and every default.
    pub fn with_keys(keys: Keypair) -> Self {
        Config {
            keys,
            log_level: LogLevel::Info,
            local_path: DEFAULT_LOCAL_PATH.to_string(),
            cli_addr: DEFAULT_CLI_ADDR.to_string(),
            dmsg: DmsgConfig::default(),
            hypervisors: Vec::new(),
            hypervisor_addrs: Vec::new(),
            pty_whitelist: Vec::new(),
            apps: Vec::new(),
            transports: Vec::new(),
            stcp: StcpConfig::default(),
        }
    }

    /// Reads and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let err = |kind| ConfigError {
            file: file.to_path_buf(),
            kind,
        };
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(ConfigErrorKind::Missing));
            }
            Err(e) => return Err(err(ConfigErrorKind::Io(e))),
        };
        Self::parse(&text).map_err(err)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigErrorKind> {
        let obj = json::parse_object(text).map_err(ConfigErrorKind::Json)?;
        let mut f = Fields::new(&obj, "");
        let version = f.str("version").map_err(ConfigErrorKind::Json)?;
        if version != CONFIG_VERSION {
            return Err(ConfigErrorKind::Json(f.err(
                "version",
                format!("this build reads version {CONFIG_VERSION:?}, the file is {version:?}"),
            )));
        }
        let pk_text = f.str("pk").map_err(ConfigErrorKind::Json)?;
        let pk = PublicKey::from_hex(pk_text).map_err(|e| ConfigErrorKind::Key {
            field: "pk",
            err: e.into(),
        })?;
        let sk_text = f.str("sk").map_err(ConfigErrorKind::Json)?;
        let keys = Keypair::from_hex(sk_text, Some(&pk))
            .map_err(|err| ConfigErrorKind::Key { field: "sk", err })?;
        let mut cfg = Config::with_keys(keys);
        parse_rest(&mut f, &mut cfg).map_err(ConfigErrorKind::Json)?;
        Ok(cfg)
    }

    /// The config as pretty JSON, fields in a stable, readable order.
    pub fn to_json(&self) -> String {
        let dmsg = Ordered::new()
            .field("discovery", Out::Str(self.dmsg.discovery.clone()))
            .field("sessions_count", Out::U64(self.dmsg.sessions_count.into()))
            .field(
                "servers",
                json::str_array(self.dmsg.servers.iter().map(|s| s.to_string())),
            )
            .field(
                "embedded",
                Out::Obj(
                    Ordered::new()
                        .field(
                            "relay_addr",
                            Out::Str(self.dmsg.embedded.relay_addr.clone()),
                        )
                        .field(
                            "public_addr",
                            Out::Str(self.dmsg.embedded.public_addr.clone()),
                        )
                        .field("disc_addr", Out::Str(self.dmsg.embedded.disc_addr.clone())),
                ),
            );
        let apps = self
            .apps
            .iter()
            .map(|a| {
                let mut o = Ordered::new()
                    .field("name", Out::Str(a.name.clone()))
                    .field("args", json::str_array(a.args.iter().cloned()))
                    .field("auto_start", Out::Bool(a.auto_start))
                    .field("restart_policy", Out::Str(a.restart_policy.as_str().into()));
                if !a.requires.is_empty() {
                    o = o.field("requires", json::str_array(a.requires.iter().cloned()));
                }
                if !a.wants.is_empty() {
                    o = o.field("wants", json::str_array(a.wants.iter().cloned()));
                }
                #[cfg(feature = "skynet")]
                if a.route != crate::router::policy::RoutePolicy::Auto {
                    o = o.field("route", Out::Str(a.route.to_string()));
                }
                Out::Obj(o)
            })
            .collect();
        let transports = self
            .transports
            .iter()
            .map(|t| {
                Out::Obj(
                    Ordered::new()
                        .field("pk", Out::Str(t.pk.to_hex()))
                        .field("type", Out::Str(t.kind.clone())),
                )
            })
            .collect();
        let stcp = Ordered::new()
            .field("listen", Out::Str(self.stcp.listen.clone()))
            .field(
                "peers",
                json::str_array(self.stcp.peers.iter().map(|s| s.to_string())),
            );
        Ordered::new()
            .field("version", Out::Str(CONFIG_VERSION.into()))
            .field("pk", Out::Str(self.keys.public().to_hex()))
            .field("sk", Out::Str(self.keys.secret_hex()))
            .field("log_level", Out::Str(self.log_level.as_str().into()))
            .field("local_path", Out::Str(self.local_path.clone()))
            .field("cli_addr", Out::Str(self.cli_addr.clone()))
            .field("dmsg", Out::Obj(dmsg))
            .field(
                "hypervisors",
                json::str_array(self.hypervisors.iter().map(|p| {
                    match self.hypervisor_addrs.iter().find(|(k, _)| k == p) {
                        Some((_, a)) => format!("{}@{a}", p.to_hex()),
                        None => p.to_hex(),
                    }
                })),
            )
            .field(
                "pty",
                Out::Obj(Ordered::new().field(
                    "whitelist",
                    json::str_array(self.pty_whitelist.iter().map(|p| p.to_hex())),
                )),
            )
            .field(
                "launcher",
                Out::Obj(Ordered::new().field("apps", Out::Arr(apps))),
            )
            .field("transports", Out::Arr(transports))
            .field("stcp", Out::Obj(stcp))
            .to_pretty()
    }

    /// Writes the config to `file` (0600, atomic); refuses to replace a file unless `force`.
    pub fn save(&self, file: &Path, force: bool) -> Result<(), ConfigError> {
        write_secret_file(file, self.to_json().as_bytes(), force)
    }

    /// `local_path` resolved against the directory of the config file.
    pub fn state_dir(&self, config_file: &Path) -> PathBuf {
        let p = Path::new(&self.local_path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let base = match config_file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        base.join(p.strip_prefix(".").unwrap_or(p))
    }
}

fn parse_rest<'a>(f: &mut Fields<'a>, cfg: &mut Config) -> Result<(), JsonError> {
    if let Some(l) = f.opt_str("log_level")? {
        cfg.log_level = LogLevel::parse(l).ok_or_else(|| {
            f.err(
                "log_level",
                format!("{l:?} is not one of error, warn, info, debug, trace"),
            )
        })?;
    }
    if let Some(p) = f.opt_str("local_path")? {
        if p.is_empty() {
            return Err(f.err("local_path", "must not be empty"));
        }
        cfg.local_path = p.to_string();
    }
    if let Some(a) = f.opt_str("cli_addr")? {
        check_host_port(a).map_err(|e| f.err("cli_addr", e))?;
        cfg.cli_addr = a.to_string();
    }
    if let Some(mut d) = f.opt_object("dmsg")? {
        if let Some(url) = d.opt_str("discovery")? {
            if !url.is_empty() {
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    d.err("discovery", "expected an http://host:port URL, or \"\"")
                })?;
                check_host_port(rest.trim_end_matches('/')).map_err(|e| d.err("discovery", e))?;
            }
            cfg.dmsg.discovery = url.to_string();
        }
        if let Some(n) = d.opt_u64("sessions_count", 64)? {
            if n == 0 {
                return Err(d.err("sessions_count", "must be at least 1"));
            }
            cfg.dmsg.sessions_count = n as u32;
        }
        if let Some(mut e) = d.opt_object("embedded")? {
            if let Some(a) = e.opt_str("relay_addr")? {
                check_host_port(a).map_err(|m| e.err("relay_addr", m))?;
                cfg.dmsg.embedded.relay_addr = a.to_string();
            }
            if let Some(a) = e.opt_str("public_addr")? {
                if !a.is_empty() {
                    check_host_port(a).map_err(|m| e.err("public_addr", m))?;
                }
                cfg.dmsg.embedded.public_addr = a.to_string();
            }
            if let Some(a) = e.opt_str("disc_addr")? {
                check_host_port(a).map_err(|m| e.err("disc_addr", m))?;
                cfg.dmsg.embedded.disc_addr = a.to_string();
            }
            e.deny_unknown()?;
        }
        for (path, s) in d.opt_str_array("servers")? {
            cfg.dmsg
                .servers
                .push(PkAddr::parse(s).map_err(|msg| JsonError { path, msg })?);
        }
        d.deny_unknown()?;
    }
    for (path, s) in f.opt_str_array("hypervisors")? {
        // `pk`, or `pk@host:port` for a TCP-standalone hypervisor.
        let pk = if s.contains('@') {
            let pa = PkAddr::parse(s).map_err(|msg| JsonError { path, msg })?;
            cfg.hypervisor_addrs.push((pa.pk, pa.addr));
            pa.pk
        } else {
            PublicKey::from_hex(s).map_err(|e| JsonError {
                path,
                msg: e.to_string(),
            })?
        };
        cfg.hypervisors.push(pk);
    }
    if let Some(mut p) = f.opt_object("pty")? {
        for (path, s) in p.opt_str_array("whitelist")? {
            let pk = PublicKey::from_hex(s).map_err(|e| JsonError {
                path,
                msg: e.to_string(),
            })?;
            if !cfg.pty_whitelist.contains(&pk) {
                cfg.pty_whitelist.push(pk);
            }
        }
        if cfg.pty_whitelist.len() > MAX_PTY_WHITELIST {
            return Err(p.err(
                "whitelist",
                format!(
                    "{} keys; at most {MAX_PTY_WHITELIST} are allowed",
                    cfg.pty_whitelist.len()
                ),
            ));
        }
        p.deny_unknown()?;
    }
    if let Some(mut l) = f.opt_object("launcher")? {
        for (path, v) in l.opt_array("apps")? {
            cfg.apps.push(parse_app(path, v)?);
        }
        l.deny_unknown()?;
    }
    let transports = f.opt_array("transports")?;
    if transports.len() > MAX_TRANSPORTS {
        return Err(f.err(
            "transports",
            format!(
                "{} transports; at most {MAX_TRANSPORTS} are allowed",
                transports.len()
            ),
        ));
    }
    for (path, v) in transports {
        let t = parse_transport(path.clone(), v)?;
        if cfg.transports.contains(&t) {
            return Err(JsonError {
                path,
                msg: format!("{} {} is listed twice", t.kind, t.pk),
            });
        }
        if t.pk == *cfg.keys.public() {
            return Err(JsonError {
                path,
                msg: "a transport to this visor itself".into(),
            });
        }
        cfg.transports.push(t);
    }
    if let Some(mut s) = f.opt_object("stcp")? {
        if let Some(a) = s.opt_str("listen")? {
            if !a.is_empty() {
                check_host_port(a).map_err(|m| s.err("listen", m))?;
            }
            cfg.stcp.listen = a.to_string();
        }
        let peers = s.opt_str_array("peers")?;
        if peers.len() > MAX_STCP_PEERS {
            return Err(s.err(
                "peers",
                format!(
                    "{} peers; at most {MAX_STCP_PEERS} are allowed",
                    peers.len()
                ),
            ));
        }
        for (path, p) in peers {
            cfg.stcp
                .peers
                .push(PkAddr::parse(p).map_err(|msg| JsonError { path, msg })?);
        }
        s.deny_unknown()?;
    }
    f.deny_unknown()
}

fn parse_transport(
    path: String,
    v: &miniserde::json::Value,
) -> Result<PersistentTransport, JsonError> {
    let miniserde::json::Value::Object(o) = v else {
        return Err(JsonError {
            msg: format!(
                "expected an object {{\"pk\": …, \"type\": …}}, got {}",
                json::kind(v)
            ),
            path,
        });
    };
    let mut t = Fields::new(o, path);
    let pk_text = t.str("pk")?;
    let pk = PublicKey::from_hex(pk_text).map_err(|e| t.err("pk", e.to_string()))?;
    let kind = t.opt_str("type")?.unwrap_or("stcp");
    if !TRANSPORT_TYPES.contains(&kind) {
        return Err(t.err(
            "type",
            format!("{kind:?} is not one of {}", TRANSPORT_TYPES.join(", ")),
        ));
    }
    t.deny_unknown()?;
    Ok(PersistentTransport {
        pk,
        kind: kind.to_string(),
    })
}

fn parse_app(path: String, v: &miniserde::json::Value) -> Result<AppEntry, JsonError> {
    let miniserde::json::Value::Object(o) = v else {
        return Err(JsonError {
            msg: format!("expected an object, got {}", json::kind(v)),
            path,
        });
    };
    let mut a = Fields::new(o, path);
    let name = a.str("name")?.to_string();
    if name.is_empty() {
        return Err(a.err("name", "must not be empty"));
    }
    let args = a
        .opt_str_array("args")?
        .into_iter()
        .map(|(_, s)| s.to_string())
        .collect();
    let auto_start = a.opt_bool("auto_start")?.unwrap_or(true);
    let restart_policy = match a.opt_str("restart_policy")? {
        None => RestartPolicy::OnFailure,
        Some(p) => RestartPolicy::parse(p).ok_or_else(|| {
            a.err(
                "restart_policy",
                format!("{p:?} is not one of never, on-failure, always"),
            )
        })?,
    };
    let requires = a
        .opt_str_array("requires")?
        .into_iter()
        .map(|(_, s)| s.to_string())
        .collect();
    let wants = a
        .opt_str_array("wants")?
        .into_iter()
        .map(|(_, s)| s.to_string())
        .collect();
    let route = a.opt_str("route")?.unwrap_or("auto");
    #[cfg(feature = "skynet")]
    let route = route
        .parse::<crate::router::policy::RoutePolicy>()
        .map_err(|e| a.err("route", e.to_string()))?;
    #[cfg(not(feature = "skynet"))]
    if route != "auto" && route != "dmsg" {
        return Err(a.err(
            "route",
            format!("{route:?}: this build has no skynet (feature `skynet`); only auto and dmsg"),
        ));
    }
    a.deny_unknown()?;
    Ok(AppEntry {
        name,
        args,
        auto_start,
        restart_policy,
        requires,
        wants,
        #[cfg(feature = "skynet")]
        route,
    })
}

/// Writes `bytes` to `file` with mode 0600: to a temporary file beside it, fsync, then rename,
/// so a crash leaves either the old file or the new one. Refuses an existing file unless `force`.
pub fn write_secret_file(file: &Path, bytes: &[u8], force: bool) -> Result<(), ConfigError> {
    let err = |kind| ConfigError {
        file: file.to_path_buf(),
        kind,
    };
    if !force && fs::symlink_metadata(file).is_ok() {
        return Err(err(ConfigErrorKind::Exists));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file.file_name().ok_or_else(|| {
        err(ConfigErrorKind::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        )))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut fh = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        fh.write_all(bytes)?;
        fh.sync_all()?;
        fs::rename(&tmp, file)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(ConfigErrorKind::Io(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config::with_keys(Keypair::from_seed(&[5u8; 32]))
    }

    #[test]
    fn generated_config_round_trips() {
        let mut c = sample();
        c.hypervisors.push(*Keypair::from_seed(&[6u8; 32]).public());
        let tcp_hv = *Keypair::from_seed(&[8u8; 32]).public();
        c.hypervisors.push(tcp_hv);
        c.hypervisor_addrs.push((tcp_hv, "10.0.0.2:7046".into()));
        c.pty_whitelist
            .push(*Keypair::from_seed(&[8u8; 32]).public());
        c.dmsg
            .servers
            .push(PkAddr::parse(&format!("{}@relay.example:8080", c.keys.public())).unwrap());
        c.apps.push(AppEntry {
            name: "pty".into(),
            args: vec!["--x".into()],
            auto_start: false,
            restart_policy: RestartPolicy::Always,
            requires: vec!["logserver".into()],
            wants: Vec::new(),
            #[cfg(feature = "skynet")]
            route: "mux:2".parse().unwrap(),
        });
        let peer = *Keypair::from_seed(&[7u8; 32]).public();
        c.transports.push(PersistentTransport {
            pk: peer,
            kind: "dmsg".into(),
        });
        c.stcp.listen = "127.0.0.1:7000".into();
        c.stcp
            .peers
            .push(PkAddr::parse(&format!("{peer}@10.0.0.2:7777")).unwrap());
        let back = Config::parse(&c.to_json()).unwrap();
        assert_eq!(back.transports, c.transports);
        assert_eq!(back.stcp, c.stcp);
        assert_eq!(back.keys.public(), c.keys.public());
        assert_eq!(back.dmsg, c.dmsg);
        assert_eq!(back.apps, c.apps);
        assert_eq!(back.hypervisors, c.hypervisors);
        assert_eq!(back.hypervisor_addrs, c.hypervisor_addrs);
        assert_eq!(back.pty_whitelist, c.pty_whitelist);
        assert_eq!(back.to_json(), c.to_json());
    }

    fn err_of(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(ConfigErrorKind::Json(e)) => e.to_string(),
            Err(ConfigErrorKind::Key { field, err }) => format!("{field}: {err}"),
            Err(other) => format!("{other:?}"),
        }
    }

    fn edit(from: &str, to: &str) -> String {
        let j = sample().to_json();
        assert!(j.contains(from), "{from} not in {j}");
        j.replacen(from, to, 1)
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(
            err_of(&edit("\"sessions_count\": 1", "\"sessions_count\": \"1\""))
                .contains("`dmsg.sessions_count`")
        );
        assert!(err_of(&edit("\"log_level\"", "\"log_levle\"")).contains("`log_levle`"));
        assert!(
            err_of(&edit(
                "\"cli_addr\": \"127.0.0.1:3435\"",
                "\"cli_addr\": \"nope\""
            ))
            .contains("`cli_addr`")
        );
        assert!(
            err_of(&edit("\"servers\": []", "\"servers\": [\"x@y\"]"))
                .contains("`dmsg.servers[0]`")
        );
        assert!(err_of(&edit("\"version\": \"1\"", "\"version\": \"9\"")).contains("version"));
        let no_pk = edit("\"pk\"", "\"pkx\"");
        assert!(err_of(&no_pk).contains("`pk`: missing"));
    }

    #[test]
    fn skynet_fields() {
        let c = sample();
        assert_eq!(c.stcp.listen, DEFAULT_STCP_LISTEN);
        assert!(c.to_json().contains("\"listen\": \"0.0.0.0:7777\""));
        let peer = *Keypair::from_seed(&[7u8; 32]).public();
        let with = |t: &str| edit("\"transports\": []", &format!("\"transports\": [{t}]"));
        // The type defaults to stcp.
        let one = Config::parse(&with(&format!("{{\"pk\": \"{peer}\"}}"))).unwrap();
        assert_eq!(one.transports[0].kind, "stcp");
        let e = err_of(&with(&format!("{{\"pk\": \"{peer}\", \"type\": \"udp\"}}")));
        assert!(
            e.contains("`transports[0].type`") && e.contains("stcp, dmsg"),
            "{e}"
        );
        let t = format!("{{\"pk\": \"{peer}\", \"type\": \"dmsg\"}}");
        let e = err_of(&with(&format!("{t}, {t}")));
        assert!(e.contains("`transports[1]`") && e.contains("twice"), "{e}");
        let e = err_of(&with(&format!("{{\"pk\": \"{}\"}}", c.keys.public())));
        assert!(e.contains("itself"), "{e}");
        let e = err_of(&with("{\"pk\": \"00\"}"));
        assert!(e.contains("`transports[0].pk`"), "{e}");
        let e = err_of(&with(&format!(
            "{{\"pk\": \"{peer}\", \"kind\": \"dmsg\"}}"
        )));
        assert!(e.contains("`transports[0].kind`"), "{e}");
        // An empty listen address turns the listener off; a bad one is refused.
        let off = edit("\"listen\": \"0.0.0.0:7777\"", "\"listen\": \"\"");
        assert_eq!(Config::parse(&off).unwrap().stcp.listen, "");
        let e = err_of(&edit(
            "\"listen\": \"0.0.0.0:7777\"",
            "\"listen\": \"nope\"",
        ));
        assert!(e.contains("`stcp.listen`"), "{e}");
        let e = err_of(&edit("\"peers\": []", "\"peers\": [\"x@y:1\"]"));
        assert!(e.contains("`stcp.peers[0]`"), "{e}");
        // Old configs without the fields still load, with the defaults.
        let old = sample().to_json();
        let cut = old.find(",\n  \"transports\"").unwrap();
        let old = format!("{}\n}}\n", &old[..cut]);
        let back = Config::parse(&old).unwrap();
        assert!(back.transports.is_empty());
        assert_eq!(back.stcp, StcpConfig::default());
    }

    #[test]
    fn app_route_policy() {
        let app = |route: &str| {
            edit(
                "\"apps\": []",
                &format!("\"apps\": [{{\"name\": \"pty\"{route}}}]"),
            )
        };
        #[cfg(feature = "skynet")]
        {
            use crate::router::policy::RoutePolicy;
            let c = Config::parse(&app("")).unwrap();
            assert_eq!(c.apps[0].route, RoutePolicy::Auto);
            assert!(!c.to_json().contains("\"route\""), "auto is not written");
            let c = Config::parse(&app(", \"route\": \"hops:3\"")).unwrap();
            assert_eq!(c.apps[0].route, RoutePolicy::Hops(3));
            assert!(c.to_json().contains("\"route\": \"hops:3\""));
        }
        let e = err_of(&app(", \"route\": \"hops:99\""));
        assert!(e.contains("`launcher.apps[0].route`"), "{e}");
        let e = err_of(&app(", \"route\": 3"));
        assert!(e.contains("`launcher.apps[0].route`"), "{e}");
        assert!(Config::parse(&app(", \"route\": \"dmsg\"")).is_ok());
    }

    #[test]
    fn mismatched_keys_refused() {
        let other = Keypair::from_seed(&[8u8; 32]);
        let j = edit(
            &format!("\"sk\": \"{}\"", sample().keys.secret_hex()),
            &format!("\"sk\": \"{}\"", other.secret_hex()),
        );
        assert!(matches!(
            Config::parse(&j),
            Err(ConfigErrorKind::Key {
                field: "sk",
                err: IdentityError::Mismatch
            })
        ));
    }

    #[test]
    fn whitelist_is_capped_at_load() {
        let mut c = sample();
        c.pty_whitelist = (0..MAX_PTY_WHITELIST)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                *Keypair::from_seed(&seed).public()
            })
            .collect();
        let full = c.to_json();
        assert_eq!(
            Config::parse(&full).unwrap().pty_whitelist.len(),
            MAX_PTY_WHITELIST
        );
        c.pty_whitelist
            .push(*Keypair::from_seed(&[0xee; 32]).public());
        let e = err_of(&c.to_json());
        assert!(
            e.contains("`pty.whitelist`") && e.contains("at most 1024"),
            "{e}"
        );
    }

    #[test]
    fn secret_file_mode_and_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skywire-cfg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.json");
        let _ = fs::remove_file(&f);
        sample().save(&f, false).unwrap();
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            sample().save(&f, false).unwrap_err().kind,
            ConfigErrorKind::Exists
        ));
        sample().save(&f, true).unwrap();
        assert_eq!(
            Config::load(&f).unwrap().keys.public(),
            sample().keys.public()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
