//! `skywire cli skychat …`: the client of a running skychat's HTTP surface (send, listen,
//! chat, status, history, events, alias, web, passwd), and `send --via tcp://…`, which dials
//! a peer's TCP-direct listener itself (no visor needed).

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use miniserde::json::{Object, Value};

use super::out::{human_secs, print_json, row, say, table};
use super::skychat_http::parse_wait;
use super::skychat_http::{
    Follow, Names, Structured, Surface, Where, array, is_pk, quote, str_of, ts_ms, u64_of, utc,
};
use super::{CmdError, CmdResult};
use crate::apps::skychat::proto::{self, Envelope, MsgId};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "skychat")]
/// chat with other visors: send, listen, chat (terminal UI), status, history, events, alias,
/// web, passwd, group — through the skychat HTTP surface of the visor (or a standalone skychat).
pub struct SkychatCmd {
    /// the skychat HTTP surface, host:port (default $SKYCHAT_ADDR, else 127.0.0.1:8001;
    /// a standalone skychat: 127.0.0.1:8002)
    #[argh(option)]
    addr: Option<String>,
    /// the file holding the surface's token (default $SKYCHAT_TOKEN, else
    /// <state dir>/skychat-http-<port>.token)
    #[argh(option)]
    token_file: Option<PathBuf>,
    /// the visor's config, to find its state directory (and the identity of send --via)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the state directory (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Send(SendCmd),
    Listen(ListenCmd),
    Chat(ChatCmd),
    Status(StatusCmd),
    History(HistoryCmd),
    Events(EventsCmd),
    Alias(AliasCmd),
    Web(WebCmd),
    Passwd(PasswdCmd),
    Group(super::skychat_group::GroupCmd),
    Pair(super::skychat_pair::PairCmd),
}

impl SkychatCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let w = Where {
            addr: self.addr,
            token_file: self.token_file,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            Sub::Passwd(c) => c.run(),
            Sub::Send(c) if c.via.is_some() => c.run_via(&w),
            other => {
                let s = Surface::find(&w)?;
                async_io::block_on(async move {
                    match other {
                        Sub::Send(c) => c.run(&s).await,
                        Sub::Listen(c) => c.run(s).await,
                        Sub::Chat(c) => c.run(s).await,
                        Sub::Status(c) => c.run(&s).await,
                        Sub::History(c) => c.run(&s).await,
                        Sub::Events(c) => c.run(s).await,
                        Sub::Alias(c) => c.run(&s).await,
                        Sub::Web(c) => c.run(&s),
                        Sub::Group(c) => c.run(&s).await,
                        Sub::Pair(c) => c.run(&s).await,
                        Sub::Passwd(_) => Ok(()),
                    }
                })
            }
        }
    }
}

/// `5s` / `500ms` for messages.
fn show_wait(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "send")]
/// send a message and wait for the peer's acknowledgement: prints "Acked by <pk> in Xms (via
/// dmsg)"; exit 1 when not acked within the wait.
struct SendCmd {
    /// the recipient: a public key or an alias (with --via: optional, the PK of --via)
    #[argh(option, short = 't')]
    to: Option<String>,
    /// the message text
    #[argh(option, short = 'm')]
    message: String,
    /// network: auto, dmsg, skynet or tcp (default auto)
    #[argh(option, short = 'n', default = "String::from(\"auto\")")]
    network: String,
    /// how long to wait for the acknowledgement (default 5s; 0 = fire and forget; max 60s)
    #[argh(option, short = 'w', default = "String::from(\"5s\")")]
    wait: String,
    /// resend (same id) this many more times when not acked (max 5)
    #[argh(option, short = 'r', default = "0")]
    retries: u32,
    /// the id of the message this one replies to (16 hex digits)
    #[argh(option)]
    reply_to: Option<String>,
    /// say more: the message id, the network asked for
    #[argh(switch)]
    verbose: bool,
    /// print the answer as JSON
    #[argh(switch)]
    json: bool,
    /// dial the peer's TCP-direct listener ourselves: tcp://<pk>@<host>:<port> (no visor
    /// needed; identity from -c or --sk)
    #[argh(option)]
    via: Option<String>,
    /// identity for --via: secret key (hex)
    #[argh(option)]
    sk: Option<String>,
    /// identity for --via from this skywire-config.json (default: the -c before 'send')
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
}

