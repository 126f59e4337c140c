//! `skywire dmsg server|cat|probe|curl|iperf`: the relay and the tools that reach peers by
//! public key. Tools take their identity from `--sk`, or `-c skywire-config.json`, or make a
//! throwaway key; discovery from `--disc`, else the config, else http://127.0.0.1:9090.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_executor::Executor;
use async_net::TcpListener;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::netflags::{DEFAULT_DISC, dmsg_tool, resolve, start_client};
use super::out::decimal;
use super::{CmdError, CmdResult, init_logging, say, say_err};
use crate::addr::bind_addr;
use crate::crypto::PublicKey;
use crate::dmsg::admission::Limits as RelayLimits;
use crate::dmsg::client::DmsgStream;
use crate::dmsg::disc::DiscLimits;
use crate::dmsg::disc_client::DiscClient;
use crate::dmsg::relay::{Relay, RelayConfig};
use crate::http::client::request_on;
use crate::http::json::{Ordered, Out};
use crate::http::server::{self, Limits};
use crate::spawn::Spawn;

/// Parses `<pk>:<port>` (`default_port` when the port is left out).
fn parse_target(s: &str, default_port: Option<u16>) -> Result<(PublicKey, u16), CmdError> {
    let (pk, port) = match s.split_once(':') {
        Some((pk, port)) => (
            pk,
            port.parse::<u16>()
                .map_err(|_| CmdError::usage(format!("{s}: port must be 0-65535")))?,
        ),
        None => (
            s,
            default_port.ok_or_else(|| CmdError::usage(format!("{s}: expected <pk>:<port>")))?,
        ),
    };
    let pk = PublicKey::from_hex(pk).map_err(|e| CmdError::usage(format!("{s}: {e}")))?;
    Ok((pk, port))
}

/// Runs `f` on a fresh executor, with the client's tasks on it.
fn run_async<T>(
    f: impl FnOnce(Arc<Executor<'static>>) -> Result<T, CmdError>,
) -> Result<T, CmdError> {
    let ex = Arc::new(Executor::new());
    f(ex)
}

const READY: Duration = Duration::from_secs(10);

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "server")]
/// run a relay: clients connect with Noise XK and reach each other through it.
pub struct ServerCmd {
    /// listen address (default 127.0.0.1:8080; ":8080" means every interface)
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    addr: String,
    /// discovery URL to register in (default: the one --disc-addr hosts, else
    /// http://127.0.0.1:9090)
    #[argh(option)]
    disc: Option<String>,
    /// also host discovery on this address in the same process
    #[argh(option)]
    disc_addr: Option<String>,
    /// the address clients should use, published in discovery (default: the bound one)
    #[argh(option)]
    public_addr: Option<String>,
    /// most client sessions, handshakes in progress included (default 2048); beyond it a
    /// connection is closed at once
    #[argh(option, default = "2048")]
    max_sessions: usize,
    /// most handshakes in progress at once (default 64); beyond it a connection is closed at
    /// once, unread
    #[argh(option, default = "64")]
    max_handshakes: usize,
    /// most handshakes in progress at once from one address (an IPv4 address or an IPv6
    /// /64; default 8)
    #[argh(option, default = "8")]
    max_handshakes_per_addr: usize,
    /// most sessions from one address (default 128)
    #[argh(option, default = "128")]
    max_sessions_per_addr: usize,
    /// handshakes one address may start per second, on average (default 16)
    #[argh(option, default = "16")]
    handshake_rate: u32,
    /// handshakes one address may start at once after a quiet spell (default 32)
    #[argh(option, default = "32")]
    handshake_burst: u32,
    /// apply the per-address limits to loopback clients too (by default every local
    /// process, and every client of a local proxy, shares one address and is exempt)
    #[argh(switch)]
    limit_loopback: bool,
    /// seconds between keep-alive pings; a session that misses one is dropped (default 30)
    #[argh(option, default = "30")]
    ping_interval: u64,
    /// the relay's secret key (hex); default: from -c, else a fresh key each start
    #[argh(option)]
    sk: Option<String>,
    /// take the key from this skywire-config.json
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// log level: error, warn, info, debug, trace (default info)
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
}

