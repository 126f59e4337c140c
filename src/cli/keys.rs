//! `skywire keygen` and `skywire config gen|check`.

use std::path::PathBuf;

use argh::FromArgs;

use super::{CmdError, CmdResult, print_line, print_out};
use crate::addr::{PkAddr, is_loopback};
use crate::crypto::{Keypair, PublicKey};
use crate::http::json::{self, Ordered, Out};
use crate::visor::config::{self, Config};

#[derive(FromArgs, Debug)]
/// Generate an Ed25519 key pair: print it, or write it to a 0600 file with -o.
#[argh(subcommand, name = "keygen")]
pub struct KeygenCmd {
    /// write {"pk","sk"} JSON to this file (mode 0600) instead of printing the secret
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
    /// overwrite an existing file
    #[argh(switch)]
    force: bool,
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
}

impl KeygenCmd {
    pub fn run(self) -> CmdResult {
        let kp = Keypair::generate()?;
        let pk = kp.public().to_hex();
        let doc = Ordered::new()
            .field("pk", Out::Str(pk.clone()))
            .field("sk", Out::Str(kp.secret_hex()));
        match self.output {
            Some(file) => {
                config::write_secret_file(&file, doc.to_pretty().as_bytes(), self.force)?;
                if self.json {
                    let out = Ordered::new()
                        .field("pk", Out::Str(pk))
                        .field("file", Out::Str(file.display().to_string()));
                    print_line(&out.to_compact())?;
                } else {
                    print_line(&format!("pk: {pk}"))?;
                    print_line(&format!(
                        "wrote the key pair to {} (mode 0600)",
                        file.display()
                    ))?;
                }
            }
            None if self.json => print_line(&doc.to_compact())?,
            None => {
                print_line(&format!("pk: {pk}"))?;
                print_line(&format!("sk: {}", kp.secret_hex()))?;
            }
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
/// Generate or check skywire-config.json.
#[argh(subcommand, name = "config")]
pub struct ConfigCmd {
    #[argh(subcommand)]
    cmd: ConfigSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum ConfigSub {
    Gen(ConfigGen),
    Check(ConfigCheck),
}

impl ConfigCmd {
    pub fn run(self) -> CmdResult {
        match self.cmd {
            ConfigSub::Gen(c) => c.run(),
            ConfigSub::Check(c) => c.run(),
        }
    }
}

#[derive(FromArgs, Debug)]
/// Write a new config with fresh keys and the defaults (mode 0600).
#[argh(subcommand, name = "gen")]
struct ConfigGen {
    /// output file (default skywire-config.json); "-" prints to stdout
    #[argh(option, short = 'o', default = "PathBuf::from(config::DEFAULT_FILE)")]
    output: PathBuf,
    /// overwrite an existing file (its keys are lost)
    #[argh(switch)]
    force: bool,
    /// join an existing network through this relay instead of hosting one: <pk>@<host>:<port>
    #[argh(option)]
    join: Vec<String>,
    /// discovery URL, e.g. http://192.168.1.10:9090 (default: none, host an embedded one)
    #[argh(option)]
    discovery: Option<String>,
    /// PK of a hypervisor allowed to manage this visor (repeatable); PK@HOST:PORT for a
    /// TCP-standalone one (`standalone hypervisor`), reached over TCP there
    #[argh(option)]
    hypervisor: Vec<String>,
    /// log level: error, warn, info, debug, trace
    #[argh(option)]
    log_level: Option<String>,
}

impl ConfigGen {
    fn run(self) -> CmdResult {
        let mut cfg = Config::generate()?;
        for j in &self.join {
            cfg.dmsg
                .servers
                .push(PkAddr::parse(j).map_err(|e| CmdError::usage(format!("--join: {e}")))?);
        }
        if let Some(d) = self.discovery {
            cfg.dmsg.discovery = d;
        }
        for h in &self.hypervisor {
            let bad = |e: String| CmdError::usage(format!("--hypervisor: {e}"));
            if h.contains('@') {
                let pa = PkAddr::parse(h).map_err(bad)?;
                cfg.hypervisor_addrs.push((pa.pk, pa.addr));
                cfg.hypervisors.push(pa.pk);
            } else {
                cfg.hypervisors
                    .push(PublicKey::from_hex(h).map_err(|e| bad(e.to_string()))?);
            }
        }
        if let Some(l) = self.log_level {
            cfg.log_level = config::LogLevel::parse(&l).ok_or_else(|| {
                CmdError::usage(format!(
                    "--log-level: {l:?} is not one of error, warn, info, debug, trace"
                ))
            })?;
        }
        // Validate what we are about to write exactly as a later load would.
        let text = cfg.to_json();
        Config::parse(&text).map_err(|e| CmdError::usage(format!("{e:?}")))?;
        if self.output.as_os_str() == "-" {
            print_out(&text)?;
            return Ok(());
        }
        cfg.save(&self.output, self.force)?;
        print_line(&format!("pk: {}", cfg.keys.public()))?;
        print_line(&format!("wrote {} (mode 0600)", self.output.display()))?;
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
/// Load a config, validate every field and print a summary.
#[argh(subcommand, name = "check")]
struct ConfigCheck {
    /// config file (default skywire-config.json)
    #[argh(option, short = 'c', default = "PathBuf::from(config::DEFAULT_FILE)")]
    config: PathBuf,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl ConfigCheck {
    fn run(self) -> CmdResult {
        let cfg = Config::load(&self.config)?;
        // The app plan is part of the config: unknown apps, bad arguments, cycles.
        let waves = crate::app::launcher::plan(crate::apps::APPS, &cfg.apps)
            .map_err(|e| CmdError::fail(format!("{}: {e}", self.config.display())))?;
        let mut warnings = Vec::new();
        if !is_loopback(&cfg.cli_addr) {
            warnings.push(format!(
                "cli_addr {} is not loopback: anyone who reaches it controls this visor",
                cfg.cli_addr
            ));
        }
        let network = if cfg.dmsg.discovery.is_empty() && cfg.dmsg.servers.is_empty() {
            "embedded relay + discovery".to_string()
        } else if cfg.dmsg.discovery.is_empty() {
            format!("{} relay(s) given directly", cfg.dmsg.servers.len())
        } else {
            format!("discovery {}", cfg.dmsg.discovery)
        };
        let state_dir = cfg.state_dir(&self.config).display().to_string();
        if self.json {
            let out = Ordered::new()
                .field("file", Out::Str(self.config.display().to_string()))
                .field("ok", Out::Bool(true))
                .field("pk", Out::Str(cfg.keys.public().to_hex()))
                .field("cli_addr", Out::Str(cfg.cli_addr.clone()))
                .field("network", Out::Str(network))
                .field("state_dir", Out::Str(state_dir))
                .field("hypervisors", Out::U64(cfg.hypervisors.len() as u64))
                .field("apps", Out::U64(cfg.apps.len() as u64))
                .field("warnings", json::str_array(warnings));
            print_line(&out.to_compact())?;
        } else {
            print_line(&format!("{}: ok", self.config.display()))?;
            print_line(&format!("  pk:          {}", cfg.keys.public()))?;
            print_line(&format!("  cli_addr:    {}", cfg.cli_addr))?;
            print_line(&format!("  network:     {network}"))?;
            print_line(&format!("  state dir:   {state_dir}"))?;
            print_line(&format!("  hypervisors: {}", cfg.hypervisors.len()))?;
            print_line(&format!("  apps:        {}", cfg.apps.len()))?;
            let mut by_wave: Vec<Vec<&str>> = Vec::new();
            for p in &waves {
                if by_wave.len() <= p.wave {
                    by_wave.resize(p.wave + 1, Vec::new());
                }
                by_wave[p.wave].push(p.def.name);
            }
            for (i, w) in by_wave.iter().enumerate() {
                print_line(&format!("  wave {}:      {}", i + 1, w.join(", ")))?;
            }
            for w in warnings {
                print_line(&format!("  warning: {w}"))?;
            }
        }
        Ok(())
    }
}
