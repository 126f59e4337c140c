//! The launcher (DESIGN.md §5, phase 2): plans the compiled-in apps into dependency waves,
//! starts them wave by wave, restarts them per policy with backoff, and stops them in
//! reverse order. No app failure takes the visor down: an app is a task whose result the
//! launcher records.
//!
//! Semantics (systemd's):
//! - `Requires`: the app is started only if the dependency is running; otherwise it stays
//!   stopped with the reason. Stopping a dependency on purpose stops what requires it.
//! - `Wants`: ordering only; the app starts whether or not the dependency came up.
//! - A cycle or an unknown dependency is a configuration error naming it ([`plan`]).
//! - `critical` apps refuse `stop` unless forced.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use async_io::Timer;
use futures_lite::future;

use super::conn::ConnTable;
use super::net::Net;
use super::settings::{AppEntry, RestartPolicy};
use super::{AppCtx, AppDef, Dep, DepKind, HostInfo, Mode};
use crate::spawn::Spawn;

/// How long a starting app may take to report ready before the next wave starts anyway.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping app may take to end by itself before it is cancelled.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// First restart delay; doubles per consecutive failure up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An app that ran this long before ending starts its backoff over.
pub const BACKOFF_RESET: Duration = Duration::from_secs(30);

/// One app in the plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The app.
    pub def: &'static AppDef,
    /// Arguments.
    pub args: Vec<String>,
    /// Start with the visor.
    pub auto_start: bool,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Built-in plus configured dependencies.
    pub deps: Vec<Dep>,
    /// Its wave (0 first).
    pub wave: usize,
    /// How its dials reach peers (`launcher.apps[].route`).
    #[cfg(feature = "skynet")]
    pub route: crate::router::policy::RoutePolicy,
}

