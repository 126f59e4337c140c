//! The relay's admission limits against the attacks of issue 11 finding 9, on the real
//! `skywire dmsg server`: replayed XK message 1s, floods of fresh handshakes (global and per
//! address), and a burst of clients at the session limit. Every attacker here is a raw Noise
//! peer on a blocking socket from 127.0.0.1.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use async_executor::Executor;
use common::dmsg::{
    Answer, RelayProc, answer, raw_xk_session, start_disc, start_relay, wait_relays_listed, xk_msg1,
};
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::Keypair;
use skywire::dmsg::client::{ClientConfig, DmsgClient};
use skywire::dmsg::disc_client::DiscClient;

/// How long a refused connection may take to be closed before the test calls it a hang (the
/// relay's handshake timeout is 10 s, so a connection it kept would still be open).
const GUARD: Duration = Duration::from_secs(8);

fn executor() -> Arc<Executor<'static>> {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    ex
}

fn lib_client(ex: &Arc<Executor<'static>>, url: &str, relay: &RelayProc) -> DmsgClient {
    DmsgClient::start(
        ex.clone(),
        Keypair::generate().unwrap(),
        Some(DiscClient::new(url).unwrap()),
        ClientConfig {
            relays: vec![(relay.pk, relay.addr.clone())],
            ..ClientConfig::default()
        },
    )
}

/// Two library clients join through `relay` and one echoes 64 KiB to the other.
fn good_clients_work(url: &str, relay: &RelayProc) {
    let ex = executor();
    let a = lib_client(&ex, url, relay);
    let b = lib_client(&ex, url, relay);
    let l = b.listen(9).unwrap();
    let ex2 = ex.clone();
    ex.spawn(async move {
        while let Ok(mut s) = l.accept().await {
            ex2.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = s.close().await;
            })
            .detach();
        }
    })
    .detach();
    let bpk = *b.pk();
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let got = block_on(future::or(
        async {
            a.wait_ready(Duration::from_secs(20)).await.unwrap();
            b.wait_ready(Duration::from_secs(20)).await.unwrap();
            let s = a.dial(&bpk, 9).await.unwrap();
            let (mut r, mut w) = futures_lite::io::split(s);
            let send = async {
                w.write_all(&data).await.unwrap();
                w.close().await.unwrap();
            };
            let recv = async {
                let mut v = Vec::new();
                r.read_to_end(&mut v).await.unwrap();
                v
            };
            future::zip(send, recv).await.1
        },
        async {
            async_io::Timer::after(Duration::from_secs(40)).await;
            panic!("well-behaved clients did not get through within 40 s");
        },
    ));
    assert_eq!(got, data);
}

/// Sends `frame` on `n` fresh connections to `addr`, all held open; then reads what the relay
/// did with each: (answered with message 2, closed).
fn flood(
    addr: &str,
    n: usize,
    mut frame: impl FnMut() -> Vec<u8>,
) -> (usize, usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        // A refused connection may already be closed: a failed write counts as a close.
        let _ = s.write_all(&frame());
        held.push(s);
    }
    let (mut msg2, mut closed) = (0, 0);
    for s in &mut held {
        match answer(s, GUARD) {
            Answer::Msg2 => msg2 += 1,
            Answer::Closed => closed += 1,
        }
    }
    (msg2, closed, held)
}

/// One recorded XK message 1, replayed 200 times at once from one address (the attack costs
/// no cryptography): the relay answers one copy, closes every other one before doing any
/// Diffie-Hellman for it, and well-behaved clients join and talk meanwhile.
#[test]
fn replayed_message_1_costs_the_relay_one_handshake() {
    let (_disc, url) = start_disc();
    let relay = start_relay(&url, &[]);
    wait_relays_listed(&url, 1);
    let (_hs, recorded) = xk_msg1(&relay.pk);
    let (msg2, closed, held) = flood(&relay.addr, 200, || recorded.clone());
    eprintln!("200 replays: {msg2} answered, {closed} closed");
    assert!(
        msg2 <= 1,
        "the relay answered {msg2} copies of one message 1"
    );
    assert_eq!(msg2 + closed, 200);
    // The replays are still held open (from the attacker's side) while good clients work.
    good_clients_work(&url, &relay);
    drop(held);
}

