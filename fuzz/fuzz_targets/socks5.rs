//! The SOCKS5 parsers (`apps::socks5::proto`) and the server-side handshake driver
//! (`apps::socks5::accept`), fed arbitrary bytes. Invariants: no panic or hang; a parser never
//! claims more bytes than it was given, and is monotone (a complete message stays complete,
//! with the same length, when more bytes follow); a parsed request re-emits to the bytes it
//! came from (but the reserved byte, which is not checked); the handshake writes only whole
//! SOCKS5 answers and, given a passcode, never accepts a request without it.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future::block_on;
use futures_lite::io::{AsyncRead, AsyncWrite};
use libfuzzer_sys::fuzz_target;
use skywire::apps::socks5::{self, Auth, proto};

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
        // Small reads, to exercise messages split across reads.
        let n = buf.len().min(3).min(self.input.len() - self.pos);
        let p = self.pos;
        buf[..n].copy_from_slice(&self.input[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn monotone<T: PartialEq + core::fmt::Debug>(data: &[u8], p: impl Fn(&[u8]) -> proto::Parsed<T>) {
    if let Ok(Some((t, n))) = p(data) {
        assert!(n <= data.len());
        assert_eq!(p(&data[..n]).ok().flatten().map(|x| x.1), Some(n));
        let _ = t;
    }
}

fuzz_target!(|data: &[u8]| {
    monotone(data, proto::parse_greeting);
    monotone(data, |b| Ok(proto::parse_userpass(b)?.map(|(_, n)| ((), n))));
    monotone(data, proto::parse_request);
    monotone(data, proto::parse_reply);
    monotone(data, proto::parse_choice);
    if let Ok(Some((r, n))) = proto::parse_request(data) {
        let mut out = Vec::new();
        proto::emit_request(r.cmd, &r.host, r.port, &mut out);
        let mut want = data[..n].to_vec();
        want[2] = 0;
        assert_eq!(out, want);
    }
    for auth in [Auth::Open, Auth::Passcode("pw".into())] {
        let mut d = Duplex {
            input: data.to_vec(),
            pos: 0,
            output: Vec::new(),
        };
        let r = block_on(socks5::accept(&mut d, &auth));
        let out = &d.output;
        // Answers: the method choice (2), maybe the auth status (2), maybe a reply (10).
        assert!(matches!(out.len(), 0 | 2 | 4 | 12 | 14), "{out:02x?}");
        if out.len() >= 2 {
            assert_eq!(out[0], 5);
        }
        if let (Ok(_), Auth::Passcode(_)) = (&r, &auth) {
            // Accepted with a passcode: the user/pass exchange happened and succeeded.
            assert_eq!(&out[..4], &[5, 2, 1, 0]);
        }
    }
});