/// Checks the configured apps against the compiled-in table and sorts every app into
/// waves. Errors name the config field, the unknown app or dependency, or the cycle.
pub fn plan(defs: &[&'static AppDef], entries: &[AppEntry]) -> Result<Vec<Planned>, String> {
    let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
    let mut planned: Vec<Planned> = defs
        .iter()
        .map(|d| Planned {
            def: d,
            args: Vec::new(),
            auto_start: d.autostart,
            policy: d.restart,
            deps: d
                .depends
                .iter()
                .map(|(n, k)| Dep {
                    name: n.to_string(),
                    kind: *k,
                })
                .collect(),
            wave: 0,
            #[cfg(feature = "skynet")]
            route: Default::default(),
        })
        .collect();
    let mut seen = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(p) = planned.iter_mut().find(|p| p.def.name == e.name) else {
            return Err(format!(
                "launcher.apps[{i}].name: no app {:?} in this build (it has: {})",
                e.name,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        };
        if seen.contains(&e.name) {
            return Err(format!(
                "launcher.apps[{i}].name: {:?} is configured twice",
                e.name
            ));
        }
        seen.push(e.name.clone());
        (p.def.check_args)(&e.args).map_err(|m| format!("launcher.apps[{i}].args: {m}"))?;
        if !p.def.supports(Mode::Visor) {
            return Err(format!(
                "launcher.apps[{i}]: {} cannot run inside the visor (modes: {})",
                e.name,
                p.def
                    .modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        p.args = e.args.clone();
        p.auto_start = e.auto_start;
        p.policy = e.restart_policy;
        #[cfg(feature = "skynet")]
        {
            p.route = e.route.clone();
        }
        for (kind, list, field) in [
            (DepKind::Requires, &e.requires, "requires"),
            (DepKind::Wants, &e.wants, "wants"),
        ] {
            for (j, d) in list.iter().enumerate() {
                if !names.contains(&d.as_str()) {
                    return Err(format!(
                        "launcher.apps[{i}].{field}[{j}]: {} depends on {d:?}, which is not an app in this build",
                        e.name
                    ));
                }
                if *d == e.name {
                    return Err(format!(
                        "launcher.apps[{i}].{field}[{j}]: {} cannot depend on itself",
                        e.name
                    ));
                }
                p.deps.retain(|x| x.name != *d);
                p.deps.push(Dep {
                    name: d.clone(),
                    kind,
                });
            }
        }
    }
    // Waves: an app's wave is one more than its deepest dependency's (Kahn, level by level).
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut wave: Vec<Option<usize>> = vec![None; planned.len()];
    let mut placed = 0;
    let mut level = 0;
    while placed < planned.len() {
        let ready: Vec<usize> = (0..planned.len())
            .filter(|&i| wave[i].is_none())
            .filter(|&i| {
                planned[i].deps.iter().all(|d| {
                    index
                        .get(d.name.as_str())
                        .is_some_and(|&j| wave[j].is_some_and(|w| w < level))
                })
            })
            .collect();
        if ready.is_empty() {
            let left: Vec<usize> = (0..planned.len()).filter(|&i| wave[i].is_none()).collect();
            return Err(describe_cycle(&planned, &index, &left));
        }
        for i in ready {
            wave[i] = Some(level);
            placed += 1;
        }
        level += 1;
    }
    for (p, w) in planned.iter_mut().zip(wave) {
        p.wave = w.unwrap_or(0);
    }
    // In wave order, keeping the table's order within a wave (the waves are 0..level, so a
    // pass per wave does what a stable sort would, without linking one).
    let mut rest = planned;
    let mut ordered = Vec::with_capacity(rest.len());
    for w in 0..=level {
        let (now, later): (Vec<Planned>, Vec<Planned>) =
            rest.into_iter().partition(|p| p.wave == w);
        ordered.extend(now);
        rest = later;
    }
    ordered.extend(rest);
    Ok(ordered)
}

/// Names one cycle among the apps `left` (all of them have an unplaced dependency).
fn describe_cycle(planned: &[Planned], index: &HashMap<&str, usize>, left: &[usize]) -> String {
    let mut path = vec![left[0]];
    loop {
        let cur = *path.last().unwrap_or(&left[0]);
        let next = planned[cur]
            .deps
            .iter()
            .filter_map(|d| index.get(d.name.as_str()).copied())
            .find(|j| left.contains(j));
        let Some(n) = next else {
            break;
        };
        if let Some(pos) = path.iter().position(|&p| p == n) {
            let mut names: Vec<&str> = path[pos..].iter().map(|&i| planned[i].def.name).collect();
            names.push(planned[n].def.name);
            return format!(
                "launcher.apps: dependency cycle: {} (break it by removing one requires/wants)",
                names.join(" -> ")
            );
        }
        path.push(n);
    }
    format!(
        "launcher.apps: dependency cycle among: {}",
        left.iter()
            .map(|&i| planned[i].def.name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// An app's state as the launcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running (never started, stopped, or exited cleanly).
    Stopped,
    /// Started, not yet ready.
    Starting,
    /// Running.
    Running,
    /// Ended with an error (and not being restarted).
    Failed,
    /// Waiting to be restarted.
    Restarting,
    /// Kept stopped because a `Requires` dependency is not running.
    Blocked,
}

impl State {
    /// The state's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Failed => "failed",
            State::Restarting => "restarting",
            State::Blocked => "blocked",
        }
    }
}

struct Slot {
    p: Planned,
    state: State,
    since: Instant,
    restarts: u32,
    last_error: Option<String>,
    /// Bumped on every start and stop: a finishing task of an older generation is ignored.
    generation: u64,
    ctx: Option<AppCtx>,
    task: Option<Task<()>>,
    start_seq: u64,
}

/// A snapshot of one app for `app ls` / `app status`.
#[derive(Debug, Clone)]
pub struct AppStatus {
    /// Name.
    pub name: &'static str,
    /// Summary line.
    pub summary: &'static str,
    /// State.
    pub state: State,
    /// Overlay port.
    pub port: Option<u16>,
    /// Seconds in the current state.
    pub since_secs: u64,
    /// Times restarted by policy.
    pub restarts: u32,
    /// The last failure or why it is blocked.
    pub last_error: Option<String>,
    /// The app's own status line.
    pub detail: String,
    /// Wave.
    pub wave: usize,
    /// Start order (0 = never started).
    pub start_seq: u64,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Auto-start.
    pub auto_start: bool,
    /// Critical.
    pub critical: bool,
    /// Dependencies.
    pub deps: Vec<Dep>,
    /// The arguments its next start gets.
    pub args: Vec<String>,
    /// The route policy its next start gets.
    #[cfg(feature = "skynet")]
    pub route: crate::router::policy::RoutePolicy,
}

/// Why a launcher command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchError {
    /// No such app.
    Unknown(String),
    /// Critical app, not forced.
    Critical(String),
    /// A `Requires` dependency could not be started.
    Blocked(String, String),
    /// It failed to start.
    Failed(String, String),
    /// The visor is shutting down.
    ShuttingDown,
    /// The app is not running (its state), so it cannot take a control request.
    NotRunning(String, String),
    /// The app has no control surface.
    NoControl(String),
    /// The app refused a control request: an HTTP status and its message.
    Control(u16, String),
    /// Settings the app does not take (what is wrong).
    Invalid(String),
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::Unknown(n) => write!(
                f,
                "no app {n:?} in this build; see 'skywire cli visor app ls'"
            ),
            LaunchError::Critical(n) => write!(
                f,
                "{n} is critical (stopping it can cut off remote access to this board); add --i-know-what-im-doing to stop it anyway"
            ),
            LaunchError::Blocked(n, why) => write!(f, "{n} not started: {why}"),
            LaunchError::Failed(n, why) => write!(f, "{n} failed to start: {why}"),
            LaunchError::ShuttingDown => write!(f, "the visor is shutting down"),
            LaunchError::NotRunning(n, state) => write!(
                f,
                "{n} is {state}; start it with 'skywire cli visor app start {n}'"
            ),
            LaunchError::NoControl(n) => write!(f, "{n} takes no control requests"),
            LaunchError::Control(_, m) | LaunchError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LaunchError {}

/// Makes the network an app gets, from its plan (name, route policy) at each start.
pub type NetFactory = Arc<dyn Fn(&Planned) -> Arc<dyn Net> + Send + Sync>;

/// The launcher. Cloning gives another handle.
#[derive(Clone)]
pub struct Launcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher").finish()
    }
}

struct Inner {
    ex: Arc<Executor<'static>>,
    net_for: NetFactory,
    host: Mutex<Option<HostInfo>>,
    slots: Mutex<Vec<Slot>>,
    stopping: AtomicBool,
    seq: AtomicU64,
    /// Serialises start/stop commands so they see each other's effects in order.
    op: async_lock_free::OpLock,
    conns: ConnTable,
}

/// A tiny async mutex made of a flag and polling: start/stop commands are rare and short.
mod async_lock_free {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[derive(Default)]
    pub struct OpLock(AtomicBool);

    pub struct OpGuard<'a>(&'a OpLock);

    impl OpLock {
        pub async fn lock(&self) -> OpGuard<'_> {
            while self
                .0
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            OpGuard(self)
        }
    }

    impl Drop for OpGuard<'_> {
        fn drop(&mut self) {
            (self.0).0.store(false, Ordering::Release);
        }
    }
}

