//! Two (or three) managers in one process over 127.0.0.1: packets both ways, the bytes on the
//! wire, keep-alive and dead-link detection, redial, duplicates, bad input, limits, memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future::block_on;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::addr::PkAddr;
use crate::crypto::Keypair;
use crate::spawn::Spawn;

#[derive(Default)]
struct Rec {
    packets: Mutex<Vec<(u32, Vec<u8>)>>,
    ups: Mutex<Vec<u32>>,
    downs: Mutex<Vec<(u32, String)>>,
}

impl PacketSink for Rec {
    fn packet(&self, tp: &Transport, buf: Vec<u8>) {
        self.packets.lock().unwrap().push((tp.handle(), buf));
    }
    fn up(&self, tp: &Transport) {
        self.ups.lock().unwrap().push(tp.handle());
    }
    fn down(&self, tp: &Transport, why: &str) {
        self.downs
            .lock()
            .unwrap()
            .push((tp.handle(), why.to_string()));
    }
}

fn keys(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn manager(ex: &Arc<Executor<'static>>, n: u8) -> (Manager, Arc<Rec>) {
    let rec = Arc::new(Rec::default());
    let m = Manager::new(ex.clone(), keys(n), TpConfig::default(), None, rec.clone());
    (m, rec)
}

/// Polls `f` every 20 ms for at most `limit`.
async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        Timer::after(Duration::from_millis(20)).await;
    }
    f()
}

/// Waits (at most `limit`) for `n` packets at `rec`, and returns what arrived.
async fn received(rec: &Rec, n: usize, limit: Duration) -> Vec<Vec<u8>> {
    wait_for(limit, || rec.packets.lock().unwrap().len() >= n).await;
    rec.packets
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.1.clone())
        .collect()
}

fn packet(t: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![t];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    let ex = Arc::new(Executor::new());
    EX.with(|e| *e.borrow_mut() = Some(ex.clone()));
    block_on(ex.run(f))
}

thread_local! {
    static EX: std::cell::RefCell<Option<Arc<Executor<'static>>>> = const { std::cell::RefCell::new(None) };
}

fn ex() -> Arc<Executor<'static>> {
    EX.with(|e| e.borrow().clone().expect("inside run"))
}

/// A and B, B with a live stcp transport to A.
async fn pair() -> (Manager, Arc<Rec>, Manager, Arc<Rec>, std::net::SocketAddr) {
    let ex = ex();
    let (a, ra) = manager(&ex, 1);
    let (b, rb) = manager(&ex, 2);
    let addr = a.listen_stcp("127.0.0.1:0").await.unwrap();
    b.add_addr(&PkAddr {
        pk: a.pk(),
        addr: addr.to_string(),
    });
    let info = b.add(a.pk(), TpType::Stcp, false).await.unwrap();
    assert_eq!(info.id, TpId::derive(&a.pk(), &b.pk(), TpType::Stcp));
    assert!(info.initiator);
    assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
    (a, ra, b, rb, addr)
}

#[test]
fn packets_both_ways_intact_and_in_order() {
    run(async {
        let (a, ra, b, rb, _) = pair().await;
        let tb = b.to_peer(&a.pk()).unwrap();
        let ta = a.to_peer(&b.pk()).unwrap();
        assert_eq!(ta.id(), tb.id());
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let len = [0usize, 1, 100, 1023, 1024, 5000, 65535][i as usize % 7];
            let payload: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            // Route packets, and control ones (route id 0, setup type 7) in between.
            let p = if i % 10 == 3 {
                packet(7, 0, &payload[..len.min(65_000)])
            } else {
                packet((i % 7) as u8, i + 1, &payload)
            };
            while let Err(SendError::Full) = tb.send(p.clone()) {
                Timer::after(Duration::from_millis(5)).await;
            }
            sent.push(p);
        }
        let got = received(&ra, 200, Duration::from_secs(10)).await;
        assert!(got == sent, "packets differ");
        assert!(
            ra.packets
                .lock()
                .unwrap()
                .iter()
                .all(|p| p.0 == ta.handle())
        );
        // And back.
        ta.send(packet(0, 9, b"back")).unwrap();
        assert!(
            wait_for(Duration::from_secs(2), || rb.packets.lock().unwrap().len()
                == 1)
            .await
        );
        assert_eq!(rb.packets.lock().unwrap()[0].1, packet(0, 9, b"back"));
        // Bad packets are refused at send.
        assert!(matches!(
            tb.send(vec![0, 0, 0]),
            Err(SendError::Malformed(_))
        ));
        assert!(matches!(
            tb.send(packet(0, 1, b"ab")[..8].to_vec()),
            Err(SendError::Malformed(_))
        ));
        let mut long = packet(0, 1, b"a");
        long.push(0);
        assert!(matches!(tb.send(long), Err(SendError::Malformed(_))));
        // Ping/pong on id 0 measured an RTT within a few keep-alives; counters moved.
        assert!(wait_for(Duration::from_secs(3), || tb.info().rtt.is_some()).await);
        assert!(wait_for(Duration::from_secs(3), || ta.info().rtt.is_some()).await);
        let i = tb.info();
        assert!(i.tx_bytes > 200 * 23 && i.rx_bytes > 0, "{i:?}");
        assert_eq!(b.types(), vec![TpType::Stcp]);
        // No id-0 ping or pong reached a sink.
        assert!(
            ra.packets
                .lock()
                .unwrap()
                .iter()
                .all(|p| p.1[1..5] != [0; 4] || (p.1[0] != 4 && p.1[0] != 5))
        );
    });
}