fn check_reply_to(r: &Option<String>) -> Result<(), CmdError> {
    match r {
        Some(id) if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) => Err(
            CmdError::usage(format!("--reply-to {id}: a message id is 16 hex digits")),
        ),
        _ => Ok(()),
    }
}

impl SendCmd {
    fn common(&self) -> Result<Duration, CmdError> {
        let wait = parse_wait(&self.wait).map_err(|e| CmdError::usage(format!("-w {e}")))?;
        if wait > Duration::from_secs(60) {
            return Err(CmdError::usage(format!(
                "-w {}: at most 60s",
                show_wait(wait)
            )));
        }
        if self.retries > 5 {
            return Err(CmdError::usage("-r: at most 5 retries"));
        }
        check_reply_to(&self.reply_to)?;
        if self.message.is_empty() {
            return Err(CmdError::usage("-m: the message is empty"));
        }
        Ok(wait)
    }

    async fn run(self, s: &Surface) -> CmdResult {
        let wait = self.common()?;
        if !matches!(self.network.as_str(), "auto" | "dmsg" | "skynet" | "tcp") {
            return Err(CmdError::usage(format!(
                "-n {}: the network is auto, dmsg, skynet or tcp",
                self.network
            )));
        }
        if self.sk.is_some() || self.config.is_some() {
            return Err(CmdError::usage(
                "--sk/-c after 'send' set the identity of --via; without --via the skychat \
                 sends with its own",
            ));
        }
        let Some(to) = self.to.as_deref() else {
            return Err(CmdError::usage("-t: name the recipient (a PK or an alias)"));
        };
        let pk = s.resolve(to).await?;
        let mut body = format!(
            "{{\"recipient\":{},\"message\":{},\"network\":{},\"wait_ms\":{}",
            quote(&pk),
            quote(&self.message),
            quote(&self.network),
            wait.as_millis()
        );
        if self.retries > 0 {
            body.push_str(&format!(",\"retries\":{}", self.retries));
        }
        if let Some(r) = &self.reply_to {
            body.push_str(&format!(",\"reply_to\":{}", quote(&r.to_ascii_lowercase())));
        }
        body.push('}');
        let budget = wait * (self.retries + 1) + Duration::from_secs(15);
        let r = s.call("POST", "/message", Some(&body), budget).await?;
        let o = match r.json() {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        if self.json && matches!(r.status, 200 | 202 | 502 | 504) {
            print_json(o.clone());
        }
        let id = str_of(&o, "id").unwrap_or("?").to_string();
        let net = str_of(&o, "network").unwrap_or("?").to_string();
        match r.status {
            200 => {
                if !self.json {
                    let by = str_of(&o, "by").unwrap_or(&pk);
                    let ms = u64_of(&o, "ms").unwrap_or(0);
                    say(&format!("Acked by {by} in {ms}ms (via {net})"));
                    if self.verbose {
                        say(&format!("  id {id}, asked for -n {}", self.network));
                    }
                }
                Ok(())
            }
            202 => {
                if !self.json {
                    say(&format!(
                        "Sent to {pk} (via {net}), not waiting for an ack (id {id})"
                    ));
                }
                Ok(())
            }
            504 => Err(CmdError::fail(format!(
                "not acked by {pk} within {}: {}; the message may still arrive (id {id})",
                show_wait(wait),
                r.error()
            ))),
            502 => Err(CmdError::fail(format!(
                "peer unreachable: {}: {} (is it online? try another -n)",
                pk,
                r.error()
            ))),
            400 => Err(CmdError::usage(format!("send: {}", r.error()))),
            st => Err(CmdError::fail(format!("send: {} (HTTP {st})", r.error()))),
        }
    }

    fn run_via(self, w: &Where) -> CmdResult {
        let wait = self.common()?;
        let via = self.via.clone().unwrap_or_default();
        let config = self.config.clone().or_else(|| w.config.clone());
        let (pk, addr) = crate::app::net::parse_tcp_peer(&via)
            .map_err(|e| CmdError::usage(format!("--via: {e}")))?;
        if let Some(t) = &self.to
            && !t.eq_ignore_ascii_case(&pk.to_string())
        {
            return Err(CmdError::usage(format!(
                "-t {t} and --via {pk} name different peers (with --via, -t may be left out)"
            )));
        }
        let id = super::netflags::resolve(&self.sk, &config, &None, &[])?;
        if self.sk.is_none() && config.is_none() {
            return Err(CmdError::usage(
                "--via needs an identity: -c <skywire-config.json> or --sk <hex> (the peer's \
                 whitelist decides whether it is let in)",
            ));
        }
        let ex: std::sync::Arc<async_executor::Executor<'static>> =
            std::sync::Arc::new(async_executor::Executor::new());
        let net = crate::app::net::TcpNet::new(id.keys, None, ex.clone());
        net.add_peer(pk, addr.clone());
        let msg_id = MsgId::random();
        let reply_to = match self.reply_to.as_deref() {
            None => None,
            Some(r) => Some(MsgId::parse(&r.to_ascii_lowercase()).ok_or_else(|| {
                CmdError::usage(format!("--reply-to {r}: a message id is 16 hex digits"))
            })?),
        };
        let env = proto::encode(&Envelope::Msg {
            id: msg_id,
            body: self.message.clone(),
            ack: true,
            reply_to,
        });
        let work = async {
            use crate::app::net::Net;
            let t0 = std::time::Instant::now();
            let mut c = net
                .dial(pk, 1)
                .await
                .map_err(|e| CmdError::fail(format!("peer unreachable: {pk} at {addr}: {e}")))?;
            for attempt in 0..=self.retries {
                proto::write_frame(&mut c, &env)
                    .await
                    .map_err(|e| CmdError::fail(format!("peer {pk}: sending failed: {e}")))?;
                if wait.is_zero() {
                    say(&format!(
                        "Sent to {pk} (via tcp), not waiting for an ack (id {msg_id})"
                    ));
                    return Ok(());
                }
                match wait_ack(&mut c, msg_id, wait).await {
                    Ok(()) => {
                        let ms = t0.elapsed().as_millis();
                        if self.json {
                            say(&format!(
                                "{{\"acked\":true,\"by\":\"{pk}\",\"id\":\"{msg_id}\",\"ms\":{ms},\"network\":\"tcp-direct\"}}"
                            ));
                        } else {
                            say(&format!("Acked by {pk} in {ms}ms (via tcp)"));
                            if self.verbose {
                                say(&format!(
                                    "  id {msg_id}, dialled {addr}, {attempt} retr(ies)"
                                ));
                            }
                        }
                        return Ok(());
                    }
                    Err(AckErr::Timeout) if attempt < self.retries => continue,
                    Err(AckErr::Timeout) => {
                        return Err(CmdError::fail(format!(
                            "not acked by {pk} within {}: timeout; the message may still \
                             arrive (id {msg_id})",
                            show_wait(wait)
                        )));
                    }
                    Err(AckErr::Other(why)) => {
                        return Err(CmdError::fail(format!(
                            "not acked by {pk}: {why} (id {msg_id})"
                        )));
                    }
                }
            }
            Ok(())
        };
        async_io::block_on(ex.run(work))
    }
}

/// Why no ack came.
enum AckErr {
    Timeout,
    Other(String),
}

/// Reads frames until the `chat-ack` (or `chat-nack`) of `id`, within `wait`; the peer's
/// other frames (its own messages, acks of other ids) are not ours to show here.
async fn wait_ack<R: futures_lite::AsyncRead + Unpin>(
    r: &mut R,
    id: MsgId,
    wait: Duration,
) -> Result<(), AckErr> {
    let read = async {
        loop {
            let frame = match proto::read_frame(r).await {
                Ok(Some(f)) => f,
                Ok(None) => return Err(AckErr::Other("the peer closed the connection".into())),
                Err(e) => return Err(AckErr::Other(format!("the connection ended: {e}"))),
            };
            match proto::decode(&frame) {
                Ok(Envelope::Ack(i)) if i == id => return Ok(()),
                Ok(Envelope::Nack { id: i, reason }) if i == id => {
                    let reason = if reason.is_empty() {
                        "no reason given".to_string()
                    } else {
                        reason
                    };
                    return Err(AckErr::Other(format!("refused: {reason}")));
                }
                Ok(_) => {}
                Err(e) => return Err(AckErr::Other(format!("the peer broke the protocol: {e}"))),
            }
        }
    };
    futures_lite::future::or(read, async {
        async_io::Timer::after(wait).await;
        Err(AckErr::Timeout)
    })
    .await
}

/// `<ts> <from> → <to>: text` of a structured message event.
fn event_line(e: &Structured, names: &Names) -> String {
    let ts = ts_ms(&e.obj, "ts").map_or_else(|| "-".into(), utc);
    format!(
        "{ts} {} → {}: {}",
        names.of(e.get("from")),
        names.of(e.get("to")),
        e.get("text")
    )
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "listen")]
/// print messages as they arrive (reconnects and resumes where it stopped; each message
/// once): `<time UTC> <from> → <to>: text`.
struct ListenCmd {
    /// only messages from (or to) this peer: a PK or an alias
    #[argh(option)]
    from: Option<String>,
    /// start after this event seq (default: from now)
    #[argh(option)]
    since: Option<u64>,
    /// exit after this many messages
    #[argh(option)]
    count: Option<u64>,
    /// print each message's structured event as one JSON line
    #[argh(switch)]
    json: bool,
}