impl Launcher {
    /// A launcher for `planned` apps; their networks come from `net_for`, their connections
    /// are tagged in `conns`. Call [`Launcher::set_host`] before starting anything.
    pub fn new(
        ex: Arc<Executor<'static>>,
        planned: Vec<Planned>,
        net_for: NetFactory,
        conns: ConnTable,
    ) -> Launcher {
        let now = Instant::now();
        let slots = planned
            .into_iter()
            .map(|p| Slot {
                p,
                state: State::Stopped,
                since: now,
                restarts: 0,
                last_error: None,
                generation: 0,
                ctx: None,
                task: None,
                start_seq: 0,
            })
            .collect();
        Launcher {
            inner: Arc::new(Inner {
                ex,
                net_for,
                host: Mutex::new(None),
                slots: Mutex::new(slots),
                stopping: AtomicBool::new(false),
                seq: AtomicU64::new(0),
                op: async_lock_free::OpLock::default(),
                conns,
            }),
        }
    }

    /// Sets what apps are told about their host.
    pub fn set_host(&self, host: HostInfo) {
        *self.inner.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
    }

    /// The connection table apps' connections are tagged in.
    pub fn conns(&self) -> &ConnTable {
        &self.inner.conns
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (name, state) of every app.
    pub fn states(&self) -> Vec<(String, String)> {
        self.slots()
            .iter()
            .map(|s| (s.p.def.name.to_string(), s.state.as_str().to_string()))
            .collect()
    }

    /// Snapshot of every app, in wave order. An app that reported ready since the last look
    /// is marked running first, so a late `ready` shows without waiting for a command.
    pub fn list(&self) -> Vec<AppStatus> {
        let mut slots = self.slots();
        Self::mark_ready(&mut slots);
        slots
            .iter()
            .map(|s| AppStatus {
                name: s.p.def.name,
                summary: s.p.def.summary,
                state: s.state.clone(),
                port: s.p.def.port,
                since_secs: s.since.elapsed().as_secs(),
                restarts: s.restarts,
                last_error: s.last_error.clone(),
                detail: s.ctx.as_ref().map(|c| c.status()).unwrap_or_default(),
                wave: s.p.wave,
                start_seq: s.start_seq,
                policy: s.p.policy,
                auto_start: s.p.auto_start,
                critical: s.p.def.critical,
                deps: s.p.deps.clone(),
                args: s.p.args.clone(),
                #[cfg(feature = "skynet")]
                route: s.p.route.clone(),
            })
            .collect()
    }

    /// `name`'s settings as a `launcher.apps[]` entry, with no `requires`/`wants` of its own
    /// (for a config file that has no entry for it).
    pub fn entry(&self, name: &str) -> Result<AppEntry, LaunchError> {
        let slots = self.slots();
        let s = slots
            .iter()
            .find(|s| s.p.def.name == name)
            .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
        Ok(AppEntry {
            name: name.to_string(),
            args: s.p.args.clone(),
            auto_start: s.p.auto_start,
            restart_policy: s.p.policy,
            requires: Vec::new(),
            wants: Vec::new(),
            #[cfg(feature = "skynet")]
            route: s.p.route.clone(),
        })
    }

    /// Whether the app `e` names takes `e`'s arguments (the check [`plan`] makes).
    pub fn check_entry(&self, e: &AppEntry) -> Result<(), LaunchError> {
        let def = self
            .slots()
            .iter()
            .find(|s| s.p.def.name == e.name)
            .map(|s| s.p.def)
            .ok_or_else(|| LaunchError::Unknown(e.name.clone()))?;
        (def.check_args)(&e.args)
            .map_err(|m| LaunchError::Invalid(format!("args: {} does not take them: {m}", e.name)))
    }

    /// Takes `e`'s arguments, auto-start, restart policy and route for the app's next start
    /// (its dependencies stay as planned: `requires`/`wants` take effect when the visor
    /// starts). True when the app is running (or starting) with other arguments or another
    /// route than these, so it must restart to use them.
    pub fn set_entry(&self, e: &AppEntry) -> Result<bool, LaunchError> {
        self.check_entry(e)?;
        let mut slots = self.slots();
        let s = slots
            .iter_mut()
            .find(|s| s.p.def.name == e.name)
            .ok_or_else(|| LaunchError::Unknown(e.name.clone()))?;
        #[cfg(feature = "skynet")]
        let changed = s.p.args != e.args || s.p.route != e.route;
        #[cfg(not(feature = "skynet"))]
        let changed = s.p.args != e.args;
        #[cfg(feature = "skynet")]
        {
            s.p.route = e.route.clone();
        }
        s.p.args = e.args.clone();
        s.p.auto_start = e.auto_start;
        s.p.policy = e.restart_policy;
        Ok(changed && matches!(s.state, State::Running | State::Starting))
    }

    /// Snapshot of one app.
    pub fn status(&self, name: &str) -> Result<AppStatus, LaunchError> {
        self.list()
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| LaunchError::Unknown(name.to_string()))
    }

