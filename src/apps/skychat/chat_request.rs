//! One envelope that wants an answer: written to a peer (cached connection, else dialled),
//! then a wait for the `chat-ack` or `chat-nack` naming its id. The pairing service's sends
//! (docs/protocol.md "Skychat pairing") go this way; chat messages keep their own path
//! (history, retries) in [`Chat::send`].

use std::task::Poll;
use std::time::Duration;

use async_io::Timer;
use futures_lite::future::{self, poll_fn};

use super::{Answer, Chat, MAX_PENDING_PER_PEER, NetChoice, Pending, PendingGuard, lock, net_name};
use crate::apps::skychat::proto::{Envelope, MsgId};
use crate::crypto::PublicKey;

/// How a request ended, when not acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqFail {
    /// Nothing was written: the peer cannot be reached (or too many requests wait on it).
    Unreachable(String),
    /// The peer refused it (`chat-nack`), with its reason.
    Refused(String),
    /// Written, but no answer came (timeout, or the connection was lost).
    NoAnswer(String),
}

impl std::fmt::Display for ReqFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqFail::Unreachable(m) => write!(f, "peer unreachable: {m}"),
            ReqFail::Refused(m) => write!(f, "refused by the peer: {m}"),
            ReqFail::NoAnswer(m) => f.write_str(m),
        }
    }
}

impl Chat {
    /// Writes `env` (whose id is `id`) to `peer` and waits up to `wait` (clamped to
    /// 100 ms..=60 s) for its ack; `Ok` names the network it went over.
    pub async fn request(
        &self,
        peer: PublicKey,
        id: MsgId,
        env: &Envelope,
        wait: Duration,
    ) -> Result<&'static str, ReqFail> {
        let wait = wait.clamp(Duration::from_millis(100), Duration::from_secs(60));
        {
            let mut g = lock(&self.0.pending);
            if g.values().filter(|p| p.peer == peer).count() >= MAX_PENDING_PER_PEER {
                return Err(ReqFail::Unreachable(format!(
                    "{MAX_PENDING_PER_PEER} requests to {peer} are already waiting for an answer"
                )));
            }
            // In the table before the write, so an answer that comes at once is not missed.
            g.insert(
                id,
                Pending {
                    peer,
                    conn: 0,
                    answer: None,
                    waker: None,
                },
            );
        }
        let _guard = PendingGuard(self, id);
        let pc = self
            .deliver(peer, NetChoice::Auto, env)
            .await
            .map_err(ReqFail::Unreachable)?;
        if let Some(p) = lock(&self.0.pending).get_mut(&id)
            && p.answer.is_none()
        {
            p.conn = pc.id;
        }
        let answer = future::or(
            poll_fn(|cx| {
                let mut g = lock(&self.0.pending);
                let Some(p) = g.get_mut(&id) else {
                    return Poll::Ready(None);
                };
                match p.answer.take() {
                    Some(a) => Poll::Ready(Some(a)),
                    None => {
                        p.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }),
            async {
                Timer::after(wait).await;
                None
            },
        )
        .await;
        match answer {
            Some(Answer::Acked(_)) => Ok(net_name(pc.network)),
            Some(Answer::Nacked(r)) => Err(ReqFail::Refused(r)),
            Some(Answer::Lost) => Err(ReqFail::NoAnswer(
                "the connection was lost before the peer answered".into(),
            )),
            None => Err(ReqFail::NoAnswer(format!(
                "no answer within {} ms",
                wait.as_millis()
            ))),
        }
    }
}
