//! The driver over real transports in one process: two nodes, an stcp transport on
//! 127.0.0.1, a route group, streams asking for ports, the control views.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::control::Control;
use super::policy::RoutePolicy;
use super::*;
use crate::accept::PortTable;
use crate::addr::PkAddr;
use crate::transport::TpConfig;

fn node(ex: &Arc<Executor<'static>>, seed: u8) -> (Router, Arc<PortTable<RouteStream>>) {
    let ex2 = ex.clone();
    let r = Router::start(
        ex.clone(),
        Keypair::from_seed(&[seed; 32]),
        move |sink| {
            Manager::new(
                ex2,
                Keypair::from_seed(&[seed; 32]),
                TpConfig::default(),
                None,
                sink,
            )
        },
        None,
        RouterConfig::default(),
    );
    let table = Arc::new(PortTable::new(8));
    r.set_port_sink(table.clone(), Box::new(|p| (p == 5).then(|| "echo".into())));
    (r, table)
}

fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    future::block_on(future::or(f, async move {
        async_io::Timer::after(Duration::from_secs(secs)).await;
        panic!("not done within {secs} s");
    }))
}

#[test]
fn a_route_group_carries_streams_to_ports() {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || future::block_on(ex2.run(future::pending::<()>())));
    let (a, _) = node(&ex, 1);
    let (b, table) = node(&ex, 2);
    let addr = bounded(5, b.transports().listen_stcp("127.0.0.1:0")).unwrap();
    a.transports().add_addr(&PkAddr {
        pk: b.pk(),
        addr: addr.to_string(),
    });
    bounded(
        15,
        a.transports()
            .add(b.pk(), crate::transport::TpType::Stcp, false),
    )
    .unwrap();
    // B echoes what arrives on port 5.
    let q = table.bind(5).unwrap();
    let ex3 = ex.clone();
    ex.spawn_boxed(async move {
        while let Some(s) = q.accept().await {
            ex3.spawn_boxed(async move {
                let (mut r, mut w) = futures_lite::io::split(s.stream);
                let _ = futures_lite::io::copy(&mut r, &mut w).await;
                let _ = w.close().await;
            })
            .detach();
        }
    })
    .detach();

    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    bounded(30, async {
        // The transport is up, but the core hears of it from the sink: a moment.
        let mut s = loop {
            match a
                .dial(b.pk(), 5, 50000, &RoutePolicy::Direct, "t", &[])
                .await
            {
                Ok(s) => break s,
                Err(RouteError::NoRoute(_)) => {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((s.peer, s.remote_port, s.local_port), (b.pk(), 5, 50000));
        let (mut r, mut w) = futures_lite::io::split(&mut s.stream);
        let write = async {
            w.write_all(&data).await.unwrap();
            w.close().await.unwrap();
        };
        let read = async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            back
        };
        let ((), back) = future::zip(write, read).await;
        assert!(back == data, "echo differs");

        // Bytes sent with the open (`first`) reach the listener ahead of what follows.
        let mut s2 = a
            .dial(b.pk(), 5, 50004, &RoutePolicy::Direct, "t", b"early ")
            .await
            .unwrap();
        s2.stream.write_all(b"and late").await.unwrap();
        s2.stream.close().await.unwrap();
        let mut back = Vec::new();
        s2.stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"early and late");

        // A second stream reuses the open group; a port nobody serves is refused (with or
        // without bytes sent ahead).
        let err = a
            .dial(b.pk(), 6, 50005, &RoutePolicy::Direct, "t", b"lost")
            .await
            .unwrap_err();
        assert!(
            matches!(err, RouteError::NoListener(ref m) if m.contains("serves no port 6")),
            "{err}"
        );
        let err = a
            .dial(b.pk(), 6, 50001, &RoutePolicy::Direct, "t", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, RouteError::NoListener(ref m) if m.contains("serves no port 6")),
            "{err}"
        );
        // No path of ≥ 2 hops between two nodes.
        let err = a
            .dial(b.pk(), 5, 50002, &RoutePolicy::Hops(2), "t", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, RouteError::NoRoute(ref m) if m.contains("≥ 2 hops")),
            "{err}"
        );
        // To ourselves there is no route.
        assert!(matches!(
            a.dial(a.pk(), 5, 50003, &RoutePolicy::Direct, "t", &[])
                .await,
            Err(RouteError::NoRoute(_))
        ));
    });

    // The views: one group each side (named by the apps), a source and a destination rule.
    let ga = a.groups(Some("t"));
    assert_eq!(ga.len(), 1, "{ga:?}");
    assert_eq!(ga[0].peer, b.pk().to_hex());
    assert_eq!(ga[0].policy, "direct");
    assert!(ga[0].initiator);
    assert_eq!(ga[0].legs.len(), 1);
    assert_eq!(ga[0].legs[0].hops, vec![a.pk().to_hex(), b.pk().to_hex()]);
    assert_eq!(ga[0].legs[0].tp_types, vec!["stcp".to_string()]);
    let gb = b.groups(Some("echo"));
    assert_eq!(gb.len(), 1, "{gb:?}");
    assert!(!gb[0].initiator);
    assert_eq!(gb[0].legs[0].hops, vec![b.pk().to_hex(), a.pk().to_hex()]);
    assert!(a.has_live(&b.pk()) && b.has_live(&a.pk()));
    let kinds = |r: &Router| r.rules().into_iter().map(|x| x.kind).collect::<Vec<_>>();
    assert_eq!(kinds(&a), vec!["source".to_string()]);
    assert_eq!(kinds(&b), vec!["destination".to_string()]);
}

/// Groups other nodes set up to us over one transport are capped (here at 1): a second
/// group from the same neighbour is refused and counted, so one neighbour cannot take every
/// group slot.
#[test]
fn one_transport_holds_only_its_share_of_accepted_groups() {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || future::block_on(ex2.run(future::pending::<()>())));
    let (a, _) = node(&ex, 11);
    let ex3 = ex.clone();
    let b = Router::start(
        ex.clone(),
        Keypair::from_seed(&[12; 32]),
        move |sink| {
            Manager::new(
                ex3,
                Keypair::from_seed(&[12; 32]),
                TpConfig::default(),
                None,
                sink,
            )
        },
        None,
        RouterConfig {
            accepted_per_transport: Some(1),
            ..RouterConfig::default()
        },
    );
    let table = Arc::new(PortTable::new(8));
    b.set_port_sink(table.clone(), Box::new(|p| (p == 5).then(|| "echo".into())));
    let _q = table.bind(5).unwrap();
    let addr = bounded(5, b.transports().listen_stcp("127.0.0.1:0")).unwrap();
    a.transports().add_addr(&PkAddr {
        pk: b.pk(),
        addr: addr.to_string(),
    });
    bounded(
        15,
        a.transports()
            .add(b.pk(), crate::transport::TpType::Stcp, false),
    )
    .unwrap();
    bounded(30, async {
        loop {
            match a
                .dial(b.pk(), 5, 50000, &RoutePolicy::Direct, "t", &[])
                .await
            {
                Ok(_) => break,
                Err(RouteError::NoRoute(_)) => {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // Another policy is another group: over the same transport, past B's share.
        let err = a
            .dial(b.pk(), 5, 50001, &RoutePolicy::Hops(1), "t", &[])
            .await
            .err();
        assert!(err.is_some(), "a second group was accepted");
    });
    let drops = b.drops();
    assert!(
        drops
            .iter()
            .any(|(what, n)| what.contains("group share of its transport full") && *n >= 1),
        "{drops:?}"
    );
    assert_eq!(b.groups(None).len(), 1);
}
