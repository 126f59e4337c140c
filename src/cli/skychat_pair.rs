//! `skywire cli skychat pair …`: pairing through the skychat HTTP surface (`/pair…`,
//! docs/protocol.md "Skychat pairing"): add, accept, decline, send, poll, list, remove. A
//! peer is named by its PK or an alias (`skywire cli skychat alias`). Pairing must be on in
//! the skychat app (`--pair-enable`); when it is off every command says how to turn it on.

use std::time::Duration;

use argh::FromArgs;
use miniserde::json::{Object, Value};

use super::out::{row, say, table};
use super::skychat_http::{Names, Reply, Surface, array, quote, str_of, u64_of, utc};
use super::{CmdError, CmdResult};
use crate::apps::skychat::pair::time::parse_rfc3339;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pair")]
/// skychat pairing (needs --pair-enable in the skychat app): add, accept, decline, send,
/// poll, list, remove. <pk> is a public key or an alias.
pub struct PairCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Add(AddCmd),
    Accept(AcceptCmd),
    Decline(DeclineCmd),
    Send(SendCmd),
    Poll(PollCmd),
    List(ListCmd),
    Remove(RemoveCmd),
}

impl PairCmd {
    /// Runs the subcommand against the located surface.
    pub async fn run(self, s: &Surface) -> CmdResult {
        match self.cmd {
            Sub::Add(c) => c.run(s).await,
            Sub::Accept(c) => c.run(s).await,
            Sub::Decline(c) => c.run(s).await,
            Sub::Send(c) => c.run(s).await,
            Sub::Poll(c) => c.run(s).await,
            Sub::List(c) => c.run(s).await,
            Sub::Remove(c) => c.run(s).await,
        }
    }
}

/// A step waits ≤ 10 s for the peer (and may dial it first).
const PEER_WAIT: Duration = Duration::from_secs(30);

/// A call to a `/pair` path, its non-2xx answers turned into errors that say what to do.
async fn call(
    s: &Surface,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Reply, CmdError> {
    let r = s.call(method, path, body, PEER_WAIT).await?;
    let why = r.error();
    match r.status {
        200..=299 => Ok(r),
        400 => Err(CmdError::usage(why)),
        404 if why.contains("no route") && !why.contains("pairing routes") => {
            Err(CmdError::fail(format!(
                "skychat on {} has no pairing ({method} {path}: {why}); is it a skychat of this \
                 version?",
                s.addr
            )))
        }
        503 => Err(CmdError::fail(why)),
        502 | 504 => Err(CmdError::fail(format!(
            "{why} (is the peer's visor up, with skychat running?)"
        ))),
        _ => Err(CmdError::fail(why)),
    }
}

fn obj(v: &Value) -> Object {
    match v {
        Value::Object(o) => o.clone(),
        _ => Object::new(),
    }
}

fn objs(v: &Value) -> Vec<Object> {
    array(v).iter().map(obj).collect()
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
/// invite a visor to pair (or accept its invite if it invited you first).
struct AddCmd {
    /// the peer: a PK or an alias
    #[argh(positional)]
    pk: String,
}

impl AddCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let pk = s.resolve(&self.pk).await?;
        let names = Names::load(s).await;
        let r = call(
            s,
            "POST",
            "/pair",
            Some(&format!("{{\"pk\":{}}}", quote(&pk))),
        )
        .await?;
        let o = obj(&r.json());
        let who = names.of(&pk);
        match (str_of(&o, "status"), r.status) {
            (Some("paired"), _) => say(&format!(
                "paired with {who} (it had invited you): skywire cli skychat pair send -t {} -m <text>",
                self.pk
            )),
            (_, 202) => {
                return Err(CmdError::fail(format!(
                    "invite to {who} recorded, not delivered: {} (run pair add {} again when it is online)",
                    str_of(&o, "reason").unwrap_or("unknown"),
                    self.pk
                )));
            }
            _ => say(&format!(
                "invited {who}: waiting for it to accept (skywire cli skychat pair list shows the state)"
            )),
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "accept")]
/// accept a pending invite (pair list shows them as pending-in).
struct AcceptCmd {
    /// the inviter: a PK or an alias
    #[argh(positional)]
    pk: String,
}

impl AcceptCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let pk = s.resolve(&self.pk).await?;
        call(s, "POST", &format!("/pair/invites/{pk}/accept"), Some("{}")).await?;
        let names = Names::load(s).await;
        say(&format!("paired with {}", names.of(&pk)));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "decline")]
/// decline a pending invite.
struct DeclineCmd {
    /// the inviter: a PK or an alias
    #[argh(positional)]
    pk: String,
}

