//! The skynet port-forwarding header (`apps::skynet_fwd::proto`, docs/protocol.md "Skynet
//! port forwarding") and its stream reader (`apps::skynet_fwd::read_msg`), fed arbitrary
//! bytes. Invariants: no panic or hang; a parser never claims more bytes than it was given
//! and is monotone (a complete message stays complete, with the same length, when more bytes
//! follow, and a prefix of it is incomplete); a parsed request or response re-encodes to the
//! bytes it came from; the reader, given the bytes a few at a time, returns what the parser
//! returns on the whole input and consumes exactly the header (never a byte of what follows);
//! any reason is encoded to a response that parses back to at most 200 bytes of it.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future::block_on;
use futures_lite::io::AsyncRead;
use libfuzzer_sys::fuzz_target;
use skywire::apps::skynet_fwd::{proto, read_msg};

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl AsyncRead for Input<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(3).min(self.data.len() - self.pos);
        let p = self.pos;
        buf[..n].copy_from_slice(&self.data[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

fn monotone<T: PartialEq + core::fmt::Debug>(data: &[u8], p: impl Fn(&[u8]) -> proto::Parsed<T>) {
    if let Ok(Some((t, n))) = p(data) {
        assert!(n > 0 && n <= data.len());
        let again = p(&data[..n]).expect("a complete prefix parses").expect("and is complete");
        assert_eq!(again, (t, n));
        assert!(!matches!(p(&data[..n - 1]), Ok(Some(_))), "shorter than itself");
    }
}

/// The reader over `data`, given 3 bytes at a time: its result and how much it consumed.
fn read<T>(data: &[u8], max: usize, p: impl Fn(&[u8]) -> proto::Parsed<T>) -> (Result<T, String>, usize) {
    let mut s = Input { data, pos: 0 };
    let r = block_on(read_msg(&mut s, max, p));
    (r, s.pos)
}

fuzz_target!(|data: &[u8]| {
    monotone(data, proto::parse_request);
    monotone(data, proto::parse_response);

    let parsed = proto::parse_request(data);
    if let Ok(Some((port, n))) = &parsed {
        assert_eq!(*n, proto::REQUEST_LEN);
        assert_ne!(*port, 0);
        assert_eq!(&proto::encode_request(*port)[..], &data[..*n]);
    }
    let (r, used) = read(data, proto::REQUEST_LEN, proto::parse_request);
    match (&parsed, &r) {
        (Ok(Some((p, n))), Ok(q)) => {
            assert_eq!(p, q);
            assert_eq!(used, *n, "the reader consumed past the request");
        }
        (Ok(Some(_)), Err(e)) => panic!("reader failed on a whole request: {e}"),
        (_, Ok(q)) => panic!("reader found request {q} the parser did not"),
        _ => assert!(used <= proto::REQUEST_LEN),
    }

    let parsed = proto::parse_response(data);
    if let Ok(Some(((st, why), n))) = &parsed {
        assert!(why.len() <= proto::MAX_REASON);
        let mut out = Vec::new();
        proto::encode_response(*st, why, &mut out);
        assert_eq!(&out[..], &data[..*n]);
    }
    let max = 2 + proto::MAX_REASON;
    let (r, used) = read(data, max, proto::parse_response);
    match (&parsed, &r) {
        (Ok(Some((p, n))), Ok(q)) => {
            assert_eq!(p, q);
            assert_eq!(used, *n, "the reader consumed past the response");
        }
        (Ok(Some(_)), Err(e)) => panic!("reader failed on a whole response: {e}"),
        (_, Ok(q)) => panic!("reader found response {q:?} the parser did not"),
        _ => assert!(used <= max),
    }

    // Any reason, any status: the encoder's output parses back (the reason cut, not mangled).
    if let Some((&b, rest)) = data.split_first()
        && let Some(st) = proto::Status::from_u8(b % 6)
    {
        let why = String::from_utf8_lossy(rest);
        let mut out = Vec::new();
        proto::encode_response(st, &why, &mut out);
        let ((st2, why2), n) = proto::parse_response(&out)
            .expect("an encoded response parses")
            .expect("and is complete");
        assert_eq!((st2, n), (st, out.len()));
        assert!(why2.len() <= proto::MAX_REASON);
        if st == proto::Status::Ok {
            assert!(why2.is_empty());
        } else {
            assert!(why.starts_with(&why2));
        }
    }
});
