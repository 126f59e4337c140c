//! The VPN apps' network settings: the commands they run (`ip`, `nft` or `iptables`), what they read
//! (`/proc`), and the **undo journal** that puts everything back.
//!
//! Every change to the machine is recorded in the journal *before* it is made
//! ([`Journal::record`], one line per step, synced), as the step that undoes it. A clean
//! exit replays the journal backwards and removes it; so does the next start after a crash
//! (`kill -9`, power loss), before it changes anything. What the kernel undoes by itself —
//! a TUN device with its addresses and routes, gone with the process — is not journalled.
//!
//! Commands run as child processes whose output is read through the reactor and whose exit
//! is polled with a timer, so a slow `ip` never blocks the executor; each gets
//! [`CMD_TIMEOUT`].

use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::AsyncReadExt;

use super::proto::Net4;

/// How long one command may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `argv` (with `input` on its stdin) and returns its stdout, or a one-line error
/// naming the command and what it printed.
pub async fn run(argv: &[&str], input: Option<&str>) -> Result<String, String> {
    let shown = argv.join(" ");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let pkg = match argv[0] {
                "ip" => " (Debian: apt install iproute2)",
                "nft" => " (Debian: apt install nftables)",
                "iptables" => " (Debian: apt install iptables)",
                _ => "",
            };
            format!("`{}` is not installed{pkg}", argv[0])
        } else {
            format!("{shown}: {e}")
        }
    })?;
    if let (Some(mut sin), Some(text)) = (child.stdin.take(), input) {
        // Rulesets are a few hundred bytes: far below a pipe's buffer, so this never waits.
        sin.write_all(text.as_bytes())
            .map_err(|e| format!("{shown}: {e}"))?;
    }
    let (out, err) = match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => (o, e),
        _ => return Err(format!("{shown}: no pipes")),
    };
    let deadline = Instant::now() + CMD_TIMEOUT;
    let outputs = future::zip(read_pipe(out), read_pipe(err));
    let timeout = async {
        Timer::at(deadline).await;
        (Err("timed out".to_string()), Ok(String::new()))
    };
    let (stdout, stderr) = future::or(outputs, timeout).await;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                Timer::after(Duration::from_millis(2)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown}: timed out after {} s",
                    CMD_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    let stdout = stdout.map_err(|e| format!("{shown}: {e}"))?;
    if !status.success() {
        let stderr = stderr.unwrap_or_default();
        let line = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "{shown}: {status}{}{line}",
            if line.is_empty() { "" } else { ": " }
        ));
    }
    Ok(stdout)
}

/// Reads a child's pipe to its end through the reactor.
async fn read_pipe<P: std::os::fd::AsFd + std::io::Read + async_io::IoSafe>(
    p: P,
) -> Result<String, String> {
    let mut a = Async::new(p).map_err(|e| e.to_string())?;
    let mut s = String::new();
    a.read_to_string(&mut s).await.map_err(|e| e.to_string())?;
    Ok(s)
}

/// One step that undoes a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Run this command.
    Cmd(Vec<String>),
    /// Write this value to this file (a sysctl).
    Write(String, String),
    /// Copy the backup (second) over the file (first), then remove the backup.
    Restore(String, String),
}

impl Undo {
    /// A command step from its words.
    pub fn cmd(argv: &[&str]) -> Undo {
        Undo::Cmd(argv.iter().map(|s| s.to_string()).collect())
    }

    fn encode(&self) -> Result<String, String> {
        let words: Vec<&str> = match self {
            Undo::Cmd(v) => std::iter::once("cmd")
                .chain(v.iter().map(String::as_str))
                .collect(),
            Undo::Write(p, v) => vec!["write", p, v],
            Undo::Restore(p, b) => vec!["restore", p, b],
        };
        if words.iter().any(|w| w.contains(['\t', '\n'])) {
            return Err(format!("undo step {self:?}: a tab or newline in a word"));
        }
        Ok(words.join("\t"))
    }

    fn decode(line: &str) -> Option<Undo> {
        let mut w = line.split('\t');
        match w.next()? {
            "cmd" => {
                let v: Vec<String> = w.map(String::from).collect();
                (!v.is_empty()).then_some(Undo::Cmd(v))
            }
            "write" => Some(Undo::Write(w.next()?.into(), w.next()?.into())),
            "restore" => Some(Undo::Restore(w.next()?.into(), w.next()?.into())),
            _ => None,
        }
    }

