//! Launcher planning and semantics with in-memory apps (no network: their `Net` refuses
//! everything). The same semantics are driven through the real binary in tests/visor.rs.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;

use super::*;
use crate::app::conn::Conn;
use crate::app::net::{Listen, NetError};
use crate::app::{AppFuture, BoxFut};
use crate::crypto::{Keypair, PublicKey};

struct NoNet(PublicKey);

impl Net for NoNet {
    fn local_pk(&self) -> PublicKey {
        self.0
    }
    fn network(&self) -> crate::app::net::Network {
        crate::app::net::Network::Mem
    }
    fn listen(&self, _: u16) -> Result<Box<dyn Listen>, NetError> {
        Err(NetError::NoRoute("no network in this test".into()))
    }
    fn dial(&self, _: PublicKey, _: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async { Err(NetError::NoRoute("no network in this test".into())) })
    }
}

fn ok_args(args: &[String]) -> Result<(), String> {
    match args.iter().any(|a| a == "--bad") {
        true => Err("--bad is refused".into()),
        false => Ok(()),
    }
}

/// Runs until stopped; `--fail` fails at once; `--crash` fails after 50 ms.
fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(async move {
        if ctx.args.iter().any(|a| a == "--fail") {
            return Err("told to fail".into());
        }
        ctx.ready();
        if ctx.args.iter().any(|a| a == "--crash") {
            Timer::after(Duration::from_millis(50)).await;
            return Err("crashed".into());
        }
        ctx.stopped().await;
        Ok(())
    })
}

macro_rules! def {
    ($id:ident, $name:literal, $deps:expr, $critical:expr) => {
        static $id: AppDef = AppDef {
            name: $name,
            summary: "test",
            modes: &[Mode::Visor],
            port: None,
            depends: $deps,
            critical: $critical,
            autostart: true,
            restart: RestartPolicy::Never,
            tcp_listen: None,
            check_args: ok_args,
            start,
        };
    };
}

def!(A, "a", &[], false);
def!(B, "b", &[("a", DepKind::Requires)], false);
def!(C, "c", &[("a", DepKind::Wants)], false);
def!(
    D,
    "d",
    &[("b", DepKind::Requires), ("c", DepKind::Wants)],
    false
);
def!(CRIT, "crit", &[], true);

static ALL: &[&AppDef] = &[&D, &C, &B, &A, &CRIT];

fn entry(name: &str, args: &[&str]) -> AppEntry {
    AppEntry {
        name: name.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        auto_start: true,
        restart_policy: RestartPolicy::Never,
        requires: Vec::new(),
        wants: Vec::new(),
        #[cfg(feature = "skynet")]
        route: Default::default(),
    }
}

#[test]
fn waves_follow_dependencies() {
    let p = plan(ALL, &[]).unwrap();
    let wave = |n: &str| p.iter().find(|x| x.def.name == n).unwrap().wave;
    assert_eq!(wave("a"), 0);
    assert_eq!(wave("crit"), 0);
    assert_eq!(wave("b"), 1);
    assert_eq!(wave("c"), 1);
    assert_eq!(wave("d"), 2);
    // Sorted by wave.
    assert!(p.windows(2).all(|w| w[0].wave <= w[1].wave));
}

#[test]
fn cycles_and_unknown_names_are_config_errors() {
    let mut e = entry("a", &[]);
    e.requires = vec!["d".into()];
    let err = plan(ALL, &[e]).unwrap_err();
    assert!(err.contains("dependency cycle"), "{err}");
    assert!(
        err.contains("a -> d -> b -> a") || err.contains("-> a"),
        "{err}"
    );

    let mut e = entry("a", &[]);
    e.wants = vec!["nope".into()];
    let err = plan(ALL, &[e]).unwrap_err();
    assert!(
        err.contains("launcher.apps[0].wants[0]") && err.contains("\"nope\""),
        "{err}"
    );

    let err = plan(ALL, &[entry("zzz", &[])]).unwrap_err();
    assert!(err.contains("no app \"zzz\""), "{err}");

    let err = plan(ALL, &[entry("a", &[]), entry("a", &[])]).unwrap_err();
    assert!(err.contains("configured twice"), "{err}");

    let mut e = entry("b", &[]);
    e.requires = vec!["b".into()];
    assert!(plan(ALL, &[e]).unwrap_err().contains("itself"));
}

fn launcher(entries: &[AppEntry]) -> (Launcher, Arc<Executor<'static>>) {
    let ex = Arc::new(Executor::new());
    let pk = *Keypair::from_seed(&[7; 32]).public();
    let l = Launcher::new(
        ex.clone(),
        plan(ALL, entries).unwrap(),
        Arc::new(move |_: &super::Planned| Arc::new(NoNet(pk)) as Arc<dyn Net>),
        ConnTable::default(),
    );
    l.set_host(HostInfo {
        pk,
        hypervisors: Vec::new(),
        started: Instant::now(),
        apps: Arc::new(Vec::new),
        whitelist: crate::app::SharedKeys::default(),
        state_dir: std::env::temp_dir(),
        tcp: None,
        keys: None,
        rpc: Default::default(),
    });
    (l, ex)
}

fn state(l: &Launcher, n: &str) -> State {
    l.status(n).unwrap().state
}