impl ServerCmd {
    /// Runs the relay until killed.
    pub fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        for (name, v) in [
            ("--max-sessions", self.max_sessions),
            ("--max-handshakes", self.max_handshakes),
            ("--max-handshakes-per-addr", self.max_handshakes_per_addr),
            ("--max-sessions-per-addr", self.max_sessions_per_addr),
            ("--handshake-rate", self.handshake_rate as usize),
            ("--handshake-burst", self.handshake_burst as usize),
        ] {
            if v == 0 {
                return Err(CmdError::usage(format!("{name} must be at least 1")));
            }
        }
        let net = resolve(&self.sk, &self.config, &None, &[])?;
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let listener = future::block_on(TcpListener::bind(bind_addr(&self.addr))).map_err(|e| {
            CmdError::fail(format!(
                "cannot listen on {}: {e}; pick another --addr",
                self.addr
            ))
        })?;
        let local = listener.local_addr()?;
        let public = match &self.public_addr {
            Some(p) => p.clone(),
            None if local.ip().is_unspecified() => {
                log::warn!(
                    "listening on every interface: publishing 127.0.0.1:{}; set --public-addr",
                    local.port()
                );
                format!("127.0.0.1:{}", local.port())
            }
            None => local.to_string(),
        };
        crate::dmsg::entry::check_addr(&public)
            .map_err(|e| CmdError::usage(format!("--public-addr: {e}")))?;
        let mut disc_url = self.disc.clone();
        if let Some(addr) = &self.disc_addr {
            let (l, handler, flusher) =
                super::netflags::discovery_service(addr, None, DiscLimits::default())?;
            let url = format!("http://{}", l.local_addr()?);
            ex.spawn_boxed(flusher).detach();
            ex.spawn_boxed(server::serve(l, ex.clone(), handler, Limits::default()))
                .detach();
            disc_url.get_or_insert(url);
        }
        let disc_url = disc_url.unwrap_or_else(|| DEFAULT_DISC.to_string());
        let disc =
            DiscClient::new(&disc_url).map_err(|e| CmdError::usage(format!("--disc: {e}")))?;
        let limits = RelayLimits {
            max_sessions: self.max_sessions,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_addr: self.max_handshakes_per_addr,
            max_sessions_per_addr: self.max_sessions_per_addr,
            handshake_rate: self.handshake_rate,
            handshake_burst: self.handshake_burst,
            limit_loopback: self.limit_loopback,
            ..RelayLimits::default()
        };
        let cfg = RelayConfig {
            limits,
            ping_interval: Duration::from_secs(self.ping_interval.max(1)),
            ping_timeout: Duration::from_secs(self.ping_interval.max(1)),
            public_addr: public.clone(),
            ..RelayConfig::default()
        };
        let relay = Relay::new(net.keys, cfg, ex.clone());
        say(&format!("relay {} listening on {local}", relay.pk()));
        if self.disc_addr.is_some() {
            say(&format!("discovery listening on {disc_url}"));
        }
        say(&format!(
            "clients join with: --relay {}@{public} --disc {disc_url}",
            relay.pk()
        ));
        ex.spawn_boxed(relay.clone().publish_loop(disc)).detach();
        async_io::block_on(ex.run(relay.serve(listener)))
            .map_err(|e| CmdError::fail(format!("relay stopped: {e}")))
    }
}

dmsg_tool! {
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "cat")]
    /// connect stdin/stdout to a peer's port, like netcat: `cat <pk>:<port>` or `cat -l <port>`.
    pub struct CatCmd {
        /// the peer, <pk>:<port>
        #[argh(positional)]
        target: Option<String>,
        /// listen on this port and serve one connection instead of dialling
        #[argh(option, short = 'l')]
        listen: Option<u16>,
    }
}

