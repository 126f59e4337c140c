//! The HTTP proxy front's request parser (`apps::skysocks_client::front::parse_http`), fed
//! arbitrary bytes. Invariants: no panic; an accepted request names a port other than 0 and a
//! head length within the input; a forwarded head is origin-form, one request, ending in
//! `Connection: close` and a blank line, with no proxy-hop header left in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::skysocks_client::front::parse_http;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = parse_http(data) else {
        return;
    };
    assert!(r.port != 0);
    assert!(r.head_len <= data.len());
    if let Some(h) = r.forward {
        assert!(h.ends_with(b"Connection: close\r\n\r\n"));
        let text = String::from_utf8_lossy(&h).to_ascii_lowercase();
        let line = text.split("\r\n").next().unwrap_or("");
        assert!(line.split(' ').nth(1).is_some_and(|p| p.starts_with('/')), "{line}");
        assert!(!text.contains("\r\nproxy-connection:"));
        assert!(!text.contains("\r\nproxy-authorization:"));
        assert_eq!(text.matches("\r\n\r\n").count(), 1);
    }
});
