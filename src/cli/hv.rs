//! `skywire cli visor hv password`: sets the hypervisor's web UI password (docs/hypervisor.md).

use std::path::PathBuf;

use argh::FromArgs;

use super::out::say;
use super::rpc::Rpc;
use super::{CmdError, CmdResult};
use crate::apps::hypervisor::auth;
use crate::visor::run::{self, VisorOptions};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "hv")]
/// the hypervisor web UI: its password.
pub struct HvCmd {
    #[argh(subcommand)]
    cmd: HvSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum HvSub {
    Password(PasswordCmd),
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "password")]
/// set the web UI password: asked twice on the terminal, or one line of stdin. A running
/// hypervisor takes it within 2 s and ends every session.
struct PasswordCmd {
    /// the password file (default <state dir>/hypervisor/password, the state directory of
    /// -c or --state-dir)
    #[argh(option, short = 'f')]
    file: Option<PathBuf>,
}

impl HvCmd {
    /// Runs it; `rpc` names the visor's config or state directory.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let HvSub::Password(c) = self.cmd;
        let file = match c.file {
            Some(f) => f,
            None => {
                let token = run::rpc_token_file(&VisorOptions {
                    config: rpc.config.clone(),
                    state_dir: rpc.state_dir.clone(),
                    ..VisorOptions::default()
                })
                .map_err(CmdError::fail)?;
                let dir = token.parent().map(PathBuf::from).unwrap_or_default();
                auth::password_file(&dir)
            }
        };
        let pw = super::prompt::read_password()?;
        if pw.chars().count() < auth::MIN_PASSWORD {
            return Err(CmdError::usage(format!(
                "the password is shorter than {} characters; nothing written",
                auth::MIN_PASSWORD
            )));
        }
        if pw.len() > 1024 {
            return Err(CmdError::usage(
                "the password is longer than 1024 bytes; nothing written",
            ));
        }
        let h = auth::PasswordHash::new(&pw).map_err(CmdError::fail)?;
        auth::save(&file, &h).map_err(CmdError::fail)?;
        say(&format!(
            "wrote {} (PBKDF2-SHA-512, {} rounds); a running hypervisor uses it within 2 s and \
             every open session ends",
            file.display(),
            auth::ITERATIONS
        ));
        Ok(())
    }
}
