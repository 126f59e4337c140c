use std::collections::{HashMap, HashSet, VecDeque};

use super::*;
use crate::crypto::Keypair;
use crate::wire::route::Repr;

fn pk(n: usize) -> PublicKey {
    *Keypair::from_seed(&[n as u8 + 1; 32]).public()
}

const T0: Duration = Duration::ZERO;

/// Cores wired by perfect links; node i's transport to node j has handle 100 + j.
struct Net {
    cores: Vec<Core>,
    links: HashMap<(usize, TpHandle), (usize, TpHandle)>,
    silent: HashSet<usize>,
    queue: VecDeque<(usize, TpHandle, Vec<u8>)>,
    events: Vec<(usize, Event)>,
    delivered: Vec<(usize, LegRef, Vec<u8>)>,
    now: Duration,
}

fn tp(j: usize) -> TpHandle {
    100 + j as TpHandle
}

impl Net {
    fn new(n: usize, cfg: CoreConfig) -> Net {
        Net {
            cores: (0..n).map(|i| Core::new(pk(i), cfg.clone())).collect(),
            links: HashMap::new(),
            silent: HashSet::new(),
            queue: VecDeque::new(),
            events: Vec::new(),
            delivered: Vec::new(),
            now: T0,
        }
    }

    fn line(n: usize) -> Net {
        let mut net = Net::new(n, CoreConfig::default());
        for i in 0..n - 1 {
            net.link(i, i + 1);
        }
        net
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links.insert((a, tp(b)), (b, tp(a)));
        self.links.insert((b, tp(a)), (a, tp(b)));
        self.cores[a].transport_up(tp(b), pk(b));
        self.cores[b].transport_up(tp(a), pk(a));
    }

    /// Delivers everything queued and every packet the cores emit, until quiet.
    fn run(&mut self) {
        for _ in 0..10_000 {
            for i in 0..self.cores.len() {
                while let Some(ev) = self.cores[i].poll_event() {
                    match ev {
                        Event::Send { tp, packet } => self.transmit(i, tp, packet),
                        other => self.events.push((i, other)),
                    }
                }
            }
            let Some((j, tp, mut packet)) = self.queue.pop_front() else {
                return;
            };
            if self.silent.contains(&j) {
                continue;
            }
            match self.cores[j].handle_packet(tp, &mut packet, self.now) {
                Verdict::Forward(next) => self.transmit(j, next, packet),
                Verdict::Deliver(leg) => self.delivered.push((j, leg, packet)),
                Verdict::Consumed | Verdict::Drop(_) => {}
            }
        }
        panic!("the network never went quiet");
    }

    fn transmit(&mut self, from: usize, tp: TpHandle, packet: Vec<u8>) {
        if let Some(&(to, tp_in)) = self.links.get(&(from, tp)) {
            self.queue.push_back((to, tp_in, packet));
        }
    }

    fn advance(&mut self, to: Duration) {
        self.now = to;
        for c in &mut self.cores {
            if c.poll_timeout().is_some_and(|t| t <= to) {
                c.handle_timeout(to);
            }
        }
        self.run();
    }

    fn setup(&mut self, nodes: &[usize]) -> u32 {
        let path: Vec<PublicKey> = nodes.iter().map(|n| pk(*n)).collect();
        let id = self.cores[nodes[0]]
            .start_setup(&path, 7, 0, self.now)
            .unwrap();
        self.run();
        id
    }

    fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    fn leg_up(&self, node: usize) -> Option<LegRef> {
        self.events.iter().find_map(|(i, e)| match e {
            Event::LegUp { leg, .. } if *i == node => Some(*leg),
            _ => None,
        })
    }

    fn failure(&self, node: usize) -> Option<String> {
        self.events.iter().find_map(|(i, e)| match e {
            Event::SetupFailed { reason, .. } if *i == node => Some(reason.clone()),
            _ => None,
        })
    }

    fn total_rules(&self) -> usize {
        self.cores.iter().map(Core::rule_count).sum()
    }

    fn data(&mut self, node: usize, leg: LegRef, ty: PacketType, payload: &[u8]) {
        let repr = Repr::new(ty, 0, payload.len()).unwrap();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        buf[HEADER_LEN..].copy_from_slice(payload);
        let now = self.now;
        let tp = self.cores[node]
            .prepare_send(leg, &mut buf, now)
            .expect("leg up");
        self.transmit(node, tp, buf);
        self.run();
    }
}

