//! How the RPC asks the visor to stop (`POST /v1/shutdown`, `POST /v1/restart`): a
//! [`Stopper`] the run loop waits on beside SIGINT/SIGTERM. The first request wins; the
//! shutdown is then the one a signal starts (`visor::run`).

use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// What the RPC asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Stop, exit 0.
    Shutdown,
    /// Stop, then run again (re-exec).
    Restart,
}

/// The handle both sides share. Cloning gives another handle.
#[derive(Debug, Clone, Default)]
pub struct Stopper(Arc<Mutex<(Option<StopKind>, Option<Waker>)>>);

impl Stopper {
    /// Asks for `kind`; `Err` with the stop asked for earlier, if there was one (that one
    /// stands).
    pub fn request(&self, kind: StopKind) -> Result<(), StopKind> {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = s.0 {
                return Err(k);
            }
            s.0 = Some(kind);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Waits until a stop is asked for.
    pub async fn wait(&self) -> StopKind {
        futures_lite::future::poll_fn(|cx| {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match s.0 {
                Some(k) => Poll::Ready(k),
                None => {
                    s.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_wins_and_wakes_the_waiter() {
        let s = Stopper::default();
        let ex = async_executor::Executor::new();
        let t = ex.spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        let s2 = s.clone();
        let got = futures_lite::future::block_on(ex.run(async move {
            async_io::Timer::after(std::time::Duration::from_millis(20)).await;
            assert_eq!(s2.request(StopKind::Restart), Ok(()));
            assert_eq!(s2.request(StopKind::Shutdown), Err(StopKind::Restart));
            t.await
        }));
        assert_eq!(got, StopKind::Restart);
    }
}
