//! The skychat HTTP surface's body and query parsers (`apps::skychat::http`) fed arbitrary
//! bytes (the group routes' too), the first byte choosing the parser. Invariants: no panic; a refusal is a 400 (or a
//! 413 for an oversize body) with a non-empty explanation; what is accepted obeys the limits
//! the handlers rely on (a non-empty message, a wait and a retry count within their caps, a
//! valid alias name); percent-decoding never grows its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::skychat::http::groups::{parse_create, parse_members, parse_one};
use skywire::apps::skychat::http::{
    RETRIES_MAX, WAIT_MAX_MS, check_alias, parse_alias_add, parse_alias_rm, parse_forget, parse_id,
    parse_message, parse_read, pct_decode,
};
use skywire::http::server::Response;

fn refused(r: Response) {
    assert!(matches!(r.status, 400 | 413), "status {}", r.status);
    assert!(!r.body.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => match parse_message(body) {
            Ok(m) => {
                assert!(!m.message.is_empty());
                assert!(m.wait_ms <= WAIT_MAX_MS);
                assert!(u64::from(m.retries) <= RETRIES_MAX);
            }
            Err(r) => refused(r),
        },
        1 => {
            if let Err(r) = parse_read(body) {
                refused(r)
            }
        }
        2 => match parse_alias_add(body) {
            Ok((name, _)) => assert!(check_alias(&name).is_ok()),
            Err(r) => refused(r),
        },
        3 => match parse_alias_rm(body) {
            Ok(name) => assert!(check_alias(&name).is_ok()),
            Err(r) => refused(r),
        },
        4 => {
            if let Err(r) = parse_forget(body) {
                refused(r)
            }
        }
        5 => {
            if let Ok(s) = std::str::from_utf8(body)
                && let Some(d) = pct_decode(s)
            {
                assert!(d.len() <= s.len());
            }
        }
        7 => {
            if let Err(r) = parse_create(body) {
                refused(r)
            }
        }
        8 => match parse_members(body) {
            Ok((action, _)) => assert!(matches!(action, "add" | "remove" | "promote" | "demote")),
            Err(r) => refused(r),
        },
        9 => match parse_one(body, "invite") {
            Ok(v) => assert!(!v.is_empty()),
            Err(r) => refused(r),
        },
        _ => {
            if let Ok(s) = std::str::from_utf8(body)
                && let Ok(id) = parse_id(s)
            {
                assert_eq!(format!("{id:016x}"), s);
            }
        }
    }
});
