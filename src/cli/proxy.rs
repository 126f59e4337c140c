//! `skywire cli proxy start|stop|status|list|test`: the running visor's skysocks-client
//! instances (local SOCKS5/HTTP proxies through a skysocks server), driven through the
//! app's control surface (RPC `POST /v1/apps/skysocks-client/control`); `test` fetches a
//! URL through an instance's SOCKS5 port and prints latency and throughput.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_net::TcpStream;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use miniserde::json::{Object, Value};

use super::out::{
    dash, decimal, human_bytes as bytes, human_secs, obj_str as s, obj_u64 as n, print_json, say,
    table,
};
use super::rpc::{Rpc, call};
use super::{CmdError, CmdResult};
use crate::apps::skysocks_client::DEF;
use crate::apps::socks5::{self, Host};
use crate::http::client::HttpUrl;
use crate::http::json::{Ordered, Out};
use crate::rpc::Request;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "proxy")]
/// local SOCKS5/HTTP proxies through skysocks servers: start, stop, status, list, test.
pub struct ProxyCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file, to find its RPC token (as given to 'skywire visor -c')
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory, to find its RPC token (default $SKYWIRE_STATE_DIR, else
    /// ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: ProxySub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum ProxySub {
    Start(StartCmd),
    Stop(StopCmd),
    Status(StatusCmd),
    List(ListCmd),
    Test(TestCmd),
}

impl ProxyCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            ProxySub::Start(c) => c.run(&rpc),
            ProxySub::Stop(c) => c.run(&rpc),
            ProxySub::Status(c) => c.run(&rpc),
            ProxySub::List(c) => c.run(&rpc),
            ProxySub::Test(c) => c.run(&rpc),
        }
    }
}

/// One control request to the app; `Ok` is its answer.
fn control(rpc: &Rpc, body: Ordered) -> Result<Object, CmdError> {
    super::rpc::app_control(rpc, DEF.name, body)
}

