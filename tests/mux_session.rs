//! The async mux driver over real loopback TCP with each codec: concurrent streams with large
//! transfers, a stalled stream that must not stall its neighbours, control payloads on the
//! sealed codec, and hostile bytes that must fail the session rather than hang it.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use async_net::{TcpListener, TcpStream};
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::Keypair;
use skywire::crypto::channel::{Channel, HANDSHAKE_TIMEOUT, handshake_transport};
use skywire::crypto::noise::{xk_initiator, xk_responder};
use skywire::mux::codec::{
    ChannelFrameReader, ChannelFrameWriter, PlainReader, PlainWriter, SealedReader, SealedWriter,
};
use skywire::mux::{Config, Session, Side};

fn executor() -> Arc<Executor<'static>> {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    ex
}

fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    block_on(future::or(f, async {
        async_io::Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out after {secs} s");
    }))
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = future::zip(TcpStream::connect(addr), l.accept()).await;
    (a.unwrap(), b.unwrap().0)
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    Plain,
    Channel,
    Sealed,
}

/// A connected client/server session pair over loopback TCP with `codec`.
async fn sessions(ex: &Executor<'static>, codec: Codec) -> (Session, Session) {
    let (a, b) = tcp_pair().await;
    let cfg = Config::default();
    match codec {
        Codec::Plain => {
            let w = cfg.window as usize;
            (
                Session::new(
                    ex,
                    PlainReader::new(a.clone(), w),
                    PlainWriter::new(a),
                    Side::Client,
                    cfg.clone(),
                ),
                Session::new(
                    ex,
                    PlainReader::new(b.clone(), w),
                    PlainWriter::new(b),
                    Side::Server,
                    cfg,
                ),
            )
        }
        Codec::Channel => {
            let ka = Keypair::from_seed(&[1; 32]);
            let kb = Keypair::from_seed(&[2; 32]);
            let (ca, cb) = future::zip(
                Channel::connect_kk(a, &ka, kb.public()),
                Channel::accept_kk(b, &kb, ka.public()),
            )
            .await;
            let (ra, wa) = ca.unwrap().split_with(|s| (s.clone(), s));
            let (rb, wb) = cb.unwrap().split_with(|s| (s.clone(), s));
            (
                Session::new(
                    ex,
                    ChannelFrameReader::new(ra),
                    ChannelFrameWriter::new(wa),
                    Side::Client,
                    cfg.clone(),
                ),
                Session::new(
                    ex,
                    ChannelFrameReader::new(rb),
                    ChannelFrameWriter::new(wb),
                    Side::Server,
                    cfg,
                ),
            )
        }
        Codec::Sealed => {
            let ka = Keypair::from_seed(&[1; 32]);
            let kb = Keypair::from_seed(&[2; 32]);
            let (mut a, mut b) = (a, b);
            let (ta, tb) = future::zip(
                handshake_transport(&mut a, xk_initiator(&ka, kb.public()), HANDSHAKE_TIMEOUT),
                handshake_transport(&mut b, xk_responder(&kb), HANDSHAKE_TIMEOUT),
            )
            .await;
            let (ta, _) = ta.unwrap();
            let (tb, pk) = tb.unwrap();
            assert_eq!(&pk, ka.public());
            let max = 64 * 1024;
            (
                Session::new(
                    ex,
                    SealedReader::new(a.clone(), ta.recv, max),
                    SealedWriter::new(a, ta.send),
                    Side::Client,
                    cfg.clone(),
                ),
                Session::new(
                    ex,
                    SealedReader::new(b.clone(), tb.recv, max),
                    SealedWriter::new(b, tb.send),
                    Side::Server,
                    cfg,
                ),
            )
        }
    }
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Server side: echo every accepted stream until EOF, then close.
fn serve_echo(ex: &Arc<Executor<'static>>, server: Session) {
    let ex2 = ex.clone();
    ex.spawn(async move {
        while let Ok(mut st) = server.accept().await {
            ex2.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match st.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if st.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = st.close().await;
            })
            .detach();
        }
    })
    .detach();
}

async fn echo(client: &Session, data: Vec<u8>) {
    let st = client.open().await.unwrap();
    let (mut r, mut w) = futures_lite::io::split(st);
    let send = async {
        w.write_all(&data).await.unwrap();
        w.close().await.unwrap();
    };
    let recv = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = future::zip(send, recv).await;
    assert!(
        got == data,
        "echo of {} bytes differs ({} back)",
        data.len(),
        got.len()
    );
}

fn concurrent_echoes(codec: Codec) {
    let ex = executor();
    within(60, async {
        let (client, server) = sessions(&ex, codec).await;
        serve_echo(&ex, server);
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let c = client.clone();
                ex.spawn(async move { echo(&c, payload(2 << 20, i)).await })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert!(client.ping().await.unwrap() < Duration::from_secs(5));
        assert!(client.failure().is_none());
    });
}