    async fn apply(&self) -> Result<(), String> {
        match self {
            Undo::Cmd(v) => {
                let argv: Vec<&str> = v.iter().map(String::as_str).collect();
                run(&argv, None).await.map(|_| ())
            }
            Undo::Write(p, v) => std::fs::write(p, v).map_err(|e| format!("write {p}: {e}")),
            Undo::Restore(p, b) => {
                let data = std::fs::read(b).map_err(|e| format!("read {b}: {e}"))?;
                std::fs::write(p, data).map_err(|e| format!("write {p}: {e}"))?;
                let _ = std::fs::remove_file(b);
                Ok(())
            }
        }
    }
}

/// The undo journal of one app (`<state_dir>/vpn/<app>.undo`).
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal of `app` under `state_dir`.
    pub fn new(state_dir: &Path, app: &str) -> Journal {
        Journal {
            path: state_dir.join("vpn").join(format!("{app}.undo")),
        }
    }

    /// Where a backup file named `name` goes (beside the journal).
    pub fn backup_path(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// Records `step` (appended and synced) before the change it undoes is made.
    pub fn record(&self, step: &Undo) -> Result<(), String> {
        let line = step.encode()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{line}")
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Undoes every recorded step, newest first, and removes the journal. Returns how many
    /// steps there were; a step that fails is logged and the rest still run.
    pub async fn replay(&self) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return 0;
        };
        let steps: Vec<Undo> = text.lines().filter_map(Undo::decode).collect();
        for s in steps.iter().rev() {
            if let Err(e) = s.apply().await {
                log::warn!("vpn: undo {s:?}: {e}");
            }
        }
        let _ = std::fs::remove_file(&self.path);
        steps.len()
    }
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// The interface.
    pub dev: String,
    /// Its address and prefix.
    pub net: Net4,
}

/// Parses `ip -4 -o addr show`: one line per address, `N: dev inet a.b.c.d/p ...`.
pub fn parse_addrs(text: &str) -> Vec<IfAddr> {
    let mut v = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(i)) = (w.get(1), w.iter().position(|&x| x == "inet")) else {
            continue;
        };
        let Some((a, p)) = w.get(i + 1).and_then(|s| s.split_once('/')) else {
            continue;
        };
        if let (Ok(addr), Ok(prefix)) = (a.parse::<Ipv4Addr>(), p.parse::<u8>())
            && prefix <= 32
        {
            v.push(IfAddr {
                dev: dev.trim_end_matches(':').to_string(),
                net: Net4 { addr, prefix },
            });
        }
    }
    v
}

/// The machine's IPv4 addresses.
pub async fn addrs() -> Result<Vec<IfAddr>, String> {
    Ok(parse_addrs(
        &run(&["ip", "-4", "-o", "addr", "show"], None).await?,
    ))
}

/// A route as `ip route get` reports it: the gateway (if any) and the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVia {
    /// The next hop, if not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// The device.
    pub dev: String,
}

/// Parses the words after `via` and `dev` in `ip route` output (the first line).
pub fn parse_route(text: &str) -> Option<RouteVia> {
    let w: Vec<&str> = text.lines().next()?.split_whitespace().collect();
    let after = |k: &str| w.iter().position(|&x| x == k).and_then(|i| w.get(i + 1));
    Some(RouteVia {
        gateway: after("via").and_then(|g| g.parse().ok()),
        dev: after("dev")?.to_string(),
    })
}

/// How this machine reaches `ip` now.
pub async fn route_get(ip: Ipv4Addr) -> Result<Option<RouteVia>, String> {
    Ok(parse_route(
        &run(&["ip", "-4", "route", "get", &ip.to_string()], None).await?,
    ))
}

/// The device of the default route, if there is one.
pub async fn default_dev() -> Result<Option<String>, String> {
    Ok(parse_route(&run(&["ip", "-4", "route", "show", "default"], None).await?).map(|r| r.dev))
}

