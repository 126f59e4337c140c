//! Skychat pairing's parsers (`apps::skychat::pair`, `http::pair`; docs/protocol.md "Skychat
//! pairing") fed arbitrary bytes, the first byte choosing the parser. Invariants: no panic;
//! an HTTP refusal is a 400 or 413 with an explanation; an RFC 3339 time that parses formats
//! back to the same millisecond; a `pairs.json` that parses writes back to text that parses to
//! the same pairs; an inbox log's good part re-encodes byte for byte, and a text past the cap
//! is never accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::skychat::http::pair::{parse_add, parse_inbox_query, parse_text};
use skywire::apps::skychat::pair::disk::{encode_msg, pairs_json, parse_pairs, scan};
use skywire::apps::skychat::pair::time::{format_rfc3339, parse_rfc3339};
use skywire::apps::skychat::pair::wire::MAX_TEXT;
use skywire::http::server::Response;

fn refused(r: Response) {
    assert!(matches!(r.status, 400 | 413), "status {}", r.status);
    assert!(!r.body.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(body).ok();
    match which % 6 {
        0 => {
            if let Err(r) = parse_add(body) {
                refused(r)
            }
        }
        1 => match parse_text(body) {
            Ok(t) => assert!(!t.is_empty()),
            Err(r) => refused(r),
        },
        2 => {
            if let Some(t) = text {
                let (since, limit) = t.split_once('&').unwrap_or((t, ""));
                match parse_inbox_query(Some(since), Some(limit)) {
                    Ok((_, n)) => assert!((1..=1000).contains(&n)),
                    Err(r) => refused(r),
                }
            }
        }
        3 => {
            if let Some(t) = text
                && let Ok(ms) = parse_rfc3339(t)
            {
                assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
            }
        }
        4 => {
            if let Some(t) = text
                && let Ok(pairs) = parse_pairs(t)
            {
                assert_eq!(parse_pairs(&pairs_json(&pairs)), Ok(pairs));
            }
        }
        _ => {
            if let Ok((msgs, good)) = scan(body) {
                assert!(good <= body.len());
                let again: Vec<u8> = msgs.iter().flat_map(encode_msg).collect();
                assert_eq!(scan(&again), Ok((msgs.clone(), again.len())));
                assert!(msgs.iter().all(|m| m.text.len() <= MAX_TEXT));
            }
        }
    }
});