fn raw(ty: PacketType, id: u32, payload: &[u8]) -> Vec<u8> {
    packet(ty, id, payload.len(), |b| b.copy_from_slice(payload))
}

#[test]
fn three_hop_setup_forwards_both_ways() {
    let mut net = Net::line(4);
    let sid = net.setup(&[0, 1, 2, 3]);
    let src = net.leg_up(0).expect("source leg up");
    let dst = net.leg_up(3).expect("destination leg up");
    let ev = net.events.iter().find(|(i, _)| *i == 3).unwrap().1.clone();
    let Event::LegUp {
        setup_id,
        group_id,
        peer,
        path,
        initiator,
        ..
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (setup_id, group_id, peer, initiator),
        (sid, 7, pk(0), false)
    );
    assert_eq!(path, (0..4).map(pk).collect::<Vec<_>>());
    assert_eq!(net.total_rules(), 4);

    net.data(0, src, PacketType::Data, b"hello");
    net.data(3, dst, PacketType::Data, b"back");
    assert_eq!(net.delivered.len(), 2);
    assert_eq!((net.delivered[0].0, net.delivered[0].1), (3, dst));
    assert_eq!(&net.delivered[0].2[HEADER_LEN..], b"hello");
    assert_eq!(net.delivered[0].2[1..5], dst.0.to_be_bytes());
    assert_eq!((net.delivered[1].0, net.delivered[1].1), (0, src));
    assert_eq!(&net.delivered[1].2[HEADER_LEN..], b"back");

    // route ls at the intermediaries: pointers chain, counts add up.
    let r1: Vec<RuleView> = net.cores[1].rules(Duration::from_secs(3)).collect();
    assert_eq!(r1.len(), 1);
    let r1 = &r1[0];
    assert_eq!(r1.kind, RuleKind::Intermediary);
    assert_eq!(
        r1.towards_src,
        Some(Hop {
            tp: tp(0),
            id: src.0
        })
    );
    assert_eq!(r1.towards_dst.map(|h| h.tp), Some(tp(2)));
    assert_eq!((r1.src_peer, r1.dst_peer), (Some(pk(0)), Some(pk(2))));
    assert_eq!((r1.packets, r1.bytes), (2, 12 + 11));
    assert_eq!(r1.age, Duration::from_secs(3));
    assert!(!r1.pending);
    let r0 = net.cores[0].rules(T0).next().unwrap();
    assert_eq!((r0.kind, r0.remote), (RuleKind::Source, Some(pk(3))));
    assert_eq!(
        r0.towards_dst,
        Some(Hop {
            tp: tp(1),
            id: r1.id
        })
    );
    let r3 = net.cores[3].rules(T0).next().unwrap();
    assert_eq!((r3.kind, r3.remote), (RuleKind::Destination, Some(pk(0))));
    assert_eq!(net.cores.iter().map(|c| c.drops().total()).sum::<u64>(), 0);
    assert_eq!(RuleKind::Intermediary.to_string(), "intermediary");
}

#[test]
fn forwarding_rewrites_in_place() {
    let mut net = Net::line(3);
    net.setup(&[0, 1, 2]);
    let src = net.leg_up(0).unwrap();
    let dst = net.leg_up(2).unwrap();
    let mut buf = raw(PacketType::Data, 0, b"xyz");
    let t = net.cores[0].prepare_send(src, &mut buf, T0).unwrap();
    assert_eq!(t, tp(1));
    let ptr = buf.as_ptr();
    let v = net.cores[1].handle_packet(tp(0), &mut buf, T0);
    assert_eq!(v, Verdict::Forward(tp(2)));
    assert_eq!(buf.as_ptr(), ptr);
    assert_eq!(Packet::new_checked(&buf[..]).unwrap().route_id(), dst.0);
    assert_eq!(
        net.cores[2].handle_packet(tp(1), &mut buf, T0),
        Verdict::Deliver(dst)
    );
}

