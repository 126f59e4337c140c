//! Known-answer tests through the crypto we ship: Ed25519 (our strict verify over salty),
//! X25519 (salty), ChaCha20-Poly1305 (chacha20poly1305, through crates/aead), and the identity → Noise static
//! conversion. Vectors are read from `../shared/vectors` (or `$SKYWIRE_VECTORS`).

mod common;

// The AEAD entry points the shipped CipherState calls (crates/aead).
use miniserde::json::{self, Value};
use skywire::crypto::hex;
use skywire::crypto::{Keypair, PublicKey};
use skywire_aead::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

fn obj(v: &Value) -> &miniserde::json::Object {
    match v {
        Value::Object(o) => o,
        other => panic!("expected object, got {other:?}"),
    }
}

fn arr(v: &Value) -> &miniserde::json::Array {
    match v {
        Value::Array(a) => a,
        other => panic!("expected array, got {other:?}"),
    }
}

fn s<'a>(o: &'a miniserde::json::Object, k: &str) -> &'a str {
    match o.get(k) {
        Some(Value::String(x)) => x,
        other => panic!("field {k}: expected string, got {other:?}"),
    }
}

fn u(o: &miniserde::json::Object, k: &str) -> u64 {
    match o.get(k) {
        Some(Value::Number(miniserde::json::Number::U64(n))) => *n,
        other => panic!("field {k}: expected integer, got {other:?}"),
    }
}

fn h(x: &str) -> Vec<u8> {
    hex::decode_vec(x).expect("vector hex")
}

/// Every Wycheproof Ed25519 case: `valid` must verify, `invalid` must be rejected.
/// Also counts what salty alone would say, to document why the strict check exists.
#[test]
fn wycheproof_ed25519_strict_verify() {
    let text = common::read_vector("wycheproof_ed25519_test.json");
    let doc: Value = json::from_str(&text).unwrap();
    let doc = obj(&doc);
    let total = u(doc, "numberOfTests");
    let (mut correct, mut salty_correct, mut seen) = (0u64, 0u64, 0u64);
    let mut wrong = Vec::new();
    for g in arr(&doc["testGroups"]).iter() {
        let g = obj(g);
        let pk_bytes: [u8; 32] = h(s(obj(&g["publicKey"]), "pk")).try_into().unwrap();
        let pk = PublicKey::from_bytes(&pk_bytes);
        for t in arr(&g["tests"]).iter() {
            let t = obj(t);
            seen += 1;
            let want_valid = match s(t, "result") {
                "valid" => true,
                "invalid" => false,
                other => panic!("unexpected result {other}"),
            };
            let msg = h(s(t, "msg"));
            let sig = h(s(t, "sig"));
            let ours = match (&pk, <[u8; 64]>::try_from(sig.as_slice())) {
                (Ok(pk), Ok(sig)) => pk.verify(&msg, &sig).is_ok(),
                _ => false,
            };
            let salty_alone = match (
                salty::PublicKey::try_from(&pk_bytes),
                <[u8; 64]>::try_from(sig.as_slice()),
            ) {
                (Ok(pk), Ok(sig)) => pk.verify(&msg, &salty::Signature::from(&sig)).is_ok(),
                _ => false,
            };
            if ours == want_valid {
                correct += 1;
            } else {
                wrong.push(u(t, "tcId"));
            }
            if salty_alone == want_valid {
                salty_correct += 1;
            }
        }
    }
    println!("wycheproof ed25519: ours {correct}/{total}, salty alone {salty_correct}/{total}");
    assert_eq!(seen, total, "vector file lists {total} cases, saw {seen}");
    assert!(wrong.is_empty(), "wrong verdict on tcIds {wrong:?}");
    assert_eq!(correct, total);
}

