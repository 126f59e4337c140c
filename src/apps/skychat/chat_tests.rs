//! Engine tests: real engines over TCP-direct networks on 127.0.0.1 (the executor runs on
//! the test thread; every test is bounded by a timeout).

use super::*;
use crate::crypto::Keypair;
use futures_lite::future::block_on;

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

struct Node {
    chat: Chat,
    pk: PublicKey,
    addr: String,
    _serve: Task<Result<(), String>>,
}

fn node(ex: &Arc<Executor<'static>>, seed: u8, cfg: ChatConfig) -> Node {
    let keys = Keypair::from_seed(&[seed; 32]);
    let pk = *keys.public();
    let addr = free_addr();
    let tcp = TcpNet::new(keys, Some(addr.clone()), ex.clone());
    let hub = Hub::new(1000, Duration::from_secs(3600));
    let chat = Chat::new(
        cfg,
        tcp.clone(),
        Some(tcp.clone()),
        hub,
        Aliases::in_memory(),
        ex.clone(),
    );
    let l = tcp.listen(PORT).unwrap();
    let c = chat.clone();
    let serve = ex.spawn(async move { c.serve(l).await });
    Node {
        chat,
        pk,
        addr,
        _serve: serve,
    }
}

/// A raw client with its own keys, dialling `to` over TCP.
async fn raw(ex: &Arc<Executor<'static>>, seed: u8, to: &Node) -> Conn {
    let tcp = TcpNet::new(Keypair::from_seed(&[seed; 32]), None, ex.clone());
    tcp.add_peer(to.pk, to.addr.clone());
    tcp.dial(to.pk, PORT).await.unwrap()
}

fn run<T>(ex: &Arc<Executor<'static>>, f: impl std::future::Future<Output = T>) -> T {
    block_on(ex.run(future::or(async { Some(f.await) }, async {
        Timer::after(Duration::from_secs(30)).await;
        None
    })))
    .expect("test timed out")
}

fn req(to: PublicKey, body: &str, wait_ms: u64) -> SendReq {
    SendReq {
        to,
        body: body.into(),
        network: NetChoice::Auto,
        wait: Duration::from_millis(wait_ms),
        reply_to: None,
        retries: 0,
    }
}

fn msg(id: u64, body: &str) -> Vec<u8> {
    proto::encode(&Envelope::Msg {
        id: MsgId(id),
        body: body.into(),
        ack: true,
        reply_to: None,
    })
}

