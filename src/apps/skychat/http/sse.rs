//! The SSE streams (`/sse`, `/events`) fed from the event hub.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use async_io::Timer;
use futures_lite::future;

use super::SSE_SEED;
use crate::apps::skychat::events::{Channel, Event, Hub, Kind};
use crate::crypto::identity::PublicKey;
use crate::http::server::Response;
use crate::http::stream::{self, StreamOpts};

/// SSE comment interval.
pub const PING: Duration = Duration::from_secs(15);

/// An SSE response fed from `hub`: `: connected`, then the replay (after `resume`, or on the
/// legacy stream without it the last [`SSE_SEED`] messages marked history), then live events,
/// each with `id: <seq>`, and `: ping` every [`PING`] without one.
pub fn sse_stream(
    hub: Hub,
    me: PublicKey,
    channels: Vec<Channel>,
    resume: Option<u64>,
    legacy: bool,
    ex: &Arc<Executor<'static>>,
) -> Response {
    // Subscribe before reading the ring, so nothing falls between them; live events already
    // replayed are skipped by seq.
    let sub = hub.subscribe(&channels);
    let replay: Vec<Arc<Event>> = match resume {
        Some(seq) => hub
            .since(seq, &channels)
            .unwrap_or_else(|_| hub.kept(&channels)),
        None if legacy => {
            let msgs: Vec<Arc<Event>> = hub
                .kept(&channels)
                .into_iter()
                .filter(|e| e.kind == Kind::Message)
                .collect();
            let skip = msgs.len().saturating_sub(SSE_SEED);
            msgs.into_iter()
                .skip(skip)
                .map(|e| {
                    let mut h = (*e).clone();
                    h.history = true;
                    Arc::new(h)
                })
                .collect()
        }
        None => Vec::new(),
    };
    let opts = StreamOpts {
        keepalive: None,
        ..StreamOpts::default()
    };
    let (resp, tx) = Response::sse(&opts);
    let render = move |e: &Event| {
        if legacy {
            e.legacy_json(&me)
        } else {
            e.structured_json()
        }
    };
    let _ = tx.comment("connected");
    // Group posts are `event: group`; the rest are default `message` events.
    fn frame<'a>(e: &Event, data: &'a str) -> stream::Event<'a> {
        if e.channel == Channel::Group {
            stream::Event::named("group", data)
        } else {
            stream::Event::data(data)
        }
    }
    ex.spawn(async move {
        let mut last = 0u64;
        for e in &replay {
            let id = e.seq.to_string();
            let data = render(e);
            if tx.send_wait(&frame(e, &data).id(&id)).await.is_err() {
                return;
            }
            last = last.max(e.seq);
        }
        enum Step {
            Ev(Option<Arc<Event>>),
            Ping,
            Gone,
        }
        loop {
            let step = future::or(
                async { Step::Ev(sub.next().await) },
                future::or(
                    async {
                        Timer::after(PING).await;
                        Step::Ping
                    },
                    async {
                        tx.body().closed().await;
                        Step::Gone
                    },
                ),
            )
            .await;
            match step {
                Step::Ev(Some(e)) => {
                    if e.seq <= last {
                        continue;
                    }
                    last = e.seq;
                    let id = e.seq.to_string();
                    let data = render(&e);
                    if tx.send_wait(&frame(&e, &data).id(&id)).await.is_err() {
                        return;
                    }
                }
                // Fell behind: end the stream; the client resumes with Last-Event-ID.
                Step::Ev(None) | Step::Gone => return,
                Step::Ping => {
                    if tx.comment("ping").is_err() {
                        return;
                    }
                }
            }
        }
    })
    .detach();
    resp.with_header("X-Accel-Buffering", "no")
}

#[cfg(test)]
mod tests;
