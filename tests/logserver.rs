//! The log server under idle-stream pressure: a real `skywire visor` (embedded relay and
//! discovery, the log server on overlay port 80), attackers as in-process dmsg clients of the
//! library holding idle streams, and a reader as `skywire dmsg curl`, like a user.
#![cfg(feature = "app-logserver")]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::apps::logserver::{MAX_CONNS, MAX_CONNS_PER_PEER};
use skywire::crypto::{Keypair, PublicKey};
use skywire::dmsg::client::{ClientConfig, DmsgClient, DmsgStream};
use skywire::dmsg::disc_client::DiscClient;

use common::visor::*;

fn block_on<T>(f: impl Future<Output = T>) -> T {
    async_io::block_on(f)
}

/// A dmsg client of the library with key `seed`, through the visor's relay.
fn client(ex: &Arc<Executor<'static>>, seed: u8, relay: &str, disc: &str) -> DmsgClient {
    let (pk, addr) = relay.split_once('@').unwrap();
    let cfg = ClientConfig {
        relays: vec![(pk.parse().unwrap(), addr.to_string())],
        ..ClientConfig::default()
    };
    let c = DmsgClient::start(
        ex.clone(),
        Keypair::from_seed(&[seed; 32]),
        Some(DiscClient::new(disc).unwrap()),
        cfg,
    );
    block_on(c.wait_ready(Duration::from_secs(15))).unwrap();
    c
}

/// Opens `n` streams to the log server and leaves them idle (no request sent); the ones the
/// server refused at once are left out.
fn hold(c: &DmsgClient, to: &PublicKey, n: usize) -> Vec<DmsgStream> {
    (0..n)
        .filter_map(|_| block_on(c.dial(to, 80)).ok())
        .collect()
}

/// True if the stream still answers a request (a shed one is closed: EOF or an error).
async fn answers(s: &mut DmsgStream) -> bool {
    let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let talk = async {
        s.write_all(req).await.ok()?;
        s.flush().await.ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(got.starts_with(b"HTTP/1.1 200"))
    };
    let timeout = async {
        async_io::Timer::after(Duration::from_secs(5)).await;
        None
    };
    future::or(talk, timeout).await.unwrap_or(false)
}

fn alive(streams: &mut [DmsgStream]) -> usize {
    block_on(async {
        let mut n = 0;
        for s in streams.iter_mut() {
            n += usize::from(answers(s).await);
        }
        n
    })
}

/// `skywire dmsg curl` /health with a key of its own; retried for a few seconds (a fresh
/// client's first join), which an idle stream held for 30 s outlasts.
fn reader_gets_health(pk: &str, relay: &str, disc: &str) {
    let url = format!("dmsg://{pk}:80/health");
    let t0 = Instant::now();
    loop {
        let o = sw(&["dmsg", "curl", &url, "--relay", relay, "--disc", disc]);
        if o.status.success() {
            assert!(String::from_utf8_lossy(&o.stdout).contains("\"status\":\"ok\""));
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the reader was locked out: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Finding 10: one key holding more idle streams than the log server's global cap locked
/// every other reader out. Now it keeps at most MAX_CONNS_PER_PEER, and many keys holding
/// idle streams lose them to a reader instead of refusing it.
#[test]
fn idle_streams_of_one_or_many_keys_do_not_lock_out_readers() {
    let dir = tmp("logserver-cap");
    let cfg = write_config(&dir, None, "[]");
    let v = start_visor(&dir, Some(&cfg));
    v.wait_state("logserver", "running");
    let info = v.info();
    let relay = json_field(&info, "hosted_relay");
    let disc = json_field(&info, "discovery");
    let vpk: PublicKey = v.pk.parse().unwrap();
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    {
        let ex = ex.clone();
        std::thread::spawn(move || block_on(ex.run(future::pending::<()>())));
    }

    // One key, more idle streams than the whole cap.
    let a = client(&ex, 101, &relay, &disc);
    let mut held = hold(&a, &vpk, MAX_CONNS + 8);
    reader_gets_health(&v.pk, &relay, &disc);
    assert_eq!(
        alive(&mut held),
        MAX_CONNS_PER_PEER,
        "one key keeps exactly its share"
    );
    drop(held);

    // Many keys, each at its share, together over the cap: a reader still gets in.
    let keys = MAX_CONNS / MAX_CONNS_PER_PEER + 2;
    let clients: Vec<DmsgClient> = (0..keys as u8)
        .map(|n| client(&ex, 110 + n, &relay, &disc))
        .collect();
    let mut held: Vec<Vec<DmsgStream>> = clients
        .iter()
        .map(|c| hold(c, &vpk, MAX_CONNS_PER_PEER))
        .collect();
    reader_gets_health(&v.pk, &relay, &disc);
    let per_key: Vec<usize> = held.iter_mut().map(|h| alive(h)).collect();
    assert!(
        per_key.iter().all(|n| *n <= MAX_CONNS_PER_PEER)
            && per_key.iter().sum::<usize>() < MAX_CONNS,
        "{per_key:?}"
    );

    // While we have a visor: `cli visor info` with stdout on /dev/full is an error, not a
    // silent exit 0 (its lines go through the CLI's `say`).
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(common::skywire_bin())
        .args([
            "cli",
            "visor",
            "--rpc",
            &v.rpc,
            "-c",
            v.config.to_str().unwrap(),
            "info",
        ])
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "skywire: error: cannot write to stdout: No space left on device"
    );
}
