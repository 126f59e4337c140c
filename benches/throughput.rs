//! `make bench` — throughput of the secure-channel stack against its ceilings, in one run:
//! raw loopback TCP, one ChaCha20-Poly1305 pass in memory, and (as the layers land) the
//! encrypted channel and the mux over it; CPU-seconds per GiB beside each.
//!
//! `cargo bench --bench throughput -- --write docs/benchmarks.md` runs it for real and writes
//! the table; under `cargo test --all-targets` it runs a few MiB as a smoke test.

mod common;

use async_net::{TcpListener as AsyncListener, TcpStream as AsyncStream};
use common::{Sample, aead_pass, measure, median_of, raw_tcp};
use futures_lite::future::block_on;
use skywire::crypto::Keypair;
use skywire::crypto::channel::Channel;
use skywire::mux::codec::{ChannelFrameReader, ChannelFrameWriter};
use skywire::mux::{Config, Session, Side};

/// The encrypted channel (KK) over loopback TCP: a sender thread and a receiver thread, each
/// with its own single-threaded executor, `payload`-byte frames.
fn channel_loopback(total: u64, payload: usize) -> Sample {
    let a = Keypair::from_seed(&[1u8; 32]);
    let b = Keypair::from_seed(&[2u8; 32]);
    let (a_pk, b_pk) = (*a.public(), *b.public());
    let listener = block_on(AsyncListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    measure(move || {
        let sender = std::thread::spawn(move || {
            block_on(async {
                let tcp = AsyncStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let mut ch = Channel::connect_kk(tcp, &a, &b_pk).await.unwrap();
                let buf = vec![0x5au8; payload];
                let mut sent = 0u64;
                while sent < total {
                    ch.send(&buf).await.unwrap();
                    sent += payload as u64;
                }
                ch.close().await.unwrap();
            })
        });
        let got = block_on(async {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut ch = Channel::accept_kk(tcp, &b, &a_pk).await.unwrap();
            let mut got = 0u64;
            while got < total {
                got += ch.recv().await.unwrap().len() as u64;
            }
            got
        });
        sender.join().unwrap();
        got
    })
}

/// The mux over the encrypted channel (KK) over loopback TCP: `streams` concurrent streams
/// move `total` bytes between them, client executor on one thread, server on another.
fn mux_loopback(total: u64, streams: usize) -> Sample {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use std::sync::Arc;
    let a = Keypair::from_seed(&[1u8; 32]);
    let b = Keypair::from_seed(&[2u8; 32]);
    let (a_pk, b_pk) = (*a.public(), *b.public());
    let listener = block_on(AsyncListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let per = total / streams as u64;
    measure(move || {
        let client = std::thread::spawn(move || {
            let ex = Arc::new(async_executor::Executor::new());
            block_on(ex.run(async {
                let tcp = AsyncStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let ch = Channel::connect_kk(tcp, &a, &b_pk).await.unwrap();
                let (r, w) = ch.split_with(|s| (s.clone(), s));
                let s = Session::new(
                    &ex,
                    ChannelFrameReader::new(r),
                    ChannelFrameWriter::new(w),
                    Side::Client,
                    Config::default(),
                );
                let tasks: Vec<_> = (0..streams)
                    .map(|_| {
                        let s = s.clone();
                        ex.spawn(async move {
                            let mut st = s.open().await.unwrap();
                            let buf = vec![0x5au8; 64 * 1024];
                            let mut sent = 0u64;
                            while sent < per {
                                let n = (per - sent).min(buf.len() as u64) as usize;
                                st.write_all(&buf[..n]).await.unwrap();
                                sent += n as u64;
                            }
                            st.close().await.unwrap();
                            // Wait for the server's FIN so nothing is cut short.
                            let mut rest = Vec::new();
                            st.read_to_end(&mut rest).await.unwrap();
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
            }))
        });
        let ex = Arc::new(async_executor::Executor::new());
        let got = block_on(ex.run(async {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let ch = Channel::accept_kk(tcp, &b, &a_pk).await.unwrap();
            let (r, w) = ch.split_with(|s| (s.clone(), s));
            let s = Session::new(
                &ex,
                ChannelFrameReader::new(r),
                ChannelFrameWriter::new(w),
                Side::Server,
                Config::default(),
            );
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let mut st = s.accept().await.unwrap();
                tasks.push(ex.spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0u64;
                    loop {
                        match st.read(&mut buf).await.unwrap() {
                            0 => break,
                            n => got += n as u64,
                        }
                    }
                    st.close().await.unwrap();
                    got
                }));
            }
            let mut got = 0;
            for t in tasks {
                got += t.await;
            }
            got
        }));
        client.join().unwrap();
        got
    })
}

struct Row {
    name: String,
    s: Sample,
}

fn main() {
    let full = common::full_run();
    let gib = 1u64 << 30;
    let (tcp_total, aead_total, runs) = if full {
        (4 * gib, gib, 3)
    } else {
        (64 << 20, 16 << 20, 1)
    };

    let mut rows = Vec::new();
    let tcp = median_of(runs, || raw_tcp(tcp_total));
    rows.push(Row {
        name: "raw loopback TCP (64 KiB writes)".into(),
        s: tcp.clone(),
    });
    let aead = median_of(runs, || aead_pass(aead_total, 16 * 1024));
    rows.push(Row {
        name: "ChaCha20-Poly1305, one pass in memory (16 KiB)".into(),
        s: aead.clone(),
    });
    rows.push(Row {
        name: "ChaCha20-Poly1305, one pass in memory (1 KiB)".into(),
        s: median_of(runs, || aead_pass(aead_total / 4, 1024)),
    });

    let (ch_total, ch_runs) = if full { (gib, runs) } else { (16 << 20, 1) };
    rows.push(Row {
        name: "encrypted channel (KK) over loopback TCP, 64 KiB frames".into(),
        s: median_of(ch_runs, || channel_loopback(ch_total, 65535 - 16)),
    });
    rows.push(Row {
        name: "encrypted channel (KK) over loopback TCP, 16 KiB frames".into(),
        s: median_of(ch_runs, || channel_loopback(ch_total, 16 * 1024)),
    });

    rows.push(Row {
        name: "mux over the encrypted channel, 1 stream".into(),
        s: median_of(ch_runs, || mux_loopback(ch_total, 1)),
    });
    rows.push(Row {
        name: "mux over the encrypted channel, 16 concurrent streams".into(),
        s: median_of(ch_runs, || mux_loopback(ch_total, 16)),
    });

    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {}. Median of {runs} runs each; ratios are to the rows measured in this run.\n\n",
        common::machine()
    ));
    out.push_str(
        "| what | MiB/s | CPU-s/GiB | × raw TCP | × one AEAD pass |\n|---|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            r.name,
            r.s.mib_per_s(),
            r.s.cpu_s_per_gib(),
            r.s.gib_per_s() / tcp.gib_per_s(),
            r.s.gib_per_s() / aead.gib_per_s(),
        ));
    }
    print!("{out}");
    if let Some(file) = common::write_target() {
        common::write_section(&file, "throughput", out.trim_end()).unwrap();
        println!("wrote the table to {file}");
    }
}
