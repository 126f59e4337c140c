//! Streaming HTTP responses of `http::server`, with external clients: sseclient-py
//! (tests/py/sse_client.py, DESIGN.md §9) for Server-Sent Events and curl for chunked NDJSON.
//!
//! The server is the library's own (`http::server::serve` and `http::stream`), run in this
//! process with a small chat-like hub: `GET /events` (SSE) and `GET /feed.ndjson` subscribe,
//! `POST /publish` fans a message out to every subscriber with the non-blocking `send` (a
//! subscriber whose queue is full is dropped), `POST /close` ends every stream, and
//! `GET /firehose` is a producer task that writes as fast as `send_wait` lets it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_net::TcpListener;
use skywire::http::server::{self, Limits, Response, sync_handler};
use skywire::http::stream::{BodyTx, Event, SseTx, StreamOpts};

enum Sub {
    Sse(SseTx),
    Nd(BodyTx),
}

#[derive(Default)]
struct Hub {
    subs: Mutex<Vec<Sub>>,
    firehose_ended: AtomicBool,
}

fn opts() -> StreamOpts {
    StreamOpts {
        queue_bytes: 32 * 1024,
        write_timeout: Duration::from_secs(1),
        keepalive: Some(Duration::from_millis(100)),
    }
}

/// The hub's server on 127.0.0.1, on a background executor thread.
fn start() -> (SocketAddr, Arc<Hub>) {
    let ex = Arc::new(Executor::new());
    let listener = async_io::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Arc::new(Hub::default());
    let (h, ex2) = (hub.clone(), ex.clone());
    let handler = sync_handler(move |req| {
        let mut subs = h.subs.lock().unwrap();
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/events") => {
                let (r, tx) = Response::sse(&opts());
                subs.push(Sub::Sse(tx));
                r
            }
            ("GET", "/feed.ndjson") => {
                let (r, tx) = Response::ndjson(&opts());
                subs.push(Sub::Nd(tx));
                r
            }
            ("GET", "/firehose") => {
                let (r, tx) = Response::ndjson(&opts());
                let h = h.clone();
                ex2.spawn(async move {
                    let line = format!("{{\"fill\":\"{}\"}}\n", "x".repeat(4000));
                    while tx.send_wait(line.as_bytes()).await.is_ok() {}
                    h.firehose_ended.store(true, Ordering::SeqCst);
                })
                .detach();
                r
            }
            ("GET", "/subs") => Response::json(
                200,
                format!(
                    "{{\"n\":{},\"firehose_ended\":{}}}",
                    subs.len(),
                    h.firehose_ended.load(Ordering::SeqCst)
                ),
            ),
            ("POST", "/publish") => {
                let data = String::from_utf8_lossy(&req.body).into_owned();
                let ev = Event {
                    event: req.query_param("event"),
                    id: req.query_param("id"),
                    data: &data,
                };
                let line = format!("{{\"data\":{data:?}}}\n");
                let before = subs.len();
                subs.retain(|s| match s {
                    Sub::Sse(tx) => tx.send(&ev).is_ok(),
                    Sub::Nd(tx) => tx.send(line.as_bytes()).is_ok(),
                });
                Response::json(
                    200,
                    format!(
                        "{{\"delivered\":{},\"dropped\":{}}}",
                        subs.len(),
                        before - subs.len()
                    ),
                )
            }
            ("POST", "/close") => {
                subs.clear();
                Response::json(200, "{}".into())
            }
            _ => Response::error(404, "no such route"),
        }
    });
    std::thread::spawn(move || {
        async_io::block_on(ex.run(server::serve(
            listener,
            ex.clone(),
            handler,
            Limits::default(),
        )))
        .ok();
    });
    (addr, hub)
}

