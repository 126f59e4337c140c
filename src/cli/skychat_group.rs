//! `skywire cli skychat group …`: skychat groups through the skychat HTTP surface
//! (`/groups…`, docs/apps.md "Skychat groups"): create, invite, join, send, listen, history,
//! list, info, add|remove|promote|demote, leave, delete. A group is named by its id (32 hex
//! digits), a unique prefix of it (4 or more), or its name when no other group has it.

use std::time::Duration;

use argh::FromArgs;
use miniserde::json::{Object, Value};

use super::out::{print_json, row, say, table};
use super::skychat_http::{
    Follow, Names, Reply, Surface, array, quote, str_of, ts_ms, u64_of, utc,
};
use super::{CmdError, CmdResult};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "group")]
/// skychat groups: create, invite, join, send, listen, history, list, info,
/// add|remove|promote|demote, leave, delete. <group> is its id, a unique id prefix or its name.
pub struct GroupCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Create(CreateCmd),
    Invite(InviteCmd),
    Join(JoinCmd),
    Send(SendCmd),
    Listen(ListenCmd),
    History(HistoryCmd),
    List(ListCmd),
    Info(InfoCmd),
    Add(AddCmd),
    Remove(RemoveCmd),
    Promote(PromoteCmd),
    Demote(DemoteCmd),
    Leave(LeaveCmd),
    Delete(DeleteCmd),
}

impl GroupCmd {
    /// Runs the subcommand against the located surface.
    pub async fn run(self, s: &Surface) -> CmdResult {
        match self.cmd {
            Sub::Create(c) => c.run(s).await,
            Sub::Invite(c) => c.run(s).await,
            Sub::Join(c) => c.run(s).await,
            Sub::Send(c) => c.run(s).await,
            Sub::Listen(c) => c.run(s).await,
            Sub::History(c) => c.run(s).await,
            Sub::List(c) => c.run(s).await,
            Sub::Info(c) => c.run(s).await,
            Sub::Add(c) => c.run(s).await,
            Sub::Remove(c) => c.run(s).await,
            Sub::Promote(c) => c.run(s).await,
            Sub::Demote(c) => c.run(s).await,
            Sub::Leave(c) => c.run(s).await,
            Sub::Delete(c) => c.run(s).await,
        }
    }
}

/// How long a call that waits for the group's owner may take (the surface waits ≤ 10 s).
const OWNER_WAIT: Duration = Duration::from_secs(20);

