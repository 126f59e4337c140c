//! Edits of `pty.whitelist` from the RPC, saved to the config file by the config writer
//! thread ([`ConfigWriter`](super::config_writer::ConfigWriter): re-read, edited, saved once
//! per batch, off the executor). Limits: at most [`MAX_PTY_WHITELIST`] keys (an add beyond is
//! refused, [`EditError::Full`]) and [`QUEUE`](super::config_writer::QUEUE) edits waiting
//! (more are refused, [`EditError::Busy`]).

use super::config::MAX_PTY_WHITELIST;
use super::config_writer::ConfigWriter;
pub use super::config_writer::EditError;
use crate::app::SharedKeys;
use crate::crypto::PublicKey;

/// The handle the RPC edits the whitelist through.
#[derive(Debug, Clone)]
pub struct WhitelistEditor {
    writer: ConfigWriter,
    shared: SharedKeys,
}

impl WhitelistEditor {
    /// Edits through `writer`; successful edits are also applied to `shared` (the list the
    /// running apps see).
    pub fn new(writer: ConfigWriter, shared: SharedKeys) -> WhitelistEditor {
        WhitelistEditor { writer, shared }
    }

    /// Adds (`add`) or removes `pk`, in the config file first, then in the running list.
    pub async fn edit(&self, pk: PublicKey, add: bool) -> Result<(), EditError> {
        let shared = self.shared.clone();
        self.writer
            .edit(
                move |cfg| {
                    let listed = cfg.pty_whitelist.contains(&pk);
                    match (add, listed) {
                        (true, true) | (false, false) => Ok(false),
                        (true, false) if cfg.pty_whitelist.len() >= MAX_PTY_WHITELIST => {
                            Err(EditError::Full)
                        }
                        (true, false) => {
                            cfg.pty_whitelist.push(pk);
                            Ok(true)
                        }
                        (false, true) => {
                            cfg.pty_whitelist.retain(|k| *k != pk);
                            Ok(true)
                        }
                    }
                },
                move |cfg| {
                    log::info!(
                        "pty.whitelist: {} {pk} ({} listed)",
                        if add { "added" } else { "removed" },
                        cfg.pty_whitelist.len()
                    );
                    shared.set(cfg.pty_whitelist.clone());
                },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::visor::config::Config;
    use futures_lite::future::block_on;
    use std::path::PathBuf;

    fn pk(i: u32) -> PublicKey {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        *Keypair::from_seed(&seed).public()
    }

    fn setup(name: &str, listed: u32) -> (PathBuf, SharedKeys, WhitelistEditor) {
        let dir = std::env::temp_dir().join(format!("skywire-wl-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        let mut cfg = Config::with_keys(Keypair::from_seed(&[1; 32]));
        cfg.pty_whitelist = (0..listed).map(pk).collect();
        cfg.save(&file, true).unwrap();
        let shared = SharedKeys::new(Vec::new());
        let writer = ConfigWriter::start(file.clone()).unwrap();
        let ed = WhitelistEditor::new(writer, shared.clone());
        (file, shared, ed)
    }

    #[test]
    fn the_cap_holds_and_the_file_and_the_running_list_agree() {
        let full = MAX_PTY_WHITELIST as u32;
        let (file, shared, ed) = setup("cap", full - 1);
        let new = pk(full + 1);
        assert_eq!(block_on(ed.edit(pk(full), true)), Ok(()));
        assert_eq!(block_on(ed.edit(new, true)), Err(EditError::Full));
        // Adding a listed key when full is not an add.
        assert_eq!(block_on(ed.edit(pk(3), true)), Ok(()));
        assert_eq!(block_on(ed.edit(pk(3), false)), Ok(()));
        assert_eq!(block_on(ed.edit(new, true)), Ok(()));
        let saved = Config::load(&file).unwrap().pty_whitelist;
        assert_eq!(saved.len(), MAX_PTY_WHITELIST);
        assert!(saved.contains(&new) && !saved.contains(&pk(3)));
        assert_eq!(shared.get(), saved);
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }

    #[test]
    fn concurrent_edits_are_all_kept() {
        let (file, shared, ed) = setup("concurrent", 0);
        let ex = async_executor::Executor::new();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let ed = ed.clone();
                ex.spawn(async move { ed.edit(pk(i), true).await })
            })
            .collect();
        block_on(ex.run(async {
            for t in tasks {
                assert_eq!(t.await, Ok(()));
            }
        }));
        let saved = Config::load(&file).unwrap().pty_whitelist;
        assert_eq!(saved.len(), 40);
        assert!((0..40).all(|i| saved.contains(&pk(i))));
        assert_eq!(shared.get().len(), 40);
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }
}
