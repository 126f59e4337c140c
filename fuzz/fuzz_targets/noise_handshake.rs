//! The Noise handshake message reader. A real XK or KK handshake runs between two fixed
//! identities; the fuzzer tampers with one message (XOR mask, truncation or extension) before
//! it is read. Invariants: an unmodified message is accepted and the handshake completes with
//! equal handshake hashes; a message of the wrong length is refused; a refusal is final; and
//! a tampered message never yields two finished sides that agree (the transcript hash binds
//! every byte). In "raw" mode the input is offered as a responder's first message.
//!
//! Why "tampered ⇒ refused" is not the invariant: the keys here are constants, and libFuzzer's
//! comparison tracing watches the victim compare the tag it computed, so the fuzzer can learn a
//! valid tag for a message of its choosing (it did, within seconds). That is an oracle no real
//! attacker has; what must hold even then is that such a message cannot splice into an honest
//! handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::crypto::Keypair;
use skywire::crypto::noise::{
    Handshake, NoiseError, kk_initiator, kk_responder, xk_initiator, xk_responder,
};

fn ids() -> (Keypair, Keypair) {
    (
        Keypair::from_seed(&[1u8; 32]),
        Keypair::from_seed(&[2u8; 32]),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = ids();
    let xk = mode & 1 == 0;
    let (mut i, mut r): (Handshake, Handshake) = if xk {
        (xk_initiator(&a, b.public()), xk_responder(&b))
    } else {
        (kk_initiator(&a, b.public()), kk_responder(&b, a.public()))
    };

    if mode & 0x80 != 0 {
        // Raw: the input is the first message the responder sees.
        let want = r
            .next_message_len()
            .expect("a fresh handshake expects a message");
        match r.read_message(rest) {
            Ok(()) => {
                assert_eq!(
                    rest.len(),
                    want,
                    "a message of the wrong length was accepted"
                );
                // Whatever it learned, the responder can go on writing its reply.
                let mut out = [0u8; 128];
                r.write_message(&mut out)
                    .expect("reply after an accepted message 1");
            }
            Err(_) => {
                assert!(r.is_failed());
                assert!(matches!(r.read_message(rest), Err(NoiseError::Failed)));
            }
        }
        return;
    }

    i.set_ephemeral([3u8; 32]).unwrap();
    r.set_ephemeral([4u8; 32]).unwrap();
    let count = if xk { 3 } else { 2 };
    let target = usize::from((mode >> 1) & 3) % count;
    let mut buf = [0u8; 128];
    let mut tampered = false;
    for step in 0..count {
        let (w, rd) = if step % 2 == 0 {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let n = w.write_message(&mut buf).expect("honest write");
        let honest = buf[..n].to_vec();
        let mut msg = honest.clone();
        if step == target {
            for (j, m) in rest.iter().enumerate() {
                if j < msg.len() {
                    msg[j] ^= m;
                } else {
                    msg.push(*m);
                }
            }
        }
        let res = rd.read_message(&msg);
        if msg == honest && !tampered {
            res.expect("an untouched message is accepted");
        } else if msg != honest {
            tampered = true;
            if msg.len() != honest.len() {
                assert!(res.is_err(), "a message of the wrong length was accepted");
            }
            if res.is_err() {
                assert!(rd.is_failed());
                assert!(rd.read_message(&honest).is_err(), "failure is final");
                return;
            }
        } else if res.is_err() {
            // An honest message after an accepted forgery: refused, as the transcripts differ.
            return;
        }
    }
    if tampered {
        assert!(
            !(i.is_finished() && r.is_finished()) || i.handshake_hash() != r.handshake_hash(),
            "a tampered transcript produced agreeing handshakes"
        );
        return;
    }
    assert!(i.is_finished() && r.is_finished());
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    assert_eq!(r.remote(), Some(a.public()));
});
