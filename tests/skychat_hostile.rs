//! Skychat under bad input (issue 14): a TCP-direct skychat (`skywire standalone skychat`)
//! is sent frames of length 0 and 65,537, invalid UTF-8, and a flood of 10,000 messages from
//! one peer, over real Noise-XK-over-TCP connections made with the library's `TcpNet`; its
//! HTTP surface gets garbage, oversize and wrong JSON on every path, foreign Host/Origin and
//! no credential. Each gets a clear error or a closed connection, counted in /status; another
//! peer keeps chatting; what was stored stays readable.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::app::net::{Net, TcpNet};
use skywire::crypto::Keypair;

use common::skychat::*;
use common::visor::free_port;

struct Target {
    sa: Standalone,
    tcp: u16,
}

impl std::ops::Deref for Target {
    type Target = Standalone;
    fn deref(&self) -> &Standalone {
        &self.sa
    }
}

fn target(name: &str) -> Target {
    let tcp = free_port();
    let listen = format!("127.0.0.1:{tcp}");
    Target {
        sa: standalone("tcp", name, &["--listen", &listen], &[]),
        tcp,
    }
}

fn status_count(t: &Target, key: &str) -> u64 {
    let (code, st) = http_to(t.http, "GET", "/status", None, Some(&t.token));
    assert_eq!(code, 200, "{st}");
    as_u64(get(&parse(&st), key))
}

/// Runs `f` on a fresh executor (with one thread driving it) and returns its output.
fn run<T: Send + 'static>(
    f: impl FnOnce(
        Arc<Executor<'static>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
) -> T {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let fut = f(ex.clone());
    future::block_on(ex.run(future::or(fut, async {
        async_io::Timer::after(Duration::from_secs(120)).await;
        panic!("not done within 120 s");
    })))
}

/// Dials the target's port 1 as a fresh key and writes `bytes`; then reads until the target
/// closes (true) or 5 s pass without that (false).
fn closes_after(t: &Target, bytes: Vec<u8>) -> bool {
    let (pk, tcp) = (t.pk, t.tcp);
    run(move |ex| {
        Box::pin(async move {
            let net = TcpNet::new(Keypair::generate().unwrap(), None, ex);
            net.add_peer(pk, format!("127.0.0.1:{tcp}"));
            let mut c = net.dial(pk, 1).await.expect("dial");
            c.write_all(&bytes).await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 4096];
            let closed = async {
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    }
                }
            };
            future::or(closed, async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                false
            })
            .await
        })
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn msg(id: u64, body: &str) -> Vec<u8> {
    frame(
        format!(
            r#"{{"type":"chat-msg","id":"{id:016x}","body":{},"ack":true}}"#,
            json_str(body)
        )
        .as_bytes(),
    )
}

#[test]
fn bad_frames_close_only_that_connection() {
    let t = target("skychat-hostile-frames");
    let before = status_count(&t, "protocol_error_count");
    assert!(closes_after(&t, 0u32.to_be_bytes().to_vec()), "length 0");
    let mut big = 65_537u32.to_be_bytes().to_vec();
    big.extend_from_slice(&[b'x'; 64]);
    assert!(closes_after(&t, big), "length 65,537");
    assert!(
        closes_after(&t, frame(&[0xff, 0xfe, 0x80, b'a'])),
        "invalid UTF-8"
    );
    let after = status_count(&t, "protocol_error_count");
    assert!(after >= before + 3, "{before} -> {after}");

    // A good message after all that is stored and acked.
    let (pk, tcp) = (t.pk, t.tcp);
    let acked = run(move |ex| {
        Box::pin(async move {
            let net = TcpNet::new(Keypair::generate().unwrap(), None, ex);
            net.add_peer(pk, format!("127.0.0.1:{tcp}"));
            let mut c = net.dial(pk, 1).await.expect("dial");
            c.write_all(&msg(7, "still fine")).await.unwrap();
            let mut head = [0u8; 4];
            c.read_exact(&mut head).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
            c.read_exact(&mut body).await.unwrap();
            String::from_utf8(body).unwrap()
        })
    });
    assert!(
        acked.contains("chat-ack") && acked.contains("0000000000000007"),
        "{acked}"
    );
}

