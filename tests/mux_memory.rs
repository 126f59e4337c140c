//! Memory a hostile peer can make a session hold (issue 11, findings 2–4), attacked the way
//! the issue found it, through the real codecs over loopback TCP: in process (where the
//! session's own count, `Session::held_bytes`, is checked), against a real relay process and
//! against a real TCP-mode app host (where the resident set is checked, with generous bounds).
//!
//! - ping flood without reading: the session fails and the connection is dropped;
//! - 1,024 uncredited streams with a full window each, and 1-byte frames: what is held stays
//!   within the session budget and costs about what it carries;
//! - one big frame per client: the relay's buffers shrink back once the clients are idle;
//! - a stranger opening many streams on one TCP-mode connection: refused after the first;
//! - a session flooding tiny frames shares its executor thread with an honest one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_net::TcpListener;
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::Keypair;
use skywire::crypto::channel::{HANDSHAKE_TIMEOUT, handshake_transport};
use skywire::crypto::noise::xk_responder;
use skywire::mux::codec::{PlainReader, PlainWriter, SealedReader, SealedWriter};
use skywire::mux::{Config, MuxError, Session, Side};
use skywire::wire::mux::{Flags, HEADER_LEN, Repr, Type};

use common::attack::{RawSession, channel_request, rss_kib, spawn_relay};

fn executor() -> Arc<Executor<'static>> {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    ex
}

/// A server session (sealed codec, as a relay runs it, default config) on a loopback port;
/// the session is handed out once a client has connected. The server application never
/// accepts or reads a stream.
fn sealed_server(ex: &Arc<Executor<'static>>) -> (String, Keypair, async_channel_like::Slot) {
    let keys = Keypair::generate().unwrap();
    let l = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let slot = async_channel_like::Slot::default();
    let (k2, s2, ex2) = (Keypair::from_seed(keys.seed()), slot.clone(), ex.clone());
    ex.spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let (t, _) = handshake_transport(&mut tcp, xk_responder(&k2), HANDSHAKE_TIMEOUT)
            .await
            .unwrap();
        let session = Session::new(
            &ex2,
            SealedReader::new(tcp.clone(), t.recv, 256 * 1024),
            SealedWriter::new(tcp, t.send),
            Side::Server,
            Config::default(),
        );
        s2.put(session);
    })
    .detach();
    (addr, keys, slot)
}

