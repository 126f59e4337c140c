//! Interop: our Noise XK/KK handshakes and transport frames against an independent
//! implementation, PyPI's `noiseprotocol` (tests/py/noise_peer.py), over real loopback TCP,
//! with Rust as initiator and as responder. Both sides must derive the same handshake hash,
//! and transport messages flow both ways.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_net::TcpListener;
use futures_lite::future;
use skywire::crypto::Keypair;
use skywire::crypto::channel::{Channel, HANDSHAKE_TIMEOUT};
use skywire::crypto::hex;
use skywire::crypto::hmac::sha512;
use skywire::crypto::noise::{kk_initiator, kk_responder, xk_initiator, xk_responder};

fn run(pattern: &str, rust_initiates: bool) {
    let py = common::venv_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/noise_peer.py");
    let ours = Keypair::generate().unwrap();
    let theirs = Keypair::generate().unwrap();

    future::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let py_role = if rust_initiates {
            "responder"
        } else {
            "initiator"
        };
        let mut cmd = Command::new(&py);
        cmd.arg(script)
            .arg(pattern)
            .arg(py_role)
            .arg(port.to_string())
            .arg(hex::encode(theirs.seed()));
        // The Python side knows our PK in every case except as an XK responder, which learns
        // it from message 3.
        if !(pattern == "XK" && rust_initiates) {
            cmd.arg(ours.public().to_hex());
        }
        let mut child = common::ChildGuard(Some(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));

        let accept = async { Ok(listener.accept().await.unwrap().0) };
        let timeout = async {
            async_io::Timer::after(Duration::from_secs(20)).await;
            Err(())
        };
        let Ok(stream) = future::or(accept, timeout).await else {
            panic!("the Python peer never connected: {}", stderr_of(&mut child));
        };

        let hs = match (pattern, rust_initiates) {
            ("XK", true) => xk_initiator(&ours, theirs.public()),
            ("XK", false) => xk_responder(&ours),
            ("KK", true) => kk_initiator(&ours, theirs.public()),
            ("KK", false) => kk_responder(&ours, theirs.public()),
            _ => unreachable!(),
        };
        let mut ch = match Channel::handshake(stream, hs, HANDSHAKE_TIMEOUT).await {
            Ok(ch) => ch,
            Err(e) => panic!(
                "handshake with noiseprotocol failed: {e}; python said: {}",
                stderr_of(&mut child)
            ),
        };
        // The responder of XK learned the Python side's identity from message 3.
        assert_eq!(ch.remote(), theirs.public());

        let greeting = ch.recv().await.unwrap().to_vec();
        let expect = format!("hello from python {}", ours.public().to_hex());
        assert_eq!(greeting, expect.as_bytes());

        // Sizes from empty to the largest payload a frame can carry.
        let sizes = [0usize, 1, 15, 16, 17, 1000, 4096, 65535 - 16];
        for (i, &n) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            ch.send(&msg).await.unwrap();
            let answer = ch.recv().await.unwrap();
            assert_eq!(answer, sha512(&[&msg]), "answer to a {n}-byte message");
        }
        ch.send(b"bye").await.unwrap();

        let mut c = child.take();
        let status = c.wait().unwrap();
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "python peer failed: {err}");
        let hash = out
            .lines()
            .find_map(|l| l.strip_prefix("hash "))
            .expect("python printed its handshake hash");
        assert_eq!(
            hash,
            hex::encode(ch.handshake_hash()),
            "handshake hashes differ"
        );
        assert!(out.contains(&format!("count {}", sizes.len())), "{out}");
    });
}

/// Kills the peer and returns what it wrote to stderr (for a failure message).
fn stderr_of(child: &mut common::ChildGuard) -> String {
    let mut c = child.take();
    let _ = c.kill();
    let _ = c.wait();
    let mut err = String::new();
    let _ = c.stderr.take().unwrap().read_to_string(&mut err);
    err
}

#[test]
fn xk_rust_initiator_python_responder() {
    run("XK", true);
}

#[test]
fn xk_python_initiator_rust_responder() {
    run("XK", false);
}

#[test]
fn kk_rust_initiator_python_responder() {
    run("KK", true);
}

#[test]
fn kk_python_initiator_rust_responder() {
    run("KK", false);
}