/// One request on a fresh connection; the response body. Panics after 10 s: a publisher
/// must never be held up by a subscriber.
fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn field(json: &str, key: &str) -> String {
    let i = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key}: {json}"));
    json[i + key.len() + 3..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Waits until the hub has `n` subscribers.
fn wait_subs(addr: SocketAddr, n: usize) {
    let t0 = Instant::now();
    while field(&call(addr, "GET", "/subs", b""), "n") != n.to_string() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{n} subscribers never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A line from a child's stdout, or a panic after `secs`.
fn line_within(rx: &std::sync::mpsc::Receiver<String>, secs: u64, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
}

/// Reads `child`'s stdout lines on a thread.
fn lines_of(out: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn sse_events_reach_sseclient_as_they_are_produced_with_keepalives_between() {
    let (addr, _hub) = start();
    let mut child = Command::new(common::venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/sse_client.py"
        ))
        .args(["127.0.0.1", &addr.port().to_string(), "/events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let open = line_within(&lines, 15, "response head");
    assert_eq!(open, "open 200 text/event-stream", "{open}");
    wait_subs(addr, 1);

    // Event 1; event 2 is produced only once the client has shown event 1, after a pause
    // of several keep-alive intervals, whose comments the client sees between the two.
    call(addr, "POST", "/publish?event=msg&id=1", b"hello\nworld");
    let e1 = line_within(&lines, 10, "event 1");
    assert!(
        e1.starts_with(r#"{"event": "msg", "id": "1", "data": "hello\nworld", "keepalives": "#),
        "{e1}"
    );
    std::thread::sleep(Duration::from_millis(450));
    call(addr, "POST", "/publish?id=2", b"second");
    let e2 = line_within(&lines, 10, "event 2");
    assert!(
        e2.starts_with(r#"{"event": "message", "id": "2", "data": "second", "keepalives": "#),
        "{e2}"
    );
    let kas: u32 = e2
        .rsplit(": ")
        .next()
        .unwrap()
        .trim_end_matches('}')
        .parse()
        .unwrap();
    assert!((2..=10).contains(&kas), "keep-alives between events: {e2}");
    call(addr, "POST", "/publish?event=end", b"bye");
    line_within(&lines, 10, "the end event");
    assert!(child.wait().unwrap().success());
}

#[test]
fn ndjson_streams_to_curl_chunk_by_chunk() {
    let (addr, _hub) = start();
    let url = format!("http://{addr}/feed.ndjson");
    let mut curl = Command::new("curl")
        .args(["-sSN", "--fail", "--max-time", "30", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(curl.stdout.take().unwrap());
    wait_subs(addr, 1);
    for (i, msg) in ["one", "two \"quoted\"", "three"].iter().enumerate() {
        // Each line is produced only after curl has printed the one before.
        call(addr, "POST", "/publish", msg.as_bytes());
        let got = line_within(&lines, 10, &format!("line {i}"));
        assert_eq!(got, format!("{{\"data\":{msg:?}}}"));
    }
    // The end of the stream is a proper last chunk: curl exits 0 (it fails on a broken
    // chunked body).
    call(addr, "POST", "/close", b"");
    assert!(curl.wait().unwrap().success());
    assert!(lines.recv_timeout(Duration::from_secs(5)).is_err());

    // HTTP/1.0 has no chunks: the raw lines, then the close.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /feed.ndjson HTTP/1.0\r\n\r\n").unwrap();
    wait_subs(addr, 1);
    call(addr, "POST", "/publish", b"raw");
    call(addr, "POST", "/close", b"");
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.contains("Content-Type: application/x-ndjson\r\n"),
        "{out}"
    );
    assert!(
        !out.contains("Transfer-Encoding") && out.contains("Connection: close"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\n{\"data\":\"raw\"}\n"), "{out}");
}

/// A subscriber that sends its request and never reads.
fn stalled(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    s
}

/// True once the server has closed `s`: whatever was buffered is read, then end-of-stream.
fn closed_by_server(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_without_stalling_the_others() {
    let (addr, hub) = start();
    // A reader that keeps up, on its own thread; it returns everything it got.
    let mut good = TcpStream::connect(addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    good.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = good.read_to_end(&mut all);
        all
    });
    wait_subs(addr, 1);
    let slow = stalled(addr, "/events");
    wait_subs(addr, 2);

    // Publish 8 KiB events until the stalled subscriber has been dropped; every publish
    // answers (within the 10 s of `call`) and the reader gets every event.
    let big = vec![b'z'; 8 * 1024];
    let mut sent = 0;
    let mut dropped = false;
    while !dropped {
        assert!(sent < 4000, "the stalled client was never dropped");
        let r = call(addr, "POST", "/publish?event=big", &big);
        sent += 1;
        dropped = field(&r, "dropped") == "1";
        if !dropped {
            assert_eq!(field(&r, "delivered"), "2", "{r}");
        }
    }
    for _ in 0..20 {
        let r = call(addr, "POST", "/publish?event=big", &big);
        assert_eq!(field(&r, "delivered"), "1", "{r}");
        sent += 1;
    }
    assert!(
        closed_by_server(slow),
        "the stalled client's connection is closed"
    );

    // A producer task that waits for room (send_wait) is released by the write timeout.
    let slow = stalled(addr, "/firehose");
    let t0 = Instant::now();
    while field(&call(addr, "GET", "/subs", b""), "firehose_ended") != "true" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the producer stayed blocked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed_by_server(slow));
    assert!(!hub.subs.lock().unwrap().is_empty());

    call(addr, "POST", "/close", b"");
    let all = reader.join().unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.contains("Transfer-Encoding: chunked\r\n"));
    assert!(text.contains("Cache-Control: no-cache\r\n"));
    assert_eq!(text.matches("event: big\n").count(), sent);
    assert!(
        text.ends_with("\r\n0\r\n\r\n"),
        "the last chunk ends the body"
    );
}
