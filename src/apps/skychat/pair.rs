//! The pairing service (`--pair-enable`; docs/protocol.md "Skychat pairing"): two visors
//! agree to pair (invite → accept or decline), then exchange pair messages, each acked once
//! the receiver has it in its inbox on disk. The book ([`book`]) is saved on every change and
//! the inbox appended per message ([`disk`]), so a pending invite, a pair and the received
//! messages survive a restart of either side. Steps and messages are published on the event
//! hub's `pair` channel (`/events?channel=pair`).

pub mod book;
pub mod disk;
pub mod time;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_executor::Executor;

use super::chat::{Bucket, Chat, ReqFail};
use super::events::{Channel, Dir, Event, Hub, Kind, now_ms};
use super::proto::{Envelope, MsgId};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;
use book::{AddStep, Book, Fail, InviteStep, Pair, Status};
use disk::{INBOX_FILE, InMsg, InboxLog};
use wire::{MAX_TEXT, PairMsg};

/// Received pair messages kept (the oldest pruned first).
pub const INBOX_CAP: usize = 1_000;
/// Pairing envelopes taken per 10 s from one peer (burst twice that).
pub const PAIR_RATE: u32 = 50;
/// Invites taken from one peer per [`INVITE_WINDOW`].
pub const INVITES_PER_WINDOW: usize = 4;
/// The window of [`INVITES_PER_WINDOW`].
pub const INVITE_WINDOW: Duration = Duration::from_secs(600);
/// How long a step or a message waits for the peer's answer.
pub const PEER_WAIT: Duration = Duration::from_secs(10);
/// Peers whose rates are tracked before idle ones are dropped.
const RATE_PEERS: usize = 1_024;

/// What a peer's pairing envelope gets when pairing is off here.
pub const OFF_FOR_PEERS: &str =
    "pairing is off at the receiver (its skychat runs without --pair-enable)";
/// What the HTTP surface says when pairing is off.
pub const OFF_FOR_USERS: &str = "pairing is off: start skychat with --pair-enable (add \"--pair-enable\" to the skychat app's \"args\" in the visor config and restart the visor)";

/// How `pair add` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The pair's state now.
    pub status: Status,
    /// The invite (or acceptance) reached the peer; else why not (it stays pending-out).
    pub delivered: Result<(), String>,
}

struct St {
    book: Book,
    inbox: VecDeque<InMsg>,
    seen: HashSet<(PublicKey, MsgId)>,
    log: InboxLog,
    invites: HashMap<PublicKey, VecDeque<Instant>>,
    rate: HashMap<PublicKey, Bucket>,
}

struct Inner {
    dir: PathBuf,
    hub: Hub,
    ex: Arc<Executor<'static>>,
    st: Mutex<St>,
}

/// The pairing service (cheap to clone).
#[derive(Clone)]
pub struct Pairs(Arc<Inner>);

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairs").field("dir", &self.0.dir).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(code: u16, msg: impl Into<String>) -> Fail {
    Fail(code, msg.into())
}

impl Pairs {
    /// Loads the book and the inbox from `dir` (the app's directory); a file that is not
    /// ours is refused with its name and what to do.
    pub fn open(dir: &Path, hub: Hub, ex: Arc<Executor<'static>>) -> Result<Pairs, String> {
        let book = Book::from_pairs(disk::load_pairs(dir)?)
            .map_err(|e| format!("{}: {e}", dir.join(disk::PAIRS_FILE).display()))?;
        let (mut log, msgs, cut) = InboxLog::open(&dir.join(INBOX_FILE))?;
        if cut > 0 {
            log::warn!(
                "skychat: the pair inbox ended in a torn record ({cut} bytes, from a crash): cut off"
            );
        }
        let skip = msgs.len().saturating_sub(INBOX_CAP);
        let inbox: VecDeque<InMsg> = msgs.into_iter().skip(skip).collect();
        if skip > 0 {
            log.rewrite(inbox.iter())?;
        }
        let seen = inbox.iter().map(|m| (m.peer, m.id)).collect();
        Ok(Pairs(Arc::new(Inner {
            dir: dir.to_path_buf(),
            hub,
            ex,
            st: Mutex::new(St {
                book,
                inbox,
                seen,
                log,
                invites: HashMap::new(),
                rate: HashMap::new(),
            }),
        })))
    }

    /// Every pair.
    pub fn list(&self) -> Vec<Pair> {
        lock(&self.0.st).book.pairs().to_vec()
    }