#[test]
fn a_flood_from_one_peer_does_not_stall_another() {
    let t = target("skychat-hostile-flood");
    let (pk, tcp) = (t.pk, t.tcp);
    let flooder = Keypair::generate().unwrap();
    let flooder_pk = *flooder.public();
    let bystander = Keypair::generate().unwrap();
    let bystander_pk = *bystander.public();
    // 10,000 messages as fast as one connection takes them, acks unread.
    let flood = std::thread::spawn(move || {
        run(move |ex| {
            Box::pin(async move {
                let net = TcpNet::new(flooder, None, ex);
                net.add_peer(pk, format!("127.0.0.1:{tcp}"));
                let mut c = net.dial(pk, 1).await.expect("dial");
                let mut sent = 0u32;
                for i in 0..10_000u64 {
                    if c.write_all(&msg(i + 1, &format!("flood {i}")))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile another peer is answered in time.
    let t0 = Instant::now();
    let reply = run(move |ex| {
        Box::pin(async move {
            let net = TcpNet::new(bystander, None, ex);
            net.add_peer(pk, format!("127.0.0.1:{tcp}"));
            let mut c = net.dial(pk, 1).await.expect("dial");
            c.write_all(&msg(99, "a bystander")).await.unwrap();
            let mut head = [0u8; 4];
            c.read_exact(&mut head).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
            c.read_exact(&mut body).await.unwrap();
            String::from_utf8(body).unwrap()
        })
    });
    let took = t0.elapsed();
    assert!(reply.contains("chat-ack"), "{reply}");
    assert!(took < Duration::from_secs(10), "bystander waited {took:?}");
    let sent = flood.join().unwrap();
    eprintln!("flood: {sent} of 10,000 written; bystander acked in {took:?}");
    // What was stored reads back intact: the flooder's stored messages each once, in the
    // order sent (the receiver may still be reading the rest: a peer that does not read its
    // nacks is held back by its own connection, not anyone else's).
    let (code, h) = http_to(
        t.http,
        "GET",
        &format!("/history?peer={}&limit=1000", flooder_pk.to_hex()),
        None,
        Some(&t.token),
    );
    assert_eq!(code, 200, "history of the flooder: {code}");
    let texts: Vec<u64> = h
        .match_indices("\"flood ")
        .filter_map(|(i, _)| {
            h[i + 7..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
        .collect();
    assert!(!texts.is_empty(), "nothing of the flood stored");
    let ordered = texts.windows(2).all(|w| w[0] < w[1]);
    assert!(
        ordered,
        "flood history out of order or twice ({} messages)",
        texts.len()
    );
    // Every message read is counted once: stored (within the per-peer rate) or dropped. A
    // record can be in the history a moment before its count (the counter follows the
    // store's answer), so wait (≤ 5 s) for the count to reach what the history showed.
    let t0 = Instant::now();
    let (inbound, dropped) = loop {
        let (code, st) = http_to(t.http, "GET", "/status", None, Some(&t.token));
        assert_eq!(code, 200, "{st}");
        let st = parse(&st);
        let n = (
            as_u64(get(&st, "inbound_msg_count")),
            as_u64(get(&st, "inbound_drop_count")),
        );
        if n.0 > texts.len() as u64 || t0.elapsed() > Duration::from_secs(5) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "flood: {} in history, {inbound} stored, {dropped} dropped",
        texts.len()
    );

    assert!(
        inbound > texts.len() as u64,
        "{inbound} stored, {} in history + the bystander",
        texts.len()
    );
    assert!(
        inbound + dropped <= u64::from(sent) + 1,
        "{inbound} + {dropped} > {sent} + 1"
    );
    assert!(dropped > 0, "a flood of {sent} met no rate limit");
    let (code, h) = http_to(
        t.http,
        "GET",
        &format!("/history?peer={}", bystander_pk.to_hex()),
        None,
        Some(&t.token),
    );
    assert_eq!(code, 200, "{h}");
    assert!(h.contains("a bystander"), "{h}");
}

#[test]
fn hostile_http_gets_clear_errors() {
    let t = target("skychat-hostile-http");
    let tok = Some(t.token.as_str());
    // No credential, a wrong one.
    assert_eq!(http_to(t.http, "GET", "/status", None, None).0, 401);
    assert_eq!(http_to(t.http, "GET", "/history", None, Some("00")).0, 401);
    // Garbage, wrong types, unknown fields, missing fields: 400 naming what is wrong (404 for
    // a recipient that is neither a key nor a known alias).
    for (path, body) in [
        ("/message", "{not json"),
        ("/message", "[]"),
        ("/message", r#"{"recipient": 5, "message": "x"}"#),
        ("/message", r#"{"recipient": "zz", "message": "x"}"#),
        ("/message", r#"{"message": "x"}"#),
        (
            "/message",
            r#"{"recipient": "02aa", "message": "x", "bogus": 1}"#,
        ),
        (
            "/message",
            r#"{"recipient": "02aa", "message": "x", "wait_ms": -1}"#,
        ),
        ("/history/forget", r#"{"peer": 7}"#),
        ("/aliases", r#"{"name": ""}"#),
        ("/read", "\u{0}\u{1}"),
    ] {
        let (code, r) = http_to(t.http, "POST", path, Some(body), tok);
        assert!(
            matches!(code, 400 | 404),
            "POST {path} {body:?}: {code} {r}"
        );
        assert!(r.contains("error"), "POST {path}: {r}");
    }
    // Every path that reads a body, with each kind of garbage: 400 with the reason; nothing
    // of it is stored.
    for path in [
        "/message",
        "/history/forget",
        "/read",
        "/aliases",
        "/aliases/rm",
    ] {
        for body in [
            "{not json",
            "[]",
            "null",
            "\u{0}\u{1}",
            r#"{"bogus": 1}"#,
            r#"{"peer": {"deep": [[[[[[[[[[1]]]]]]]]]]}}"#,
            "\"a string\"",
        ] {
            let (code, r) = http_to(t.http, "POST", path, Some(body), tok);
            assert_eq!(code, 400, "POST {path} {body:?}: {r}");
            assert!(r.contains("error"), "POST {path} {body:?}: {r}");
        }
    }
    let (_, al) = http_to(t.http, "GET", "/aliases", None, tok);
    assert!(!al.contains("bogus"), "{al}");
    // Wrong methods and unknown paths.
    for (m, path, want) in [
        ("DELETE", "/message", 405),
        ("PUT", "/history", 405),
        ("POST", "/status", 405),
        ("GET", "/aliases/rm", 405),
        ("GET", "/nope", 404),
        ("GET", "/../../etc/passwd", 404),
    ] {
        let (code, r) = http_to(t.http, m, path, None, tok);
        assert_eq!(code, want, "{m} {path}: {r}");
    }
    // A wrong or malformed login token sets no cookie.
    for q in ["token=00", "token=%zz", "token=", ""] {
        let (code, r) = http_to(t.http, "GET", &format!("/login?{q}"), None, None);
        assert_eq!(code, 401, "/login?{q}: {r}");
    }
    // Oversize body: refused before it is read.
    let big = format!(
        r#"{{"recipient": "x", "message": "{}"}}"#,
        "a".repeat(200_000)
    );
    let (code, _) = http_to(t.http, "POST", "/message", Some(&big), tok);
    assert_eq!(code, 413);
    // Bad query values.
    for path in [
        "/history?limit=abc",
        "/history?peer=nothex",
        "/events?since=x",
        "/events?channel=bogus",
        "/history?limit=99999999999999999999999",
        "/history?peer=%zz",
    ] {
        let (code, r) = http_to(t.http, "GET", path, None, tok);
        assert!(matches!(code, 400 | 404), "GET {path}: {code} {r}");
    }
    // A page elsewhere (Origin) and DNS rebinding (Host) are refused before the token.
    let raw = |req: String| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", t.http)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let r = raw(format!(
        "POST /message HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        t.http, t.token
    ));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(format!(
        "GET /status HTTP/1.1\r\nHost: evil.example:{}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        t.http, t.token
    ));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    // Garbage that is not HTTP: a 400 and a close, and the surface still answers.
    let r = raw("\u{1}\u{2}garbage\r\n\r\n".to_string());
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let (code, st) = http_to(t.http, "GET", "/status", None, tok);
    assert_eq!(code, 200, "{st}");
    assert!(as_u64(get(&parse(&st), "http_error_count")) >= 10, "{st}");
}

/// A member that subscribes twice on one connection gets one pusher: a new post reaches it
/// once (`group-entry`), not once per `group-sub` (issue 15: one pusher per group and
/// connection; the second `group-sub` rewinds that pusher instead of starting another).
#[test]
fn a_second_group_sub_on_one_connection_does_not_double_the_pushes() {
    let t = target("skychat-hostile-resub");
    let member = Keypair::generate().unwrap();
    let body = format!(
        r#"{{"name":"resub","members":["{}"]}}"#,
        member.public().to_hex()
    );
    let (code, r) = http_to(t.http, "POST", "/groups", Some(&body), Some(&t.token));
    assert_eq!(code, 200, "{r}");
    let gid = as_str(get(&parse(&r), "id")).to_string();
    let (pk, tcp, http, token) = (t.pk, t.tcp, t.http, t.token.clone());
    let types = run(move |ex| {
        Box::pin(async move {
            let net = TcpNet::new(member, None, ex);
            net.add_peer(pk, format!("127.0.0.1:{tcp}"));
            let mut c = net.dial(pk, 1).await.expect("dial");
            let sub = format!(r#"{{"type":"group-sub","g":"{gid}","since":0}}"#);
            let mut twice = frame(sub.as_bytes());
            twice.extend_from_slice(&frame(sub.as_bytes()));
            c.write_all(&twice).await.unwrap();
            c.flush().await.unwrap();
            async_io::Timer::after(Duration::from_secs(1)).await;
            // One post, sequenced after both subscriptions were served.
            let (code, r) = http_to(
                http,
                "POST",
                &format!("/groups/{gid}/message"),
                Some(r#"{"message":"one post"}"#),
                Some(&token),
            );
            assert_eq!(code, 200, "{r}");
            let mut types = Vec::new();
            let read = async {
                loop {
                    let mut head = [0u8; 4];
                    if c.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let mut b = vec![0u8; u32::from_be_bytes(head) as usize];
                    if c.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    let s = String::from_utf8_lossy(&b).to_string();
                    let ty = s
                        .split(r#""type":""#)
                        .nth(1)
                        .and_then(|x| x.split('"').next())
                        .unwrap_or("?")
                        .to_string();
                    types.push(ty);
                }
            };
            future::or(read, async {
                async_io::Timer::after(Duration::from_secs(3)).await;
            })
            .await;
            types
        })
    });
    let entries = types.iter().filter(|t| *t == "group-entry").count();
    let batches = types.iter().filter(|t| *t == "group-batch").count();
    assert!(batches >= 1, "no catch-up answer: {types:?}");
    assert_eq!(entries, 1, "the post should arrive once: {types:?}");
}