impl CatCmd {
    /// Runs it.
    pub fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        let net = self.net()?;
        run_async(|ex| {
            let client = start_client(&ex, net)?;
            async_io::block_on(ex.run(async {
                client
                    .wait_ready(READY)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                let stream = match (&self.target, self.listen) {
                    (None, Some(port)) => {
                        let l = client
                            .listen(port)
                            .map_err(|e| CmdError::fail(e.to_string()))?;
                        say_err(&format!("listening on {}:{port}", client.pk()));
                        let s = l
                            .accept()
                            .await
                            .map_err(|e| CmdError::fail(e.to_string()))?;
                        say_err(&format!("connection from {}:{}", s.remote, s.remote_port));
                        s
                    }
                    (Some(t), None) => {
                        let (pk, port) = parse_target(t, None)?;
                        client
                            .dial(&pk, port)
                            .await
                            .map_err(|e| CmdError::fail(e.to_string()))?
                    }
                    _ => {
                        return Err(CmdError::usage(
                            "give either <pk>:<port> to dial or -l <port> to listen",
                        ));
                    }
                };
                // Ends the client's sessions too, gracefully, so that our last bytes arrive.
                super::cat::transfer(stream, &client).await
            }))
        })
    }
}

dmsg_tool! {
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "probe")]
    /// check that a peer's port is reachable and measure the stream-open round trip.
    pub struct ProbeCmd {
        /// the peer, <pk>:<port>
        #[argh(positional)]
        target: String,
        /// stream opens to time after the first (default 5)
        #[argh(option, default = "5")]
        count: u32,
        /// print JSON
        #[argh(switch)]
        json: bool,
    }
}

impl ProbeCmd {
    /// Runs it.
    pub fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        let (pk, port) = parse_target(&self.target, None)?;
        let net = self.net()?;
        run_async(|ex| {
            let client = start_client(&ex, net)?;
            async_io::block_on(ex.run(async {
                client
                    .wait_ready(READY)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                let t0 = Instant::now();
                let first = client.dial(&pk, port).await;
                let first_us = t0.elapsed().as_micros() as u64;
                drop(first.map_err(|e| CmdError::fail(format!("unreachable: {e}")))?);
                let mut rtts = Vec::new();
                for _ in 0..self.count {
                    let t = Instant::now();
                    let s = client
                        .dial(&pk, port)
                        .await
                        .map_err(|e| CmdError::fail(format!("stream open failed: {e}")))?;
                    rtts.push(t.elapsed().as_micros() as u64);
                    drop(s);
                }
                crate::sort::sort(&mut rtts);
                let (min, max) = (
                    rtts.first().copied().unwrap_or(0),
                    rtts.last().copied().unwrap_or(0),
                );
                let avg = rtts.iter().sum::<u64>() / rtts.len().max(1) as u64;
                let us = Out::U64;
                let ms = |v: u64| decimal(v, 1000, 2);
                if self.json {
                    let o = Ordered::new()
                        .field("pk", Out::Str(pk.to_hex()))
                        .field("port", Out::U64(u64::from(port)))
                        .field("reachable", Out::Bool(true))
                        .field("first_open_us", us(first_us))
                        .field("open_min_us", us(min))
                        .field("open_avg_us", us(avg))
                        .field("open_max_us", us(max));
                    super::print_out(&o.to_pretty())?;
                } else {
                    say(&format!(
                        "{pk}:{port} reachable; first open {} ms (channel + handshake), \
                         then {} opens: min {} / avg {} / max {} ms",
                        ms(first_us),
                        rtts.len(),
                        ms(min),
                        ms(avg),
                        ms(max)
                    ));
                }
                Ok(())
            }))
        })
    }
}