/// The remote IPv4 addresses of this process's TCP connections (listening sockets and
/// loopback peers left out), from `/proc/self/fd` and `/proc/self/net/tcp{,6}`: the relays,
/// transports and TCP-mode peers the process is talking to.
pub fn tcp_peers() -> Vec<Ipv4Addr> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for e in dir.flatten() {
            if let Ok(t) = std::fs::read_link(e.path())
                && let Some(n) = t
                    .to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(n.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for f in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for a in parse_proc_tcp(&text, &inodes) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// The remote IPv4 addresses (plain or v4-mapped) of the sockets in a `/proc/net/tcp{,6}`
/// table whose inode is in `inodes`, except listening sockets and loopback peers.
pub fn parse_proc_tcp(text: &str, inodes: &HashSet<String>) -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(rem), Some(st), Some(inode)) = (w.get(2), w.get(3), w.get(9)) else {
            continue;
        };
        if *st == "0A" || !inodes.contains(*inode) {
            continue;
        }
        let Some((hex, _port)) = rem.split_once(':') else {
            continue;
        };
        // Each 32-bit word is printed as the native-endian value of network-order bytes.
        let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
        let ip = match hex.len() {
            8 => word(hex).map(Ipv4Addr::from),
            32 => {
                let ws: Option<Vec<[u8; 4]>> =
                    (0..4).map(|i| word(&hex[i * 8..i * 8 + 8])).collect();
                ws.and_then(|ws| {
                    let mapped = ws[0] == [0; 4] && ws[1] == [0; 4] && ws[2] == [0, 0, 0xff, 0xff];
                    mapped.then(|| Ipv4Addr::from(ws[3]))
                })
            }
            _ => None,
        };
        if let Some(ip) = ip
            && !ip.is_loopback()
            && !ip.is_unspecified()
            && !v.contains(&ip)
        {
            v.push(ip);
        }
    }
    v
}

/// Resolves `host:port` (or a bare host) to its IPv4 addresses; names that do not resolve
/// give none.
pub fn resolve4(hostport: &str) -> Vec<Ipv4Addr> {
    use std::net::ToSocketAddrs;
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:0")
    };
    with_port
        .to_socket_addrs()
        .map(|it| {
            it.filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v) => Some(v),
                _ => None,
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Reads a sysctl file (trimmed).
pub fn read_sysctl(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("read {path}: {e}"))
}

/// Sets a sysctl to `value`, journalling its old value first; nothing is written or
/// journalled if it already has that value. A read-only `/proc/sys` (systemd's
/// `ProtectKernelTunables`) is reported with what to do instead.
pub fn set_sysctl(j: &Journal, path: &str, value: &str) -> Result<(), String> {
    let old = read_sysctl(path)?;
    if old == value {
        return Ok(());
    }
    j.record(&Undo::Write(path.into(), old))?;
    std::fs::write(path, value).map_err(|e| {
        let key = path.trim_start_matches("/proc/sys/").replace('/', ".");
        format!(
            "cannot set {key}={value} ({e}): set it in /etc/sysctl.d/ (e.g. echo '{key}={value}' \
             > /etc/sysctl.d/90-skywire-vpn.conf && sysctl --system) and start again"
        )
    })
}

/// Loads an nftables ruleset that creates table `family name`, journalling its deletion
/// first; a table of that name left by an earlier run is deleted before.
pub async fn nft_table(j: &Journal, family: &str, name: &str, body: &str) -> Result<(), String> {
    let _ = run(&["nft", "delete", "table", family, name], None).await;
    j.record(&Undo::cmd(&["nft", "delete", "table", family, name]))?;
    let text = format!("table {family} {name} {{\n{body}}}\n");
    run(&["nft", "-f", "-"], Some(&text)).await.map(|_| ())
}

/// Whether `prog` is an executable file in a directory of `$PATH` (what `Command` would
/// run).
pub fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// One iptables chain of ours, for a machine with iptables and no `nft`: its table, its
/// name, the built-in chain that jumps to it first, and its rules (each the words after
/// `-A <name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptChain {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// Our chain.
    pub name: &'static str,
    /// The built-in chain it hangs from (`POSTROUTING`, `FORWARD`, `INPUT`).
    pub hook: &'static str,
    /// Its rules, in order.
    pub rules: Vec<Vec<String>>,
}

