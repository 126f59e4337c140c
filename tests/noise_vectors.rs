//! Noise conformance: every `Noise_XK_25519_ChaChaPoly_SHA512` and
//! `Noise_KK_25519_ChaChaPoly_SHA512` vector in `../shared/vectors/noise_25519_chachapoly.json`
//! (cacophony's and snow's) must reproduce byte for byte: each handshake message as written by
//! its sender and read back by its receiver, the handshake hash where the vector gives one, and
//! the transport messages after the handshake.

mod common;

use std::collections::BTreeMap;

use miniserde::json::{self, Array, Object, Value};
use skywire::crypto::hex;
use skywire::crypto::noise::{DhKeypair, HandshakeState, Pattern, Role};

fn obj(v: &Value) -> &Object {
    match v {
        Value::Object(o) => o,
        other => panic!("expected object, got {other:?}"),
    }
}

fn arr(v: &Value) -> &Array {
    match v {
        Value::Array(a) => a,
        other => panic!("expected array, got {other:?}"),
    }
}

fn opt_str<'a>(o: &'a Object, k: &str) -> Option<&'a str> {
    match o.get(k) {
        Some(Value::String(x)) => Some(x),
        None | Some(Value::Null) => None,
        other => panic!("field {k}: expected string, got {other:?}"),
    }
}

fn bytes(o: &Object, k: &str) -> Vec<u8> {
    hex::decode_vec(opt_str(o, k).unwrap_or_else(|| panic!("missing {k}"))).expect("hex")
}

fn key(o: &Object, k: &str) -> [u8; 32] {
    bytes(o, k)
        .try_into()
        .unwrap_or_else(|_| panic!("{k}: not 32 bytes"))
}

fn opt_key(o: &Object, k: &str) -> Option<[u8; 32]> {
    opt_str(o, k).map(|_| key(o, k))
}

/// Runs one vector; returns the number of messages checked.
fn run_vector(v: &Object, pattern: Pattern, label: &str) -> usize {
    let init_s = DhKeypair::from_secret(key(v, "init_static"));
    let resp_s = DhKeypair::from_secret(key(v, "resp_static"));
    let init_rs = opt_key(v, "init_remote_static");
    let resp_rs = opt_key(v, "resp_remote_static");
    assert_eq!(
        init_rs.as_ref(),
        Some(resp_s.public()),
        "{label}: init_remote_static"
    );
    if pattern == Pattern::KK {
        assert_eq!(
            resp_rs.as_ref(),
            Some(init_s.public()),
            "{label}: resp_remote_static"
        );
    }
    for psk in ["init_psks", "resp_psks"] {
        if let Some(p) = v.get(psk) {
            assert!(arr(p).is_empty(), "{label}: PSKs are not part of XK/KK");
        }
    }

    let mut init = HandshakeState::new(
        pattern,
        Role::Initiator,
        &bytes(v, "init_prologue"),
        init_s,
        init_rs,
    )
    .unwrap();
    let mut resp = HandshakeState::new(
        pattern,
        Role::Responder,
        &bytes(v, "resp_prologue"),
        resp_s,
        resp_rs,
    )
    .unwrap();
    init.set_ephemeral(key(v, "init_ephemeral")).unwrap();
    resp.set_ephemeral(key(v, "resp_ephemeral")).unwrap();

    let messages = arr(&v["messages"]);
    let hs_count = pattern.message_count();
    assert!(
        messages.len() > hs_count,
        "{label}: vector has no transport messages"
    );
    let mut buf = vec![0u8; 65535];
    let mut payload_out = vec![0u8; 65535];

    // Handshake messages: even index = initiator sends.
    for (i, m) in messages.iter().take(hs_count).enumerate() {
        let m = obj(m);
        let (payload, ciphertext) = (bytes(m, "payload"), bytes(m, "ciphertext"));
        let (tx, rx) = if i % 2 == 0 {
            (&mut init, &mut resp)
        } else {
            (&mut resp, &mut init)
        };
        assert!(tx.is_my_turn() && !rx.is_my_turn(), "{label}: turn at {i}");
        let n = tx.write_message(&payload, &mut buf).unwrap();
        assert_eq!(
            hex::encode(&buf[..n]),
            hex::encode(&ciphertext),
            "{label}: handshake message {i} ciphertext"
        );
        let p = rx.read_message(&ciphertext, &mut payload_out).unwrap();
        assert_eq!(
            &payload_out[..p],
            &payload[..],
            "{label}: handshake payload {i}"
        );
    }
    assert!(
        init.is_finished() && resp.is_finished(),
        "{label}: finished"
    );
    assert_eq!(init.handshake_hash(), resp.handshake_hash(), "{label}: h");
    if let Some(h) = opt_str(v, "handshake_hash") {
        assert_eq!(
            hex::encode(&init.handshake_hash()),
            h,
            "{label}: handshake_hash"
        );
    }
    let init_pub = *DhKeypair::from_secret(key(v, "init_static")).public();
    assert_eq!(
        resp.remote_static(),
        Some(&init_pub),
        "{label}: responder knows the initiator's static"
    );

    // Transport messages after the handshake, still alternating: even index = initiator sends.
    let mut ti = init.into_transport().unwrap();
    let mut tr = resp.into_transport().unwrap();
    for (i, m) in messages.iter().enumerate().skip(hs_count) {
        let m = obj(m);
        let (payload, ciphertext) = (bytes(m, "payload"), bytes(m, "ciphertext"));
        let (tx, rx) = if i % 2 == 0 {
            (&mut ti.send, &mut tr.recv)
        } else {
            (&mut tr.send, &mut ti.recv)
        };
        let sealed = tx.seal(&[], &payload).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            hex::encode(&ciphertext),
            "{label}: transport message {i} ciphertext"
        );
        assert_eq!(
            rx.open(&[], &ciphertext).unwrap(),
            payload,
            "{label}: transport payload {i}"
        );
    }
    messages.len()
}