#[test]
fn golden_request_from_start_setup() {
    let mut core = Core::new(pk(0), CoreConfig::default());
    core.transport_up(5, pk(1));
    let sid = core
        .start_setup(&[pk(0), pk(1)], 0x0102_0304_0506_0708, 2, T0)
        .unwrap();
    let Some(Event::Send { tp, packet }) = core.poll_event() else {
        panic!()
    };
    assert_eq!(tp, 5);
    let mut want = vec![7, 0, 0, 0, 0, 0, 19 + 64];
    want.extend(sid.to_be_bytes());
    want.extend([1, 2, 3, 4, 5, 6, 7, 8, 2, 1, 2]);
    let rule = core.rules(T0).next().unwrap();
    assert!(rule.pending);
    want.extend(rule.id.to_be_bytes());
    want.extend(pk(0).as_bytes());
    want.extend(pk(1).as_bytes());
    assert_eq!(packet, want);
}

#[test]
fn no_transport_nack_names_the_hop_and_cleans_up() {
    let mut net = Net::line(3);
    // Node 1 has no link to 3.
    net.cores.push(Core::new(pk(3), CoreConfig::default()));
    let path: Vec<PublicKey> = [0, 1, 3].iter().map(|n| pk(*n)).collect();
    net.cores[0].start_setup(&path, 1, 0, T0).unwrap();
    net.run();
    let why = net.failure(0).expect("setup failed");
    assert_eq!(
        why,
        format!("{}: no transport to {}", short(&pk(1)), short(&pk(3)))
    );
    assert_eq!(net.total_rules(), 0);
    assert_eq!(net.cores[1].drops().get(DropReason::NoTransport), 1);
}

#[test]
fn silent_hop_times_out_with_a_reason() {
    let mut net = Net::line(4);
    net.silent.insert(2);
    net.setup(&[0, 1, 2, 3]);
    assert!(net.failure(0).is_none());
    assert_eq!(net.total_rules(), 2);
    assert_eq!(net.cores[1].poll_timeout(), Some(Duration::from_secs(4)));
    assert_eq!(net.cores[0].poll_timeout(), Some(Duration::from_secs(6)));
    net.advance(Duration::from_secs(4));
    assert_eq!(
        net.failure(0).unwrap(),
        format!(
            "{}: no answer from {} within 4 s",
            short(&pk(1)),
            short(&pk(2))
        )
    );
    assert_eq!(net.total_rules(), 0);
    assert_eq!(net.cores[0].poll_timeout(), None);
}

#[test]
fn source_times_out_when_the_first_hop_is_silent() {
    let mut net = Net::line(2);
    net.silent.insert(1);
    net.setup(&[0, 1]);
    net.advance(Duration::from_secs(2));
    assert_eq!(
        net.failure(0).unwrap(),
        format!(
            "{}: no answer from {} within 2 s",
            short(&pk(0)),
            short(&pk(1))
        )
    );
    assert_eq!(net.total_rules(), 0);
}

#[test]
fn route_table_full() {
    let mut net = Net::line(3);
    net.cores[1] = Core::new(
        pk(1),
        CoreConfig {
            max_rules: 1,
            ..CoreConfig::default()
        },
    );
    net.cores[1].transport_up(tp(0), pk(0));
    net.cores[1].transport_up(tp(2), pk(2));
    net.setup(&[0, 1, 2]);
    assert!(net.leg_up(0).is_some());
    net.take_events();
    net.setup(&[0, 1, 2]);
    assert_eq!(
        net.failure(0).unwrap(),
        format!("{}: route table full", short(&pk(1)))
    );
    assert_eq!(net.cores[1].drops().get(DropReason::TableFull), 1);
    assert_eq!(net.total_rules(), 3);
    let mut full = Core::new(
        pk(0),
        CoreConfig {
            max_rules: 0,
            ..CoreConfig::default()
        },
    );
    full.transport_up(1, pk(1));
    assert_eq!(
        full.start_setup(&[pk(0), pk(1)], 0, 0, T0),
        Err(SetupError::TableFull)
    );
}

#[test]
fn one_transport_holds_only_its_share_of_the_table() {
    let mut net = Net::line(3);
    net.cores[1] = Core::new(
        pk(1),
        CoreConfig {
            max_rules_per_transport: 1,
            ..CoreConfig::default()
        },
    );
    net.cores[1].transport_up(tp(0), pk(0));
    net.cores[1].transport_up(tp(2), pk(2));
    net.setup(&[0, 1, 2]);
    assert!(net.leg_up(0).is_some());
    net.take_events();
    net.setup(&[0, 1, 2]);
    assert_eq!(
        net.failure(0).unwrap(),
        format!(
            "{}: route table share of this transport full (limit 1)",
            short(&pk(1))
        )
    );
    assert_eq!(net.cores[1].drops().get(DropReason::TableFull), 1);
    net.take_events();
    // Setups from the other neighbour still have room.
    net.setup(&[2, 1, 0]);
    assert!(net.leg_up(2).is_some());
}