impl DeclineCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let pk = s.resolve(&self.pk).await?;
        let r = call(
            s,
            "POST",
            &format!("/pair/invites/{pk}/decline"),
            Some("{}"),
        )
        .await?;
        let told = matches!(obj(&r.json()).get("told"), Some(Value::Bool(true)));
        let names = Names::load(s).await;
        say(&format!(
            "declined the invite of {}{}",
            names.of(&pk),
            if told {
                ""
            } else {
                " (it could not be told: unreachable)"
            }
        ));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "send")]
/// send a pair message and wait for its acknowledgement (exit 1 if none).
struct SendCmd {
    /// the paired peer: a PK or an alias
    #[argh(option, short = 't')]
    to: String,
    /// the text (1-4096 bytes)
    #[argh(option, short = 'm')]
    message: String,
}

impl SendCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if self.message.is_empty() {
            return Err(CmdError::usage("-m: the message is empty"));
        }
        let pk = s.resolve(&self.to).await?;
        let body = format!("{{\"text\":{}}}", quote(&self.message));
        let r = call(s, "POST", &format!("/pair/{pk}/message"), Some(&body)).await?;
        let o = obj(&r.json());
        let names = Names::load(s).await;
        say(&format!(
            "Acked by {} in {}ms (via {})",
            names.of(&pk),
            u64_of(&o, "ms").unwrap_or(0),
            str_of(&o, "network").unwrap_or("?")
        ));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "poll")]
/// print received pair messages: after --since the oldest --limit, else the newest.
struct PollCmd {
    /// only messages after this time (RFC 3339, e.g. 2026-05-12T08:30:00Z)
    #[argh(option)]
    since: Option<String>,
    /// at most this many (1-1000, default 100)
    #[argh(option, default = "100")]
    limit: u32,
    /// print the JSON array ([{"peer_pk","id","text","ts","ts_ms"}])
    #[argh(switch)]
    json: bool,
}

/// Percent-encodes a query value.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl PollCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if !(1..=1000).contains(&self.limit) {
            return Err(CmdError::usage(format!(
                "--limit {}: 1 to 1000",
                self.limit
            )));
        }
        let mut path = format!("/pair/inbox?limit={}", self.limit);
        if let Some(t) = &self.since {
            parse_rfc3339(t).map_err(|e| CmdError::usage(format!("--since: {e}")))?;
            path.push_str(&format!("&since={}", pct(t)));
        }
        let r = call(s, "GET", &path, None).await?;
        if self.json {
            say(r.body.trim_end());
            return Ok(());
        }
        let msgs = objs(&r.json());
        if msgs.is_empty() {
            say("no pair messages");
            return Ok(());
        }
        let names = Names::load(s).await;
        for m in &msgs {
            say(&format!(
                "{} {}: {}",
                str_of(m, "ts").unwrap_or("?"),
                names.of(str_of(m, "peer_pk").unwrap_or("?")),
                str_of(m, "text").unwrap_or("")
            ));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
/// list pairs and invites with their state (pending-out, pending-in, paired).
struct ListCmd {
    /// print the JSON array
    #[argh(switch)]
    json: bool,
}

impl ListCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let r = call(s, "GET", "/pair", None).await?;
        if self.json {
            say(r.body.trim_end());
            return Ok(());
        }
        let list = objs(&r.json());
        if list.is_empty() {
            say("no pairs (invite a visor: skywire cli skychat pair add <pk|alias>)");
            return Ok(());
        }
        let names = Names::load(s).await;
        let mut rows = vec![row(&["PEER", "STATUS", "SINCE", "LAST MESSAGE"])];
        for p in &list {
            rows.push(vec![
                names.of(str_of(p, "peer_pk").unwrap_or("?")).to_string(),
                str_of(p, "status").unwrap_or("?").to_string(),
                utc(u64_of(p, "since").unwrap_or(0)),
                match u64_of(p, "last_msg_at") {
                    Some(ms) if ms > 0 => utc(ms),
                    _ => "-".into(),
                },
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
/// drop a pair (or an invite, sent or received) and tell the peer.
struct RemoveCmd {
    /// the peer: a PK or an alias
    #[argh(positional)]
    pk: String,
}

impl RemoveCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let pk = s.resolve(&self.pk).await?;
        let r = call(s, "DELETE", &format!("/pair/{pk}"), None).await?;
        let told = matches!(obj(&r.json()).get("told"), Some(Value::Bool(true)));
        let names = Names::load(s).await;
        say(&format!(
            "removed the pair with {}{}",
            names.of(&pk),
            if told {
                ""
            } else {
                " (it could not be told: unreachable)"
            }
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            pct("2026-05-12T10:30:00+02:00"),
            "2026-05-12T10%3A30%3A00%2B02%3A00"
        );
    }
}