/// A place to hand the server session from its task to the test.
mod async_channel_like {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Clone, Default)]
    pub struct Slot(Arc<Mutex<Option<skywire::mux::Session>>>);

    impl Slot {
        pub fn put(&self, s: skywire::mux::Session) {
            *self.0.lock().unwrap() = Some(s);
        }
        pub fn get(&self) -> skywire::mux::Session {
            let t0 = Instant::now();
            loop {
                if let Some(s) = self.0.lock().unwrap().clone() {
                    return s;
                }
                assert!(t0.elapsed() < Duration::from_secs(10), "no session");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads and discards everything on `tcp` in a thread, so the peer looks like one that
/// reads (its replies never pile up).
fn discard_in_background(tcp: async_net::TcpStream) {
    std::thread::spawn(move || {
        let mut tcp = tcp;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = block_on(tcp.read(&mut buf)) {
            if n == 0 {
                break;
            }
        }
    });
}

#[test]
fn session_ping_flood_without_reading_is_failed_and_dropped() {
    let ex = executor();
    let (addr, keys, slot) = sealed_server(&ex);
    let mut a = RawSession::relay(&addr, keys.public(), &Keypair::generate().unwrap()).unwrap();
    let server = slot.get();
    // Before: the pongs queued without bound (185 MB in 0.3 s through a visor's channel).
    let (sent, dropped) = a.ping_flood(5_000_000, Duration::from_secs(60));
    assert!(dropped, "still connected after {sent} pings");
    assert!(
        matches!(server.failure(), Some(MuxError::PeerNotReading(_))),
        "{:?}",
        server.failure()
    );
    let held = server.held_bytes();
    assert!(held <= Config::default().max_session_bytes, "{held}");
    eprintln!("ping flood: dropped after {sent} pings; {held} bytes held at the end");
}

#[test]
fn session_uncredited_streams_and_one_byte_frames_stay_within_the_budget() {
    let ex = executor();
    let budget = Config::default().max_session_bytes;
    let (addr, keys, slot) = sealed_server(&ex);
    let mut a = RawSession::relay(&addr, keys.public(), &Keypair::generate().unwrap()).unwrap();
    discard_in_background(a.tcp.clone());
    let server = slot.get();
    let mut peak = 0;
    let sample = |peak: &mut usize| {
        let h = server.held_bytes();
        *peak = (*peak).max(h);
        assert!(h <= budget, "held {h} > budget {budget}");
    };
    // One stream of 1-byte frames, a full window of them (before: ~13.9 MiB held).
    a.syn(1, &[]).unwrap();
    for i in 0..256 * 1024u32 {
        a.data(1, &[i as u8]).unwrap();
    }
    a.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sample(&mut peak);
    let one_byte_held = server.held_bytes();
    assert!(
        one_byte_held < 300 * 1024,
        "a window of 1-byte frames holds {one_byte_held} bytes"
    );
    // 1,024 more streams, each sent its full window (before: 256 MiB held).
    let chunk = vec![0x5au8; 16 * 1024];
    for k in 1..=1024u32 {
        let id = 2 * k + 1;
        a.syn(id, &[]).unwrap();
        for _ in 0..16 {
            a.data(id, &chunk).unwrap();
        }
        if k % 16 == 0 {
            a.flush().unwrap();
            sample(&mut peak);
        }
    }
    a.flush().unwrap();
    // Let the session take in everything sent.
    let t0 = Instant::now();
    let mut last = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        sample(&mut peak);
        let n = server.stream_count();
        if n == last {
            break;
        }
        last = n;
    }
    assert!(server.failure().is_none(), "{:?}", server.failure());
    let live = server.stream_count();
    assert!(live <= budget / (256 * 1024), "{live} streams kept");
    eprintln!(
        "1-byte frames: {one_byte_held} bytes held for 262,144 bytes; 1,025 streams: peak \
         {peak} bytes held, {live} kept"
    );
}

#[test]
fn relay_drops_a_ping_flooder_that_does_not_read() {
    // The default keep-alive (30 s) does not come into it.
    let relay = spawn_relay(&[]);
    let mut a = RawSession::relay(&relay.addr, &relay.pk, &Keypair::generate().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_kib(relay.pid());
    let mut peak = base;
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut dropped = false;
    // Before: the relay grew by 180 MB in 6 s and kept the connection.
    while !dropped && sent < 20_000_000 && t0.elapsed() < Duration::from_secs(40) {
        let (n, d) = a.ping_flood(50_000, Duration::from_secs(5));
        sent += n;
        dropped = d;
        peak = peak.max(rss_kib(relay.pid()));
    }
    assert!(
        dropped,
        "relay kept a flooder that never reads ({sent} pings)"
    );
    let grew = peak.saturating_sub(base);
    assert!(grew < 16 * 1024, "relay RSS grew by {grew} KiB");
    // The relay still serves others.
    let mut b = RawSession::relay(&relay.addr, &relay.pk, &Keypair::generate().unwrap()).unwrap();
    b.ping(7).unwrap();
    b.flush().unwrap();
    let (h, _) = b.read_frame(Duration::from_secs(10)).unwrap();
    assert_eq!(h, Repr::ping(Flags::ACK, 7));
    eprintln!("relay: flooder dropped after {sent} pings; RSS +{grew} KiB at most");
}

#[test]
fn relay_holds_one_byte_frames_at_about_their_size() {
    let relay = spawn_relay(&[]);
    let kb = Keypair::generate().unwrap();
    // B is connected and never reads: what the relay forwards to it stops at B's credit.
    let _b = RawSession::relay(&relay.addr, &relay.pk, &kb).unwrap();
    let mut a = RawSession::relay(&relay.addr, &relay.pk, &Keypair::generate().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_kib(relay.pid());
    let chunk = vec![1u8; 16 * 1024];
    let streams = [1u32, 3, 5, 7];
    for &id in &streams {
        a.syn(id, &channel_request(kb.public())).unwrap();
        // A full window in big frames: the relay forwards it all (B's initial credit) and
        // returns the credit to us.
        for _ in 0..16 {
            a.data(id, &chunk).unwrap();
        }
        a.flush().unwrap();
        let mut credit = 0u64;
        let t0 = Instant::now();
        while credit < 256 * 1024 {
            assert!(t0.elapsed() < Duration::from_secs(20), "credit {credit}");
            let (h, _) = a.read_frame(Duration::from_secs(20)).unwrap();
            if h.stream_id == id && h.frame_type == Type::WindowUpdate {
                assert!(!h.flags.contains(Flags::RST), "stream {id} refused");
                credit += u64::from(h.length);
            }
        }
        // That credit in 1-byte frames: B takes no more, so the relay holds them.
        for i in 0..credit as u32 {
            a.data(id, &[i as u8]).unwrap();
        }
        a.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(1000));
    let grew = rss_kib(relay.pid()).saturating_sub(base);
    // Before: ~10 MiB per stream (a Vec per frame), 40 MiB here.
    assert!(grew < 12 * 1024, "relay RSS grew by {grew} KiB");
    eprintln!("relay: 4 streams of 1-byte frames held, RSS +{grew} KiB");
}

#[test]
fn relay_buffers_shrink_back_after_one_big_frame_per_client() {
    let relay = spawn_relay(&[]);
    let nobody = Keypair::generate().unwrap();
    let mut clients: Vec<_> = (0..100)
        .map(|_| RawSession::relay(&relay.addr, &relay.pk, &Keypair::generate().unwrap()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let base = rss_kib(relay.pid());
    let big = vec![3u8; 64 * 1024];
    for wave in clients.chunks_mut(10) {
        for c in wave {
            // One 64 KiB frame (a channel request to nobody, with data), then silence.
            let h = Repr::data(1, Flags::SYN, big.len() as u32);
            c.send(h, &channel_request(nobody.public()), &big).unwrap();
            c.flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let grew = rss_kib(relay.pid()).saturating_sub(base);
    // Before: +197 KiB per client for good, ~19 MiB here.
    assert!(
        grew < 5 * 1024,
        "100 idle clients cost {grew} KiB more after one big frame each"
    );
    eprintln!("relay: 100 clients after one 64 KiB frame each: RSS +{grew} KiB");
    drop(clients);
}

fn symlink(name: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mux_memory");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(common::skywire_bin(), &link).unwrap();
    link.to_str().unwrap().to_string()
}

#[test]
fn tcp_mode_host_takes_one_stream_per_connection_and_parks_nothing() {
    use common::visor::{free_port, hex, spawn_first_line};
    let host = Keypair::generate().unwrap();
    let client = Keypair::generate().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (h, line) = spawn_first_line(
        symlink("standalone"),
        &[
            "pty",
            "host",
            "--sk",
            &hex(host.seed()),
            "--listen",
            &addr,
            "--whitelist",
            &client.public().to_hex(),
        ],
    );
    assert_eq!(line, format!("pty running (tcp mode) as {}", host.public()));
    let pid = h.0.as_ref().unwrap().id();
    let exec = || {
        let o = common::visor::sw(&[
            "cli",
            "pty",
            "exec",
            &host.public().to_hex(),
            "--via",
            &format!("tcp://{}@{addr}", host.public()),
            "--sk",
            &hex(client.seed()),
            "--",
            "echo $((6*7))",
        ]);
        assert!(o.status.success(), "{}", common::visor::text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "42\n");
    };
    exec();
    let base = rss_kib(pid);
    // A stranger, four connections: on each the one stream (its port header), then 64 more
    // streams with a full window each. Before: all parked before the whitelist check, +64 MiB.
    let chunk = vec![0u8; 16 * 1024];
    let header = [0, 22, 0, 0];
    let stranger = Keypair::generate().unwrap();
    for _ in 0..4 {
        let mut s = RawSession::tcp_app(&addr, host.public(), &stranger).unwrap();
        s.syn(1, &[]).unwrap();
        s.data(1, &header).unwrap();
        let extra: Vec<u32> = (1..=64).map(|k| 2 * k + 1).collect();
        for &id in &extra {
            s.syn(id, &[]).unwrap();
            for _ in 0..16 {
                if s.data(id, &chunk).is_err() {
                    break;
                }
            }
        }
        let _ = s.flush();
        // Every stream beyond the first was reset: data past its port header before the app
        // took it (or beyond TCP_MAX_STREAMS).
        let mut refused = std::collections::HashSet::new();
        let t0 = Instant::now();
        while refused.len() < extra.len() && t0.elapsed() < Duration::from_secs(20) {
            match s.read_frame(Duration::from_secs(20)) {
                Ok((h, _)) if h.flags.contains(Flags::RST) && h.stream_id != 1 => {
                    refused.insert(h.stream_id);
                }
                Ok(_) => {}
                Err(e) => panic!("connection ended with {} of 64 refused: {e}", refused.len()),
            }
        }
        assert_eq!(refused.len(), extra.len());
    }
    // More than a port header before the app has taken the connection: reset at once.
    let mut s = RawSession::tcp_app(&addr, host.public(), &stranger).unwrap();
    s.syn(1, &[]).unwrap();
    s.data(1, &header).unwrap();
    s.data(1, &chunk).unwrap();
    s.flush().unwrap();
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "stream 1 not refused"
        );
        match s.read_frame(Duration::from_secs(20)) {
            Ok((h, _)) if h.stream_id == 1 && h.flags.contains(Flags::RST) => break,
            Ok((h, d)) => assert!(
                !(h.stream_id == 1 && d.first() == Some(&0)),
                "the port was answered OK: {h}"
            ),
            Err(_) => break, // or the connection is dropped
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let grew = rss_kib(pid).saturating_sub(base);
    assert!(grew < 8 * 1024, "the host's RSS grew by {grew} KiB");
    // And the host still serves its whitelisted client.
    exec();
    eprintln!("tcp mode: 4 × 65 streams of a stranger; host RSS +{grew} KiB");
}

/// A plain-codec server session (default config) on `ex` for the next connection to `l`;
/// handed out once a client has connected.
fn plain_server(ex: &Arc<Executor<'static>>, l: TcpListener) -> async_channel_like::Slot {
    let slot = async_channel_like::Slot::default();
    let (s2, ex2) = (slot.clone(), ex.clone());
    ex.spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let session = Session::new(
            &ex2,
            PlainReader::new(tcp.clone(), 256 * 1024),
            PlainWriter::new(tcp),
            Side::Server,
            Config::default(),
        );
        s2.put(session);
    })
    .detach();
    slot
}

#[test]
fn a_session_flooding_tiny_frames_does_not_starve_another_on_the_same_thread() {
    // One executor thread serves both server sessions, as in the relay. The flooder writes
    // unsolicited pongs (12-byte frames the session drops without replying or holding
    // anything) far faster than they can be handled, so its socket always has data.
    // Before: the flooding session's reader never returned to the executor, and the honest
    // transfer beside it did not move until the flood stopped.
    let ex = executor();
    let flood_l = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let honest_l = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let (flood_addr, honest_addr) = (
        flood_l.local_addr().unwrap(),
        honest_l.local_addr().unwrap(),
    );
    let flood_slot = plain_server(&ex, flood_l);
    let honest_slot = plain_server(&ex, honest_l);

    // The honest session, set up before the flood: a client session on another thread will
    // write 16 MiB on one stream, the server application (on the flooded thread) reads it.
    const TOTAL: usize = 16 << 20;
    let client_ex = executor();
    let tcp = block_on(async_net::TcpStream::connect(honest_addr)).unwrap();
    let client = Session::new(
        &client_ex,
        PlainReader::new(tcp.clone(), 256 * 1024),
        PlainWriter::new(tcp),
        Side::Client,
        Config::default(),
    );
    let honest_server = honest_slot.get();
    let stop = Arc::new(AtomicBool::new(false));
    let flood_ended = Arc::new(AtomicBool::new(false));
    let mut frames = Vec::with_capacity(1 << 20);
    for i in 0..(1u32 << 20) / 12 {
        let mut h = [0u8; HEADER_LEN];
        Repr::ping(Flags::ACK, i).emit_header(&mut h).unwrap();
        frames.extend_from_slice(&h);
    }
    let mut flood_tcp = std::net::TcpStream::connect(flood_addr).unwrap();
    let flooder = {
        let (stop, ended) = (stop.clone(), flood_ended.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let t0 = Instant::now();
            let mut sent = 0u64;
            // Bounded: at most 60 s (well past the transfer's guard below).
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                if flood_tcp.write_all(&frames).is_err() {
                    break;
                }
                sent += frames.len() as u64 / 12;
            }
            ended.store(true, Ordering::Relaxed);
            sent
        })
    };
    let flood_server = flood_slot.get();
    std::thread::sleep(Duration::from_millis(200));

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    ex.spawn(async move {
        let mut s = honest_server.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < TOTAL {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let _ = done_tx.send(got);
    })
    .detach();
    client_ex
        .spawn(async move {
            let mut s = client.open().await.unwrap();
            let chunk = vec![0x5au8; 64 * 1024];
            for _ in 0..TOTAL / chunk.len() {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = s.close().await;
            future::pending::<()>().await;
        })
        .detach();
    // Hang guard, not a timing: without round-robin the transfer waits for the flood's end.
    let res = done_rx.recv_timeout(Duration::from_secs(30));
    let flood_running = !flood_ended.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let got = res.expect("the honest transfer did not finish beside the flood");
    assert_eq!(got, TOTAL);
    assert!(
        flood_running,
        "the flood ended before the transfer ({sent} frames)"
    );
    assert!(
        flood_server.failure().is_none(),
        "{:?}",
        flood_server.failure()
    );
    eprintln!("fairness: {TOTAL} bytes moved beside a flood of {sent} unsolicited pongs");
}
