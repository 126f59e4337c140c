//! `skywire cli pty …`: the remote shell's client side and its whitelist.

use argh::FromArgs;

use super::visor::{call, field};
use super::{CmdError, CmdResult, say};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pty")]
/// remote shells: the whitelist of PKs allowed in.
pub struct PtyCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    #[argh(subcommand)]
    cmd: PtySub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum PtySub {
    Whitelist(WhitelistCmd),
}

impl PtyCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        match self.cmd {
            PtySub::Whitelist(c) => c.run(&self.rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "whitelist")]
/// the PKs allowed a shell on this visor (besides its own PK and its hypervisors):
/// `ls`, `add <pk>`, `rm <pk>`. Changes apply at once and are saved to the config file.
struct WhitelistCmd {
    /// ls, add or rm
    #[argh(positional)]
    action: String,
    /// the PK (add, rm)
    #[argh(positional)]
    pk: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl WhitelistCmd {
    fn run(self, rpc: &Option<String>) -> CmdResult {
        let pk = || -> Result<String, CmdError> {
            let pk = self.pk.clone().ok_or_else(|| {
                CmdError::usage(format!("whitelist {}: give the PK", self.action))
            })?;
            crate::crypto::PublicKey::from_hex(&pk)
                .map_err(|e| CmdError::usage(format!("{pk}: {e}")))?;
            Ok(pk)
        };
        let v = match self.action.as_str() {
            "ls" => call(rpc, "GET", "/v1/whitelist")?,
            "add" => call(rpc, "POST", &format!("/v1/whitelist/{}", pk()?))?,
            "rm" => call(rpc, "DELETE", &format!("/v1/whitelist/{}", pk()?))?,
            other => {
                return Err(CmdError::usage(format!(
                    "whitelist {other:?}: expected ls, add <pk> or rm <pk>"
                )));
            }
        };
        if self.json {
            say(&miniserde::json::to_string(&v));
            return Ok(());
        }
        let list = field(&v, "whitelist");
        if list.is_empty() {
            say("(empty: only this visor's own PK and its hypervisors are admitted)");
        }
        for pk in list.split(',').filter(|s| !s.is_empty()) {
            say(pk);
        }
        Ok(())
    }
}