/// DJB's sign.input lines: `sk‖pk:pk:msg:sig‖msg:` — sign must reproduce the signature
/// and verify must accept it.
#[test]
fn rfc8032_sign_input() {
    let text = common::read_vector("rfc8032_ed25519_sign.input");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(':').collect();
        assert!(f.len() >= 4, "bad line {line}");
        let sk_pk = h(f[0]);
        let seed: [u8; 32] = sk_pk[..32].try_into().unwrap();
        let pk = h(f[1]);
        let msg = h(f[2]);
        let sig_msg = h(f[3]);
        let kp = Keypair::from_seed(&seed);
        assert_eq!(kp.public().as_bytes().as_slice(), pk.as_slice());
        assert_eq!(&sk_pk[32..], pk.as_slice());
        let sig = kp.sign(&msg);
        assert_eq!(sig.as_slice(), &sig_msg[..64], "signature for line {n}");
        kp.public().verify(&msg, &sig).unwrap();
        let mut bad = msg.clone();
        bad.push(0);
        assert!(kp.public().verify(&bad, &sig).is_err());
        n += 1;
    }
    println!("rfc8032 sign.input: {n} lines");
    assert!(n >= 5);
}

/// Every Wycheproof X25519 case through salty: `valid` and `acceptable` results must equal
/// the expected shared secret (our Noise layer decides separately what to do with the
/// all-zero output of a low-order point).
#[test]
fn wycheproof_x25519() {
    let text = common::read_vector("wycheproof_x25519_test.json");
    let doc: Value = json::from_str(&text).unwrap();
    let doc = obj(&doc);
    let total = u(doc, "numberOfTests");
    let mut ok = 0;
    let mut wrong = Vec::new();
    for g in arr(&doc["testGroups"]).iter() {
        for t in arr(&obj(g)["tests"]).iter() {
            let t = obj(t);
            let public: [u8; 32] = h(s(t, "public")).try_into().unwrap();
            let private: [u8; 32] = h(s(t, "private")).try_into().unwrap();
            let shared = h(s(t, "shared"));
            let got = salty::agreement::x25519(private, public);
            if got.as_slice() == shared.as_slice() {
                ok += 1;
            } else {
                wrong.push(u(t, "tcId"));
            }
        }
    }
    println!("wycheproof x25519: {ok}/{total}");
    assert!(wrong.is_empty(), "wrong shared secret on tcIds {wrong:?}");
    assert_eq!(ok, total);
}

/// RFC 7748 §5.2 through salty.
#[test]
fn rfc7748_x25519() {
    let text = common::read_vector("pyca_x25519_rfc7748.txt");
    let mut n = 0;
    let (mut scalar, mut input) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("INPUT_SCALAR = ") {
            scalar = Some(h(v));
        } else if let Some(v) = line.strip_prefix("INPUT_U = ") {
            input = Some(h(v));
        } else if let Some(v) = line.strip_prefix("OUTPUT_U = ") {
            let k: [u8; 32] = scalar.take().unwrap().try_into().unwrap();
            let uu: [u8; 32] = input.take().unwrap().try_into().unwrap();
            assert_eq!(salty::agreement::x25519(k, uu).as_slice(), h(v).as_slice());
            n += 1;
        }
    }
    assert!(n >= 2, "only {n} cases parsed");
}

fn seal(key: &[u8], nonce: &[u8], aad: &[u8], msg: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let key: [u8; 32] = key.try_into().ok()?;
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let cipher = ChaCha20Poly1305::new(&Key::from(key));
    let mut buf = msg.to_vec();
    let tag = skywire_aead::seal(&cipher, &Nonce::from(nonce), aad, &mut buf)?;
    Some((buf, tag.to_vec()))
}

fn open(key: &[u8], nonce: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    let key: [u8; 32] = key.try_into().ok()?;
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let tag: [u8; 16] = tag.try_into().ok()?;
    let cipher = ChaCha20Poly1305::new(&Key::from(key));
    let mut buf = ct.to_vec();
    skywire_aead::open(&cipher, &Nonce::from(nonce), aad, &mut buf, &Tag::from(tag)).then_some(buf)
}

