//! The encrypted channel's frame reader. The input is a script of chunks: honest frames sealed
//! with the peer's key, or raw bytes. Invariant: `recv` returns exactly the honest payloads, in
//! order, up to the first raw bytes, then an error, and every later call fails too; it never
//! panics or returns more than the payload limit.
#![no_main]

use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use skywire::crypto::channel::{Channel, MAX_PAYLOAD_LEN};
use skywire::crypto::noise::{CipherState, TransportState};
use skywire::crypto::{Keypair, PublicKey};

fuzz_target!(|data: &[u8]| {
    let key = [7u8; 32];
    let mut sender = CipherState::new(key);
    let mut stream = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut corrupted = false;
    let mut rest = data;
    // Chunk: kind u8, len u16be, bytes.
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if kind & 1 == 0 && !corrupted {
            let sealed = sender.seal(&[], bytes).unwrap();
            stream.extend_from_slice(&(sealed.len() as u16).to_be_bytes());
            stream.extend_from_slice(&sealed);
            expected.push(bytes.to_vec());
        } else if !bytes.is_empty() {
            stream.extend_from_slice(bytes);
            corrupted = true;
        }
    }
    let transport = TransportState {
        send: CipherState::new([9u8; 32]),
        recv: CipherState::new(key),
        handshake_hash: [0u8; 64],
    };
    static PEER: OnceLock<PublicKey> = OnceLock::new();
    let peer = *PEER.get_or_init(|| *Keypair::from_seed(&[5u8; 32]).public());
    let mut ch = Channel::from_parts(Cursor::new(stream), transport, peer);
    block_on(async {
        for want in &expected {
            let got = ch.recv().await.expect("an honest frame is received");
            assert_eq!(got, &want[..]);
        }
        // Whatever follows (raw bytes or the end of the stream) is an error, and stays one.
        match ch.recv().await {
            Ok(got) => panic!("accepted {} forged bytes", got.len().min(MAX_PAYLOAD_LEN)),
            Err(_) => assert!(ch.recv().await.is_err()),
        }
    });
});