#[test]
fn a_message_is_acked_and_shown() {
    let ex = Arc::new(Executor::new());
    let a = node(&ex, 1, ChatConfig::default());
    let b = node(&ex, 2, ChatConfig::default());
    a.chat.add_tcp_peer(b.pk, b.addr.clone());
    let sub = b.chat.hub().subscribe(&[Channel::Dm]);
    run(&ex, async {
        let out = a.chat.send(req(b.pk, "hello \"b\"", 5000)).await;
        let SendOutcome::Acked { by, network, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!((by, network), (b.pk, "tcp-direct"));
        let e = sub.next().await.unwrap();
        assert_eq!(
            (e.text.as_str(), e.from, e.dir),
            ("hello \"b\"", a.pk, Dir::In)
        );
        // Fire and forget, then the other way on the same connection.
        assert!(matches!(
            a.chat.send(req(b.pk, "x", 0)).await,
            SendOutcome::Sent { .. }
        ));
        let back = b.chat.send(req(a.pk, "hi a", 5000)).await;
        assert!(matches!(back, SendOutcome::Acked { .. }), "{back:?}");
    });
    let (sa, sb) = (a.chat.status(), b.chat.status());
    assert_eq!(sa.outbound_msg_count, 2);
    assert_eq!(sb.inbound_msg_count, 2);
    assert_eq!(b.chat.unread(), 2);
    // b has no address for a: its reply went over the connection a opened.
    assert_eq!(sb.active_peer_conns, 1);
    assert!(matches!(
        block_on(ex.run(a.chat.send(req(b.pk, "", 100)))),
        SendOutcome::Failed { .. }
    ));
}

#[test]
fn duplicates_are_acked_but_shown_once_and_oversize_is_nacked() {
    let ex = Arc::new(Executor::new());
    let cfg = ChatConfig {
        max_message: 100,
        ..ChatConfig::default()
    };
    let b = node(&ex, 3, cfg);
    run(&ex, async {
        let mut c = raw(&ex, 4, &b).await;
        for _ in 0..2 {
            proto::write_frame(&mut c, &msg(42, "once")).await.unwrap();
            let ack = proto::read_frame(&mut c).await.unwrap().unwrap();
            assert_eq!(proto::decode(&ack).unwrap(), Envelope::Ack(MsgId(42)));
        }
        let big = "x".repeat(101);
        proto::write_frame(&mut c, &msg(43, &big)).await.unwrap();
        let nack = proto::decode(&proto::read_frame(&mut c).await.unwrap().unwrap()).unwrap();
        assert!(
            matches!(&nack, Envelope::Nack { id, reason } if *id == MsgId(43) && reason.contains("over the limit")),
            "{nack:?}"
        );
        // An envelope from a newer peer is dropped, plain text is shown.
        proto::write_frame(&mut c, br#"{"type":"group-invite"}"#)
            .await
            .unwrap();
        proto::write_frame(&mut c, b"plain").await.unwrap();
        for _ in 0..100 {
            if b.chat.status().inbound_msg_count == 2 {
                break;
            }
            Timer::after(Duration::from_millis(10)).await;
        }
    });
    let s = b.chat.status();
    assert_eq!(s.inbound_msg_count, 2, "once + plain");
    assert_eq!(s.duplicate_count, 1);
    assert_eq!(s.inbound_drop_count, 2, "oversize + unknown envelope");
    let texts: Vec<String> = b
        .chat
        .hub()
        .kept(&[Channel::Dm])
        .iter()
        .map(|e| e.text.clone())
        .collect();
    assert_eq!(texts, ["once", "plain"]);
}

#[test]
fn a_protocol_error_closes_only_its_connection() {
    let ex = Arc::new(Executor::new());
    let b = node(&ex, 5, ChatConfig::default());
    run(&ex, async {
        let mut bad = raw(&ex, 6, &b).await;
        let mut good = raw(&ex, 7, &b).await;
        futures_lite::io::AsyncWriteExt::write_all(&mut bad, &[0, 0, 0, 0])
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        let n = futures_lite::io::AsyncReadExt::read(&mut bad, &mut buf)
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "the bad connection is closed");
        proto::write_frame(&mut good, &msg(9, "still here"))
            .await
            .unwrap();
        let ack = proto::read_frame(&mut good).await.unwrap().unwrap();
        assert_eq!(proto::decode(&ack).unwrap(), Envelope::Ack(MsgId(9)));
    });
    assert_eq!(b.chat.status().protocol_error_count, 1);
}

#[test]
fn whitelist_rate_limit_and_unreachable_peers() {
    let ex = Arc::new(Executor::new());
    let allowed = *Keypair::from_seed(&[8; 32]).public();
    let b = node(
        &ex,
        9,
        ChatConfig {
            tcp_whitelist: vec![allowed],
            per_peer_rate: 5,
            ..ChatConfig::default()
        },
    );
    let a = node(&ex, 10, ChatConfig::default());
    run(&ex, async {
        // A stranger's connection is closed before anything is read.
        let tcp = TcpNet::new(Keypair::from_seed(&[11; 32]), None, ex.clone());
        tcp.add_peer(b.pk, b.addr.clone());
        if let Ok(mut s) = tcp.dial(b.pk, PORT).await {
            let _ = proto::write_frame(&mut s, &msg(1, "let me in")).await;
            assert!(matches!(proto::read_frame(&mut s).await, Ok(None) | Err(_)));
        }
        // The whitelisted key gets a burst of 2 × 5, then nacks.
        let mut ok = raw(&ex, 8, &b).await;
        let mut nacked = 0;
        for i in 0..12u64 {
            proto::write_frame(&mut ok, &msg(100 + i, "m"))
                .await
                .unwrap();
            let r = proto::decode(&proto::read_frame(&mut ok).await.unwrap().unwrap()).unwrap();
            if matches!(r, Envelope::Nack { .. }) {
                nacked += 1;
            }
        }
        assert_eq!(nacked, 2);
        // Nobody listens at a's address book entry for this key.
        let nobody = *Keypair::from_seed(&[12; 32]).public();
        assert!(
            b.chat.status().inbound_drop_count >= 1,
            "the stranger is counted"
        );
        let out = a.chat.send(req(nobody, "anyone?", 500)).await;
        assert!(
            matches!(&out, SendOutcome::Failed { reason } if reason.contains("unreachable")),
            "{out:?}"
        );
    });
    assert!(b.chat.status().inbound_drop_count >= 3);
    assert_eq!(a.chat.status().outbound_fail_count, 1);
}

#[test]
fn no_ack_in_time_is_reported_with_retries() {
    let ex = Arc::new(Executor::new());
    let a = node(&ex, 13, ChatConfig::default());
    // A "peer" that reads frames and never acks.
    let keys = Keypair::from_seed(&[14; 32]);
    let pk = *keys.public();
    let addr = free_addr();
    let tcp = TcpNet::new(keys, Some(addr.clone()), ex.clone());
    let l = tcp.listen(PORT).unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let f2 = frames.clone();
    let _mute = ex.spawn(async move {
        let mut c = l.accept().await.unwrap();
        while let Ok(Some(_)) = proto::read_frame(&mut c).await {
            f2.fetch_add(1, Ordering::Relaxed);
        }
    });
    a.chat.add_tcp_peer(pk, addr);
    run(&ex, async {
        let mut r = req(pk, "hello?", 200);
        r.retries = 2;
        let out = a.chat.send(r).await;
        assert!(
            matches!(&out, SendOutcome::NotAcked { reason, ms, .. } if reason.contains("no ack") && *ms >= 600),
            "{out:?}"
        );
    });
    assert_eq!(frames.load(Ordering::Relaxed), 3, "sent once, resent twice");
    assert_eq!(a.chat.status().outbound_retry_count, 2);
}