/// A flood of fresh, valid message 1s (each costs the attacker one key generation and one DH)
/// held open without message 3: the relay runs at most --max-handshakes of them at once and
/// closes the rest at once; once the attacker lets go, the slots come back.
#[test]
fn concurrent_handshakes_are_bounded() {
    let (_disc, url) = start_disc();
    let relay = start_relay(&url, &["--max-handshakes", "8"]);
    wait_relays_listed(&url, 1);
    let pk = relay.pk;
    let (msg2, closed, held) = flood(&relay.addr, 60, || xk_msg1(&pk).1);
    eprintln!("60 fresh handshakes held: {msg2} answered, {closed} closed");
    assert!(msg2 <= 8, "{msg2} handshakes ran at once (limit 8)");
    assert!(msg2 >= 1, "no handshake was served at all");
    assert_eq!(msg2 + closed, 60);
    // The attacker gives up: its handshakes fail and their slots are given back.
    drop(held);
    good_clients_work(&url, &relay);
}

/// The same flood against the per-address limit (applied to loopback with --limit-loopback):
/// one address runs at most --max-handshakes-per-addr handshakes at once.
#[test]
fn handshakes_per_address_are_bounded() {
    let (_disc, url) = start_disc();
    let relay = start_relay(
        &url,
        &["--limit-loopback", "--max-handshakes-per-addr", "3"],
    );
    wait_relays_listed(&url, 1);
    let pk = relay.pk;
    let (msg2, closed, held) = flood(&relay.addr, 40, || xk_msg1(&pk).1);
    eprintln!("40 fresh handshakes from one address: {msg2} answered, {closed} closed");
    assert!(
        msg2 <= 3,
        "{msg2} handshakes from one address at once (limit 3)"
    );
    assert!(msg2 >= 1);
    assert_eq!(msg2 + closed, 40);
    drop(held);
}

/// Handshake starts from one address are rate-limited (token bucket): 30 handshakes one after
/// the other, each abandoned after message 2, get at most the burst plus what the rate refills
/// over the time they took.
#[test]
fn handshake_rate_per_address_is_bounded() {
    let (_disc, url) = start_disc();
    let relay = start_relay(
        &url,
        &[
            "--limit-loopback",
            "--handshake-rate",
            "1",
            "--handshake-burst",
            "4",
        ],
    );
    wait_relays_listed(&url, 1);
    let t0 = Instant::now();
    let mut msg2 = 0;
    for _ in 0..30 {
        let mut s = TcpStream::connect(&relay.addr).unwrap();
        let _ = s.write_all(&xk_msg1(&relay.pk).1);
        if answer(&mut s, GUARD) == Answer::Msg2 {
            msg2 += 1;
        }
    }
    let refill = t0.elapsed().as_secs() + 1;
    eprintln!("30 handshakes in {:?}: {msg2} answered", t0.elapsed());
    assert!(msg2 >= 4, "the burst was not allowed: {msg2}");
    assert!(
        msg2 as u64 <= 4 + refill,
        "{msg2} handshakes answered (burst 4 + 1/s over {refill} s)"
    );
}

/// 20 clients completing XK at the same moment against --max-sessions 5: the slot is taken
/// when the connection arrives, so at most 5 get a session (before, all 20 passed the check
/// and were admitted), and the relay stays full while they hold them.
#[test]
fn max_sessions_holds_when_clients_arrive_together() {
    let (_disc, url) = start_disc();
    let relay = start_relay(&url, &["--max-sessions", "5"]);
    wait_relays_listed(&url, 1);
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (addr, pk, barrier) = (relay.addr.clone(), relay.pk, barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                raw_xk_session(&addr, &pk)
            })
        })
        .collect();
    let sessions: Vec<TcpStream> = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    eprintln!("20 clients at once: {} sessions", sessions.len());
    assert!(
        sessions.len() <= 5,
        "{} sessions admitted with --max-sessions 5",
        sessions.len()
    );
    assert!(!sessions.is_empty(), "no client was admitted");
    if sessions.len() == 5 {
        assert!(
            raw_xk_session(&relay.addr, &relay.pk).is_none(),
            "a sixth session was admitted"
        );
    }
}

/// One address holds at most --max-sessions-per-addr sessions (applied to loopback with
/// --limit-loopback); the others are refused before their handshake.
#[test]
fn sessions_per_address_are_bounded() {
    let (_disc, url) = start_disc();
    let relay = start_relay(&url, &["--limit-loopback", "--max-sessions-per-addr", "2"]);
    wait_relays_listed(&url, 1);
    let sessions: Vec<TcpStream> = (0..6)
        .filter_map(|_| raw_xk_session(&relay.addr, &relay.pk))
        .collect();
    assert_eq!(sessions.len(), 2, "sessions held by one address (limit 2)");
    // A session that ends gives its slot back.
    drop(sessions);
    let t0 = Instant::now();
    loop {
        if raw_xk_session(&relay.addr, &relay.pk).is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the slots of ended sessions did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