    /// Inbox messages: after `since` (unix ms) the oldest `limit`, else the newest `limit`.
    pub fn inbox(&self, since: Option<u64>, limit: usize) -> Vec<InMsg> {
        let st = lock(&self.0.st);
        match since {
            Some(t) => st
                .inbox
                .iter()
                .filter(|m| m.ts_ms > t)
                .take(limit)
                .cloned()
                .collect(),
            None => {
                let skip = st.inbox.len().saturating_sub(limit);
                st.inbox.iter().skip(skip).cloned().collect()
            }
        }
    }

    /// Applies `f` to the book and saves it; a failed save puts the book back.
    fn change<T, E: From<String>>(
        &self,
        f: impl FnOnce(&mut Book) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut st = lock(&self.0.st);
        let before = st.book.clone();
        let r = f(&mut st.book)?;
        if st.book != before
            && let Err(e) = disk::save_pairs(&self.0.dir, st.book.pairs())
        {
            st.book = before;
            log::warn!("skychat: pairs not saved: {e}");
            return Err(E::from(format!("the pair book could not be saved: {e}")));
        }
        Ok(r)
    }

    fn event(&self, me: PublicKey, peer: PublicKey, dir: Dir, step: &'static str) {
        let (from, to) = if dir == Dir::In {
            (peer, me)
        } else {
            (me, peer)
        };
        self.0.hub.publish(Event {
            seq: 0,
            ts_ms: 0,
            channel: Channel::Pair,
            kind: Kind::Status,
            id: MsgId::random(),
            dir,
            from,
            to,
            transport: "unknown",
            text: String::new(),
            reply_to: None,
            status: Some(step),
            history: false,
            group: None,
        });
    }

    fn msg_event(&self, m: &InMsg, me: PublicKey, dir: Dir, transport: &'static str) {
        let (from, to) = if dir == Dir::In {
            (m.peer, me)
        } else {
            (me, m.peer)
        };
        self.0.hub.publish(Event {
            seq: 0,
            ts_ms: m.ts_ms,
            channel: Channel::Pair,
            kind: Kind::Message,
            id: m.id,
            dir,
            from,
            to,
            transport,
            text: m.text.clone(),
            reply_to: None,
            status: None,
            history: false,
            group: None,
        });
    }

    /// `POST /pair`: invites `peer` (or, if it invited us, accepts).
    pub async fn add(&self, chat: &Chat, peer: PublicKey) -> Result<Added, Fail> {
        let me = chat.local_pk();
        let step = self.change(|b| b.add(&me, peer, now_ms()))?;
        if step == AddStep::AcceptTheirs {
            self.accept(chat, peer).await?;
            return Ok(Added {
                status: Status::Paired,
                delivered: Ok(()),
            });
        }
        if step == AddStep::Invite {
            self.event(me, peer, Dir::Out, "invite");
        }
        let id = MsgId::random();
        match chat
            .request(peer, id, &Envelope::Pair(PairMsg::Invite(id)), PEER_WAIT)
            .await
        {
            Ok(_) => Ok(Added {
                status: Status::PendingOut,
                delivered: Ok(()),
            }),
            Err(ReqFail::Refused(r)) => {
                let _ = self.change(|b| {
                    if b.get(&peer).is_some_and(|p| p.status == Status::PendingOut) {
                        b.forget(&peer);
                    }
                    Ok::<(), String>(())
                });
                Err(fail(409, format!("{peer} refused the invite: {r}")))
            }
            Err(e) => Ok(Added {
                status: Status::PendingOut,
                delivered: Err(e.to_string()),
            }),
        }
    }

    /// `POST /pair/invites/<pk>/accept`: tells `peer`, then records the pair.
    pub async fn accept(&self, chat: &Chat, peer: PublicKey) -> Result<(), Fail> {
        lock(&self.0.st).book.check_invite(&peer)?;
        let id = MsgId::random();
        match chat
            .request(peer, id, &Envelope::Pair(PairMsg::Accept(id)), PEER_WAIT)
            .await
        {
            Ok(_) => {
                self.change(|b| {
                    b.accepted(peer, now_ms());
                    Ok::<(), String>(())
                })
                .map_err(|e| fail(500, e))?;
                self.event(chat.local_pk(), peer, Dir::Out, "accepted");
                Ok(())
            }
            Err(ReqFail::Refused(r)) => {
                let _ = self.change(|b| {
                    b.forget(&peer);
                    Ok::<(), String>(())
                });
                Err(fail(
                    409,
                    format!(
                        "{peer} no longer has an invite for you ({r}); the invite is dropped: \
                         pair add {peer} to invite it yourself"
                    ),
                ))
            }
            Err(ReqFail::Unreachable(e)) => Err(fail(
                502,
                format!(
                    "{peer} did not get the acceptance: {e}; the invite stays: accept again when it is online"
                ),
            )),
            Err(ReqFail::NoAnswer(e)) => Err(fail(
                504,
                format!(
                    "{peer} did not confirm the acceptance: {e}; the invite stays: accept again"
                ),
            )),
        }
    }