/// Creates chain `c` with its rules and makes it the first rule of its hook, journalling
/// each undo step (unhook, flush, delete) before the change it undoes; a chain of that name
/// left by an earlier run is unhooked and removed first. `-w 5` waits for the xtables lock
/// (iptables-legacy) instead of failing at once.
pub async fn iptables_chain(j: &Journal, c: &IptChain) -> Result<(), String> {
    let (t, name, hook) = (c.table, c.name, c.hook);
    let ipt = |args: &[&'static str]| {
        let mut a = vec!["iptables", "-w", "5", "-t", t];
        a.extend_from_slice(args);
        a
    };
    // Left hooked by a run whose journal is gone: at most a few jumps to remove.
    for _ in 0..8 {
        if run(&ipt(&["-D", hook, "-j", name]), None).await.is_err() {
            break;
        }
    }
    let _ = run(&ipt(&["-F", name]), None).await;
    let _ = run(&ipt(&["-X", name]), None).await;
    j.record(&Undo::cmd(&ipt(&["-X", name])))?;
    run(&ipt(&["-N", name]), None).await?;
    j.record(&Undo::cmd(&ipt(&["-F", name])))?;
    for r in &c.rules {
        let mut a = ipt(&["-A", name]);
        a.extend(r.iter().map(String::as_str));
        run(&a, None).await?;
    }
    j.record(&Undo::cmd(&ipt(&["-D", hook, "-j", name])))?;
    run(&ipt(&["-I", hook, "1", "-j", name]), None)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_lines_round_trip() {
        for u in [
            Undo::cmd(&["ip", "route", "del", "10.0.0.1/32"]),
            Undo::Write("/proc/sys/net/ipv4/ip_forward".into(), "0".into()),
            Undo::Restore("/etc/resolv.conf".into(), "/var/lib/x.bak".into()),
        ] {
            assert_eq!(Undo::decode(&u.encode().unwrap()), Some(u));
        }
        assert!(Undo::cmd(&["a\tb"]).encode().is_err());
        assert_eq!(Undo::decode("nonsense\tx"), None);
        assert_eq!(Undo::decode("cmd"), None);
    }

    #[test]
    fn journal_replays_newest_first_and_goes() {
        let dir = std::env::temp_dir().join(format!("vpn-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::new(&dir, "t");
        let f = dir.join("value");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&f, "3").unwrap();
        let p = f.to_str().unwrap().to_string();
        j.record(&Undo::Write(p.clone(), "1".into())).unwrap();
        j.record(&Undo::Write(p.clone(), "2".into())).unwrap();
        assert_eq!(future::block_on(j.replay()), 2);
        // The oldest step ran last: the file holds the value from before the first change.
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1");
        assert_eq!(future::block_on(j.replay()), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ip_output_parsed() {
        let a = parse_addrs(
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
             2: eth0    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth0\\ x\n\
             3: bad    inet nope/24\n",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].dev, "eth0");
        assert_eq!(a[1].net.to_string(), "192.168.1.0/24");
        assert_eq!(
            parse_route("10.99.3.1 via 10.99.1.1 dev veth0 src 10.99.1.2 uid 0 \n    cache \n"),
            Some(RouteVia {
                gateway: Some(Ipv4Addr::new(10, 99, 1, 1)),
                dev: "veth0".into()
            })
        );
        assert_eq!(
            parse_route("default dev eth0 proto static"),
            Some(RouteVia {
                gateway: None,
                dev: "eth0".into()
            })
        );
        assert_eq!(parse_route(""), None);
    }

    #[test]
    fn proc_tcp_parsed() {
        let ne = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {}:1F90 {}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 111 1\n\
             1: {}:C350 {}:1F90 01 00000000:00000000 00:00000000 00000000 0 0 222 1\n\
             2: {}:C351 {}:1F90 01 00000000:00000000 00:00000000 00000000 0 0 333 1\n\
             3: {}:C352 {}:1F90 01 00000000:00000000 00:00000000 00000000 0 0 444 1\n",
            ne([0, 0, 0, 0]),
            ne([0, 0, 0, 0]),
            ne([10, 0, 0, 2]),
            ne([10, 99, 3, 1]),
            ne([127, 0, 0, 1]),
            ne([127, 0, 0, 1]),
            ne([10, 0, 0, 2]),
            ne([10, 99, 3, 9]),
        );
        let ours: HashSet<String> = ["111", "222", "333"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // 111 listens, 333 is loopback, 444 is another process's.
        assert_eq!(
            parse_proc_tcp(&text, &ours),
            vec![Ipv4Addr::new(10, 99, 3, 1)]
        );
        let mapped = format!(
            "h\n0: {}:1 0000000000000000{}{}:1F90 01 00000000:00000000 00:00000000 00000000 0 0 222 1\n",
            "0".repeat(32),
            ne([0, 0, 0xff, 0xff]),
            ne([10, 99, 3, 1])
        );
        assert_eq!(
            parse_proc_tcp(&mapped, &ours),
            vec![Ipv4Addr::new(10, 99, 3, 1)]
        );
    }
}
