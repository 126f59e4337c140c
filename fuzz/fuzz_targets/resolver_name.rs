//! The resolvers' overlay-name parser and virtual-host rewrite (`apps::resolver::name`), fed
//! arbitrary bytes. Invariants: no panic or hang; a parsed name has a non-zero port, a
//! lowercase virtual host of valid labels, and re-formats (`[<vhost>.]<pk>.<tld>:<port>`) to a
//! name that parses to the same thing; `Partial` only below `MAX_HEAD`; a rewritten request
//! head parses as HTTP, has its every `Host:` header (at least one) saying the virtual host,
//! keeps the method and path, and is followed by the input's bytes after its head, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::resolver::name::{self, MAX_HEAD, Rewrite};

fn check_name(s: &str, port: u16) -> Option<String> {
    let Ok(Some(n)) = name::parse(s, port) else {
        return None;
    };
    assert_ne!(n.port, 0);
    if let Some(v) = &n.vhost {
        assert_eq!(v, &v.to_ascii_lowercase());
        assert!(v.split('.').all(|l| (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
    }
    let again = match &n.vhost {
        Some(v) => format!("{v}.{}.{}:{}", n.pk.to_hex(), n.tld.as_str(), n.port),
        None => format!("{}.{}:{}", n.pk.to_hex(), n.tld.as_str(), n.port),
    };
    if again.len() <= 253 {
        // A different SOCKS5 port: the explicit one must win.
        let m = name::parse(&again, 1).expect("re-formatted name parses").expect("overlay");
        assert_eq!(m, n);
    }
    n.vhost
}

fn check_rewrite(b: &[u8], vhost: &str) {
    match name::rewrite_host(b, vhost) {
        Rewrite::Partial => assert!(b.len() < MAX_HEAD),
        Rewrite::NotHttp => {}
        Rewrite::Done(out) => {
            let mut h0 = [httparse::EMPTY_HEADER; 64];
            let mut r0 = httparse::Request::new(&mut h0);
            let Ok(httparse::Status::Complete(n0)) = r0.parse(b) else {
                panic!("Done on a head httparse does not complete");
            };
            let mut h1 = [httparse::EMPTY_HEADER; 66];
            let mut r1 = httparse::Request::new(&mut h1);
            let n1 = match r1.parse(&out) {
                Ok(httparse::Status::Complete(n)) => n,
                e => panic!("rewritten head does not parse: {e:?}\n{out:?}"),
            };
            assert_eq!(r1.method, r0.method);
            assert_eq!(r1.path, r0.path);
            let hosts: Vec<&[u8]> = r1
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| h.value)
                .collect();
            assert!(!hosts.is_empty(), "no Host: after the rewrite");
            assert!(hosts.iter().all(|v| *v == vhost.as_bytes()), "{hosts:?}");
            assert_eq!(&out[n1..], &b[n0..], "bytes after the head changed");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let port = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 80,
    };
    let vhost = check_name(&s, port);
    check_name(&s, 80);
    // The bytes as a request head, with a fixed virtual host and with the one parsed (if any).
    check_rewrite(data, "site.example");
    if let Some(v) = vhost {
        check_rewrite(data, &v);
    }
});