/// The instances, or an empty list when the app is not running.
fn instances(rpc: &Rpc) -> Result<Vec<Object>, CmdError> {
    match control(rpc, Ordered::new().field("op", Out::Str("list".into()))) {
        Ok(o) => Ok(match o.get("items") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }),
        Err(e) if e.msg.contains(" is stopped") || e.msg.contains(" is failed") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The instance named `name`, or the only one.
fn pick(list: &[Object], name: Option<&str>) -> Result<Object, CmdError> {
    let names = || {
        list.iter()
            .map(|o| s(o, "name"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(nm) => list.iter().find(|o| s(o, "name") == nm).cloned().ok_or_else(|| {
            CmdError::fail(if list.is_empty() {
                format!("no proxy named {nm:?}; none is running (start one: skywire cli proxy start --pk <pk>)")
            } else {
                format!("no proxy named {nm:?}; running: {}", names())
            })
        }),
        None => match list {
            [one] => Ok(one.clone()),
            [] => Err(CmdError::fail(
                "no proxy is running; start one: skywire cli proxy start --pk <pk>",
            )),
            _ => Err(CmdError::usage(format!(
                "several proxies run ({}); say which with --name",
                names()
            ))),
        },
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// start a proxy to a skysocks server (starting the skysocks-client app if it is not).
struct StartCmd {
    /// the skysocks server's PK
    #[argh(option)]
    pk: String,
    /// SOCKS5 listen address (default 127.0.0.1:1080)
    #[argh(option)]
    addr: Option<String>,
    /// the server's passcode
    #[argh(option)]
    passcode: Option<String>,
    /// the proxy's name (default: the first 8 hex digits of --pk)
    #[argh(option)]
    name: Option<String>,
    /// also serve an HTTP proxy (CONNECT and absolute URIs) on this address
    #[argh(option)]
    http: Option<String>,
    /// dial by auto (default), dmsg or skynet
    #[argh(option)]
    via: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl StartCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        if crate::crypto::PublicKey::from_hex(&self.pk).is_err() {
            return Err(CmdError::usage(format!(
                "--pk {:?} is not a public key; give the skysocks server visor's 64-hex-digit PK \
                 (its 'skywire cli visor info')",
                self.pk
            )));
        }
        call(rpc, &Request::Start(DEF.name.into()))?;
        let mut body = Ordered::new()
            .field("op", Out::Str("start".into()))
            .field("pk", Out::Str(self.pk));
        for (k, v) in [
            ("addr", self.addr),
            ("passcode", self.passcode),
            ("name", self.name),
            ("http", self.http),
            ("via", self.via),
        ] {
            if let Some(v) = v {
                body = body.field(k, Out::Str(v));
            }
        }
        let o = control(rpc, body)?;
        if self.json {
            print_json(o);
            return Ok(());
        }
        let http = s(&o, "http");
        say(&format!(
            "proxy {}: SOCKS5 on {}{} -> {} (via {}{})",
            s(&o, "name"),
            s(&o, "addr"),
            if http.is_empty() {
                String::new()
            } else {
                format!(", HTTP on {http}")
            },
            s(&o, "server"),
            s(&o, "via"),
            if matches!(o.get("passcode"), Some(Value::Bool(true))) {
                ", with passcode"
            } else {
                ""
            }
        ));
        say(&format!(
            "try: curl --socks5-hostname {} http://example.com/  (or: skywire cli proxy test --name {})",
            s(&o, "addr"),
            s(&o, "name")
        ));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop a proxy (the only one, or --name).
struct StopCmd {
    /// the proxy's name
    #[argh(option)]
    name: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl StopCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let mut body = Ordered::new().field("op", Out::Str("stop".into()));
        if let Some(n) = self.name {
            body = body.field("name", Out::Str(n));
        }
        let o = match control(rpc, body) {
            Err(e) if e.msg.contains(" is stopped") => {
                return Err(CmdError::fail(
                    "no proxy is running (the skysocks-client app is stopped)",
                ));
            }
            r => r?,
        };
        if self.json {
            print_json(o);
        } else {
            say(&format!("stopped proxy {}", s(&o, "stopped")));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// every proxy (or --name) in detail: server reachability, connections, bytes.
struct StatusCmd {
    /// only this proxy
    #[argh(option)]
    name: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl StatusCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let mut list = instances(rpc)?;
        if let Some(nm) = &self.name {
            list = vec![pick(&list, Some(nm))?];
        }
        if self.json {
            let mut o = Object::new();
            o.insert(
                "items".into(),
                Value::Array(list.into_iter().map(Value::Object).collect()),
            );
            print_json(o);
            return Ok(());
        }
        if list.is_empty() {
            say("no proxies running (start one: skywire cli proxy start --pk <pk>)");
        }
        for o in &list {
            say(&format!(
                "{}: SOCKS5 {}{} -> {} via {}",
                s(o, "name"),
                s(o, "addr"),
                match s(o, "http") {
                    "" => String::new(),
                    h => format!(", HTTP {h}"),
                },
                s(o, "server"),
                s(o, "via")
            ));
            say(&format!(
                "  server: {} for {}{}",
                s(o, "server_state"),
                human_secs(n(o, "state_secs")),
                match s(o, "last_error") {
                    "" => String::new(),
                    e => format!(" (last error: {e})"),
                }
            ));
            say(&format!(
                "  connections: {} open, {} in all, {} failed, {} closed at the limit; {} up, {} down; up {}",
                n(o, "active"),
                n(o, "total"),
                n(o, "failed"),
                n(o, "rejected"),
                bytes(n(o, "bytes_up")),
                bytes(n(o, "bytes_down")),
                human_secs(n(o, "uptime_secs"))
            ));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
/// the proxies, one line each.
struct ListCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl ListCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let list = instances(rpc)?;
        if self.json {
            let mut o = Object::new();
            o.insert(
                "items".into(),
                Value::Array(list.into_iter().map(Value::Object).collect()),
            );
            print_json(o);
            return Ok(());
        }
        if list.is_empty() {
            say("no proxies running (start one: skywire cli proxy start --pk <pk>)");
            return Ok(());
        }
        let mut rows = vec![super::out::row(&[
            "NAME",
            "SOCKS5",
            "HTTP",
            "SERVER",
            "VIA",
            "SERVER-STATE",
            "OPEN",
        ])];
        for o in &list {
            rows.push(vec![
                s(o, "name").into(),
                s(o, "addr").into(),
                dash(s(o, "http")),
                s(o, "server").into(),
                s(o, "via").into(),
                s(o, "server_state").into(),
                n(o, "active").to_string(),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "test")]
/// fetch a URL through a proxy (the only one, or --name); prints latency and throughput.
struct TestCmd {
    /// the proxy's name
    #[argh(option)]
    name: Option<String>,
    /// the URL to fetch (http:// only; default http://example.com/)
    #[argh(option, default = "String::from(\"http://example.com/\")")]
    url: String,
    /// give up after this many seconds (default 60)
    #[argh(option, default = "60")]
    timeout: u64,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl TestCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let url = HttpUrl::parse(&self.url).map_err(|e| CmdError::usage(format!("--url: {e}")))?;
        let (host, port) = url
            .authority
            .rsplit_once(':')
            .and_then(|(h, p)| Some((Host::parse(h).ok()?, p.parse::<u16>().ok()?)))
            .ok_or_else(|| CmdError::usage(format!("--url {}: bad host", self.url)))?;
        let inst = pick(&instances(rpc)?, self.name.as_deref())?;
        let addr = s(&inst, "addr").to_string();
        let limit = Duration::from_secs(self.timeout.max(1));
        let work = fetch(&addr, &host, port, &url, &self.url);
        let r = async_io::block_on(socks5::within(limit, work)).ok_or_else(|| {
            CmdError::fail(format!(
                "{} through proxy {}: no answer within {} s",
                self.url,
                s(&inst, "name"),
                limit.as_secs()
            ))
        })??;
        let secs_x1000 = r.total.as_millis().max(1) as u64;
        if self.json {
            let o = Ordered::new()
                .field("proxy", Out::Str(s(&inst, "name").into()))
                .field("url", Out::Str(self.url))
                .field("status", Out::U64(u64::from(r.status)))
                .field("bytes", Out::U64(r.body))
                .field("connect_ms", Out::U64(r.connect.as_millis() as u64))
                .field("first_byte_ms", Out::U64(r.first_byte.as_millis() as u64))
                .field("total_ms", Out::U64(secs_x1000))
                .field("bytes_per_sec", Out::U64(r.body * 1000 / secs_x1000));
            say(o.to_compact().trim_end());
            return Ok(());
        }
        say(&format!(
            "GET {} through proxy {} ({}): HTTP {}, {} in {} s",
            self.url,
            s(&inst, "name"),
            addr,
            r.status,
            bytes(r.body),
            decimal(secs_x1000, 1000, 3)
        ));
        say(&format!(
            "  proxy connect {} ms, first byte {} ms, throughput {}/s",
            r.connect.as_millis(),
            r.first_byte.as_millis(),
            bytes(r.body * 1000 / secs_x1000)
        ));
        if !(200..400).contains(&r.status) {
            return Err(CmdError::fail(format!(
                "{} answered HTTP {}",
                self.url, r.status
            )));
        }
        Ok(())
    }
}

/// What one test fetch measured.
struct Fetched {
    status: u16,
    body: u64,
    connect: Duration,
    first_byte: Duration,
    total: Duration,
}

async fn fetch(
    addr: &str,
    host: &Host,
    port: u16,
    url: &HttpUrl,
    shown: &str,
) -> Result<Fetched, CmdError> {
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| {
        CmdError::fail(format!(
            "cannot reach the proxy on {addr}: {e} (is it running? skywire cli proxy status)"
        ))
    })?;
    let _ = tcp.set_nodelay(true);
    socks5::connect(&mut tcp, host, port, None)
        .await
        .map_err(|e| {
            CmdError::fail(format!(
                "{shown}: the proxy on {addr} answered: {} (see skywire cli proxy status)",
                match e {
                    socks5::ConnectError::Refused(r) => r.text().to_string(),
                    other => other.to_string(),
                }
            ))
        })?;
    let connect = t0.elapsed();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: skywire-rs/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority.strip_suffix(":80").unwrap_or(&url.authority),
        crate::VERSION
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| CmdError::fail(format!("{shown}: {e}")))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut first_byte = None;
    let mut body = 0u64;
    let mut status = None;
    loop {
        let k = tcp
            .read(&mut buf)
            .await
            .map_err(|e| CmdError::fail(format!("{shown}: {e}")))?;
        if k == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| t0.elapsed());
        if status.is_some() {
            body += k as u64;
            continue;
        }
        head.extend_from_slice(&buf[..k]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = String::from_utf8_lossy(&head[..i]);
            let code = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| CmdError::fail(format!("{shown}: not an HTTP answer")))?;
            status = Some(code);
            body += (head.len() - i - 4) as u64;
        } else if head.len() > 64 * 1024 {
            return Err(CmdError::fail(format!("{shown}: answer head over 64 KiB")));
        }
    }
    let status = status.ok_or_else(|| {
        CmdError::fail(format!("{shown}: the connection closed before an answer"))
    })?;
    Ok(Fetched {
        status,
        body,
        connect,
        first_byte: first_byte.unwrap_or_default(),
        total: t0.elapsed(),
    })
}