/// A call to a `/groups` path, its non-2xx answers turned into errors that say what to do.
async fn call(
    s: &Surface,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Value, CmdError> {
    let r = s.call(method, path, body, OWNER_WAIT).await?;
    answer(s, method, path, r)
}

fn answer(s: &Surface, method: &str, path: &str, r: Reply) -> Result<Value, CmdError> {
    let why = r.error();
    match r.status {
        200..=299 => Ok(r.json()),
        400 => Err(CmdError::usage(why)),
        403 => Err(CmdError::fail(format!("not allowed: {why}"))),
        404 if why.contains("no route") => Err(CmdError::fail(format!(
            "skychat on {} has no groups ({method} {path}: {why}); is it a skychat of this \
             version?",
            s.addr
        ))),
        404 => Err(CmdError::fail(format!(
            "{why} (skywire cli skychat group list shows the groups)"
        ))),
        504 => Err(CmdError::fail(format!(
            "the group's owner did not answer: {why} (is its visor up? a member's request \
             needs the owner online)"
        ))),
        st => Err(CmdError::fail(format!(
            "{method} {path}: {why} (HTTP {st})"
        ))),
    }
}

fn obj(v: &Value) -> Option<&Object> {
    match v {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

/// Every group the surface knows, as GroupInfo objects.
async fn groups(s: &Surface) -> Result<Vec<Object>, CmdError> {
    let v = call(s, "GET", "/groups", None).await?;
    let list = obj(&v)
        .and_then(|o| o.get("groups"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(array(&list).iter().filter_map(obj).cloned().collect())
}

/// Picks the group `want` names among `list`: the id, a unique id prefix (≥ 4 hex digits) or
/// a unique name.
fn pick<'a>(list: &'a [Object], want: &str) -> Result<&'a Object, CmdError> {
    let w = want.trim();
    let lw = w.to_ascii_lowercase();
    let id = |g: &Object| str_of(g, "id").unwrap_or("").to_string();
    if let Some(g) = list.iter().find(|g| id(g) == lw) {
        return Ok(g);
    }
    let hex = lw.len() >= 4 && lw.bytes().all(|b| b.is_ascii_hexdigit());
    let by_prefix: Vec<&Object> = if hex {
        list.iter().filter(|g| id(g).starts_with(&lw)).collect()
    } else {
        Vec::new()
    };
    let by_name: Vec<&Object> = list
        .iter()
        .filter(|g| str_of(g, "name") == Some(w))
        .collect();
    match (by_prefix.as_slice(), by_name.as_slice()) {
        ([g], _) | ([], [g]) => Ok(g),
        ([], []) => Err(CmdError::fail(format!(
            "no group {w:?} here (skywire cli skychat group list; join one with group join \
             <invite>)"
        ))),
        _ => Err(CmdError::usage(format!(
            "{w:?} names more than one group: give more of its id (skywire cli skychat group \
             list)"
        ))),
    }
}

/// The id of the group `want` names.
async fn resolve(s: &Surface, want: &str) -> Result<String, CmdError> {
    let list = groups(s).await?;
    Ok(str_of(pick(&list, want)?, "id").unwrap_or("").to_string())
}

fn strs(o: &Object, k: &str) -> Vec<String> {
    o.get(k)
        .map(|v| {
            array(v)
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn when(o: &Object, k: &str) -> String {
    match ts_ms(o, k) {
        Some(0) | None => "never".into(),
        Some(ms) => utc(ms),
    }
}

/// `info`'s lines for one group.
fn print_info(g: &Object, names: &Names) {
    let get = |k: &str| str_of(g, k).unwrap_or("-").to_string();
    say(&format!("group {} ({})", get("name"), get("id")));
    say(&format!("  owner    {}", names.of(&get("owner_pk"))));
    say(&format!(
        "  mode     {}, port {}",
        get("mode"),
        u64_of(g, "port").unwrap_or(0)
    ));
    say(&format!("  role     {}", get("role")));
    let members = strs(g, "members");
    let admins = strs(g, "admins");
    say(&format!("  members  {}", members.len()));
    for m in &members {
        let tag = if *m == get("owner_pk") {
            " (founder)"
        } else if admins.contains(m) {
            " (admin)"
        } else {
            ""
        };
        say(&format!("    {}{tag}", names.of(m)));
    }
    match ts_ms(g, "last_message_at") {
        Some(ms) if ms > 0 => say(&format!(
            "  last     message at {} (feed at #{})",
            utc(ms),
            u64_of(g, "last_seq").unwrap_or(0)
        )),
        _ => say(&format!(
            "  last     no messages yet (feed at #{})",
            u64_of(g, "last_seq").unwrap_or(0)
        )),
    }
    say(&format!("  created  {}", when(g, "created_at")));
    let alive = matches!(g.get("subscriber_alive"), Some(Value::Bool(true)));
    match u64_of(g, "subscribers") {
        Some(n) => say(&format!("  serving  {n} subscribed member(s)")),
        None => say(&format!(
            "  feed     {}",
            if alive {
                "subscribed to the owner"
            } else {
                "not subscribed (the owner is unreachable; retried every few seconds)"
            }
        )),
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
/// create a group you own: prints its id and how to invite.
struct CreateCmd {
    /// its name (1-64 bytes)
    #[argh(option)]
    name: String,
    /// a first member: a PK or an alias (repeatable)
    #[argh(option)]
    member: Vec<String>,
    /// public (default) or private (entries encrypted with a group key, rotated on removal)
    #[argh(option, default = "String::from(\"public\")")]
    mode: String,
    /// print the GroupInfo JSON
    #[argh(switch)]
    json: bool,
}

impl CreateCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if !matches!(self.mode.as_str(), "public" | "private") {
            return Err(CmdError::usage(format!(
                "--mode {}: public or private",
                self.mode
            )));
        }
        let mut members = Vec::new();
        for m in &self.member {
            members.push(quote(&s.resolve(m).await?));
        }
        let body = format!(
            "{{\"name\":{},\"mode\":{},\"members\":[{}]}}",
            quote(&self.name),
            quote(&self.mode),
            members.join(",")
        );
        let v = call(s, "POST", "/groups", Some(&body)).await?;
        let g = obj(&v).cloned().unwrap_or_default();
        if self.json {
            print_json(g);
            return Ok(());
        }
        let id = str_of(&g, "id").unwrap_or("?");
        say(&format!(
            "created group {} ({id}, {}, {} member(s))",
            str_of(&g, "name").unwrap_or(&self.name),
            str_of(&g, "mode").unwrap_or(&self.mode),
            strs(&g, "members").len()
        ));
        say(&format!(
            "invite others with: skywire cli skychat group invite {id}"
        ));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "invite")]
/// print an invite link to the group (owner or admin): whoever has it may join.
struct InviteCmd {
    /// the group
    #[argh(positional)]
    group: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl InviteCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let id = resolve(s, &self.group).await?;
        let v = call(s, "POST", &format!("/groups/{id}/invite"), Some("{}")).await?;
        let o = obj(&v).cloned().unwrap_or_default();
        if self.json {
            print_json(o);
            return Ok(());
        }
        let link = str_of(&o, "invite")
            .ok_or_else(|| CmdError::fail("the surface answered without an invite"))?;
        say(link);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "join")]
/// join a group with its invite link (skychat:invite:…); waits for the owner to accept.
struct JoinCmd {
    /// the invite link
    #[argh(positional)]
    invite: String,
    /// print the GroupInfo JSON
    #[argh(switch)]
    json: bool,
}

impl JoinCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let link = self.invite.trim();
        if !link.starts_with("skychat:invite:") {
            return Err(CmdError::usage(
                "an invite link starts with skychat:invite: (ask the group's owner or an admin \
                 for one: skywire cli skychat group invite <group>)",
            ));
        }
        let body = format!("{{\"invite\":{}}}", quote(link));
        let v = call(s, "POST", "/groups/join", Some(&body)).await?;
        let g = obj(&v).cloned().unwrap_or_default();
        if self.json {
            print_json(g);
            return Ok(());
        }
        let names = Names::load(s).await;
        say(&format!(
            "joined {} ({}) owned by {}; {} member(s)",
            str_of(&g, "name").unwrap_or("?"),
            str_of(&g, "id").unwrap_or("?"),
            names.of(str_of(&g, "owner_pk").unwrap_or("?")),
            strs(&g, "members").len()
        ));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "send")]
/// post a message to the group; returns once the owner has sequenced it.
struct SendCmd {
    /// the group
    #[argh(positional)]
    group: String,
    /// the message
    #[argh(option, short = 'm')]
    message: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl SendCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if self.message.is_empty() {
            return Err(CmdError::usage("-m: the message is empty"));
        }
        let id = resolve(s, &self.group).await?;
        let body = format!("{{\"message\":{}}}", quote(&self.message));
        let v = call(s, "POST", &format!("/groups/{id}/message"), Some(&body)).await?;
        let o = obj(&v).cloned().unwrap_or_default();
        if self.json {
            print_json(o);
        } else {
            say(&format!(
                "posted as #{} in group {id}",
                u64_of(&o, "seq").unwrap_or(0)
            ));
        }
        Ok(())
    }
}

/// One history message: `#seq <time> <from>: text`.
fn message_line(m: &Object, names: &Names) -> String {
    let seq = u64_of(m, "group_seq")
        .or_else(|| u64_of(m, "seq"))
        .unwrap_or(0);
    let text = match m.get("text") {
        Some(Value::String(t)) => t.clone(),
        _ => format!(
            "[cannot read: {}]",
            str_of(m, "error").unwrap_or("no key for it")
        ),
    };
    format!(
        "#{seq} {} {}: {text}",
        when(m, "ts"),
        names.of(str_of(m, "from").unwrap_or("?"))
    )
}

async fn history_since(
    s: &Surface,
    id: &str,
    since: Option<u64>,
    limit: u32,
) -> Result<Vec<Object>, CmdError> {
    let mut path = format!("/groups/{id}/history?limit={limit}");
    if let Some(n) = since {
        path.push_str(&format!("&since={n}"));
    }
    let v = call(s, "GET", &path, None).await?;
    let list = obj(&v)
        .and_then(|o| o.get("messages"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(array(&list).iter().filter_map(obj).cloned().collect())
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "history")]
/// the group's messages, oldest first: `#seq <time UTC> <from>: text`.
struct HistoryCmd {
    /// the group
    #[argh(positional)]
    group: String,
    /// at most this many, the newest (1…1000, default 100)
    #[argh(option, default = "100")]
    limit: u32,
    /// only those after this seq
    #[argh(option)]
    since: Option<u64>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl HistoryCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        if !(1..=1000).contains(&self.limit) {
            return Err(CmdError::usage("--limit: 1 to 1000"));
        }
        let id = resolve(s, &self.group).await?;
        let msgs = history_since(s, &id, self.since, self.limit).await?;
        if self.json {
            let mut o = Object::new();
            o.insert(
                "messages".into(),
                Value::Array(msgs.into_iter().map(Value::Object).collect()),
            );
            print_json(o);
            return Ok(());
        }
        if msgs.is_empty() {
            say("no messages in this group yet");
            return Ok(());
        }
        let names = Names::load(s).await;
        for m in &msgs {
            say(&message_line(m, &names));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "listen")]
/// print the group's messages as they arrive (live over the event stream; with --interval,
/// by polling the history as Go's skychat does).
struct ListenCmd {
    /// the group
    #[argh(positional)]
    group: String,
    /// with --interval: start after this group seq (default: the newest)
    #[argh(option)]
    since: Option<u64>,
    /// poll the history this often (e.g. 2s) instead of following the event stream
    #[argh(option)]
    interval: Option<String>,
    /// exit after this many messages
    #[argh(option)]
    count: Option<u64>,
    /// print each message as one JSON line
    #[argh(switch)]
    raw: bool,
    /// the same as --raw
    #[argh(switch)]
    json: bool,
}

impl ListenCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let id = resolve(s, &self.group).await?;
        let names = Names::load(s).await;
        let raw = self.raw || self.json;
        let mut n = 0u64;
        let more = |n: u64| self.count.is_none_or(|c| n < c);
        if let Some(iv) = &self.interval {
            let every = super::skychat_http::parse_wait(iv)
                .map_err(|e| CmdError::usage(format!("--interval {e}")))?;
            if every.is_zero() {
                return Err(CmdError::usage("--interval: more than 0 (e.g. 1s)"));
            }
            let mut last = match self.since {
                Some(x) => x,
                None => history_since(s, &id, None, 1)
                    .await?
                    .last()
                    .and_then(|m| u64_of(m, "seq"))
                    .unwrap_or(0),
            };
            while more(n) {
                for m in history_since(s, &id, Some(last), 1000).await? {
                    last = last.max(u64_of(&m, "seq").unwrap_or(last));
                    n += 1;
                    if raw {
                        say(&miniserde::json::to_string(&Value::Object(m.clone())));
                    } else {
                        say(&message_line(&m, &names));
                    }
                    if !more(n) {
                        return Ok(());
                    }
                }
                async_io::Timer::after(every).await;
            }
            return Ok(());
        }
        let mut f = Follow::new(s.clone(), "group", None);
        while more(n) {
            let e = f.next().await?;
            if !e.is_message() || !e.get("group").eq_ignore_ascii_case(&id) {
                continue;
            }
            n += 1;
            if raw {
                say(&e.raw);
            } else {
                say(&message_line(&e.obj, &names));
            }
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
/// the groups this skychat owns or has joined.
struct ListCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl ListCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let list = groups(s).await?;
        if self.json {
            let mut o = Object::new();
            o.insert(
                "groups".into(),
                Value::Array(list.into_iter().map(Value::Object).collect()),
            );
            print_json(o);
            return Ok(());
        }
        if list.is_empty() {
            say(
                "no groups (create one: skywire cli skychat group create --name <n>; or join \
                 one with group join <invite>)",
            );
            return Ok(());
        }
        let mut rows = vec![row(&["ID", "NAME", "ROLE", "MODE", "MEMBERS", "LAST"])];
        for g in &list {
            rows.push(vec![
                str_of(g, "id").unwrap_or("?").to_string(),
                str_of(g, "name").unwrap_or("?").to_string(),
                str_of(g, "role").unwrap_or("?").to_string(),
                str_of(g, "mode").unwrap_or("?").to_string(),
                strs(g, "members").len().to_string(),
                match ts_ms(g, "last_message_at") {
                    Some(ms) if ms > 0 => utc(ms),
                    _ => "-".to_string(),
                },
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "info")]
/// one group: id, name, owner, port, mode, your role, members, admins, last message, feed state.
struct InfoCmd {
    /// the group
    #[argh(positional)]
    group: String,
    /// print the GroupInfo JSON
    #[argh(switch)]
    json: bool,
}

impl InfoCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let id = resolve(s, &self.group).await?;
        let v = call(s, "GET", &format!("/groups/{id}"), None).await?;
        let g = obj(&v).cloned().unwrap_or_default();
        if self.json {
            print_json(g);
        } else {
            print_info(&g, &Names::load(s).await);
        }
        Ok(())
    }
}

/// The four roster changes (`add|remove|promote|demote <group> <pk>`): one argh struct each,
/// one body.
macro_rules! member_cmd {
    ($ty:ident, $name:literal, $action:literal, $what:literal) => {
        #[derive(FromArgs, Debug)]
        #[argh(subcommand, name = $name)]
        #[doc = $what]
        struct $ty {
            /// the group
            #[argh(positional)]
            group: String,
            /// the member: a PK or an alias
            #[argh(positional)]
            who: String,
            /// print JSON
            #[argh(switch)]
            json: bool,
        }

        impl $ty {
            async fn run(self, s: &Surface) -> CmdResult {
                roster_change(s, &self.group, &self.who, $action, self.json).await
            }
        }
    };
}

member_cmd!(
    AddCmd,
    "add",
    "add",
    "add a member (the founder or an admin)."
);
member_cmd!(
    RemoveCmd,
    "remove",
    "remove",
    "remove a member (the founder or an admin; only the founder removes an admin); a private \
     group's key is rotated so the removed member cannot read what follows."
);
member_cmd!(
    PromoteCmd,
    "promote",
    "promote",
    "make a member an admin (the founder or an admin)."
);
member_cmd!(
    DemoteCmd,
    "demote",
    "demote",
    "make an admin a member again (the founder; the founder itself cannot be demoted)."
);

async fn roster_change(s: &Surface, group: &str, who: &str, action: &str, json: bool) -> CmdResult {
    let id = resolve(s, group).await?;
    let pk = s.resolve(who).await?;
    let body = format!("{{\"action\":{},\"pk\":{}}}", quote(action), quote(&pk));
    let v = call(s, "POST", &format!("/groups/{id}/members"), Some(&body)).await?;
    let o = obj(&v).cloned().unwrap_or_default();
    if json {
        print_json(o);
        return Ok(());
    }
    let names = Names::load(s).await;
    let done = match action {
        "add" => "added",
        "remove" => "removed",
        "promote" => "promoted",
        _ => "demoted",
    };
    say(&format!(
        "{done} {} (entry #{} of group {id})",
        names.of(&pk),
        u64_of(&o, "seq").unwrap_or(0)
    ));
    Ok(())
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "leave")]
/// leave a group you joined (its owner cannot leave: delete it instead).
struct LeaveCmd {
    /// the group
    #[argh(positional)]
    group: String,
}

impl LeaveCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let id = resolve(s, &self.group).await?;
        call(s, "POST", &format!("/groups/{id}/leave"), Some("{}")).await?;
        say(&format!("left group {id}"));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "delete")]
