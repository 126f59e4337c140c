//! The skychat peer protocol (`apps::skychat::proto`, docs/protocol.md "Skychat") fed
//! arbitrary bytes. Invariants: `decode` never panics; anything it accepts as an envelope
//! (message, ack, read, nack, a `group-*` envelope, unknown type) encodes back to bytes that
//! decode to the same envelope; plain text is the payload itself. The frame reader, over the same bytes as a
//! stream, returns only frames of 1..=MAX_FRAME bytes that are exactly the stream's bytes
//! after each 4-byte length, and stops with an error (never a panic or a huge allocation) at
//! the first bad length.
#![no_main]

use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use skywire::apps::skychat::proto::{Envelope, MAX_FRAME, decode, encode, read_frame};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Envelope::Text(t)) => assert_eq!(t.as_bytes(), data),
        Ok(env) => assert_eq!(decode(&encode(&env)).as_ref(), Ok(&env)),
        Err(_) => {}
    }

    let mut r: &[u8] = data;
    let mut consumed = 0usize;
    block_on(async {
        loop {
            match read_frame(&mut r).await {
                Ok(Some(f)) => {
                    assert!(!f.is_empty() && f.len() <= MAX_FRAME);
                    let len = u32::from_be_bytes(data[consumed..consumed + 4].try_into().unwrap());
                    assert_eq!(len as usize, f.len());
                    assert_eq!(&data[consumed + 4..consumed + 4 + f.len()], &f[..]);
                    consumed += 4 + f.len();
                }
                Ok(None) => {
                    assert_eq!(consumed, data.len());
                    break;
                }
                Err(_) => break,
            }
        }
    });
});
