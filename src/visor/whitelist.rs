//! Edits of `pty.whitelist` from the RPC, saved to the config file on a thread of their own.
//!
//! Saving re-reads the config (so other edits to the file are kept), rewrites it and fsyncs
//! it: tens of milliseconds at a thousand entries, which on the executor thread stalled the
//! relay and the RPC. So the RPC hands each edit to one writer thread and awaits its answer;
//! the thread applies the edits waiting in its queue in order and saves once for all of them
//! (so edits are serialised and none is lost). Limits: at most [`MAX_PTY_WHITELIST`] keys
//! (an add beyond is refused, [`EditError::Full`]) and [`QUEUE`] edits waiting (more are
//! refused, [`EditError::Busy`]).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::config::{Config, MAX_PTY_WHITELIST};
use crate::app::SharedKeys;
use crate::crypto::PublicKey;

/// Edits that may wait for the writer thread.
pub const QUEUE: usize = 64;

/// Why an edit was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The list holds [`MAX_PTY_WHITELIST`] keys already.
    Full,
    /// [`QUEUE`] edits are waiting already.
    Busy,
    /// Loading or saving the config failed (the message says which file and why).
    Failed(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Full => write!(
                f,
                "pty.whitelist is full ({MAX_PTY_WHITELIST} keys); remove one first"
            ),
            EditError::Busy => write!(
                f,
                "{QUEUE} whitelist edits are waiting to be saved; try again shortly"
            ),
            EditError::Failed(m) => f.write_str(m),
        }
    }
}

type Outcome = Result<(), EditError>;

/// Where the writer thread puts one edit's outcome, and who to wake.
#[derive(Debug, Default)]
struct Reply(Mutex<(Option<Outcome>, Option<Waker>)>);

impl Reply {
    fn set(&self, r: Outcome) {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if s.0.is_some() {
                return;
            }
            s.0 = Some(r);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One edit on its way to the writer. Dropped unanswered (the thread is gone), it answers
/// [`EditError::Failed`], so no caller waits for ever.
#[derive(Debug)]
struct Job {
    pk: PublicKey,
    add: bool,
    reply: Arc<Reply>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.reply.set(Err(EditError::Failed(
            "the whitelist writer stopped".into(),
        )));
    }
}

/// The handle the RPC edits the whitelist through.
#[derive(Debug, Clone)]
pub struct WhitelistEditor {
    tx: SyncSender<Job>,
}

impl WhitelistEditor {
    /// Starts the writer thread for `config_file`; successful edits are also applied to
    /// `shared` (the list the running apps see).
    pub fn start(config_file: PathBuf, shared: SharedKeys) -> std::io::Result<WhitelistEditor> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("whitelist-writer".into())
            .stack_size(256 * 1024)
            .spawn(move || writer(rx, config_file, shared))?;
        Ok(WhitelistEditor { tx })
    }

    /// Adds (`add`) or removes `pk`, in the config file first, then in the running list.
    pub async fn edit(&self, pk: PublicKey, add: bool) -> Outcome {
        let reply = Arc::new(Reply::default());
        let job = Job {
            pk,
            add,
            reply: reply.clone(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                job.reply.set(Err(EditError::Busy));
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        futures_lite::future::poll_fn(|cx| {
            let mut s = reply.0.lock().unwrap_or_else(|p| p.into_inner());
            match s.0.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    s.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The writer thread: takes what is queued, applies it in order, saves once, answers all.
fn writer(rx: Receiver<Job>, file: PathBuf, shared: SharedKeys) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < QUEUE {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut cfg = match Config::load(&file) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                for j in &batch {
                    j.reply.set(Err(EditError::Failed(msg.clone())));
                }
                continue;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut changed = false;
        for j in &batch {
            let listed = cfg.pty_whitelist.contains(&j.pk);
            let r = match (j.add, listed) {
                (true, true) | (false, false) => Ok(()),
                (true, false) if cfg.pty_whitelist.len() >= MAX_PTY_WHITELIST => {
                    Err(EditError::Full)
                }
                (true, false) => {
                    cfg.pty_whitelist.push(j.pk);
                    changed = true;
                    Ok(())
                }
                (false, true) => {
                    cfg.pty_whitelist.retain(|k| *k != j.pk);
                    changed = true;
                    Ok(())
                }
            };
            outcomes.push(r);
        }
        if changed && let Err(e) = cfg.save(&file, true) {
            let msg = e.to_string();
            for j in &batch {
                j.reply.set(Err(EditError::Failed(msg.clone())));
            }
            continue;
        }
        for (j, r) in batch.iter().zip(&outcomes) {
            if r.is_ok() {
                log::info!(
                    "pty.whitelist: {} {}",
                    if j.add { "added" } else { "removed" },
                    j.pk
                );
            }
        }
        log::debug!(
            "pty.whitelist: {} edits saved, {} listed",
            batch.len(),
            cfg.pty_whitelist.len()
        );
        shared.set(cfg.pty_whitelist);
        for (j, r) in batch.iter().zip(outcomes) {
            j.reply.set(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use futures_lite::future::block_on;

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
        let ed = WhitelistEditor::start(file.clone(), shared.clone()).unwrap();
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