/// end a group you own: members are told, its feed is removed here.
struct DeleteCmd {
    /// the group
    #[argh(positional)]
    group: String,
}

impl DeleteCmd {
    async fn run(self, s: &Surface) -> CmdResult {
        let id = resolve(s, &self.group).await?;
        call(s, "POST", &format!("/groups/{id}/delete"), Some("{}")).await?;
        say(&format!("deleted group {id}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: &str, name: &str) -> Object {
        let mut o = Object::new();
        o.insert("id".into(), Value::String(id.into()));
        o.insert("name".into(), Value::String(name.into()));
        o
    }

    #[test]
    fn a_group_is_named_by_id_prefix_or_unique_name() {
        let list = vec![
            g("aaaa0000000000000000000000000001", "friends"),
            g("aaab0000000000000000000000000002", "work"),
            g("bbbb0000000000000000000000000003", "work"),
        ];
        let id = |w: &str| pick(&list, w).map(|o| str_of(o, "id").unwrap().to_string());
        assert_eq!(id("aaaa").unwrap(), "aaaa0000000000000000000000000001");
        assert_eq!(id("AAAB0").unwrap(), "aaab0000000000000000000000000002");
        assert_eq!(id("friends").unwrap(), "aaaa0000000000000000000000000001");
        assert_eq!(
            id("bbbb0000000000000000000000000003").unwrap(),
            "bbbb0000000000000000000000000003"
        );
        // Ambiguous: a prefix of two ids, a name of two groups; unknown.
        assert!(id("aaa").is_err() && id("aaa0").is_err());
        assert!(id("aaa").unwrap_err().msg.contains("no group"));
        assert!(id("work").unwrap_err().msg.contains("more than one"));
        assert!(id("nope").unwrap_err().msg.contains("no group"));
    }

    #[test]
    fn roster_commands_parse_and_lines_read_well() {
        let c = PromoteCmd::from_args(&["promote"], &["g1", "bob", "--json"]).unwrap();
        assert_eq!(
            (c.group.as_str(), c.who.as_str(), c.json),
            ("g1", "bob", true)
        );
        assert!(AddCmd::from_args(&["add"], &["g1"]).is_err());
        let mut m = Object::new();
        m.insert("seq".into(), Value::String("7".into()));
        m.insert("from".into(), Value::String("ab".repeat(32)));
        m.insert("text".into(), Value::Null);
        m.insert("error".into(), Value::String("no key for epoch 2".into()));
        let line = message_line(&m, &Names::default());
        assert!(line.starts_with("#7 never "), "{line}");
        assert!(line.contains("[cannot read: no key for epoch 2]"), "{line}");
    }
}