#[test]
fn requires_blocks_and_wants_does_not() {
    let (l, ex) = launcher(&[entry("a", &["--fail"])]);
    async_io::block_on(ex.run(async {
        l.start_all().await;
        assert_eq!(state(&l, "a"), State::Failed);
        assert_eq!(state(&l, "b"), State::Blocked);
        let why = l.status("b").unwrap().last_error.unwrap();
        assert!(
            why.contains("requires a, which is failed: told to fail"),
            "{why}"
        );
        assert_eq!(state(&l, "c"), State::Running, "wants does not block");
        assert_eq!(state(&l, "d"), State::Blocked, "d requires the blocked b");
        // Start order: every started app after the ones it depends on.
        let seq = |n: &str| l.status(n).unwrap().start_seq;
        assert!(seq("a") < seq("c"));
        l.shutdown().await;
    }));
}

#[test]
fn critical_stop_needs_force_and_stop_takes_dependents() {
    let (l, ex) = launcher(&[]);
    async_io::block_on(ex.run(async {
        l.start_all().await;
        for n in ["a", "b", "c", "d", "crit"] {
            assert_eq!(state(&l, n), State::Running, "{n}");
        }
        assert_eq!(
            l.stop("crit", false).await.unwrap_err(),
            LaunchError::Critical("crit".into())
        );
        assert_eq!(state(&l, "crit"), State::Running);
        assert_eq!(
            l.stop("crit", true).await.unwrap(),
            vec!["crit".to_string()]
        );
        // Stopping a stops what requires it (d, then b), latest wave first; c only wants it.
        assert_eq!(l.stop("a", false).await.unwrap(), vec!["d", "b", "a"]);
        assert_eq!(state(&l, "c"), State::Running);
        // Starting d pulls in b and a again.
        l.start("d").await.unwrap();
        for n in ["a", "b", "d"] {
            assert_eq!(state(&l, n), State::Running, "{n}");
        }
        l.shutdown().await;
        assert_eq!(state(&l, "a"), State::Stopped);
    }));
}

#[test]
fn crashing_app_is_restarted_per_policy() {
    let mut e = entry("c", &["--crash"]);
    e.restart_policy = RestartPolicy::OnFailure;
    let (l, ex) = launcher(&[e]);
    async_io::block_on(ex.run(async {
        l.start_all().await;
        let t0 = Instant::now();
        while l.status("c").unwrap().restarts < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "not restarted");
            Timer::after(Duration::from_millis(20)).await;
        }
        let s = l.status("c").unwrap();
        assert_eq!(s.last_error.as_deref(), Some("crashed"));
        // The others keep running.
        assert_eq!(state(&l, "a"), State::Running);
        l.shutdown().await;
        let n = l.status("c").unwrap().restarts;
        Timer::after(Duration::from_millis(600)).await;
        assert_eq!(
            l.status("c").unwrap().restarts,
            n,
            "no restarts after shutdown"
        );
    }));
}

#[test]
fn settings_take_effect_at_the_next_start_and_restart_brings_dependents_back() {
    let (l, ex) = launcher(&[]);
    async_io::block_on(ex.run(async {
        l.start_all().await;
        let mut e = l.entry("a").unwrap();
        assert!(e.args.is_empty() && e.auto_start && e.requires.is_empty());
        e.args = vec!["--bad".into()];
        assert!(matches!(l.check_entry(&e), Err(LaunchError::Invalid(m)) if m.contains("--bad")));
        assert!(matches!(l.set_entry(&e), Err(LaunchError::Invalid(_))));
        assert!(
            l.status("a").unwrap().args.is_empty(),
            "a refused entry is not taken"
        );
        let unknown = AppEntry {
            name: "zzz".into(),
            ..e.clone()
        };
        assert_eq!(
            l.set_entry(&unknown),
            Err(LaunchError::Unknown("zzz".into()))
        );

        // A restart stops what requires a (d, b) and starts it all again.
        let seq = |n: &str| l.status(n).unwrap().start_seq;
        let before = seq("a");
        let a = l.restart("a", false).await.unwrap();
        assert_eq!(a.state, State::Running);
        assert!(a.start_seq > before);
        for n in ["b", "c", "d"] {
            assert_eq!(state(&l, n), State::Running, "{n}");
        }
        assert!(seq("b") > a.start_seq && seq("d") > seq("b"));
        assert!(matches!(
            l.restart("crit", false).await,
            Err(LaunchError::Critical(_))
        ));

        // New arguments: a restart is needed (a runs), and the next start uses them.
        e.args = vec!["--fail".into()];
        e.auto_start = false;
        assert_eq!(l.set_entry(&e), Ok(true));
        assert_eq!(
            l.set_entry(&e),
            Ok(false),
            "nothing changed the second time"
        );
        let s = l.status("a").unwrap();
        assert_eq!(
            (s.args.as_slice(), s.auto_start),
            (&["--fail".to_string()][..], false)
        );
        assert_eq!(s.state, State::Running);
        assert!(matches!(
            l.restart("a", false).await,
            Err(LaunchError::Failed(n, why)) if n == "a" && why == "told to fail"
        ));
        e.args.clear();
        assert_eq!(l.set_entry(&e), Ok(false), "a is not running");
        l.shutdown().await;
    }));
}
