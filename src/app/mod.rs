//! The app framework (DESIGN.md §5): the contract every app implements ([`AppDef`]), the
//! per-app settings ([`settings`]), the launcher that starts a table of apps (handed in as
//! data: the compiled-in one is `crate::apps::APPS`) in dependency waves, and the
//! [`Net`](net::Net) abstraction that makes the run mode a property of the network an app is
//! handed, not of its code. [`services`] is the visor's one port table (fed by every
//! carrier); [`mem`] is an in-memory `Net` on the simulation harness [`sim`] (virtual
//! clock, loss, reordering), for tests.
//!
//! An app is an async function `start(ctx) -> Result<(), String>`:
//! - **start**: the launcher spawns `start(ctx)` on the visor's executor. The app binds what
//!   it needs (`ctx.net.listen(port)`), then calls [`AppCtx::ready`]; the launcher waits for
//!   that (or for the future to end) before starting the next wave.
//! - **stop**: the launcher raises [`AppCtx::stop`]; an app that waits on
//!   [`AppCtx::stopped`] ends cleanly, any other is cancelled (its future dropped, which
//!   closes its listeners and connections) after a grace period.
//! - **status**: [`AppCtx::set_status`] publishes a one-line detail, shown by
//!   `skywire cli visor app status <name>` beside the launcher's own state and the app's
//!   tagged connections.
//!
//! Returning `Ok(())` is a clean exit; `Err(reason)` is a failure (restart policy
//! `on-failure` restarts it). A panic aborts the whole process (release builds use
//! `panic = "abort"`), so apps never panic on input.

pub mod conn;
pub mod launcher;
pub mod mem;
pub mod net;
pub mod services;
pub mod settings;
pub mod sim;
pub mod splice;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use async_executor::Executor;
use futures_lite::future::poll_fn;

use crate::app::settings::RestartPolicy;
use crate::crypto::PublicKey;

/// The future an app's `start` returns.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// A boxed future borrowing its receiver.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an app runs (DESIGN.md §5 matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inside the visor, on the visor's network.
    Visor,
    /// Standalone, on its own dmsg client with its own keys.
    Dmsg,
    /// Standalone, over direct Noise XK over TCP.
    Tcp,
}

impl Mode {
    /// The mode's name as the CLI spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Visor => "visor",
            Mode::Dmsg => "dmsg",
            Mode::Tcp => "tcp",
        }
    }

    /// Parses `visor`, `dmsg` or `tcp`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "visor" => Some(Mode::Visor),
            "dmsg" => Some(Mode::Dmsg),
            "tcp" => Some(Mode::Tcp),
            _ => None,
        }
    }
}

/// How strongly an app depends on another (systemd semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// The app is not started unless the dependency is running.
    Requires,
    /// The app starts after the dependency, whether or not it came up.
    Wants,
}

impl DepKind {
    /// `requires` or `wants`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DepKind::Requires => "requires",
            DepKind::Wants => "wants",
        }
    }
}

/// One dependency of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The app depended on.
    pub name: String,
    /// How.
    pub kind: DepKind,
}

/// The static description of a compiled-in app.
#[derive(Debug)]
pub struct AppDef {
    /// Unique name (`logserver`, `pty`, …).
    pub name: &'static str,
    /// One line for `--help` and `app ls`.
    pub summary: &'static str,
    /// The modes it supports.
    pub modes: &'static [Mode],
    /// Its overlay port, if it listens on one.
    pub port: Option<u16>,
    /// Its built-in dependencies (config can add more).
    pub depends: &'static [(&'static str, DepKind)],
    /// Stopping it needs `--i-know-what-im-doing`.
    pub critical: bool,
    /// Started with the visor unless the config says otherwise.
    pub autostart: bool,
    /// Default restart policy.
    pub restart: RestartPolicy,
    /// Where it listens in TCP mode when `--listen` is not given (DESIGN.md §4).
    pub tcp_listen: Option<&'static str>,
    /// Validates the app's arguments (`launcher.apps[].args`, or the flags after
    /// `app <name> run`): `Err` is the message to show.
    pub check_args: fn(&[String]) -> Result<(), String>,
    /// The entry point.
    pub start: fn(AppCtx) -> AppFuture,
}

