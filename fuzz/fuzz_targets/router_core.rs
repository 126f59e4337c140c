//! The router core on arbitrary packets from three transports: never a panic, forwarding only
//! to a transport that is up, the rule table within its bound, and every timer honoured.
//!
//! Input: a sequence of records `selector u8 ‖ len u8 ‖ len bytes`; the selector's low two
//! bits pick the transport (3 is a handle that is not up), bit 2 advances the clock by a
//! second first, bit 3 takes that transport down and up again first, bit 4 starts a setup
//! through the first neighbour.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use skywire::crypto::{Keypair, PublicKey};
use skywire::router::core::{Core, CoreConfig, Event, Verdict};

fn pk(n: u8) -> PublicKey {
    *Keypair::from_seed(&[n; 32]).public()
}

fuzz_target!(|data: &[u8]| {
    let peers = [pk(2), pk(3), pk(4)];
    let cfg = CoreConfig {
        max_rules: 16,
        ..CoreConfig::default()
    };
    let mut core = Core::new(pk(1), cfg);
    for (i, p) in peers.iter().enumerate() {
        core.transport_up(i as u32, *p);
    }
    let mut now = Duration::ZERO;
    let mut rest = data;
    while rest.len() >= 2 {
        let (sel, len) = (rest[0], usize::from(rest[1]));
        let take = len.min(rest.len() - 2);
        let mut buf = rest[2..2 + take].to_vec();
        rest = &rest[2 + take..];
        let tp = u32::from(sel & 3);
        if sel & 4 != 0 {
            now += Duration::from_secs(1);
            core.handle_timeout(now);
            assert!(core.poll_timeout().is_none_or(|t| t > now));
        }
        if sel & 8 != 0 && tp < 3 {
            core.transport_down(tp, now);
            core.transport_up(tp, peers[tp as usize]);
        }
        if sel & 16 != 0 {
            let _ = core.start_setup(&[pk(1), peers[0], peers[1]], 7, 0, now);
        }
        match core.handle_packet(tp, &mut buf, now) {
            Verdict::Forward(to) => assert!(to < 3),
            Verdict::Deliver(_) | Verdict::Consumed | Verdict::Drop(_) => {}
        }
        while let Some(ev) = core.poll_event() {
            if let Event::Send { tp, packet } = ev {
                assert!(tp < 3);
                assert!(skywire::wire::route::Packet::new_checked(&packet[..]).is_ok());
            }
        }
        assert!(core.rule_count() <= 16);
    }
    let _ = core.rules(now).count();
    let _ = core.drops().total();
});
