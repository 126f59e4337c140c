//! The pairing service on a real engine with no peers reachable: envelopes handed to
//! [`Pairs::on_msg`] as the engine would, the answers, the caps and rates, and what a reopen
//! (a restart) finds on disk.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use futures_lite::future::block_on;

use super::book::Status;
use super::wire::PairMsg;
use super::{INVITES_PER_WINDOW, Pairs};
use crate::app::net::TcpNet;
use crate::apps::skychat::aliases::Aliases;
use crate::apps::skychat::chat::{Chat, ChatConfig};
use crate::apps::skychat::events::{Channel, Hub};
use crate::apps::skychat::proto::{Envelope, MsgId};
use crate::crypto::{Keypair, PublicKey};

fn pk(n: u8) -> PublicKey {
    *Keypair::from_seed(&[n; 32]).public()
}

fn acked(e: &Envelope, id: MsgId) -> bool {
    *e == Envelope::Ack(id)
}

fn nacked(e: &Envelope, says: &str) -> bool {
    matches!(e, Envelope::Nack { reason, .. } if reason.contains(says))
}

#[test]
fn steps_caps_rates_and_a_restart() {
    let dir = std::env::temp_dir().join(format!("sc-pair-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ex = Arc::new(Executor::new());
    let tcp = TcpNet::new(Keypair::from_seed(&[1; 32]), None, ex.clone());
    let hub = Hub::new(100, Duration::from_secs(60));
    let chat = Chat::new(
        ChatConfig::default(),
        tcp,
        None,
        hub.clone(),
        Aliases::in_memory(),
        ex.clone(),
    );
    let p = Pairs::open(&dir, hub.clone(), ex.clone()).unwrap();
    let on = |p: &Pairs, from: PublicKey, m: PairMsg| {
        block_on(ex.run(p.on_msg(&chat, from, "local", m)))
    };
    let (inviter, friend, flood) = (pk(2), pk(3), pk(4));

    // An invite: pending-in, an event; repeats acked up to the per-window cap.
    let id = MsgId::random();
    assert!(acked(&on(&p, inviter, PairMsg::Invite(id)), id));
    assert_eq!(p.list()[0].status, Status::PendingIn);
    for _ in 1..INVITES_PER_WINDOW {
        let id = MsgId::random();
        assert!(acked(&on(&p, inviter, PairMsg::Invite(id)), id));
    }
    let e = on(&p, inviter, PairMsg::Invite(MsgId::random()));
    assert!(nacked(&e, "too many invites"), "{e:?}");
    // Not paired: its messages and stray acceptances are refused.
    let m = PairMsg::Msg {
        id: MsgId::random(),
        text: "hi".into(),
    };
    assert!(nacked(&on(&p, inviter, m), "not paired"));
    assert!(nacked(
        &on(&p, friend, PairMsg::Accept(MsgId::random())),
        "no invite"
    ));

    // Our invite to an unreachable peer stays pending-out; its acceptance pairs us.
    let added = block_on(ex.run(p.add(&chat, friend))).unwrap();
    assert_eq!(added.status, Status::PendingOut);
    assert!(added.delivered.is_err());
    let id = MsgId::random();
    assert!(acked(&on(&p, friend, PairMsg::Accept(id)), id));
    let id = MsgId::random();
    let m = PairMsg::Msg {
        id,
        text: "hello".into(),
    };
    assert!(acked(&on(&p, friend, m.clone()), id));
    assert!(acked(&on(&p, friend, m), id), "a resend is acked again");
    assert_eq!(p.inbox(None, 10).len(), 1, "and kept once");
    let big = PairMsg::Msg {
        id: MsgId::random(),
        text: "x".repeat(super::MAX_TEXT + 1),
    };
    assert!(nacked(&on(&p, friend, big), "4096"));
    let pair_events = hub
        .kept(&[Channel::Pair])
        .iter()
        .map(|e| e.status.unwrap_or("message"))
        .collect::<Vec<_>>();
    assert_eq!(pair_events, ["invite", "invite", "accepted", "message"]);

    // A flood from one peer is cut by the rate.
    let nacks = (0..150)
        .filter(|_| {
            let e = on(&p, flood, PairMsg::Remove(MsgId::random()));
            nacked(&e, "too many pairing envelopes")
        })
        .count();
    assert!(nacks >= 40, "{nacks} of 150 refused");

    // A restart finds the invite, the pair and the message.
    drop(p);
    let p = Pairs::open(&dir, hub.clone(), ex.clone()).unwrap();
    let l = p.list();
    assert_eq!(l.len(), 2);
    assert!(
        l.iter()
            .any(|x| x.peer == inviter && x.status == Status::PendingIn)
    );
    assert!(
        l.iter()
            .any(|x| x.peer == friend && x.status == Status::Paired)
    );
    let inbox = p.inbox(Some(0), 10);
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].text, "hello");
    assert!(p.inbox(Some(inbox[0].ts_ms), 10).is_empty());
    // Their remove drops the pair; a garbage book refuses the next start.
    assert!(acked(&on(&p, friend, PairMsg::Remove(id)), id));
    assert!(p.list().iter().all(|x| x.peer != friend));
    drop(p);
    std::fs::write(dir.join("pairs.json"), "{oops").unwrap();
    let e = Pairs::open(&dir, hub, ex.clone()).unwrap_err();
    assert!(
        e.contains("pairs.json") && e.contains("move it away"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