dmsg_tool! {
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "curl")]
    /// HTTP/1.1 over a dmsg stream: `curl dmsg://<pk>:<port>/path`.
    pub struct CurlCmd {
        /// the URL, dmsg://<pk>:<port>/path (port 80 when left out)
        #[argh(positional)]
        url: String,
        /// request method (default GET, or POST with -d)
        #[argh(option, short = 'X')]
        method: Option<String>,
        /// request body (JSON)
        #[argh(option, short = 'd')]
        data: Option<String>,
        /// print the status line and headers too
        #[argh(switch, short = 'i')]
        include: bool,
    }
}

impl CurlCmd {
    /// Runs it.
    pub fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        let rest = self.url.strip_prefix("dmsg://").ok_or_else(|| {
            CmdError::usage(format!("{}: expected dmsg://<pk>:<port>/path", self.url))
        })?;
        let (target, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (pk, port) = parse_target(target, Some(80))?;
        let net = self.net()?;
        let method = self
            .method
            .clone()
            .unwrap_or_else(|| if self.data.is_some() { "POST" } else { "GET" }.into());
        run_async(|ex| {
            let client = start_client(&ex, net)?;
            async_io::block_on(ex.run(async {
                client
                    .wait_ready(READY)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                let mut s = client
                    .dial(&pk, port)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                let host = format!("{pk}.dmsg:{port}");
                let resp = request_on(
                    &mut s,
                    &method,
                    &host,
                    path,
                    self.data.as_deref().map(str::as_bytes),
                    64 * 1024 * 1024,
                )
                .await
                .map_err(|e| CmdError::fail(e.to_string()))?;
                let mut out = std::io::stdout().lock();
                if self.include {
                    let _ = write!(out, "HTTP/1.1 {}\r\n", resp.status);
                    for (k, v) in &resp.headers {
                        let _ = write!(out, "{k}: {v}\r\n");
                    }
                    let _ = write!(out, "\r\n");
                }
                let _ = out.write_all(&resp.body);
                let _ = out.flush();
                drop(s);
                client.shutdown(Duration::from_secs(5)).await;
                if resp.status >= 400 {
                    return Err(CmdError::fail(format!(
                        "{} answered {}",
                        self.url, resp.status
                    )));
                }
                Ok(())
            }))
        })
    }
}

dmsg_tool! {
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "iperf")]
    /// bulk throughput over dmsg: `iperf -s` serves, `iperf <pk>` measures.
    pub struct IperfCmd {
        /// the server, <pk> or <pk>:<port>
        #[argh(positional)]
        target: Option<String>,
        /// run the server
        #[argh(switch, short = 's')]
        server: bool,
        /// port (default 5201)
        #[argh(option, short = 'p', default = "5201")]
        port: u16,
        /// seconds to send (default 5)
        #[argh(option, short = 't', default = "5")]
        time: u64,
        /// send this many bytes instead of for a time
        #[argh(option, short = 'n')]
        bytes: Option<u64>,
        /// print the summary as JSON
        #[argh(switch)]
        json: bool,
    }
}

/// CPU milliseconds (user + system) this process has used, from /proc/self/stat (0 where
/// there is no /proc).
fn own_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are in clock ticks of 1/100 s on Linux.
    (t(11) + t(12)) * 10
}

async fn iperf_serve(mut s: DmsgStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let t0 = Instant::now();
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) => {
                say_err(&format!("iperf: {}: {e}", s.remote));
                return;
            }
        }
    }
    let us = t0.elapsed().as_micros() as u64;
    say_err(&format!(
        "iperf: {} sent {} MiB in {} s = {} MiB/s",
        s.remote,
        decimal(got, 1 << 20, 1),
        decimal(us, 1_000_000, 2),
        mib_per_s(got, us)
    ));
    let _ = s.write_all(&got.to_be_bytes()).await;
    let _ = s.close().await;
}