    /// Hands `body` to the running app `name`'s control surface ([`AppCtx::set_control`])
    /// and returns its answer.
    pub async fn control(&self, name: &str, body: String) -> Result<String, LaunchError> {
        let f = {
            let mut slots = self.slots();
            Self::mark_ready(&mut slots);
            let s = slots
                .iter()
                .find(|s| s.p.def.name == name)
                .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
            if s.state != State::Running {
                return Err(LaunchError::NotRunning(
                    name.to_string(),
                    s.state.as_str().to_string(),
                ));
            }
            s.ctx
                .as_ref()
                .and_then(|c| c.control())
                .ok_or_else(|| LaunchError::NoControl(name.to_string()))?
        };
        f(body)
            .await
            .map_err(|(status, m)| LaunchError::Control(status, m))
    }

    /// Starts the auto-start apps wave by wave: each wave's apps start together, and the
    /// next wave waits until they are ready (or failed, or [`READY_TIMEOUT`]).
    pub async fn start_all(&self) {
        let _op = self.inner.op.lock().await;
        let waves = self
            .slots()
            .iter()
            .map(|s| s.p.wave)
            .max()
            .map_or(0, |w| w + 1);
        for w in 0..waves {
            let names: Vec<&'static str> = self
                .slots()
                .iter()
                .filter(|s| s.p.wave == w && s.p.auto_start)
                .map(|s| s.p.def.name)
                .collect();
            if names.is_empty() {
                continue;
            }
            log::info!("launcher: wave {}: {}", w + 1, names.join(", "));
            let started: Vec<&'static str> = names
                .into_iter()
                .filter(|n| self.spawn_checked(n).is_ok())
                .collect();
            self.wait_ready(&started).await;
        }
    }