/// A TCP proxy in front of `to`, recording what flows client → server.
async fn proxy(to: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ex = ex();
    let ex2 = ex.clone();
    ex.spawn_boxed(async move {
        let (c, _) = l.accept().await.unwrap();
        let s = TcpStream::connect(to).await.unwrap();
        let (mut cr, mut sw) = (c.clone(), s.clone());
        let (mut sr, mut cw) = (s, c);
        ex2.spawn_boxed(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = sr.read(&mut buf).await {
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = cr.read(&mut buf).await {
            s2.lock().unwrap().extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    })
    .detach();
    (at, seen)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn header_sealed_data_payload_not() {
    run(async {
        let ex = ex();
        let (a, ra) = manager(&ex, 1);
        let (b, _) = manager(&ex, 2);
        let addr = a.listen_stcp("127.0.0.1:0").await.unwrap();
        let (via, seen) = proxy(addr).await;
        b.add_addr(&PkAddr {
            pk: a.pk(),
            addr: via.to_string(),
        });
        let tb = b
            .add(a.pk(), TpType::Stcp, false)
            .await
            .map(|_| b.to_peer(&a.pk()).unwrap())
            .unwrap();
        let data: Vec<u8> = b"end-to-end ciphertext stands here".repeat(40);
        let control = b"setup request path bytes, secret";
        tb.send(packet(0, 0xdead_beef, &data)).unwrap();
        tb.send(packet(7, 0, control)).unwrap();
        assert!(
            wait_for(Duration::from_secs(3), || ra.packets.lock().unwrap().len()
                == 2)
            .await
        );
        let wire = seen.lock().unwrap().clone();
        // The dialler's PK in the clear first, then the handshake.
        assert_eq!(&wire[..32], b.pk().as_bytes());
        let at = find(&wire, &data).expect("a data payload travels unsealed");
        // Right before it: a 2-byte sealed length of 23 and the 23 sealed header bytes.
        assert_eq!(&wire[at - 25..at - 23], &[0, 23]);
        assert!(find(&wire[at - 23..at], &0xdead_beefu32.to_be_bytes()).is_none());
        assert!(
            find(&wire, &packet(0, 0xdead_beef, &[])[..5]).is_none(),
            "header in clear"
        );
        assert!(find(&wire, control).is_none(), "control payload in clear");
        // The control frame: sealed length 7 + 32 + 16.
        assert_eq!(&wire[at + data.len()..at + data.len() + 2], &[0, 55]);
        let got = ra.packets.lock().unwrap().clone();
        assert_eq!(got[0].1, packet(0, 0xdead_beef, &data));
        assert_eq!(got[1].1, packet(7, 0, control));
    });
}

#[test]
fn silent_and_closed_peers_are_detected() {
    run(async {
        let ex = ex();
        let (a, ra) = manager(&ex, 1);
        let addr = a.listen_stcp("127.0.0.1:0").await.unwrap();
        // A peer that handshakes, then neither reads nor writes.
        let k = keys(3);
        let (_s, _codec) = stcp::dial(&addr.to_string(), &k, &a.pk(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
        let t0 = Instant::now();
        assert!(
            wait_for(Duration::from_secs(6), || ra.downs.lock().unwrap().len()
                == 1)
            .await
        );
        let took = t0.elapsed();
        assert!(
            took <= Duration::from_secs(5),
            "silent peer found dead after {took:?}"
        );
        assert!(ra.downs.lock().unwrap()[0].1.contains("nothing received"));
        assert!(a.list().is_empty());
        // A peer that goes away: found at once.
        let (b, rb) = manager(&ex, 2);
        b.add_addr(&PkAddr {
            pk: a.pk(),
            addr: addr.to_string(),
        });
        b.add(a.pk(), TpType::Stcp, false).await.unwrap();
        assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
        let t0 = Instant::now();
        b.shutdown();
        assert!(
            wait_for(Duration::from_secs(5), || ra.downs.lock().unwrap().len()
                == 2)
            .await
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(rb.downs.lock().unwrap().len(), 1);
        assert!(
            a.counters()
                .iter()
                .any(|(k, n)| k == "dead link (silent)" && *n == 1)
        );
    });
}

#[test]
fn persistent_transport_redials_when_the_listener_is_back() {
    run(async {
        let ex = ex();
        let (a, ra) = manager(&ex, 1);
        let (b, _) = manager(&ex, 2);
        let addr = b.listen_stcp("127.0.0.1:0").await.unwrap();
        a.add_addr(&PkAddr {
            pk: b.pk(),
            addr: addr.to_string(),
        });
        let info = a.add(b.pk(), TpType::Stcp, true).await.unwrap();
        assert!(info.persistent);
        b.shutdown();
        drop(b);
        assert!(
            wait_for(Duration::from_secs(3), || ra.downs.lock().unwrap().len()
                == 1)
            .await
        );
        let ls = a.list();
        assert_eq!((ls.len(), ls[0].state), (1, "connecting"), "{ls:?}");
        Timer::after(Duration::from_secs(2)).await;
        // The peer restarts on the same port: the transport comes back by itself.
        let (b2, rb2) = manager(&ex, 2);
        b2.listen_stcp(&addr.to_string()).await.unwrap();
        assert!(
            wait_for(Duration::from_secs(12), || rb2.ups.lock().unwrap().len()
                == 1)
            .await
        );
        assert!(wait_for(Duration::from_secs(1), || a.list()[0].state == "up").await);
        assert_eq!(ra.ups.lock().unwrap().len(), 2);
        // Removed: down, and not redialled.
        a.remove(&info.id).unwrap();
        assert!(wait_for(Duration::from_secs(2), || a.list().is_empty()).await);
        assert!(a.remove(&info.id).is_err());
    });
}

#[test]
fn crossed_dials_keep_the_link_the_smaller_pk_dialled() {
    run(async {
        let ex = ex();
        let (a, _) = manager(&ex, 1);
        let (b, _) = manager(&ex, 2);
        let aa = a.listen_stcp("127.0.0.1:0").await.unwrap();
        let ba = b.listen_stcp("127.0.0.1:0").await.unwrap();
        a.add_addr(&PkAddr {
            pk: b.pk(),
            addr: ba.to_string(),
        });
        b.add_addr(&PkAddr {
            pk: a.pk(),
            addr: aa.to_string(),
        });
        let (x, y) = futures_lite::future::zip(
            a.add(b.pk(), TpType::Stcp, false),
            b.add(a.pk(), TpType::Stcp, false),
        )
        .await;
        x.unwrap();
        y.unwrap();
        let a_smaller = a.pk().as_bytes() < b.pk().as_bytes();
        assert!(
            wait_for(Duration::from_secs(3), || {
                let (la, lb) = (a.list(), b.list());
                la.len() == 1
                    && lb.len() == 1
                    && la[0].initiator == a_smaller
                    && lb[0].initiator != a_smaller
            })
            .await,
            "{:?} / {:?}",
            a.list(),
            b.list()
        );
    });
}

#[test]
fn bad_input_drops_only_that_connection() {
    run(async {
        let (a, ra, b, _, addr) = pair().await;
        let tb = b.to_peer(&a.pk()).unwrap();
        // Garbage before the handshake (a PK that is no curve point, then noise).
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xff; 32]).await.unwrap();
        s.write_all(&[7u8; 200]).await.unwrap();
        let mut buf = [0u8; 64];
        let n = futures_lite::future::or(async { s.read(&mut buf).await.unwrap_or(0) }, async {
            Timer::after(Duration::from_secs(5)).await;
            999
        })
        .await;
        assert_eq!(n, 0, "garbage connection not dropped");
        // Garbage inside the handshake: a real PK, then a wrong-length message.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(keys(5).public().as_bytes()).await.unwrap();
        s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
        let n = s.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        // After a handshake: a sealed length below 23, a frame that does not open, a sealed
        // length that does not match the opened header.
        for (i, bad) in [
            vec![0u8, 5, 1, 2, 3, 4, 5],
            [vec![0u8, 23], vec![9u8; 23]].concat(),
        ]
        .into_iter()
        .enumerate()
        {
            let k = keys(10 + i as u8);
            let (mut s, _) = stcp::dial(&addr.to_string(), &k, &a.pk(), Duration::from_secs(5))
                .await
                .unwrap();
            assert!(wait_for(Duration::from_secs(2), || a.list().len() == 2).await);
            s.write_all(&bad).await.unwrap();
            let n = s.read(&mut buf).await.unwrap_or(0);
            assert_eq!(n, 0, "bad frame {i} not dropped");
            assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
        }
        let k = keys(20);
        let (mut s, codec) = stcp::dial(&addr.to_string(), &k, &a.pk(), Duration::from_secs(5))
            .await
            .unwrap();
        let link::Codec::Stcp { mut sealer, .. } = codec else {
            panic!("stcp codec")
        };
        // A route header (id 9) sealed with a control-sized sealed part.
        let mut f = vec![0u8, 0];
        f.extend_from_slice(&packet(0, 9, b"abc"));
        sealer.seal_frame(&mut f, 0).unwrap();
        s.write_all(&f).await.unwrap();
        assert_eq!(
            s.read(&mut buf).await.unwrap_or(0),
            0,
            "inconsistent frame not dropped"
        );
        let c = a.counters();
        assert!(
            c.iter()
                .any(|(k, n)| k == "stcp handshake failed" && *n == 2),
            "{c:?}"
        );
        assert!(c.iter().any(|(k, n)| k == "bad frame" && *n == 3), "{c:?}");
        // The good transport never noticed.
        let before = ra.packets.lock().unwrap().len();
        tb.send(packet(0, 5, b"still here")).unwrap();
        assert!(
            wait_for(Duration::from_secs(2), || ra.packets.lock().unwrap().len()
                == before + 1)
            .await
        );
        assert_eq!(ra.downs.lock().unwrap().len(), 3);
        assert!(tb.is_up());
    });
}

#[test]
fn limits_queue_per_ip_and_idle_memory() {
    run(async {
        let ex = ex();
        let rec = Arc::new(Rec::default());
        let cfg = TpConfig {
            max_incoming_per_ip: 2,
            ..TpConfig::default()
        };
        let a = Manager::new(ex.clone(), keys(1), cfg, None, rec.clone());
        let addr = a.listen_stcp("127.0.0.1:0").await.unwrap();
        // A peer that never reads: the send queue fills and says so.
        let (_s, _) = stcp::dial(&addr.to_string(), &keys(3), &a.pk(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
        let t = a.to_peer(keys(3).public()).unwrap();
        let big = packet(0, 1, &vec![0u8; 60_000]);
        let mut queued = 0usize;
        let full = loop {
            match t.send(big.clone()) {
                Ok(()) => queued += big.len(),
                Err(e) => break e,
            }
            assert!(queued < 64 << 20, "queue never filled");
            // Let the writer move what the socket takes.
            futures_lite::future::yield_now().await;
        };
        assert_eq!(full, SendError::Full);
        // Per-IP cap: two connections from 127.0.0.1 are held (the silent peer and one
        // handshaking), the third is closed at once.
        let _held = TcpStream::connect(addr).await.unwrap();
        Timer::after(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(third.read(&mut buf).await.unwrap_or(0), 0);
        assert!(a.counters().iter().any(|(k, _)| k == "stcp per-ip limit"));
        drop(_held);
        // Idle memory: after traffic and 2 keep-alive periods of quiet, the buffers are
        // given back.
        let (b, rb) = manager(&ex, 2);
        b.add_addr(&PkAddr {
            pk: a.pk(),
            addr: addr.to_string(),
        });
        // The silent peer's link is gone by now or soon; make room for b.
        assert!(wait_for(Duration::from_secs(6), || a.list().is_empty()).await);
        b.add(a.pk(), TpType::Stcp, false).await.unwrap();
        let tb = b.to_peer(&a.pk()).unwrap();
        for _ in 0..50 {
            while tb.send(packet(7, 0, &[1u8; 60_000])).is_err() {
                Timer::after(Duration::from_millis(5)).await;
            }
        }
        assert!(
            wait_for(Duration::from_secs(5), || rec.packets.lock().unwrap().len()
                == 50)
            .await
        );
        Timer::after(Duration::from_millis(2500)).await;
        let idle = tb.info().buffer_bytes;
        let ta = a.to_peer(&b.pk()).unwrap();
        let idle_a = ta.info().buffer_bytes;
        let fixed = std::mem::size_of::<link::Link>();
        eprintln!(
            "idle transport: buffers {idle} B (dialler), {idle_a} B (listener), link state {fixed} B"
        );
        assert!(idle + fixed <= 16 * 1024, "{idle} + {fixed}");
        assert!(idle_a + fixed <= 16 * 1024, "{idle_a} + {fixed}");
        assert!(rb.downs.lock().unwrap().is_empty());
    });
}

#[test]
fn dmsg_transport_through_a_relay() {
    use crate::dmsg::client::{ClientConfig, DmsgClient};
    use crate::dmsg::relay::{Relay, RelayConfig};
    run(async {
        let ex = ex();
        let rk = keys(30);
        let relay = Relay::new(keys(30), RelayConfig::default(), ex.clone());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raddr = l.local_addr().unwrap().to_string();
        ex.spawn_boxed(async move {
            let _ = relay.serve(l).await;
        })
        .detach();
        // Discovery in-process, for the published links and the stcp address lookup.
        let reg = Arc::new(Mutex::new(crate::dmsg::disc::Registry::new(
            crate::dmsg::disc::DiscLimits::default(),
        )));
        let dl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let durl = format!("http://{}", dl.local_addr().unwrap());
        let h = crate::dmsg::disc::handler(reg.clone(), Arc::new(crate::dmsg::disc::unix_now));
        ex.spawn_boxed(crate::http::server::serve(
            dl,
            ex.clone(),
            h,
            crate::http::server::Limits::default(),
        ))
        .detach();
        let disc = crate::dmsg::disc_client::DiscClient::new(&durl).unwrap();
        let client = |n: u8| {
            let cfg = ClientConfig {
                relays: vec![(*rk.public(), raddr.clone())],
                ..ClientConfig::default()
            };
            DmsgClient::start(ex.clone(), keys(n), Some(disc.clone()), cfg)
        };
        let (da, db) = (client(1), client(2));
        da.wait_ready(Duration::from_secs(5)).await.unwrap();
        db.wait_ready(Duration::from_secs(5)).await.unwrap();
        let (ra, rb) = (Arc::new(Rec::default()), Arc::new(Rec::default()));
        let a = Manager::new(
            ex.clone(),
            keys(1),
            TpConfig::default(),
            Some(da),
            ra.clone(),
        );
        let b = Manager::new(
            ex.clone(),
            keys(2),
            TpConfig::default(),
            Some(db),
            rb.clone(),
        );
        assert_eq!(a.types(), vec![TpType::Stcp, TpType::Dmsg]);
        a.serve_dmsg().unwrap();
        let info = b.add(a.pk(), TpType::Dmsg, false).await.unwrap();
        assert_eq!(info.id, TpId::derive(&a.pk(), &b.pk(), TpType::Dmsg));
        assert!(wait_for(Duration::from_secs(3), || a.list().len() == 1).await);
        let tb = b.to_peer(&a.pk()).unwrap();
        let ta = a.to_peer(&b.pk()).unwrap();
        assert_eq!(tb.kind(), TpType::Dmsg);
        let mut sent = Vec::new();
        for i in 0..50u32 {
            let p = if i % 5 == 0 {
                packet(8, 0, &[i as u8; 12])
            } else {
                packet(0, i, &vec![i as u8; (i as usize * 997) % 9000])
            };
            tb.send(p.clone()).unwrap();
            sent.push(p);
        }
        let got = received(&ra, 50, Duration::from_secs(5)).await;
        assert!(got == sent);
        ta.send(packet(0, 3, b"pong-ish")).unwrap();
        assert!(
            wait_for(Duration::from_secs(3), || rb.packets.lock().unwrap().len()
                == 1)
            .await
        );
        assert!(wait_for(Duration::from_secs(3), || ta.info().rtt.is_some()).await);
        // A's entry lists the live link within about a second; its stcp listener's address
        // too, and B finds A's stcp address there (no address book).
        let stcp_at = a.listen_stcp("127.0.0.1:0").await.unwrap().to_string();
        let t0 = Instant::now();
        let published = wait_for(Duration::from_secs(3), || {
            let r = crate::dmsg::disc::lock(&reg);
            r.get(&a.pk(), crate::dmsg::disc::unix_now())
                .is_some_and(|e| {
                    e.links == vec![(b.pk(), crate::dmsg::entry::LINK_DMSG)]
                        && e.transports == vec![stcp_at.clone()]
                })
        })
        .await;
        assert!(published, "entry not republished");
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t0.elapsed()
        );
        let s = b.add(a.pk(), TpType::Stcp, false).await.unwrap();
        assert_eq!(s.kind, TpType::Stcp);
        assert_eq!(
            b.to_peer(&a.pk()).unwrap().kind(),
            TpType::Stcp,
            "stcp first"
        );
        // Removing one brings both ends of it down.
        b.remove(&info.id).unwrap();
        assert!(
            wait_for(Duration::from_secs(5), || a.list().len() == 1
                && b.list().len() == 1)
            .await
        );
    });
}

/// The golden frames of docs/protocol.md ("Skynet: transports"): key 0x42 × 32, nonces 0
/// and 1.
#[test]
fn golden_stcp_frames() {
    use crate::crypto::channel::FrameSealer;
    use crate::crypto::noise::CipherState;
    let mut sealer = FrameSealer::new(CipherState::new([0x42; 32]));
    let mut out = link::Out::default();
    // Data on route 0x01020304 with payload "hello" (5 bytes): sealed header, payload clear.
    out.push_stcp(&mut sealer, packet(0, 0x0102_0304, b"hello"))
        .unwrap();
    // A transport ping (route id 0) with 8 payload bytes: sealed whole.
    out.push_stcp(&mut sealer, packet(4, 0, &[0, 0, 0, 0, 0, 0, 0, 9]))
        .unwrap();
    let wire = out.bytes();
    let hex = crate::crypto::hex::encode(&wire);
    let want_data = GOLDEN_DATA.replace(' ', "");
    let want_ping = GOLDEN_PING.replace(' ', "");
    assert_eq!(hex, format!("{want_data}{want_ping}"), "{hex}");
    assert_eq!(&wire[..2], &[0, 23]);
    assert_eq!(&wire[25..30], b"hello");
    assert_eq!(&wire[30..32], &[0, 31]);
    assert_eq!(wire.len(), 30 + 2 + 31);
}

const GOLDEN_DATA: &str = "0017 5967e62819b4360bd7c66bd6a5407a695b9ce09564e47d 68656c6c6f";
const GOLDEN_PING: &str = "001f 8988a01e035a51aea94b17f141df222591c01a2ebf6ea8ba559dddadfb331c";

#[test]
fn a_peer_that_stops_reading_is_dropped() {
    run(async {
        let ex = ex();
        let (a, ra) = manager(&ex, 1);
        let addr = a.listen_stcp("127.0.0.1:0").await.unwrap();
        // A peer that keeps pinging (so it is not silent) but never reads.
        let (mut s, codec) =
            stcp::dial(&addr.to_string(), &keys(3), &a.pk(), Duration::from_secs(5))
                .await
                .unwrap();
        let link::Codec::Stcp { mut sealer, .. } = codec else {
            panic!("stcp codec")
        };
        assert!(wait_for(Duration::from_secs(2), || a.list().len() == 1).await);
        let t = a.to_peer(keys(3).public()).unwrap();
        let big = packet(0, 1, &vec![0u8; 60_000]);
        let t0 = Instant::now();
        let mut last_ok = None;
        let mut full = false;
        while t0.elapsed() < Duration::from_secs(20) && ra.downs.lock().unwrap().is_empty() {
            // Fill the queue (the kernel's buffers first), then keep it full.
            for _ in 0..200 {
                if t.send(big.clone()).is_err() {
                    full = true;
                    break;
                }
                last_ok = Some(Instant::now());
                futures_lite::future::yield_now().await;
            }
            let mut f = vec![0u8, 0];
            f.extend_from_slice(&packet(2, 0, &[]));
            sealer.seal_frame(&mut f, 0).unwrap();
            if s.write_all(&f).await.is_err() {
                break;
            }
            Timer::after(Duration::from_millis(200)).await;
        }
        let downs = ra.downs.lock().unwrap().clone();
        assert_eq!(downs.len(), 1, "not dropped");
        assert!(downs[0].1.contains("stopped reading"), "{downs:?}");
        assert!(full, "queue never filled");
        // Detected within 5 s of the last packet the queue took (the writer's last progress).
        let took = last_ok.expect("some queued").elapsed();
        assert!(took <= Duration::from_secs(5), "{took:?}");
        assert!(
            a.counters()
                .iter()
                .any(|(k, _)| k == "dead link (not reading)")
        );
    });
}
