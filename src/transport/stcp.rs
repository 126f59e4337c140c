//! The stcp handshake: the dialler writes its 32-byte PK in the clear (the responder needs it
//! to run KK), then Noise KK with prologue `skywire-rs/1`; both within
//! [`HANDSHAKE_TIMEOUT`](crate::crypto::channel::HANDSHAKE_TIMEOUT).

use std::time::Duration;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::FutureExt;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::link::Codec;
use crate::crypto::channel::{FrameOpener, FrameSealer, handshake_transport};
use crate::crypto::identity::KEY_LEN;
use crate::crypto::noise::{kk_initiator, kk_responder};
use crate::crypto::{Keypair, PublicKey};

/// Dials `addr` and authenticates as `keys` to `peer`.
pub(crate) async fn dial(
    addr: &str,
    keys: &Keypair,
    peer: &PublicKey,
    timeout: Duration,
) -> Result<(TcpStream, Codec), String> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        s.write_all(keys.public().as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let (ts, _) = handshake_transport(&mut s, kk_initiator(keys, peer), timeout)
            .await
            .map_err(|e| format!("stcp handshake with {addr}: {e}"))?;
        Ok((s, codec(ts)))
    };
    work.or(async {
        Timer::after(timeout).await;
        Err(format!(
            "stcp to {addr}: no handshake within {} s",
            timeout.as_secs()
        ))
    })
    .await
}

/// Answers a dialler on `s`: reads its PK, runs KK as responder.
pub(crate) async fn accept(
    mut s: TcpStream,
    keys: &Keypair,
    timeout: Duration,
) -> Result<(TcpStream, PublicKey, Codec), String> {
    let work = async {
        let _ = s.set_nodelay(true);
        let mut pk = [0u8; KEY_LEN];
        s.read_exact(&mut pk)
            .await
            .map_err(|e| format!("reading the dialler's pk: {e}"))?;
        let pk = PublicKey::from_bytes(&pk).map_err(|e| format!("dialler's pk: {e}"))?;
        if pk == *keys.public() {
            return Err("dialler claims our own pk".to_string());
        }
        let (ts, _) = handshake_transport(&mut s, kk_responder(keys, &pk), timeout)
            .await
            .map_err(|e| format!("stcp handshake: {e}"))?;
        Ok((pk, codec(ts)))
    };
    let (pk, c) = work
        .or(async {
            Timer::after(timeout).await;
            Err(format!("no handshake within {} s", timeout.as_secs()))
        })
        .await?;
    Ok((s, pk, c))
}

fn codec(ts: crate::crypto::noise::TransportState) -> Codec {
    Codec::Stcp {
        opener: FrameOpener::new(ts.recv),
        sealer: FrameSealer::new(ts.send),
    }
}
