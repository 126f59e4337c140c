//! Interop: our mux core, unsealed (plain yamux v0 framing), against hashicorp/yamux in Go
//! (Debian's golang-github-hashicorp-yamux-dev, built offline) over loopback TCP, in both
//! directions: concurrent streams, large echoes (window updates), FIN, RST both ways, ping.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_executor::Executor;
use async_net::{TcpListener, TcpStream};
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::mux::codec::{PlainReader, PlainWriter};
use skywire::mux::{Config, Session, Side, Stream};

/// Builds tests/go/yamux_peer once per test binary.
fn peer_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let go = Command::new("go").arg("version").output();
        assert!(
            go.is_ok_and(|o| o.status.success()),
            "`go` not found: run `bash tests/deps.sh` (make test does) to install the Go yamux peer"
        );
        let yamux = "/usr/share/gocode/src/github.com/hashicorp/yamux/session.go";
        assert!(
            std::path::Path::new(yamux).exists(),
            "{yamux} missing: run `bash tests/deps.sh` to install golang-github-hashicorp-yamux-dev"
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("yamux_peer");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("yamux_peer");
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/yamux_peer"))
            .env("GO111MODULE", "off")
            .env("GOPATH", format!("{}:/usr/share/gocode", dir.display()))
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .status()
            .unwrap();
        assert!(st.success(), "go build of tests/go/yamux_peer failed");
        out
    })
    .clone()
}

fn executor() -> Arc<Executor<'static>> {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    ex
}

fn session(ex: &Executor<'static>, tcp: TcpStream, side: Side) -> Session {
    let cfg = Config::default();
    let reader = PlainReader::new(tcp.clone(), cfg.window as usize);
    Session::new(ex, reader, PlainWriter::new(tcp), side, cfg)
}

/// Starts the Go peer in `mode`, returns it and the port it printed.
fn start_go(mode: &str) -> (common::ChildGuard, u16) {
    let mut child = Command::new(peer_bin())
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("go peer printed {line:?}"))
        .parse()
        .unwrap();
    (common::ChildGuard(Some(child)), port)
}

fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    block_on(future::or(f, async {
        async_io::Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out after {secs} s");
    }))
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i * 7) as u8 ^ seed).collect()
}

async fn echo_roundtrip(s: &Session, data: Vec<u8>) {
    let st = s.open().await.unwrap();
    let (mut r, mut w) = futures_lite::io::split(st);
    let writer = async {
        w.write_all(b"E").await.unwrap();
        w.write_all(&data).await.unwrap();
        w.close().await.unwrap(); // FIN; Go's echo ends and closes in turn
    };
    let reader = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap(); // ends at Go's FIN
        got
    };
    let ((), got) = future::zip(writer, reader).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echo differs");
}

#[test]
fn rust_client_go_server() {
    let (_go, port) = start_go("server");
    let ex = executor();
    within(60, async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let s = session(&ex, tcp, Side::Client);

        // Six concurrent 1 MiB echoes.
        let tasks: Vec<_> = (0..6u8)
            .map(|i| {
                let s = s.clone();
                ex.spawn(async move { echo_roundtrip(&s, payload(1 << 20, i)).await })
            })
            .collect();
        for t in tasks {
            t.await;
        }

        // Sink: Go answers with count and SHA-256 of what it read.
        let data = payload(3 << 20, 42);
        let mut st = s.open().await.unwrap();
        st.write_all(b"S").await.unwrap();
        st.write_all(&data).await.unwrap();
        st.close().await.unwrap();
        let mut ans = Vec::new();
        st.read_to_end(&mut ans).await.unwrap();
        assert_eq!(ans.len(), 40);
        assert_eq!(
            u64::from_be_bytes(ans[..8].try_into().unwrap()),
            data.len() as u64
        );
        let want = skywire_test_sha256(&data);
        assert_eq!(&ans[8..], &want[..]);

        let rtt = s.ping().await.unwrap();
        assert!(rtt < Duration::from_secs(5));
        assert!(s.failure().is_none(), "{:?}", s.failure());
    });
}

#[test]
fn go_rst_on_full_backlog() {
    let (_go, port) = start_go("backlog");
    let ex = executor();
    within(30, async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let s = session(&ex, tcp, Side::Client);
        let mut streams: Vec<Stream> = Vec::new();
        for _ in 0..3 {
            streams.push(s.open().await.unwrap());
        }
        // The first waits in Go's backlog of 1; the others are refused with RST.
        let mut resets = 0;
        for mut st in streams.into_iter().skip(1) {
            let mut b = [0u8; 1];
            let e = st.read(&mut b).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            resets += 1;
        }
        assert_eq!(resets, 2);
    });
}

async fn serve_stream(mut st: Stream) {
    let mut cmd = [0u8; 1];
    if st.read_exact(&mut cmd).await.is_err() {
        return;
    }
    match cmd[0] {
        b'E' => {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match st.read(&mut buf).await {
                    Ok(0) => break,
                    Err(e) => panic!("echo stream {}: read: {e}", st.id()),
                    Ok(n) => {
                        if let Err(e) = st.write_all(&buf[..n]).await {
                            panic!("echo stream {}: write: {e}", st.id());
                        }
                    }
                }
            }
            st.close().await.unwrap();
        }
        b'S' => {
            let mut all = Vec::new();
            st.read_to_end(&mut all).await.unwrap();
            let mut ans = (all.len() as u64).to_be_bytes().to_vec();
            ans.extend_from_slice(&skywire_test_sha256(&all));
            st.write_all(&ans).await.unwrap();
            st.close().await.unwrap();
        }
        b'L' => {
            let mut len = [0u8; 8];
            st.read_exact(&mut len).await.unwrap();
            let mut all = vec![0u8; u64::from_be_bytes(len) as usize];
            st.read_exact(&mut all).await.unwrap();
            let mut ans = (all.len() as u64).to_be_bytes().to_vec();
            ans.extend_from_slice(&skywire_test_sha256(&all));
            st.write_all(&ans).await.unwrap();
            // Then the client's FIN, and ours.
            let mut rest = Vec::new();
            st.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            st.close().await.unwrap();
        }
        b'X' => st.reset(),
        _ => {}
    }
}

#[test]
fn go_client_rust_server() {
    let ex = executor();
    let listener = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut go = common::ChildGuard(Some(
        Command::new(peer_bin())
            .args(["client", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let ex2 = ex.clone();
    ex.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let s = session(&ex2, tcp, Side::Server);
        while let Ok(st) = s.accept().await {
            ex2.spawn(serve_stream(st)).detach();
        }
    })
    .detach();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = go.0.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "go client still running after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(go.take().stdout.as_mut().unwrap(), &mut text).unwrap();
    assert!(status.success(), "go client failed:\n{text}");
    for check in [
        "OK echo 6x1MiB",
        "OK fin both ways",
        "OK sink 3MiB sha256",
        "OK reset seen",
        "OK ping",
    ] {
        assert!(text.contains(check), "missing {check:?} in:\n{text}");
    }
}

/// SHA-256 for the checks (the Go side uses crypto/sha256); a small independent
/// implementation so the test needs no extra crate.
fn skywire_test_sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[test]
fn sha256_helper_known_answer() {
    // FIPS 180-2 "abc".
    let d = skywire_test_sha256(b"abc");
    assert_eq!(
        skywire::crypto::hex::encode(&d),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