impl IperfCmd {
    /// Runs it.
    pub fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        let net = self.net()?;
        run_async(|ex| {
            let client = start_client(&ex, net)?;
            let ex2 = ex.clone();
            async_io::block_on(ex.run(async {
                client
                    .wait_ready(READY)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                if self.server {
                    let l = client
                        .listen(self.port)
                        .map_err(|e| CmdError::fail(e.to_string()))?;
                    say(&format!("iperf server on {}:{}", client.pk(), self.port));
                    loop {
                        let s = l
                            .accept()
                            .await
                            .map_err(|e| CmdError::fail(e.to_string()))?;
                        ex2.spawn_boxed(iperf_serve(s)).detach();
                    }
                }
                let target = self
                    .target
                    .as_deref()
                    .ok_or_else(|| CmdError::usage("give the server's <pk>, or -s to serve"))?;
                let (pk, port) = parse_target(target, Some(self.port))?;
                let mut s = client
                    .dial(&pk, port)
                    .await
                    .map_err(|e| CmdError::fail(e.to_string()))?;
                let buf = vec![0u8; 64 * 1024];
                let t0 = Instant::now();
                let mut sent = 0u64;
                let mut last = Instant::now();
                let limit = Duration::from_secs(self.time);
                loop {
                    if let Some(n) = self.bytes {
                        if sent >= n {
                            break;
                        }
                    } else if t0.elapsed() >= limit {
                        break;
                    }
                    let n = match self.bytes {
                        Some(total) => (total - sent).min(buf.len() as u64) as usize,
                        None => buf.len(),
                    };
                    s.write_all(&buf[..n])
                        .await
                        .map_err(|e| CmdError::fail(format!("send failed: {e}")))?;
                    sent += n as u64;
                    if last.elapsed() >= Duration::from_secs(1) {
                        last = Instant::now();
                        eprint!(
                            "\r{:>8} MiB sent, {:>8} MiB/s",
                            decimal(sent, 1 << 20, 1),
                            mib_per_s(sent, t0.elapsed().as_micros() as u64)
                        );
                    }
                }
                s.close().await.map_err(|e| CmdError::fail(e.to_string()))?;
                let mut ack = [0u8; 8];
                s.read_exact(&mut ack)
                    .await
                    .map_err(|e| CmdError::fail(format!("no confirmation from the server: {e}")))?;
                let us = (t0.elapsed().as_micros() as u64).max(1);
                let confirmed = u64::from_be_bytes(ack);
                say_err("");
                if self.json {
                    let o = Ordered::new()
                        .field("bytes_sent", Out::U64(sent))
                        .field("bytes_confirmed", Out::U64(confirmed))
                        .field("seconds_ms", Out::U64(us / 1000))
                        .field(
                            "mib_per_s",
                            Out::U64(confirmed.saturating_mul(1_000_000) / (us << 20)),
                        )
                        .field("cpu_ms", Out::U64(own_cpu_ms()));
                    super::print_out(&o.to_pretty())?;
                } else {
                    say(&format!(
                        "sent {} MiB in {} s: {} MiB/s ({} Mbit/s); the server confirmed {} bytes",
                        decimal(sent, 1 << 20, 1),
                        decimal(us, 1_000_000, 2),
                        mib_per_s(confirmed, us),
                        decimal(confirmed.saturating_mul(8), us, 0),
                        confirmed
                    ));
                }
                drop(s);
                client.shutdown(Duration::from_secs(5)).await;
                if confirmed != sent {
                    return Err(CmdError::fail(format!(
                        "the server confirmed {confirmed} of {sent} bytes"
                    )));
                }
                Ok(())
            }))
        })
    }
}

/// `bytes` moved in `us` microseconds, as MiB/s with one decimal.
fn mib_per_s(bytes: u64, us: u64) -> String {
    decimal(bytes.saturating_mul(1_000_000), us.max(1) << 20, 1)
}