impl ListenCmd {
    async fn run(self, s: Surface) -> CmdResult {
        let from = match &self.from {
            Some(f) => Some(s.resolve(f).await?),
            None => None,
        };
        let names = Names::load(&s).await;
        let mut f = Follow::new(s, "dm", self.since);
        let mut n = 0u64;
        while self.count.is_none_or(|c| n < c) {
            let e = f.next().await?;
            if !e.is_message() {
                continue;
            }
            if let Some(p) = &from
                && !e.get("from").eq_ignore_ascii_case(p)
                && !e.get("to").eq_ignore_ascii_case(p)
            {
                continue;
            }
            n += 1;
            if self.json {
                say(&e.raw);
            } else {
                say(&event_line(&e, &names));
            }
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "events")]
/// the automation surface: every structured event as one JSON line (NDJSON), resumed after
/// a lost connection without repeats; runs until --count events or, with --once, until the
/// stream ends.
struct EventsCmd {
    /// start after this seq (default: from now; 0: everything the ring holds)
    #[argh(option)]
    since: Option<u64>,
    /// channels, comma-separated: dm, system, group, pair, or all (default all)
    #[argh(option, default = "String::from(\"all\")")]
    channel: String,
    /// exit after this many events
    #[argh(option)]
    count: Option<u64>,
    /// do not reconnect: exit when the stream ends
    #[argh(switch)]
    once: bool,
    /// print JSON (what events always prints; accepted like on every read command)
    #[argh(switch)]
    json: bool,
}

impl EventsCmd {
    async fn run(self, s: Surface) -> CmdResult {
        for c in self.channel.split(',') {
            if !matches!(c, "dm" | "system" | "group" | "pair" | "all") {
                return Err(CmdError::usage(format!(
                    "--channel {c}: a channel is dm, system, group, pair or all"
                )));
            }
        }
        let _ = self.json;
        let mut f = Follow::new(s, &self.channel, self.since);
        f.once = self.once;
        let mut n = 0u64;
        while self.count.is_none_or(|c| n < c) {
            let e = f.next().await?;
            n += 1;
            say(&e.raw);
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "chat")]
/// an interactive chat with one peer in this terminal: history above, input below; Enter
/// sends (✓ when acked, ✗ and why when not), Ctrl-C or Ctrl-D leaves.
struct ChatCmd {
    /// the peer: a PK or an alias
    #[argh(option, short = 't')]
    to: String,
    /// how long each send waits for the ack (default 5s)
    #[argh(option, short = 'w', default = "String::from(\"5s\")")]
    wait: String,
    /// network: auto, dmsg, skynet or tcp (default auto)
    #[argh(option, short = 'n', default = "String::from(\"auto\")")]
    network: String,
}

impl ChatCmd {
    async fn run(self, s: Surface) -> CmdResult {
        let wait = parse_wait(&self.wait).map_err(|e| CmdError::usage(format!("-w {e}")))?;
        if wait.is_zero() || wait > Duration::from_secs(60) {
            return Err(CmdError::usage("-w: between 100ms and 60s"));
        }
        let pk = s.resolve(&self.to).await?;
        super::skychat_tui::run(s, pk, wait, self.network).await
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// the skychat's health: its PK, peer connections, message and error counters, history.
struct StatusCmd {
    /// print JSON (as the server sends it)
    #[argh(switch)]
    json: bool,
}

impl StatusCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let v = s.json("GET", "/status", None).await?;
        let Value::Object(o) = v else {
            return Err(CmdError::fail("/status: the answer is not a JSON object"));
        };
        if self.json {
            print_json(o);
            return Ok(());
        }
        let n = |k: &str| u64_of(&o, k).unwrap_or(0);
        let ts = |k: &str| ts_ms(&o, k).filter(|&t| t > 0).map_or("never".into(), utc);
        say(&format!(
            "skychat on {}: pk {}, up {}",
            s.addr,
            str_of(&o, "visor_pk").unwrap_or("?"),
            human_secs(n("app_uptime_sec"))
        ));
        let peers = match o.get("peers") {
            Some(v) => array(v)
                .iter()
                .filter_map(|p| match p {
                    Value::Object(p) => Some(format!(
                        "{} ({})",
                        str_of(p, "pk").unwrap_or("?"),
                        str_of(p, "network").unwrap_or("?")
                    )),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            None => Vec::new(),
        };
        say(&format!("peer connections: {}", n("active_peer_conns")));
        for p in peers {
            say(&format!("  {p}"));
        }
        say(&format!(
            "messages: in {}, out {}; dropped {}, failed {}, retried {}, fell back {}, \
             duplicates {}, protocol errors {}",
            n("inbound_msg_count"),
            n("outbound_msg_count"),
            n("inbound_drop_count"),
            n("outbound_fail_count"),
            n("outbound_retry_count"),
            n("outbound_fallback_count"),
            n("duplicate_count"),
            n("protocol_error_count")
        ));
        say(&format!(
            "event subscribers: {} ({} dropped as too slow); http errors: {}",
            n("sse_subscribers"),
            n("sse_drop_count"),
            n("http_error_count")
        ));
        say(&format!(
            "last received: {}; last sent: {}",
            ts("last_rx_ts"),
            ts("last_send_ts")
        ));
        match (o.get("persistence_enabled"), o.get("history")) {
            (Some(Value::Bool(true)), Some(Value::Object(h))) => say(&format!(
                "history: {} message(s) of {} peer(s), {} bytes live, file {} bytes",
                u64_of(h, "records").unwrap_or(0),
                u64_of(h, "peers").unwrap_or(0),
                u64_of(h, "bytes").unwrap_or(0),
                u64_of(h, "file_bytes").unwrap_or(0)
            )),
            (Some(Value::Bool(true)), _) => say("history: on"),
            _ => say("history: off (--no-history)"),
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "history")]
/// stored messages: with --peer that conversation (oldest first), without it the peers
/// with history.
struct HistoryCmd {
    /// the peer: a PK or an alias
    #[argh(option)]
    peer: Option<String>,
    /// at most this many messages, the newest (1…1000, default 100)
    #[argh(option, default = "100")]
    limit: u32,
    /// forget the history (of --peer, else all of it) instead of printing it
    #[argh(switch)]
    forget: bool,
    /// print JSON (as the server sends it)
    #[argh(switch)]
    json: bool,
}

/// Prints a JSON array compactly.
fn print_array(v: &Value) {
    say(&miniserde::json::to_string(v));
}

impl HistoryCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if !(1..=1000).contains(&self.limit) {
            return Err(CmdError::usage("--limit: 1 to 1000"));
        }
        let peer = match &self.peer {
            Some(p) => Some(s.resolve(p).await?),
            None => None,
        };
        let names = Names::load(s).await;
        if self.forget {
            let body = peer
                .as_ref()
                .map_or("{}".to_string(), |p| format!("{{\"peer\":{}}}", quote(p)));
            let v = s.json("POST", "/history/forget", Some(&body)).await?;
            let n = match &v {
                Value::Object(o) => u64_of(o, "forgot").unwrap_or(0),
                _ => 0,
            };
            match (&v, self.json) {
                (Value::Object(o), true) => print_json(o.clone()),
                _ => say(&format!("forgot {n} message(s)")),
            }
            return Ok(());
        }
        let Some(pk) = peer else {
            let v = s.json("GET", "/history/peers", None).await?;
            if self.json {
                print_array(&v);
                return Ok(());
            }
            let items = array(&v);
            if items.is_empty() {
                say("no stored history");
                return Ok(());
            }
            let mut rows = vec![row(&["PEER", "ALIAS", "MESSAGES", "LAST"])];
            for p in items {
                let Value::Object(p) = p else { continue };
                let pk = str_of(p, "peer").unwrap_or("?");
                let alias = str_of(p, "alias").unwrap_or_else(|| {
                    let n = names.of(pk);
                    if n == pk { "-" } else { n }
                });
                rows.push(vec![
                    pk.to_string(),
                    alias.to_string(),
                    u64_of(p, "count").unwrap_or(0).to_string(),
                    ts_ms(p, "last_ts").map_or("-".into(), utc),
                ]);
            }
            table(&rows);
            return Ok(());
        };
        let v = s
            .json(
                "GET",
                &format!("/history?peer={pk}&limit={}", self.limit),
                None,
            )
            .await?;
        if self.json {
            print_array(&v);
            return Ok(());
        }
        let items = array(&v);
        if items.is_empty() {
            say(&format!("no stored messages with {}", names.of(&pk)));
        }
        for m in items {
            let Value::Object(m) = m else { continue };
            say(&history_line(m, &names));
        }
        Ok(())
    }
}

/// `<ts> → <peer>: text` (sent) or `<ts> ← <peer>: text` (received).
fn history_line(m: &Object, names: &Names) -> String {
    let ts = ts_ms(m, "ts").map_or("-".into(), utc);
    let arrow = if str_of(m, "dir") == Some("out") {
        "→"
    } else {
        "←"
    };
    format!(
        "{ts} {arrow} {} [{}]: {}",
        names.of(str_of(m, "peer").unwrap_or("?")),
        str_of(m, "network").unwrap_or("?"),
        str_of(m, "message").unwrap_or("")
    )
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "alias")]
/// names for PKs, usable wherever a PK is: `alias add <name> <pk>`, `alias ls`,
/// `alias rm <name>`.
struct AliasCmd {
    /// add, ls or rm
    #[argh(positional)]
    action: String,
    /// the name and PK (add), the name (rm)
    #[argh(positional, greedy)]
    args: Vec<String>,
    /// print JSON (ls)
    #[argh(switch)]
    json: bool,
}

impl AliasCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let (name, pk) = match self.args.as_slice() {
            [] => (None, None),
            [n] => (Some(n), None),
            [n, p] => (Some(n), Some(p)),
            _ => return Err(CmdError::usage("alias: too many arguments")),
        };
        match (self.action.as_str(), name, pk) {
            ("ls", None, None) => {
                let v = s.json("GET", "/aliases", None).await?;
                if self.json {
                    print_array(&v);
                    return Ok(());
                }
                let list = array(&v);
                if list.is_empty() {
                    say("no aliases (add one: skywire cli skychat alias add <name> <pk>)");
                    return Ok(());
                }
                let mut rows = vec![row(&["NAME", "PK"])];
                for a in list {
                    if let Value::Object(a) = a {
                        rows.push(vec![
                            str_of(a, "name").unwrap_or("?").into(),
                            str_of(a, "pk").unwrap_or("?").into(),
                        ]);
                    }
                }
                table(&rows);
                Ok(())
            }
            ("add", Some(name), Some(pk)) => {
                if !is_pk(pk) {
                    return Err(CmdError::usage(format!(
                        "{pk}: a public key is 64 hex digits"
                    )));
                }
                if is_pk(name) || name.is_empty() {
                    return Err(CmdError::usage(format!(
                        "{name:?}: an alias is a name, not a public key"
                    )));
                }
                let body = format!(
                    "{{\"name\":{},\"pk\":{}}}",
                    quote(name),
                    quote(&pk.to_ascii_lowercase())
                );
                s.json("POST", "/aliases", Some(&body)).await?;
                say(&format!("{name} = {}", pk.to_ascii_lowercase()));
                Ok(())
            }
            ("rm", Some(name), None) => {
                let body = format!("{{\"name\":{}}}", quote(name));
                let r = s
                    .call("POST", "/aliases/rm", Some(&body), Duration::from_secs(15))
                    .await?;
                match r.status {
                    200..=299 => {
                        say(&format!("removed {name}"));
                        Ok(())
                    }
                    404 => Err(CmdError::fail(format!(
                        "no alias named {name} (skywire cli skychat alias ls)"
                    ))),
                    st => Err(CmdError::fail(format!(
                        "alias rm: {} (HTTP {st})",
                        r.error()
                    ))),
                }
            }
            (a, _, _) => Err(CmdError::usage(format!(
                "alias {a}: expected 'add <name> <pk>', 'ls' or 'rm <name>'"
            ))),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "web")]
/// print the link that opens the skychat web page logged in (it sets a cookie).
struct WebCmd {
    /// print {"url": …}
    #[argh(switch)]
    json: bool,
}

impl WebCmd {
    fn run(self, s: &Surface) -> CmdResult {
        let token = s.token.clone().map_err(CmdError::fail)?;
        let url = format!("http://{}/login?token={token}", s.addr);
        if self.json {
            let mut o = Object::new();
            o.insert("url".into(), Value::String(url));
            print_json(o);
        } else {
            say(&url);
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "passwd")]
/// write a password file for skychat's --password-file (HTTP basic login, for a surface
/// bound beyond loopback): asks twice on the terminal, or reads one line from stdin.
struct PasswdCmd {
    /// the file to write (mode 0600)
    #[argh(option, short = 'f')]
    file: PathBuf,
}

impl PasswdCmd {
    fn run(self) -> CmdResult {
        let pw = super::prompt::read_password()?;
        if pw.chars().count() < 8 {
            return Err(CmdError::usage("the password is shorter than 8 characters"));
        }
        if pw.len() > 1024 {
            return Err(CmdError::usage("the password is longer than 1024 bytes"));
        }
        let line = format!("{}\n", hash_password(&pw)?);
        write_private(&self.file, line.as_bytes())
            .map_err(|e| CmdError::fail(format!("{}: {e}", self.file.display())))?;
        say(&format!(
            "wrote {}; start skychat with --password-file {} (log in as any user name)",
            self.file.display(),
            self.file.display()
        ));
        Ok(())
    }
}

/// `sha512:<32 hex salt>:<hex sha512(salt ‖ password)>`, the format of skychat's
/// `--password-file` (the salt is the 16 raw bytes).
pub fn hash_password(pw: &str) -> Result<String, CmdError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| CmdError::fail(format!("no randomness: {e}")))?;
    Ok(hash_with_salt(&salt, pw))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// [`hash_password`] with a given salt.
pub fn hash_with_salt(salt: &[u8; 16], pw: &str) -> String {
    let h = crate::crypto::hmac::sha512(&[salt, pw.as_bytes()]);
    format!("sha512:{}:{}", hex(salt), hex(&h))
}

/// Writes `bytes` to `file` with mode 0600, through a temporary file and a rename.
fn write_private(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_envelopes_and_password_hashes() {
        assert_eq!(parse_wait("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_wait("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("7"), Ok(Duration::from_secs(7)));
        assert!(parse_wait("5h").is_err() && parse_wait("s").is_err());
        assert_eq!(show_wait(Duration::from_millis(1500)), "1500ms");
        // sha512:<salt hex>:<hex sha512(salt ‖ password)>.
        let h = hash_with_salt(&[0u8; 16], "secret12");
        let parts: Vec<&str> = h.split(':').collect();
        assert_eq!(parts[0], "sha512");
        assert_eq!(parts[1], "0".repeat(32));
        let want = crate::crypto::hmac::sha512(&[&[0u8; 16], b"secret12"]);
        assert_eq!(parts[2], hex(&want));
        assert_ne!(
            hash_password("secret12").unwrap(),
            hash_password("secret12").unwrap()
        );
    }

    #[test]
    fn acks_are_matched_by_id() {
        let id = MsgId(0x0000_0000_0000_00ab);
        let wire = |envs: &[Envelope]| {
            let mut w = Vec::new();
            for e in envs {
                w.extend_from_slice(&proto::frame(&proto::encode(e)).unwrap());
            }
            futures_lite::io::Cursor::new(w)
        };
        async_io::block_on(async {
            // A plain text message and the ack of another id come first: skipped.
            let mut r = wire(&[
                Envelope::Text("plain hello".into()),
                Envelope::Ack(MsgId(7)),
                Envelope::Ack(id),
            ]);
            assert!(wait_ack(&mut r, id, Duration::from_secs(1)).await.is_ok());
            let mut r = wire(&[Envelope::Nack {
                id,
                reason: "too big".into(),
            }]);
            match wait_ack(&mut r, id, Duration::from_secs(1)).await {
                Err(AckErr::Other(why)) => assert!(why.contains("too big"), "{why}"),
                _ => panic!("a nack is a refusal"),
            }
            // A frame of length 0 breaks the protocol; so does the end of the stream.
            let mut r = futures_lite::io::Cursor::new(vec![0, 0, 0, 0]);
            assert!(matches!(
                wait_ack(&mut r, id, Duration::from_secs(1)).await,
                Err(AckErr::Other(_))
            ));
            let mut r = wire(&[]);
            assert!(matches!(
                wait_ack(&mut r, id, Duration::from_secs(1)).await,
                Err(AckErr::Other(_))
            ));
        });
    }
}