#[test]
fn loops_and_bad_paths_are_refused() {
    let mut core = Core::new(pk(0), CoreConfig::default());
    core.transport_up(1, pk(1));
    let looped = [pk(0), pk(1), pk(2), pk(1), pk(3)];
    assert_eq!(
        core.start_setup(&looped, 0, 0, T0),
        Err(SetupError::Loop(pk(1)))
    );
    assert!(core.start_setup(&[pk(0)], 0, 0, T0).is_err());
    assert!(core.start_setup(&[pk(1), pk(0)], 0, 0, T0).is_err());
    assert_eq!(
        core.start_setup(&[pk(0), pk(2)], 0, 0, T0),
        Err(SetupError::NoTransport(pk(2)))
    );
    assert_eq!(
        SetupError::Loop(pk(1)).to_string(),
        format!("loop in path ({} repeated)", short(&pk(1)))
    );

    // A request arriving with a loop in it is nacked by the hop that sees it.
    let mut hop = Core::new(pk(1), CoreConfig::default());
    hop.transport_up(10, pk(0));
    hop.transport_up(12, pk(2));
    let path = [
        *pk(0).as_bytes(),
        *pk(1).as_bytes(),
        *pk(2).as_bytes(),
        *pk(0).as_bytes(),
    ];
    let mut req = request(&path, 1, 99);
    assert_eq!(hop.handle_packet(10, &mut req, T0), Verdict::Consumed);
    let Some(Event::Send { tp: 10, packet }) = hop.poll_event() else {
        panic!()
    };
    let nack = Nack::new_checked(&packet[HEADER_LEN..]).unwrap();
    assert_eq!(
        nack.reason(),
        format!(
            "{}: loop in path ({} repeated)",
            short(&pk(1)),
            short(&pk(0))
        )
    );
    assert_eq!(Packet::new_checked(&packet[..]).unwrap().route_id(), 99);
    assert_eq!(hop.drops().get(DropReason::Loop), 1);
    assert_eq!(hop.rule_count(), 0);

    // Not for this node, or from a peer the path does not name.
    let path = [*pk(0).as_bytes(), *pk(2).as_bytes(), *pk(1).as_bytes()];
    let mut req = request(&path, 1, 5);
    hop.handle_packet(10, &mut req, T0);
    let path = [*pk(2).as_bytes(), *pk(1).as_bytes(), *pk(3).as_bytes()];
    let mut req = request(&path, 1, 5);
    hop.handle_packet(10, &mut req, T0);
    assert_eq!(hop.drops().get(DropReason::BadSetup), 2);
    let reasons: Vec<String> = std::iter::from_fn(|| hop.poll_event())
        .filter_map(|e| match e {
            Event::Send { packet, .. } => Some(
                Nack::new_checked(&packet[HEADER_LEN..])
                    .unwrap()
                    .reason()
                    .to_string(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons[0],
        format!("{}: not hop 1 of the path", short(&pk(1)))
    );
    assert!(reasons[1].contains("but the path names"), "{}", reasons[1]);
}

fn request(path: &[[u8; PK_LEN]], hop: u8, reverse_id: u32) -> Vec<u8> {
    let repr = RequestRepr {
        setup_id: 3,
        group_id: 4,
        leg: 0,
        hop,
        reverse_id,
        path,
    };
    packet(PacketType::SetupRequest, 0, repr.buffer_len(), |b| {
        repr.emit(&mut Request::new_unchecked(b)).unwrap()
    })
}

#[test]
fn setup_flood_is_rate_limited() {
    let mut dst = Core::new(pk(1), CoreConfig::default());
    dst.transport_up(10, pk(0));
    let path = [*pk(0).as_bytes(), *pk(1).as_bytes()];
    let mut accepted = 0;
    for i in 0..100u32 {
        let mut req = request(&path, 1, i + 1);
        if dst.handle_packet(10, &mut req, T0) == Verdict::Consumed {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 40);
    assert_eq!(dst.drops().get(DropReason::SetupRate), 60);
    // A second later 20 more tokens.
    let mut more = 0;
    for i in 0..100u32 {
        let mut req = request(&path, 1, 1000 + i);
        if dst.handle_packet(10, &mut req, Duration::from_secs(1)) == Verdict::Consumed {
            more += 1;
        }
    }
    assert_eq!(more, 20);
    assert_eq!(dst.rule_count(), 60);
}

#[test]
fn every_drop_reason_is_counted() {
    let mut net = Net::line(3);
    net.setup(&[0, 1, 2]);
    let src = net.leg_up(0).unwrap();
    let mid = net.cores[1].rules(T0).next().unwrap().id;
    let c = &mut net.cores[1];
    let cases: Vec<(TpHandle, Vec<u8>, DropReason)> = vec![
        (tp(0), vec![0, 0, 0], DropReason::Malformed),
        (
            tp(0),
            raw(PacketType::Data, mid, b"ab")[..8].to_vec(),
            DropReason::Malformed,
        ),
        (
            tp(0),
            [raw(PacketType::Data, mid, b"ab"), vec![0]].concat(),
            DropReason::Oversize,
        ),
        (
            tp(0),
            raw(PacketType::Unknown(42), mid, b""),
            DropReason::UnknownType,
        ),
        (tp(0), raw(PacketType::Data, 0, b"x"), DropReason::RouteZero),
        (
            tp(0),
            raw(PacketType::Data, 4242, b"x"),
            DropReason::UnknownRoute,
        ),
        (
            tp(0),
            raw(PacketType::SetupAck, 4242, &[0, 0, 0, 1, 0, 0, 0, 2]),
            DropReason::UnknownRoute,
        ),
        (
            77,
            raw(PacketType::Data, mid, b"x"),
            DropReason::UnknownTransport,
        ),
        (
            tp(0),
            raw(PacketType::SetupRequest, 5, b""),
            DropReason::BadSetup,
        ),
        (
            tp(0),
            raw(PacketType::SetupRequest, 0, &[0; 10]),
            DropReason::BadSetup,
        ),
        (
            tp(0),
            raw(PacketType::SetupAck, mid, &[0; 7]),
            DropReason::BadSetup,
        ),
        (
            tp(0),
            raw(PacketType::SetupNack, mid, &[0, 0, 0, 1, 9, 65]),
            DropReason::BadSetup,
        ),
        (
            tp(0),
            raw(PacketType::SetupAck, mid, &[0, 0, 0, 1, 0, 0, 0, 2]),
            DropReason::UnexpectedControl,
        ),
        (
            tp(2),
            raw(PacketType::SetupNack, mid, &[0, 0, 0, 1, 0]),
            DropReason::UnexpectedControl,
        ),
    ];
    for (i, (from, mut buf, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            c.handle_packet(from, &mut buf, T0),
            Verdict::Drop(want),
            "case {i}"
        );
    }
    // Wrong transport: node 1 has a third link that the rule does not use.
    // A transport to a node 3 that is not on the route: handle 103.
    let c = &mut net.cores[1];
    c.transport_up(tp(3), pk(3));
    let mut buf = raw(PacketType::Data, mid, b"x");
    assert_eq!(
        c.handle_packet(tp(3), &mut buf, T0),
        Verdict::Drop(DropReason::WrongTransport)
    );
    let mut buf = raw(PacketType::Data, src.0, b"x");
    assert_eq!(
        net.cores[0].handle_packet(tp(1), &mut buf, T0),
        Verdict::Deliver(src)
    );
    assert_eq!(
        net.cores[0].handle_packet(tp(9), &mut raw(PacketType::Data, src.0, b"x"), T0),
        Verdict::Drop(DropReason::UnknownTransport)
    );
    let counts: HashMap<&str, u64> = net.cores[1].drops().iter().collect();
    assert_eq!(counts["malformed"], 2);
    assert_eq!(counts["oversize"], 1);
    assert_eq!(counts["unknown type"], 1);
    assert_eq!(counts["route id 0"], 1);
    assert_eq!(counts["unknown route id"], 2);
    assert_eq!(counts["unknown transport"], 1);
    assert_eq!(counts["bad setup"], 4);
    assert_eq!(counts["unexpected control"], 2);
    assert_eq!(counts["wrong transport"], 1);
    assert_eq!(net.cores[1].drops().total(), 15);
}

#[test]
fn not_ready_and_wrong_transport_on_pending_rules() {
    let mut net = Net::line(3);
    net.silent.insert(2);
    net.setup(&[0, 1, 2]);
    let mid = net.cores[1].rules(T0).next().unwrap().id;
    let src = net.cores[0].rules(T0).next().unwrap().id;
    let mut buf = raw(PacketType::Data, mid, b"x");
    assert_eq!(
        net.cores[1].handle_packet(tp(0), &mut buf, T0),
        Verdict::Drop(DropReason::NotReady)
    );
    let mut buf = raw(PacketType::Data, src, b"x");
    assert_eq!(
        net.cores[0].handle_packet(tp(1), &mut buf, T0),
        Verdict::Drop(DropReason::NotReady)
    );
    // An ack from the wrong side of the pending rule.
    let mut ack = ack_packet(mid, net.cores[1].rules(T0).next().unwrap().setup_id, 9);
    assert_eq!(
        net.cores[1].handle_packet(tp(0), &mut ack, T0),
        Verdict::Drop(DropReason::WrongTransport)
    );
    assert!(
        net.cores[0]
            .prepare_send(LegRef(src), &mut [0u8; 7], T0)
            .is_none()
    );
}

#[test]
fn idle_rules_expire_and_keepalives_keep_them() {
    let mut net = Net::line(3);
    net.setup(&[0, 1, 2]);
    let src = net.leg_up(0).unwrap();
    net.take_events();
    assert_eq!(net.cores[1].poll_timeout(), Some(Duration::from_secs(30)));
    net.advance(Duration::from_secs(20));
    net.data(0, src, PacketType::KeepAlive, b"");
    net.advance(Duration::from_secs(30));
    assert_eq!(net.total_rules(), 3, "kept alive at 20 s");
    assert_eq!(net.cores[1].poll_timeout(), Some(Duration::from_secs(50)));
    net.advance(Duration::from_secs(50));
    assert_eq!(net.total_rules(), 0);
    let downs: Vec<usize> = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::LegDown { reason, .. } if reason.ends_with("idle for 30 s")))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(downs, vec![0, 2]);
    assert_eq!(
        net.cores
            .iter()
            .map(|c| c.poll_timeout())
            .collect::<Vec<_>>(),
        vec![None; 3]
    );
}

#[test]
fn close_removes_rules_hop_by_hop() {
    let mut net = Net::line(4);
    net.setup(&[0, 1, 2, 3]);
    let src = net.leg_up(0).unwrap();
    net.take_events();
    net.cores[0].close_leg(src, T0);
    net.run();
    assert_eq!(net.total_rules(), 0);
    assert_eq!(
        net.events,
        vec![(
            3,
            Event::LegDown {
                leg: net.events[0].1.leg().unwrap(),
                reason: format!("closed by {}", short(&pk(0)))
            }
        )]
    );
}

impl Event {
    fn leg(&self) -> Option<LegRef> {
        match self {
            Event::LegDown { leg, .. } | Event::LegUp { leg, .. } => Some(*leg),
            _ => None,
        }
    }
}

#[test]
fn transport_down_at_a_middle_hop_tells_both_ends() {
    let mut net = Net::line(5);
    net.setup(&[0, 1, 2, 3, 4]);
    let (src, dst) = (net.leg_up(0).unwrap(), net.leg_up(4).unwrap());
    net.take_events();
    // The link 2–3 dies: both of its ends notice.
    net.links.remove(&(2, tp(3)));
    net.links.remove(&(3, tp(2)));
    net.cores[2].transport_down(tp(3), T0);
    net.cores[3].transport_down(tp(2), T0);
    net.run();
    assert_eq!(net.total_rules(), 0);
    let mut ev = net.take_events();
    ev.sort_by_key(|(i, _)| *i);
    assert_eq!(
        ev,
        vec![
            (
                0,
                Event::LegDown {
                    leg: src,
                    reason: format!("{}: transport to {} down", short(&pk(2)), short(&pk(3)))
                }
            ),
            (
                4,
                Event::LegDown {
                    leg: dst,
                    reason: format!("{}: transport to {} down", short(&pk(3)), short(&pk(2)))
                }
            ),
        ]
    );
}

#[test]
fn transport_down_at_an_endpoint_and_mid_setup() {
    let mut net = Net::line(3);
    net.setup(&[0, 1, 2]);
    let src = net.leg_up(0).unwrap();
    net.take_events();
    net.cores[0].transport_down(tp(1), T0);
    assert_eq!(
        net.cores[0].poll_event(),
        Some(Event::LegDown {
            leg: src,
            reason: format!("{}: transport to {} down", short(&pk(0)), short(&pk(1)))
        })
    );

    // Pending at the intermediary when its downstream goes: the source gets a nack at once.
    let mut net = Net::line(3);
    net.silent.insert(2);
    net.setup(&[0, 1, 2]);
    net.cores[1].transport_down(tp(2), T0);
    net.run();
    assert_eq!(
        net.failure(0).unwrap(),
        format!("{}: transport to {} down", short(&pk(1)), short(&pk(2)))
    );
    assert_eq!(net.total_rules(), 0);
    // Pending at the source.
    let mut net = Net::line(2);
    net.silent.insert(1);
    net.setup(&[0, 1]);
    net.cores[0].transport_down(tp(1), T0);
    net.run();
    assert!(net.failure(0).unwrap().ends_with("down"));
    assert_eq!(net.total_rules(), 0);
}

#[test]
fn nacks_are_relayed_and_remove_pending_rules() {
    // 0-1-2-3 with node 3 refusing (table full): nodes 1 and 2 drop their pending rules.
    let mut net = Net::line(4);
    net.cores[3] = Core::new(
        pk(3),
        CoreConfig {
            max_rules: 0,
            ..CoreConfig::default()
        },
    );
    net.cores[3].transport_up(tp(2), pk(2));
    net.setup(&[0, 1, 2, 3]);
    assert_eq!(
        net.failure(0).unwrap(),
        format!("{}: route table full", short(&pk(3)))
    );
    assert_eq!(net.total_rules(), 0);
    assert_eq!(
        net.cores
            .iter()
            .map(|c| c.poll_timeout())
            .collect::<Vec<_>>(),
        vec![None; 4]
    );
}

#[test]
fn an_error_packet_ends_the_leg() {
    let mut net = Net::line(3);
    net.setup(&[0, 1, 2]);
    let (src, dst) = (net.leg_up(0).unwrap(), net.leg_up(2).unwrap());
    net.take_events();
    net.data(2, dst, PacketType::Error, b"gone away");
    assert_eq!(net.total_rules(), 0);
    assert_eq!(
        net.events,
        vec![(
            0,
            Event::LegDown {
                leg: src,
                reason: "gone away".into()
            }
        )]
    );
    let names: Vec<&str> = net.cores[0].drops().iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 14);
    assert!(names.contains(&"setup rate"));
}

#[test]
fn a_late_ack_closes_the_rules_behind_it() {
    // 0-1-2-3: a request reaches 2 after node 1 gave up on it (id 4242 is gone at 1). The acks
    // of 3 and 2 complete their rules; 1 answers the ack it cannot place with a Close, which
    // removes them hop by hop.
    let mut net = Net::line(4);
    let path: Vec<[u8; PK_LEN]> = (0..4).map(|n| *pk(n).as_bytes()).collect();
    let mut req = request(&path, 2, 4242);
    assert_eq!(
        net.cores[2].handle_packet(tp(1), &mut req, T0),
        Verdict::Consumed
    );
    net.run();
    assert_eq!(net.total_rules(), 0);
    assert_eq!(net.cores[1].drops().get(DropReason::UnknownRoute), 1);
    let downs: Vec<usize> = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::LegDown { .. }))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(downs, vec![3]);
}

#[test]
fn far_future_clock_and_long_error_reasons_are_bounded() {
    let mut dst = Core::new(pk(1), CoreConfig::default());
    dst.transport_up(10, pk(0));
    let path = [*pk(0).as_bytes(), *pk(1).as_bytes()];
    let late = Duration::from_secs(1 << 40);
    assert_eq!(
        dst.handle_packet(10, &mut request(&path, 1, 1), late),
        Verdict::Consumed
    );
    let leg = std::iter::from_fn(|| dst.poll_event())
        .find_map(|e| match e {
            Event::LegUp { leg, .. } => Some(leg),
            _ => None,
        })
        .unwrap();
    let long = vec![b'e'; 4000];
    let mut err = raw(PacketType::Error, leg.0, &long);
    assert_eq!(dst.handle_packet(10, &mut err, late), Verdict::Consumed);
    let Some(Event::LegDown { reason, .. }) = dst.poll_event() else {
        panic!()
    };
    assert_eq!(reason.len(), 255);
}
