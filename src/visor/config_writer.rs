//! Edits of the config file from the RPC (`pty.whitelist`, `launcher.apps[]`), saved on a
//! thread of their own.
//!
//! Saving re-reads the config (so other edits to the file are kept), rewrites it (0600,
//! atomically: `Config::save`) and fsyncs it: tens of milliseconds at a thousand whitelist
//! entries, which on the executor thread stalled the relay and the RPC. So the RPC hands each
//! edit to one writer thread and awaits its answer; the thread applies the edits waiting in
//! its queue in order and saves once for all of them (so edits are serialised and none is
//! lost), then, in the same order, runs each edit's commit step (what the running visor
//! takes from the saved config) and answers it. At most [`QUEUE`] edits wait; more are
//! refused ([`EditError::Busy`]).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::config::{Config, MAX_PTY_WHITELIST};

/// Edits that may wait for the writer thread.
pub const QUEUE: usize = 64;

/// Why an edit was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// `pty.whitelist` holds [`MAX_PTY_WHITELIST`] keys already.
    Full,
    /// [`QUEUE`] edits are waiting already.
    Busy,
    /// The edit is not valid (what is wrong).
    Invalid(String),
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
                "{QUEUE} config edits are waiting to be saved; try again shortly"
            ),
            EditError::Invalid(m) | EditError::Failed(m) => f.write_str(m),
        }
    }
}

/// An edit's outcome, once there is one, and who to wake for it.
type Slot<T> = (Option<Result<T, EditError>>, Option<Waker>);

/// Where the writer thread puts one edit's outcome.
struct Reply<T>(Mutex<Slot<T>>);

impl<T> Reply<T> {
    fn set(&self, r: Result<T, EditError>) {
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

/// One edit on the queue, its types erased.
trait Job: Send {
    /// Applies the edit to `cfg`; true when it changed it. A failing edit leaves `cfg` as it
    /// was and keeps its error for [`Job::finish`].
    fn apply(&mut self, cfg: &mut Config) -> bool;
    /// Answers: with the saved config (the commit step runs), or why loading or saving
    /// failed.
    fn finish(self: Box<Self>, saved: Result<&Config, &str>);
}

/// A typed edit: `apply` changes the config, `commit` takes the result into the running visor
/// and makes the answer.
struct Edit<T, A, C> {
    apply: Option<A>,
    commit: Option<C>,
    failed: Option<EditError>,
    reply: Arc<Reply<T>>,
}

impl<T, A, C> Job for Edit<T, A, C>
where
    T: Send,
    A: FnOnce(&mut Config) -> Result<bool, EditError> + Send,
    C: FnOnce(&Config) -> T + Send,
{
    fn apply(&mut self, cfg: &mut Config) -> bool {
        match self.apply.take().map(|f| f(cfg)) {
            Some(Ok(changed)) => changed,
            Some(Err(e)) => {
                self.failed = Some(e);
                false
            }
            None => false,
        }
    }

    fn finish(mut self: Box<Self>, saved: Result<&Config, &str>) {
        let r = match (self.failed.take(), saved) {
            (Some(e), _) => Err(e),
            (None, Err(m)) => Err(EditError::Failed(m.to_string())),
            (None, Ok(cfg)) => match self.commit.take() {
                Some(c) => Ok(c(cfg)),
                None => Err(EditError::Failed("edit answered twice (a bug)".into())),
            },
        };
        self.reply.set(r);
    }
}

/// Dropped unanswered (the thread is gone, the queue full), an edit answers
/// [`EditError::Failed`], so no caller waits for ever.
impl<T, A, C> Drop for Edit<T, A, C> {
    fn drop(&mut self) {
        self.reply
            .set(Err(EditError::Failed("the config writer stopped".into())));
    }
}

/// The handle the RPC edits the config file through. Cloning gives another handle to the
/// same thread.
#[derive(Clone)]
pub struct ConfigWriter {
    tx: SyncSender<Box<dyn Job>>,
}

impl std::fmt::Debug for ConfigWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWriter").finish_non_exhaustive()
    }
}

impl ConfigWriter {
    /// Starts the writer thread for `config_file`.
    pub fn start(config_file: PathBuf) -> std::io::Result<ConfigWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("config-writer".into())
            .stack_size(256 * 1024)
            .spawn(move || writer(rx, config_file))?;
        Ok(ConfigWriter { tx })
    }

    /// Edits the config file: `apply` changes the freshly loaded config (`Ok(true)`: it
    /// changed, so save; an error must leave the config as it was), and once the batch is
    /// saved `commit` runs on the writer thread with the saved config (in queue order, so
    /// running state is updated in the order of the edits) and makes the answer.
    pub async fn edit<T, A, C>(&self, apply: A, commit: C) -> Result<T, EditError>
    where
        T: Send + 'static,
        A: FnOnce(&mut Config) -> Result<bool, EditError> + Send + 'static,
        C: FnOnce(&Config) -> T + Send + 'static,
    {
        let reply = Arc::new(Reply(Mutex::new((None, None))));
        let job: Box<dyn Job> = Box::new(Edit {
            apply: Some(apply),
            commit: Some(commit),
            failed: None,
            reply: reply.clone(),
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                reply.set(Err(EditError::Busy));
                drop(job);
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
fn writer(rx: Receiver<Box<dyn Job>>, file: PathBuf) {
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
                for j in batch {
                    j.finish(Err(&msg));
                }
                continue;
            }
        };
        let mut changed = false;
        for j in &mut batch {
            changed |= j.apply(&mut cfg);
        }
        if changed && let Err(e) = cfg.save(&file, true) {
            let msg = e.to_string();
            for j in batch {
                j.finish(Err(&msg));
            }
            continue;
        }
        log::debug!("config: {} edits, saved: {changed}", batch.len());
        for j in batch {
            j.finish(Ok(&cfg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use futures_lite::future::block_on;

    #[test]
    fn a_failed_edit_changes_nothing_and_commits_see_the_saved_file() {
        let dir = std::env::temp_dir().join(format!("skywire-cw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        Config::with_keys(Keypair::from_seed(&[1; 32]))
            .save(&file, true)
            .unwrap();
        let w = ConfigWriter::start(file.clone()).unwrap();
        let r = block_on(w.edit(
            |_| Err::<bool, _>(EditError::Invalid("no".into())),
            |_| unreachable!(),
        ));
        assert_eq!(r, Err::<(), _>(EditError::Invalid("no".into())));
        let level = block_on(w.edit(
            |c| {
                c.local_path = "elsewhere".into();
                Ok(true)
            },
            |c| c.local_path.clone(),
        ));
        assert_eq!(level.as_deref(), Ok("elsewhere"));
        assert_eq!(Config::load(&file).unwrap().local_path, "elsewhere");
        std::fs::remove_file(&file).unwrap();
        let gone = block_on(w.edit(|_| Ok(true), |_| ()));
        assert!(matches!(gone, Err(EditError::Failed(m)) if m.contains("c.json")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