#[test]
fn plain_concurrent_echoes() {
    concurrent_echoes(Codec::Plain);
}

#[test]
fn channel_concurrent_echoes() {
    concurrent_echoes(Codec::Channel);
}

#[test]
fn sealed_concurrent_echoes() {
    concurrent_echoes(Codec::Sealed);
}

/// A stream whose reader never reads fills its window and stops; another stream on the same
/// session still moves 8 MiB.
fn stalled_stream_does_not_stall_others(codec: Codec) {
    let ex = executor();
    within(60, async {
        let (client, server) = sessions(&ex, codec).await;
        let stalled = client.open().await.unwrap();
        let server2 = server.clone();
        let stalled_rx = server2.accept().await;
        let _stalled_rx = stalled_rx; // accepted, never read
        // Fill the stalled stream from a task; it blocks once the window is spent.
        let filler = ex.spawn(async move {
            let mut st = stalled;
            let chunk = vec![1u8; 64 * 1024];
            let mut sent = 0usize;
            loop {
                let w = future::or(async { Some(st.write(&chunk).await) }, async {
                    async_io::Timer::after(Duration::from_millis(500)).await;
                    None
                })
                .await;
                match w {
                    Some(Ok(n)) => sent += n,
                    _ => return (st, sent),
                }
            }
        });
        let (stalled, sent) = filler.await;
        assert_eq!(sent, 256 * 1024, "the stalled stream stops at its window");
        serve_echo(&ex, server);
        echo(&client, payload(8 << 20, 7)).await;
        drop(stalled);
    });
}

#[test]
fn plain_stalled_stream() {
    stalled_stream_does_not_stall_others(Codec::Plain);
}

#[test]
fn channel_stalled_stream() {
    stalled_stream_does_not_stall_others(Codec::Channel);
}

#[test]
fn sealed_stalled_stream() {
    stalled_stream_does_not_stall_others(Codec::Sealed);
}

#[test]
fn sealed_control_payload_reaches_the_acceptor() {
    let ex = executor();
    within(20, async {
        let (client, server) = sessions(&ex, Codec::Sealed).await;
        let mut st = client.open_with(b"dst:abc/22").await.unwrap();
        st.write_all(b"hi").await.unwrap();
        let mut acc = server.accept().await.unwrap();
        assert_eq!(acc.control(), b"dst:abc/22");
        let mut b = [0u8; 2];
        acc.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hi");
    });
}

/// Garbage after a good handshake, a huge announced data length, a sealed length below the
/// minimum: each fails the session (accept errors out) instead of hanging it or allocating.
#[test]
fn hostile_bytes_fail_the_session() {
    let ex = executor();
    within(20, async {
        // Plain: a data header announcing 4 GiB.
        let (mut a, b) = tcp_pair().await;
        let cfg = Config::default();
        let s = Session::new(
            &ex,
            PlainReader::new(b.clone(), cfg.window as usize),
            PlainWriter::new(b),
            Side::Server,
            cfg.clone(),
        );
        a.write_all(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(s.accept().await.is_err());
        assert!(format!("{}", s.failure().unwrap()).contains("more than"));

        // Sealed: a short sealed length, then garbage that does not authenticate.
        for bytes in [
            vec![0u8, 5, 1, 2, 3, 4, 5],
            vec![0u8, 28].into_iter().chain([7u8; 28]).collect(),
        ] {
            let (mut a, mut b) = tcp_pair().await;
            let ka = Keypair::from_seed(&[1; 32]);
            let kb = Keypair::from_seed(&[2; 32]);
            let (ta, tb) = future::zip(
                handshake_transport(&mut a, xk_initiator(&ka, kb.public()), HANDSHAKE_TIMEOUT),
                handshake_transport(&mut b, xk_responder(&kb), HANDSHAKE_TIMEOUT),
            )
            .await;
            drop(ta.unwrap());
            let (tb, _) = tb.unwrap();
            let s = Session::new(
                &ex,
                SealedReader::new(b.clone(), tb.recv, 65536),
                SealedWriter::new(b, tb.send),
                Side::Server,
                cfg.clone(),
            );
            a.write_all(&bytes).await.unwrap();
            assert!(s.accept().await.is_err());
            let why = s.failure().unwrap().to_string();
            assert!(
                why.contains("sealed length") || why.contains("refused"),
                "{why}"
            );
        }
    });
}

#[test]
fn peer_disappearing_ends_reads_with_an_error() {
    let ex = executor();
    within(20, async {
        let (client, server) = sessions(&ex, Codec::Channel).await;
        let mut st = client.open().await.unwrap();
        st.write_all(b"x").await.unwrap();
        let _acc = server.accept().await.unwrap();
        server.close();
        let mut b = [0u8; 1];
        let r = st.read(&mut b).await;
        assert!(r.is_err(), "{r:?}");
    });
}