impl AppDef {
    /// True if the app can run in `mode`.
    pub fn supports(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }
}

/// What the host (visor or standalone runner) tells an app about itself.
#[derive(Clone)]
pub struct HostInfo {
    /// The identity the app's network uses.
    pub pk: PublicKey,
    /// Hypervisor PKs configured on the visor (trusted like the visor itself).
    pub hypervisors: Vec<PublicKey>,
    /// When the host process started.
    pub started: Instant,
    /// The apps the host runs and their states (name, state), for reports.
    pub apps: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
    /// PKs allowed privileged access (a shell) besides `pk` and `hypervisors`: the visor's
    /// `pty.whitelist`, editable while running.
    pub whitelist: SharedKeys,
    /// The host's state directory (the visor's; a standalone app's `--state-dir`, else
    /// `$SKYWIRE_STATE_DIR`, else `./local`): where an app keeps its files, in a directory of
    /// its own.
    pub state_dir: PathBuf,
    /// Makes a Noise-XK-over-TCP network with the host's identity (its secret key stays with
    /// the host), for an app that also talks TCP-direct; `None` where the host offers none.
    pub tcp: Option<TcpFactory>,
    /// The host's identity for an app that signs as the host (skychat groups: the owner
    /// countersigns its feed with the key peers dial); `None` where the host keeps it.
    pub keys: Option<Arc<crate::crypto::Keypair>>,
    /// The host's RPC, in-process and unguarded (the visor's; filled once the RPC is up):
    /// what a hypervisor app in the visor manages it through. Empty in a standalone host.
    pub rpc: LocalRpc,
}

/// [`HostInfo::rpc`].
pub type LocalRpc = Arc<std::sync::OnceLock<crate::http::server::Handler>>;

/// [`HostInfo::tcp`]: a TCP network with the host's keys, listening (when the app listens)
/// on the address given.
pub type TcpFactory = Arc<dyn Fn(Option<String>) -> Arc<net::TcpNet> + Send + Sync>;

/// A list of PKs shared between the host and its apps, editable while they run.
#[derive(Debug, Clone, Default)]
pub struct SharedKeys(Arc<Mutex<Vec<PublicKey>>>);

impl SharedKeys {
    /// A list holding `keys`.
    pub fn new(keys: Vec<PublicKey>) -> SharedKeys {
        SharedKeys(Arc::new(Mutex::new(keys)))
    }

    /// The PKs, in order.
    pub fn get(&self) -> Vec<PublicKey> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True if `pk` is listed.
    pub fn contains(&self, pk: &PublicKey) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(pk)
    }

    /// Replaces the list.
    pub fn set(&self, keys: Vec<PublicKey>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = keys;
    }
}

impl fmt::Debug for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostInfo")
            .field("pk", &self.pk)
            .field("hypervisors", &self.hypervisors.len())
            .finish()
    }
}

/// A one-shot flag that can be awaited: set once, seen by every waiter.
#[derive(Debug, Clone, Default)]
pub struct Signal {
    inner: Arc<Mutex<(bool, Vec<Waker>)>>,
}

impl Signal {
    /// Sets the flag and wakes every waiter.
    pub fn raise(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = true;
        for w in g.1.drain(..) {
            w.wake();
        }
    }