#[test]
fn noise_xk_kk_sha512_vectors() {
    let text = common::read_vector("noise_25519_chachapoly.json");
    let doc: Value = json::from_str(&text).expect("vector JSON");
    let vectors = arr(&obj(&doc)["vectors"]);
    // (pattern name, source) -> (vectors, messages)
    let mut counts: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut sources = std::collections::BTreeSet::new();
    for (idx, v) in vectors.iter().enumerate() {
        let v = obj(v);
        let name = opt_str(v, "protocol_name").unwrap_or_default();
        let from = opt_str(v, "_from").unwrap_or("unknown").to_string();
        sources.insert(from.clone());
        let pattern = match name {
            "Noise_XK_25519_ChaChaPoly_SHA512" => Pattern::XK,
            "Noise_KK_25519_ChaChaPoly_SHA512" => Pattern::KK,
            _ => continue,
        };
        let label = format!("vector #{idx} {name} from {from}");
        let msgs = run_vector(v, pattern, &label);
        let e = counts.entry((format!("{pattern:?}"), from)).or_default();
        e.0 += 1;
        e.1 += msgs;
    }
    for ((pattern, from), (n, msgs)) in &counts {
        println!(
            "noise vectors: {pattern} from {from}: {n} vector(s), {msgs} messages, all passed"
        );
    }
    // Each source in the file must have contributed both patterns.
    assert!(sources.len() >= 2, "expected both sources, saw {sources:?}");
    for from in &sources {
        for pattern in ["XK", "KK"] {
            let n = counts
                .get(&(pattern.to_string(), from.clone()))
                .map_or(0, |c| c.0);
            assert!(n > 0, "no {pattern} SHA512 vectors ran from {from}");
        }
    }
}

/// The vectors must also fail when they should: a flipped bit anywhere in a handshake
/// message is refused and ends the receiver's handshake.
#[test]
fn noise_vectors_tampered_messages_fail() {
    let text = common::read_vector("noise_25519_chachapoly.json");
    let doc: Value = json::from_str(&text).expect("vector JSON");
    let mut checked = 0;
    for v in arr(&obj(&doc)["vectors"]).iter() {
        let v = obj(v);
        let pattern = match opt_str(v, "protocol_name").unwrap_or_default() {
            "Noise_XK_25519_ChaChaPoly_SHA512" => Pattern::XK,
            "Noise_KK_25519_ChaChaPoly_SHA512" => Pattern::KK,
            _ => continue,
        };
        let first = bytes(obj(&arr(&v["messages"])[0]), "ciphertext");
        for bit in [0, 8 * 31 + 7, 8 * 32, 8 * first.len() - 1] {
            let mut resp = HandshakeState::new(
                pattern,
                Role::Responder,
                &bytes(v, "resp_prologue"),
                DhKeypair::from_secret(key(v, "resp_static")),
                opt_key(v, "resp_remote_static"),
            )
            .unwrap();
            let mut m = first.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let mut out = vec![0u8; m.len()];
            assert!(
                resp.read_message(&m, &mut out).is_err(),
                "bit {bit} accepted"
            );
            assert!(resp.is_failed());
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} tamper cases ran");
}
