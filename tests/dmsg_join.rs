//! Joining the network when discovery lists fake relays (issue 11 finding 6): anyone can sign a
//! relay entry, so five entries advertising a huge capacity and pointing at tarpits (listeners
//! that accept and never answer) must not keep `skywire dmsg cat` from joining through the one
//! real relay.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::dmsg::{keypair_hex, start_disc, start_relay, tool, wait_relays_listed, wait_status};
use futures_lite::future::block_on;
use skywire::crypto::Keypair;
use skywire::dmsg::disc_client::DiscClient;
use skywire::dmsg::entry::Entry;

/// A listener that accepts (up to 200 connections), holds each open and never writes.
fn tarpit() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        // At most 200 accepts (errors included), so the loop is bounded.
        for s in l.incoming().take(200).flatten() {
            held.push(s);
        }
    });
    addr
}

#[test]
fn cat_joins_through_the_real_relay_despite_tarpit_entries() {
    let (_disc, url) = start_disc();
    let relay = start_relay(&url, &[]);
    wait_relays_listed(&url, 1);
    let disc = DiscClient::new(&url).unwrap();
    for i in 0..5u64 {
        let fake = Entry::relay(
            &Keypair::generate().unwrap(),
            1 + i,
            skywire::dmsg::disc::unix_now(),
            tarpit(),
            u32::MAX,
        )
        .unwrap();
        block_on(disc.put(&fake)).unwrap();
    }
    wait_relays_listed(&url, 6);
    // Discovery lists the tarpits first (most free sessions first).
    let listed = block_on(disc.relays()).unwrap();
    assert_ne!(listed[0].pk, relay.pk);

    // Neither side is told which relay to use: both join from discovery.
    let (sk, pk) = keypair_hex();
    let mut l = tool(&["cat", "-l", "7", "--disc", &url, "--sk", &sk]);
    let mut l_in = l.stdin.take().unwrap();
    l_in.write_all(b"from the listener\n").unwrap();
    drop(l_in);
    // Wait until the listener is up before dialling (its stderr says so).
    let (line, mut l_err) = common::dmsg::wait_stderr_line(&mut l, "listening on");
    assert_eq!(line, format!("listening on {pk}:7"));
    let mut d = tool(&["cat", &format!("{pk}:7"), "--disc", &url]);
    let mut d_in = d.stdin.take().unwrap();
    d_in.write_all(b"from the dialler\n").unwrap();
    drop(d_in);

    // Hang guards only: the assertion is that both succeed.
    let st = wait_status(&mut d, 30, "the dialler");
    let mut d_err = String::new();
    d.stderr.take().unwrap().read_to_string(&mut d_err).unwrap();
    assert!(st.success(), "dialler failed: {d_err}");
    let mut out = String::new();
    d.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "from the listener\n");
    let st = wait_status(&mut l, 30, "the listener");
    let mut rest = String::new();
    l_err.read_to_string(&mut rest).unwrap();
    assert!(st.success(), "listener failed: {rest}");
    let mut out = String::new();
    l.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "from the dialler\n");
}