    /// Starts `name` (and, first, what it depends on that is not running).
    pub async fn start(&self, name: &str) -> Result<AppStatus, LaunchError> {
        let _op = self.inner.op.lock().await;
        self.start_locked(name, 0).await?;
        self.status(name)
    }

    fn start_locked<'a>(
        &'a self,
        name: &'a str,
        depth: usize,
    ) -> super::BoxFut<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            if self.inner.stopping.load(Ordering::Relaxed) {
                return Err(LaunchError::ShuttingDown);
            }
            let deps = {
                let slots = self.slots();
                let s = slots
                    .iter()
                    .find(|s| s.p.def.name == name)
                    .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
                if matches!(s.state, State::Running | State::Starting) {
                    return Ok(());
                }
                s.p.deps.clone()
            };
            // Dependencies first (the plan has no cycles, so this ends).
            for d in deps {
                if depth < 64 {
                    let r = self.start_locked(&d.name, depth + 1).await;
                    if let (Err(e), DepKind::Requires) = (r, d.kind) {
                        let why = format!("requires {}, which did not start: {e}", d.name);
                        self.block(name, &why);
                        return Err(LaunchError::Blocked(name.to_string(), why));
                    }
                }
            }
            self.spawn_checked(name)?;
            self.wait_ready(&[name]).await;
            let s = self.status(name)?;
            match s.state {
                State::Failed | State::Restarting => Err(LaunchError::Failed(
                    name.to_string(),
                    s.last_error.unwrap_or_else(|| "it ended".into()),
                )),
                _ => Ok(()),
            }
        })
    }

    fn block(&self, name: &str, why: &str) {
        let mut slots = self.slots();
        if let Some(s) = slots.iter_mut().find(|s| s.p.def.name == name) {
            s.state = State::Blocked;
            s.since = Instant::now();
            s.last_error = Some(why.to_string());
        }
    }

    /// Spawns `name` if its `Requires` are running; otherwise marks it blocked.
    fn spawn_checked(&self, name: &str) -> Result<(), LaunchError> {
        let mut slots = self.slots();
        let blocked = {
            let s = slots
                .iter()
                .find(|s| s.p.def.name == name)
                .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
            s.p.deps
                .iter()
                .filter(|d| d.kind == DepKind::Requires)
                .find_map(|d| {
                    let dep = slots.iter().find(|x| x.p.def.name == d.name)?;
                    (!matches!(dep.state, State::Running | State::Starting)).then(|| {
                        format!(
                            "requires {}, which is {}{}",
                            d.name,
                            dep.state.as_str(),
                            dep.last_error
                                .as_ref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )
                    })
                })
        };
        let idx = slots
            .iter()
            .position(|s| s.p.def.name == name)
            .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
        if let Some(why) = blocked {
            log::warn!("launcher: {name} not started: {why}");
            let s = &mut slots[idx];
            s.state = State::Blocked;
            s.since = Instant::now();
            s.last_error = Some(why.clone());
            return Err(LaunchError::Blocked(name.to_string(), why));
        }
        self.spawn_slot(&mut slots[idx]);
        Ok(())
    }

    fn spawn_slot(&self, s: &mut Slot) {
        let host = self
            .inner
            .host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(host) = host else {
            s.state = State::Failed;
            s.last_error = Some("launcher has no host info (a bug)".into());
            return;
        };
        s.generation += 1;
        s.start_seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let ctx = AppCtx::new(
            s.p.def.name,
            s.p.args.clone(),
            Mode::Visor,
            (self.inner.net_for)(&s.p),
            self.inner.ex.clone(),
            host,
        );
        s.state = State::Starting;
        s.since = Instant::now();
        s.ctx = Some(ctx.clone());
        let me = self.clone();
        let generation = s.generation;
        let start = s.p.def.start;
        let name = s.p.def.name;
        s.task = Some(self.inner.ex.spawn_boxed(async move {
            let t0 = Instant::now();
            let res = start(ctx).await;
            me.ended(name, generation, res, t0.elapsed());
        }));
    }

    /// Records the end of an app's run and schedules a restart per its policy.
    fn ended(&self, name: &str, generation: u64, res: Result<(), String>, ran: Duration) {
        let mut slots = self.slots();
        let Some(idx) = slots
            .iter()
            .position(|s| s.p.def.name == name && s.generation == generation)
        else {
            return;
        };
        let s = &mut slots[idx];
        if !matches!(s.state, State::Starting | State::Running) {
            return;
        }
        let name = s.p.def.name;
        let failed = res.is_err();
        match &res {
            Ok(()) => log::info!("launcher: {name} exited"),
            Err(e) => log::warn!("launcher: {name} failed: {e}"),
        }
        if let Err(e) = res {
            s.last_error = Some(e);
        }
        // This runs inside the app's task: let go of its handle without cancelling it.
        if let Some(t) = s.task.take() {
            t.detach();
        }
        s.since = Instant::now();
        let restart = !self.inner.stopping.load(Ordering::Relaxed)
            && match s.p.policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Always => true,
            };
        if !restart {
            s.state = if failed {
                State::Failed
            } else {
                State::Stopped
            };
            return;
        }
        // Consecutive quick failures back off; a long run starts over.
        let n = if ran >= BACKOFF_RESET {
            0
        } else {
            s.restarts.min(16)
        };
        let delay = BACKOFF_START
            .saturating_mul(1u32 << n.min(10))
            .min(BACKOFF_MAX);
        s.state = State::Restarting;
        s.restarts += 1;
        log::info!(
            "launcher: restarting {name} in {} ms (restart {})",
            delay.as_millis(),
            s.restarts
        );
        let me = self.clone();
        s.task = Some(self.inner.ex.spawn_boxed(async move {
            Timer::after(delay).await;
            let mut slots = me.slots();
            if let Some(s) = slots.get_mut(idx)
                && s.generation == generation
                && s.state == State::Restarting
                && !me.inner.stopping.load(Ordering::Relaxed)
            {
                // The old task handle is this very task: detach it before replacing it.
                if let Some(t) = s.task.take() {
                    t.detach();
                }
                me.spawn_slot(s);
            }
        }));
    }

    /// Marks every starting app that has reported ready as running.
    fn mark_ready(slots: &mut [Slot]) {
        for s in slots.iter_mut() {
            if s.state == State::Starting
                && s.ctx.as_ref().is_some_and(|c| c.ready_signal().is_raised())
            {
                s.state = State::Running;
                s.since = Instant::now();
                log::info!("launcher: {} running", s.p.def.name);
            }
        }
    }

    async fn wait_ready(&self, names: &[&str]) {
        let t0 = Instant::now();
        loop {
            let pending = {
                let mut slots = self.slots();
                Self::mark_ready(&mut slots);
                slots
                    .iter()
                    .any(|s| names.contains(&s.p.def.name) && s.state == State::Starting)
            };
            if !pending {
                return;
            }
            if t0.elapsed() > READY_TIMEOUT {
                log::warn!(
                    "launcher: {} not ready after {} s; going on",
                    names.join(", "),
                    READY_TIMEOUT.as_secs()
                );
                return;
            }
            Timer::after(Duration::from_millis(10)).await;
        }
    }

    /// Stops `name`; a critical app only with `force`. Apps that `Require` it are stopped
    /// first. Returns the names stopped, in order.
    pub async fn stop(&self, name: &str, force: bool) -> Result<Vec<String>, LaunchError> {
        let _op = self.inner.op.lock().await;
        self.stop_locked(name, force).await
    }

    /// Stops `name` as [`Launcher::stop`] does, then starts it again, and then what requires
    /// it that the stop took down (latest wave last). Stopped, it is just started.
    pub async fn restart(&self, name: &str, force: bool) -> Result<AppStatus, LaunchError> {
        let _op = self.inner.op.lock().await;
        log::info!("launcher: restarting {name}");
        let stopped = self.stop_locked(name, force).await?;
        self.start_locked(name, 0).await?;
        for n in stopped.iter().rev().filter(|n| *n != name) {
            if let Err(e) = self.start_locked(n, 0).await {
                log::warn!("launcher: {n} not started again after restarting {name}: {e}");
            }
        }
        self.status(name)
    }

    async fn stop_locked(&self, name: &str, force: bool) -> Result<Vec<String>, LaunchError> {
        let order = {
            let slots = self.slots();
            let s = slots
                .iter()
                .find(|s| s.p.def.name == name)
                .ok_or_else(|| LaunchError::Unknown(name.to_string()))?;
            if s.p.def.critical && !force {
                return Err(LaunchError::Critical(name.to_string()));
            }
            // Everything that (transitively) requires `name`, latest wave first.
            let mut set = vec![name.to_string()];
            let mut grew = true;
            while grew {
                grew = false;
                for x in slots.iter() {
                    if !set.iter().any(|n| n == x.p.def.name)
                        && x.p
                            .deps
                            .iter()
                            .any(|d| d.kind == DepKind::Requires && set.contains(&d.name))
                        && matches!(
                            x.state,
                            State::Running | State::Starting | State::Restarting
                        )
                    {
                        set.push(x.p.def.name.to_string());
                        grew = true;
                    }
                }
            }
            let order: Vec<(usize, String)> = set
                .into_iter()
                .filter_map(|n| {
                    let w = slots.iter().find(|s| s.p.def.name == n)?.p.wave;
                    Some((w, n))
                })
                .collect();
            // Last wave first, table order within a wave (a pass per wave, like `plan`).
            let top = order.iter().map(|o| o.0).max().unwrap_or(0);
            let mut names = Vec::with_capacity(order.len());
            for w in (0..=top).rev() {
                names.extend(order.iter().filter(|o| o.0 == w).map(|o| o.1.clone()));
            }
            names
        };
        for n in &order {
            self.stop_one(n).await;
        }
        Ok(order)
    }

    async fn stop_one(&self, name: &str) {
        let (task, ctx) = {
            let mut slots = self.slots();
            let Some(s) = slots.iter_mut().find(|s| s.p.def.name == name) else {
                return;
            };
            s.generation += 1;
            let was = s.state.clone();
            s.state = State::Stopped;
            s.since = Instant::now();
            if was != State::Blocked {
                s.last_error = s.last_error.take().filter(|_| was == State::Failed);
            }
            (s.task.take(), s.ctx.take())
        };
        if let Some(ctx) = &ctx {
            ctx.stop_signal().raise();
        }
        if let Some(mut task) = task {
            let done = future::or(
                async {
                    (&mut task).await;
                    true
                },
                async {
                    Timer::after(STOP_GRACE).await;
                    false
                },
            )
            .await;
            if !done {
                log::info!(
                    "launcher: {name} did not stop within {} s; cancelled",
                    STOP_GRACE.as_secs()
                );
            }
            drop(task);
        }
        if ctx.is_some() {
            log::info!("launcher: {name} stopped");
        }
    }

    /// Stops every app, latest wave first (visor shutdown). No restarts after this.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let _op = self.inner.op.lock().await;
        let mut by_wave: BTreeMap<usize, Vec<&'static str>> = BTreeMap::new();
        for s in self.slots().iter() {
            if s.task.is_some() || s.ctx.is_some() {
                by_wave.entry(s.p.wave).or_default().push(s.p.def.name);
            }
        }
        for (_, names) in by_wave.into_iter().rev() {
            let stops = names.iter().map(|n| self.stop_one(n));
            for f in stops {
                f.await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
