//! `make bench` — Noise handshakes per second (XK and KK), both sides computed on one core in
//! memory, so the figure is the CPU cost of a whole handshake; the public-key operations
//! (X25519 in salty) dominate. Under `cargo test --all-targets` it runs a few as a smoke test.

mod common;

use std::time::Instant;

use skywire::crypto::Keypair;
use skywire::crypto::noise::{Handshake, kk_initiator, kk_responder, xk_initiator, xk_responder};

/// Runs one handshake to completion and returns the number of messages.
fn run_one(mut i: Handshake, mut r: Handshake) -> usize {
    let mut buf = [0u8; 128];
    let mut msgs = 0;
    while !(i.is_finished() && r.is_finished()) {
        let (w, rd) = if msgs % 2 == 0 {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let n = w.write_message(&mut buf).unwrap();
        rd.read_message(&buf[..n]).unwrap();
        msgs += 1;
    }
    let (ti, _) = i.into_transport().unwrap();
    let (tr, _) = r.into_transport().unwrap();
    assert_eq!(ti.handshake_hash, tr.handshake_hash);
    msgs
}

/// Handshakes per second and CPU milliseconds per handshake over `n` handshakes.
fn rate(n: u32, mut one: impl FnMut()) -> (f64, f64) {
    let c0 = common::cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..n {
        one();
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds() - c0;
    (f64::from(n) / wall, cpu * 1000.0 / f64::from(n))
}

fn main() {
    let full = common::full_run();
    let (n, runs) = if full { (400, 3) } else { (4, 1) };
    let a = Keypair::from_seed(&[1u8; 32]);
    let b = Keypair::from_seed(&[2u8; 32]);

    let median = |mut f: Box<dyn FnMut() -> (f64, f64)>| {
        let mut v: Vec<(f64, f64)> = (0..runs).map(|_| f()).collect();
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        v[v.len() / 2]
    };
    let xk = median(Box::new(|| {
        rate(n, || {
            run_one(xk_initiator(&a, b.public()), xk_responder(&b));
        })
    }));
    let kk = median(Box::new(|| {
        rate(n, || {
            run_one(kk_initiator(&a, b.public()), kk_responder(&b, a.public()));
        })
    }));
    // The identity → Noise static conversion a dialer does once per new peer PK.
    let conv = median(Box::new(|| {
        rate(n * 4, || {
            std::hint::black_box(std::hint::black_box(b.public()).noise_static());
        })
    }));

    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {}. {n} handshakes per run, median of {runs} runs; both sides on one core, in memory.\n\n",
        common::machine()
    ));
    out.push_str("| what | per second | CPU ms each | × KK |\n|---|---:|---:|---:|\n");
    for (name, (r, ms)) in [
        ("Noise XK handshake (3 messages, both sides)", xk),
        ("Noise KK handshake (2 messages, both sides)", kk),
        ("PK → Noise static (Edwards→Montgomery)", conv),
    ] {
        out.push_str(&format!(
            "| {name} | {r:.0} | {ms:.2} | {:.2} |\n",
            r / kk.0
        ));
    }
    print!("{out}");
    if let Some(file) = common::write_target() {
        common::write_section(&file, "handshake", out.trim_end()).unwrap();
        println!("wrote the table to {file}");
    }
}
