//! The HTTP/1.1 server's request reader, fed arbitrary bytes as one connection. Invariants:
//! no panic or hang; everything written back is a sequence of complete, well-formed HTTP/1.1
//! responses whose Content-Length matches the body that follows; at most one response per
//! request attempt, and an error response ends the connection.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future::block_on;
use futures_lite::io::{AsyncRead, AsyncWrite};
use libfuzzer_sys::fuzz_target;
use skywire::http::server::{Limits, Response, serve_connection, sync_handler};

struct Duplex {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Small reads, to exercise partial headers and bodies.
        let n = buf.len().min(self.input.len() - self.pos).min(13);
        let start = self.pos;
        buf[..n].copy_from_slice(&self.input[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let methods = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = methods.clone();
    let handler = sync_handler(move |req| {
        seen.lock().unwrap().push(req.method.clone());
        Response::text(
            200,
            format!("{} {} {}", req.method, req.path, req.body.len()),
        )
    });
    let limits = Limits {
        max_header_bytes: 1024,
        max_body_bytes: 512,
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_connections: 1,
        ..Limits::default()
    };
    let mut conn = Duplex {
        input: data.to_vec(),
        pos: 0,
        output: Vec::new(),
    };
    block_on(serve_connection(
        &mut conn,
        None,
        Arc::clone(&handler),
        limits,
    ));
    // Parse back everything the server wrote.
    let mut out = &conn.output[..];
    let mut errors = 0;
    let methods = methods.lock().unwrap().clone();
    let mut answered = methods.iter();
    while !out.is_empty() {
        if let Some(rest) = out.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n") {
            out = rest;
            continue;
        }
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut hs);
        let n = match resp.parse(out) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("server wrote a bad response head: {other:?}"),
        };
        let code = resp.code.unwrap();
        let len: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .expect("every response has a Content-Length");
        // A response to HEAD announces the length but carries no body.
        let body = if code < 400 && answered.next().is_some_and(|m| m == "HEAD") {
            0
        } else {
            len
        };
        assert!(
            out.len() >= n + body,
            "body shorter than its Content-Length"
        );
        if code >= 400 {
            errors += 1;
        }
        out = &out[n + body..];
        // An error response is the last thing on the connection.
        assert!(code < 400 || out.is_empty(), "data after an error response");
    }
    assert!(errors <= 1);
});
