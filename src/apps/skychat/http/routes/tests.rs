//! The routes over a real server on 127.0.0.1 and a real engine whose network reaches nobody.

use std::time::Duration;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::app::BoxFut;
use crate::app::conn::Conn;
use crate::app::net::{Listen, Net, NetError};
use crate::apps::skychat::aliases::Aliases;
use crate::apps::skychat::chat::ChatConfig;
use crate::apps::skychat::events::{Hub, now_ms};
use crate::crypto::Keypair;

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

/// One request on a fresh connection; returns (status, body).
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        let _ = s.read_to_end(&mut out).await;
    };
    future::or(read, async {
        Timer::after(Duration::from_secs(10)).await;
    })
    .await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn routes_answer_with_the_documented_shapes() {
    let ex = Arc::new(Executor::new());
    let me = *Keypair::from_seed(&[1; 32]).public();
    let peer = *Keypair::from_seed(&[2; 32]).public();
    let hub = Hub::new(1000, Duration::from_secs(3600));
    let chat = Chat::new(
        ChatConfig::default(),
        Arc::new(NoNet(me)),
        None,
        hub.clone(),
        Aliases::in_memory(),
        ex.clone(),
    );
    let dir = std::env::temp_dir().join(format!("skychat-routes-{}", std::process::id()));
    let run = async {
        let (l, served, opts) = bind("127.0.0.1:0", &dir, None).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&opts.token_file).unwrap().trim(),
            opts.token
        );
        assert!(
            opts.token_file
                .ends_with(format!("skychat-http-{}.token", served.port()))
        );
        let auth = format!("Authorization: Bearer {}\r\n", opts.token);
        ex.spawn(serve(l, served, chat.clone(), opts, ex.clone()))
            .detach();
        let a = served;

        assert_eq!(
            call(a, "GET", "/health", "", "").await,
            (200, "{\"ok\":true}\n".into())
        );
        let (s, b) = call(a, "GET", "/status", "", "").await;
        assert_eq!(s, 401, "{b}");
        let (s, b) = call(a, "GET", "/", &auth, "").await;
        assert_eq!(s, 200);
        assert!(b.contains("EventSource('/sse')"));

        // Unreachable peer: 502 with the reason.
        let msg = format!(
            r#"{{"recipient":"{}","message":"hi","wait_ms":200}}"#,
            peer.to_hex()
        );
        let (s, b) = call(a, "POST", "/message", &auth, &msg).await;
        assert_eq!(s, 502, "{b}");
        assert!(b.starts_with("{\"acked\":false,\"reason\":"), "{b}");
        // Bad body: 400 naming the field; unknown alias: 404.
        let (s, b) = call(a, "POST", "/message", &auth, r#"{"recipient":"bob"}"#).await;
        assert_eq!(s, 400);
        assert!(b.contains("`message`"), "{b}");
        let (s, b) = call(
            a,
            "POST",
            "/message",
            &auth,
            r#"{"recipient":"bob","message":"x"}"#,
        )
        .await;
        assert_eq!(s, 404, "{b}");

        // Aliases.
        let add = format!(r#"{{"name":"bob","pk":"{}"}}"#, peer.to_hex());
        assert_eq!(call(a, "POST", "/aliases", &auth, &add).await.0, 204);
        let (s, b) = call(a, "GET", "/aliases", &auth, "").await;
        assert_eq!(
            (s, b),
            (
                200,
                format!("[{{\"name\":\"bob\",\"pk\":\"{}\"}}]\n", peer.to_hex())
            )
        );
        assert_eq!(
            call(a, "POST", "/aliases/rm", &auth, r#"{"name":"bob"}"#)
                .await
                .0,
            204
        );
        assert_eq!(
            call(a, "POST", "/aliases/rm", &auth, r#"{"name":"bob"}"#)
                .await
                .0,
            404
        );

        // History from the ring.
        hub.publish(Event {
            seq: 0,
            ts_ms: now_ms(),
            channel: Channel::Dm,
            kind: Kind::Message,
            id: MsgId(0xab),
            dir: Dir::In,
            from: peer,
            to: me,
            transport: "dmsg",
            text: "hello there".into(),
            reply_to: None,
            status: None,
            history: false,
            group: None,
        });
        let (s, b) = call(
            a,
            "GET",
            &format!("/history?peer={}", peer.to_hex()),
            &auth,
            "",
        )
        .await;
        assert_eq!(s, 200);
        assert!(
            b.contains("\"id\":\"00000000000000ab\"") && b.contains("\"message\":\"hello there\""),
            "{b}"
        );
        let (s, b) = call(a, "GET", "/history/peers", &auth, "").await;
        assert_eq!(s, 200);
        assert!(
            b.contains(&format!("\"peer\":\"{}\",\"count\":1", peer.to_hex())),
            "{b}"
        );
        assert_eq!(call(a, "GET", "/history?limit=0", &auth, "").await.0, 400);

        let (s, b) = call(a, "GET", "/unread", &auth, "").await;
        assert_eq!(s, 200);
        assert!(b.starts_with("{\"unread\":"), "{b}");
        assert_eq!(call(a, "POST", "/unread", &auth, "").await.0, 204);

        let (s, b) = call(a, "GET", "/status", &auth, "").await;
        assert_eq!(s, 200);
        for k in [
            "\"visor_pk\"",
            "\"schema_version\":\"v1\"",
            "\"frame_proto_version\":1",
            "\"outbound_fail_count\":1",
            "\"http_error_count\":",
        ] {
            assert!(b.contains(k), "{k} in {b}");
        }
        assert!(!b.contains("\"http_error_count\":0"), "{b}");
        assert_eq!(call(a, "GET", "/nope", &auth, "").await.0, 404);
        assert_eq!(call(a, "DELETE", "/status", &auth, "").await.0, 405);
        // Oversize body: refused by the server's limit.
        let big = "x".repeat(crate::apps::skychat::http::MAX_BODY + 10);
        let (s, _) = call(a, "POST", "/message", &auth, &big).await;
        assert!(s == 413 || s == 400, "{s}");
    };
    future::block_on(ex.run(run));
    let _ = std::fs::remove_dir_all(&dir);
}