/// Every Wycheproof ChaCha20-Poly1305 case: valid ones seal to the expected ciphertext and tag
/// and open again; invalid ones (bad tags, unsupported nonce sizes) are refused.
#[test]
fn wycheproof_chacha20_poly1305() {
    let text = common::read_vector("wycheproof_chacha20_poly1305_test.json");
    let doc: Value = json::from_str(&text).unwrap();
    let doc = obj(&doc);
    let total = u(doc, "numberOfTests");
    let mut correct = 0;
    let mut wrong = Vec::new();
    for g in arr(&doc["testGroups"]).iter() {
        for t in arr(&obj(g)["tests"]).iter() {
            let t = obj(t);
            let (key, iv, aad) = (h(s(t, "key")), h(s(t, "iv")), h(s(t, "aad")));
            let (msg, ct, tag) = (h(s(t, "msg")), h(s(t, "ct")), h(s(t, "tag")));
            let opened = open(&key, &iv, &aad, &ct, &tag);
            let verdict = match s(t, "result") {
                "valid" => {
                    seal(&key, &iv, &aad, &msg) == Some((ct.clone(), tag.clone()))
                        && opened.as_deref() == Some(msg.as_slice())
                }
                "invalid" => opened.is_none(),
                other => panic!("unexpected result {other}"),
            };
            if verdict {
                correct += 1;
            } else {
                wrong.push(u(t, "tcId"));
            }
        }
    }
    println!("wycheproof chacha20-poly1305: {correct}/{total}");
    assert!(wrong.is_empty(), "wrong verdict on tcIds {wrong:?}");
    assert_eq!(correct, total);
}

fn unquote_or_hex(v: &str) -> Vec<u8> {
    match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(text) => text.as_bytes().to_vec(),
        None => h(v),
    }
}

/// The BoringSSL ChaCha20-Poly1305 vectors (COUNT=1 is RFC 8439 §2.8.2).
#[test]
fn boringssl_chacha20_poly1305() {
    let text = common::read_vector("pyca_chacha20poly1305_boringssl.txt");
    let mut n = 0;
    let mut cur: std::collections::HashMap<&str, Vec<u8>> = Default::default();
    let mut flush = |cur: &mut std::collections::HashMap<&str, Vec<u8>>| {
        if cur.contains_key("TAG") {
            let (k, nn, a) = (&cur["KEY"], &cur["NONCE"], &cur["AD"]);
            let (i, c, t) = (&cur["IN"], &cur["CT"], &cur["TAG"]);
            assert_eq!(seal(k, nn, a, i), Some((c.clone(), t.clone())), "case {n}");
            assert_eq!(open(k, nn, a, c, t).as_ref(), Some(i));
            n += 1;
        }
        cur.clear();
    };
    for line in text.lines() {
        if line.starts_with("COUNT") {
            flush(&mut cur);
        } else if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if ["KEY", "NONCE", "IN", "AD", "CT", "TAG"].contains(&k) {
                cur.insert(k, unquote_or_hex(v.trim()));
            }
        }
    }
    flush(&mut cur);
    println!("boringssl chacha20-poly1305: {n} cases");
    assert!(n >= 10, "only {n} cases parsed");
}

/// Identity → Noise static (DESIGN.md §3.2) agrees with libsodium's conversion.
#[test]
fn identity_to_noise_static_matches_libsodium() {
    let text = common::read_vector("ed25519_to_x25519.json");
    let doc: Value = json::from_str(&text).unwrap();
    let mut n = 0;
    for c in arr(&obj(&doc)["cases"]).iter() {
        let c = obj(c);
        let seed: [u8; 32] = h(s(c, "seed")).try_into().unwrap();
        let kp = Keypair::from_seed(&seed);
        assert_eq!(kp.public().to_hex(), s(c, "ed25519_pk"));
        assert_eq!(hex::encode(&kp.noise_secret()), s(c, "x25519_sk"));
        assert_eq!(hex::encode(&kp.public().noise_static()), s(c, "x25519_pk"));
        // The derived pair is a real X25519 pair.
        let base = {
            let mut b = [0u8; 32];
            b[0] = 9;
            b
        };
        assert_eq!(
            salty::agreement::x25519(kp.noise_secret(), base),
            kp.public().noise_static()
        );
        n += 1;
    }
    assert_eq!(n, 5);
}