    /// Sends `env` to `peer` in the background (a courtesy: the local step is done).
    async fn tell(chat: &Chat, peer: PublicKey, env: Envelope) -> bool {
        let id = match &env {
            Envelope::Pair(m) => m.id(),
            _ => return false,
        };
        match chat.request(peer, id, &env, PEER_WAIT).await {
            Ok(_) => true,
            Err(e) => {
                log::debug!(
                    "skychat: {} to {peer}: {e}",
                    match &env {
                        Envelope::Pair(m) => m.type_name(),
                        _ => "?",
                    }
                );
                false
            }
        }
    }

    /// `POST /pair/invites/<pk>/decline`: drops the invite, then tells `peer` (true: it
    /// heard).
    pub async fn decline(&self, chat: &Chat, peer: PublicKey) -> Result<bool, Fail> {
        self.change(|b| b.decline(&peer))?;
        self.event(chat.local_pk(), peer, Dir::Out, "declined");
        let id = MsgId::random();
        Ok(Self::tell(chat, peer, Envelope::Pair(PairMsg::Decline(id))).await)
    }

    /// `DELETE /pair/<pk>`: drops the pair or invite, then tells `peer` (true: it heard).
    pub async fn remove(&self, chat: &Chat, peer: PublicKey) -> Result<bool, Fail> {
        self.change(|b| b.remove(&peer).map(|_| ()))?;
        self.event(chat.local_pk(), peer, Dir::Out, "removed");
        let id = MsgId::random();
        Ok(Self::tell(chat, peer, Envelope::Pair(PairMsg::Remove(id))).await)
    }

    /// `POST /pair/<pk>/message`: sends `text` and waits for the ack; (id, ms, network).
    pub async fn send(
        &self,
        chat: &Chat,
        peer: PublicKey,
        text: &str,
    ) -> Result<(MsgId, u64, &'static str), Fail> {
        if text.is_empty() {
            return Err(fail(400, "field `text`: must not be empty"));
        }
        if text.len() > MAX_TEXT {
            return Err(fail(
                413,
                format!(
                    "field `text`: {} bytes; a pair message holds at most {MAX_TEXT}",
                    text.len()
                ),
            ));
        }
        lock(&self.0.st).book.check_send(&peer)?;
        let id = MsgId::random();
        let t0 = Instant::now();
        let env = Envelope::Pair(PairMsg::Msg {
            id,
            text: text.to_string(),
        });
        match chat.request(peer, id, &env, PEER_WAIT).await {
            Ok(net) => {
                let now = now_ms();
                lock(&self.0.st).book.note_msg(&peer, now);
                let m = InMsg {
                    peer,
                    id,
                    text: text.to_string(),
                    ts_ms: now,
                };
                self.msg_event(&m, chat.local_pk(), Dir::Out, net);
                Ok((id, t0.elapsed().as_millis() as u64, net))
            }
            Err(ReqFail::Refused(r)) => Err(fail(409, format!("{peer} refused the message: {r}"))),
            Err(ReqFail::Unreachable(e)) => Err(fail(502, format!("not sent: {e}"))),
            Err(ReqFail::NoAnswer(e)) => Err(fail(504, format!("sent, not acknowledged: {e}"))),
        }
    }