    /// True once raised.
    pub fn is_raised(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Waits until raised.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 {
                Poll::Ready(())
            } else {
                // Once per task: a waiter polled again and again (raced against I/O with
                // `future::or`) must not grow the list.
                if !g.1.iter().any(|w| w.will_wake(cx.waker())) {
                    g.1.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// Everything an app is handed when it starts.
#[derive(Clone)]
pub struct AppCtx {
    /// The app's name.
    pub name: &'static str,
    /// Its arguments (validated by its `check_args`).
    pub args: Vec<String>,
    /// The mode it runs in.
    pub mode: Mode,
    /// Its network, already tagged with its name.
    pub net: Arc<dyn net::Net>,
    /// The executor to spawn its tasks on.
    pub ex: Arc<Executor<'static>>,
    /// About the host.
    pub host: HostInfo,
    stop: Signal,
    ready: Signal,
    status: Arc<Mutex<String>>,
    control: Arc<Mutex<Option<ControlFn>>>,
}

/// An app's control surface ([`AppCtx::set_control`]): one JSON request in, a JSON answer
/// out, or an error (an HTTP status and one line for the user). The visor's RPC passes
/// `POST /v1/apps/<name>/control` bodies to it, so an app with runtime state of its own
/// (skysocks-client's named instances) is driven without a listener of its own.
pub type ControlFn =
    Arc<dyn Fn(String) -> BoxFut<'static, Result<String, (u16, String)>> + Send + Sync>;

impl fmt::Debug for AppCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCtx")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .finish()
    }
}

impl AppCtx {
    /// A context; the returned signals are (stop, ready) and the status cell, for the host.
    pub fn new(
        name: &'static str,
        args: Vec<String>,
        mode: Mode,
        net: Arc<dyn net::Net>,
        ex: Arc<Executor<'static>>,
        host: HostInfo,
    ) -> AppCtx {
        AppCtx {
            name,
            args,
            mode,
            net,
            ex,
            host,
            stop: Signal::default(),
            ready: Signal::default(),
            status: Arc::new(Mutex::new(String::new())),
            control: Arc::new(Mutex::new(None)),
        }
    }

    /// Tells the host the app is up (its listeners are bound).
    pub fn ready(&self) {
        self.ready.raise();
    }

    /// Resolves when the host asks the app to stop.
    pub async fn stopped(&self) {
        self.stop.wait().await
    }

    /// Publishes a one-line status detail.
    pub fn set_status(&self, s: impl Into<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s.into();
    }

    /// Serves the app's control requests with `f` (until the app stops).
    pub fn set_control(&self, f: ControlFn) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// The app's control surface, if it set one (host side).
    pub fn control(&self) -> Option<ControlFn> {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stop signal (host side).
    pub fn stop_signal(&self) -> Signal {
        self.stop.clone()
    }

    /// The ready signal (host side).
    pub fn ready_signal(&self) -> Signal {
        self.ready.clone()
    }

    /// The current status detail.
    pub fn status(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The `kB` value of `key` (e.g. `VmRSS:`, `MemTotal:`) in a /proc status-style file; 0 where
/// there is none (no /proc, or the field is missing).
pub fn proc_kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Parses an app's arguments with its argh struct; `Err` is the first line of argh's message.
pub fn parse_args<T: argh::FromArgs>(app: &str, args: &[String]) -> Result<T, String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    T::from_args(&[app], &refs).map_err(|e| {
        e.output
            .lines()
            .next()
            .unwrap_or("bad arguments")
            .to_string()
    })
}

/// True if `pk` may use the privileged parts of an app: the host's own PK, a configured
/// hypervisor, or a PK on the app's own whitelist.
pub fn is_trusted(host: &HostInfo, whitelist: &[PublicKey], pk: &PublicKey) -> bool {
    *pk == host.pk || host.hypervisors.contains(pk) || whitelist.contains(pk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter polled over and over (raced with I/O by `future::or` on a long-lived
    /// connection) keeps one waker, not one per poll.
    #[test]
    fn signal_keeps_one_waker_per_task() {
        let s = Signal::default();
        let mut wait = Box::pin(s.wait());
        let waker = Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for _ in 0..10_000 {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.inner.lock().unwrap().1.len(), 1);
        s.raise();
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
}
