//! The SSE stream over a real server on 127.0.0.1: connected comment, history seed, ids,
//! resume by Last-Event-ID, live events.

use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::super::resume_point;
use super::*;
use crate::apps::skychat::events::Dir;
use crate::apps::skychat::proto::MsgId;
use crate::crypto::identity::Keypair;
use crate::http::server::{Handler, Request};

fn ev(me: PublicKey, peer: PublicKey, n: u64, text: &str) -> Event {
    Event {
        seq: 0,
        ts_ms: crate::apps::skychat::events::now_ms(),
        channel: Channel::Dm,
        kind: Kind::Message,
        id: MsgId(n),
        dir: Dir::In,
        from: peer,
        to: me,
        transport: "dmsg",
        text: text.to_string(),
        reply_to: None,
        status: None,
        history: false,
        group: None,
    }
}

/// Reads from `s` until `want` appears in what was read (at most 5 s).
async fn read_until(s: &mut TcpStream, got: &mut String, want: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !got.contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let n = future::or(async { s.read(&mut buf).await.unwrap_or(0) }, async {
            Timer::after(left).await;
            0
        })
        .await;
        if n == 0 {
            return got.contains(want);
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    true
}

#[test]
fn sse_seeds_resumes_and_streams_live() {
    let ex = Arc::new(Executor::new());
    let me = *Keypair::from_seed(&[1; 32]).public();
    let peer = *Keypair::from_seed(&[2; 32]).public();
    let hub = Hub::new(1000, Duration::from_secs(3600));
    let mut seqs = Vec::new();
    for i in 0..60 {
        seqs.push(hub.publish(ev(me, peer, i + 1, &format!("m{i}-"))));
    }
    let handler: Handler = {
        let (hub, ex) = (hub.clone(), ex.clone());
        Arc::new(move |req: Request| {
            let resp = match resume_point(&req) {
                Ok(r) => sse_stream(hub.clone(), me, vec![Channel::Dm], r, true, &ex),
                Err(e) => e,
            };
            Box::pin(async move { resp })
        })
    };
    let run = async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        ex.spawn(crate::http::server::serve(
            l,
            ex.clone(),
            handler,
            crate::http::server::Limits::default(),
        ))
        .detach();

        // Without Last-Event-ID: the last 50 messages as history, then live ones.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        assert!(read_until(&mut s, &mut got, "m59-").await, "{got}");
        assert!(got.contains("X-Accel-Buffering: no"), "{got}");
        assert!(got.contains("text/event-stream"), "{got}");
        let body = &got[got.find("\r\n\r\n").unwrap()..];
        assert!(body.find(": connected").unwrap() < body.find("data:").unwrap());
        assert!(!got.contains("\"m9-\""), "seed starts at m10");
        assert!(got.contains("\"m10-\""));
        assert_eq!(got.matches("\"history\":\"true\"").count(), 50);
        assert_eq!(got.matches("\nid: ").count(), 50);
        assert!(got.contains(&format!("id: {}\n", seqs[59])));
        let live = hub.publish(ev(me, peer, 1000, "live-one"));
        assert!(read_until(&mut s, &mut got, "live-one").await, "{got}");
        assert!(got.contains(&format!("id: {live}\n")));
        let tail = &got[got.find("live-one").unwrap() - 40..];
        assert!(!tail.contains("history"), "{tail}");

        // With Last-Event-ID: only what came after, no seed.
        let mut s2 = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {}\r\n\r\n",
            seqs[57]
        );
        s2.write_all(req.as_bytes()).await.unwrap();
        let mut got2 = String::new();
        assert!(read_until(&mut s2, &mut got2, "live-one").await, "{got2}");
        assert!(!got2.contains("\"m57-\""), "{got2}");
        assert!(got2.contains("\"m58-\"") && got2.contains("\"m59-\""));
        assert!(!got2.contains("history"));
        // Garbage resume point: 400.
        let mut s3 = TcpStream::connect(addr).await.unwrap();
        s3.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: nope\r\n\r\n")
            .await
            .unwrap();
        let mut got3 = String::new();
        assert!(
            read_until(&mut s3, &mut got3, "Last-Event-ID").await,
            "{got3}"
        );
        assert!(got3.starts_with("HTTP/1.1 400"), "{got3}");
    };
    future::block_on(ex.run(run));
}