    fn rate_ok(st: &mut St, peer: PublicKey) -> bool {
        if st.rate.len() > RATE_PEERS {
            st.rate
                .retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        st.rate
            .entry(peer)
            .or_insert_with(|| Bucket::new(PAIR_RATE as f64))
            .take(PAIR_RATE as f64)
    }

    fn invite_ok(st: &mut St, peer: PublicKey) -> bool {
        if st.invites.len() > RATE_PEERS {
            st.invites
                .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < INVITE_WINDOW));
        }
        let q = st.invites.entry(peer).or_default();
        while q.front().is_some_and(|t| t.elapsed() >= INVITE_WINDOW) {
            q.pop_front();
        }
        if q.len() >= INVITES_PER_WINDOW {
            return false;
        }
        q.push_back(Instant::now());
        true
    }

    /// A pairing envelope from `peer`: the `chat-ack` or `chat-nack` to answer with.
    pub async fn on_msg(
        &self,
        chat: &Chat,
        peer: PublicKey,
        transport: &'static str,
        m: PairMsg,
    ) -> Envelope {
        let id = m.id();
        let nack = |reason: String| {
            log::debug!("skychat: {} from {peer} refused: {reason}", m.type_name());
            Envelope::Nack { id, reason }
        };
        let me = chat.local_pk();
        {
            let mut st = lock(&self.0.st);
            if !Self::rate_ok(&mut st, peer) {
                return nack(format!(
                    "too many pairing envelopes: at most {PAIR_RATE} per 10 s"
                ));
            }
            if matches!(m, PairMsg::Invite(_)) && !Self::invite_ok(&mut st, peer) {
                return nack(format!(
                    "too many invites: at most {INVITES_PER_WINDOW} per {} min",
                    INVITE_WINDOW.as_secs() / 60
                ));
            }
        }
        let now = now_ms();
        match &m {
            PairMsg::Invite(_) => match self.change(|b| b.on_invite(peer, now)) {
                Ok(InviteStep::New) => self.event(me, peer, Dir::In, "invite"),
                Ok(InviteStep::Again) => {}
                Ok(InviteStep::Crossed | InviteStep::AlreadyPaired) => {
                    self.event(me, peer, Dir::In, "accepted");
                    let c = chat.clone();
                    self.0
                        .ex
                        .spawn_boxed(async move {
                            let id = MsgId::random();
                            Self::tell(&c, peer, Envelope::Pair(PairMsg::Accept(id))).await;
                        })
                        .detach();
                }
                Err(r) => return nack(r),
            },
            PairMsg::Accept(_) => match self.change(|b| b.on_accept(peer, now)) {
                Ok(true) => self.event(me, peer, Dir::In, "accepted"),
                Ok(false) => {}
                Err(r) => return nack(r),
            },
            PairMsg::Decline(_) => match self.change(|b| b.on_decline(&peer)) {
                Ok(()) => self.event(me, peer, Dir::In, "declined"),
                Err(r) => return nack(r),
            },
            PairMsg::Remove(_) => match self.change(|b| Ok::<_, String>(b.on_remove(&peer))) {
                Ok(Some(_)) => self.event(me, peer, Dir::In, "removed"),
                Ok(None) => {}
                Err(r) => return nack(r),
            },
            PairMsg::Msg { text, .. } => {
                if text.is_empty() || text.len() > MAX_TEXT {
                    return nack(format!(
                        "a pair message of {} bytes: it must hold 1 to {MAX_TEXT}",
                        text.len()
                    ));
                }
                let msg = InMsg {
                    peer,
                    id,
                    text: text.clone(),
                    ts_ms: now,
                };
                {
                    let mut st = lock(&self.0.st);
                    if let Err(r) = st.book.on_msg(&peer) {
                        return nack(r);
                    }
                    if st.seen.contains(&(peer, id)) {
                        return Envelope::Ack(id);
                    }
                    if let Err(e) = st.log.append(&msg) {
                        log::warn!("skychat: a pair message from {peer} not stored: {e}");
                        return nack(format!("the receiver could not store it: {e}"));
                    }
                    st.seen.insert((peer, id));
                    st.inbox.push_back(msg.clone());
                    while st.inbox.len() > INBOX_CAP {
                        if let Some(old) = st.inbox.pop_front() {
                            st.seen.remove(&(old.peer, old.id));
                        }
                    }
                    if st.log.records >= 2 * INBOX_CAP {
                        let St { log, inbox, .. } = &mut *st;
                        if let Err(e) = log.rewrite(inbox.iter()) {
                            log::warn!("skychat: the pair inbox could not be compacted: {e}");
                        }
                    }
                    st.book.note_msg(&peer, now);
                }
                self.msg_event(&msg, me, Dir::In, transport);
            }
        }
        Envelope::Ack(id)
    }
}

#[cfg(test)]
mod tests;
