//! The one way library code starts a task on the executor it is handed: boxed.
//!
//! `Executor::spawn` instantiates the executor's task machinery (the raw task, its vtable,
//! its poll and drop glue, with the future's body inlined into them) once per future type;
//! the tree spawns some thirty distinct future types. Boxing each future as
//! `Pin<Box<dyn Future<Output = T> + Send>>` makes that once per output type (a handful), at
//! the cost of one allocation per spawned task and one indirect call per poll — nothing on a
//! per-frame path spawns. docs/benchmarks.md ("Size changes of issue 12") has what it saves.
//!
//! Beside it, the two ways to run two long-lived futures in one task that poll only the one
//! that was woken ([`race`], [`join`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use async_executor::{Executor, Task};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `spawn_boxed` on an executor: use it instead of `Executor::spawn` outside tests.
pub trait Spawn<'a> {
    /// Spawns `fut` boxed (see the module docs).
    fn spawn_boxed<T: Send + 'a>(&self, fut: impl Future<Output = T> + Send + 'a) -> Task<T>;
}

impl<'a> Spawn<'a> for Executor<'a> {
    fn spawn_boxed<T: Send + 'a>(&self, fut: impl Future<Output = T> + Send + 'a) -> Task<T> {
        spawn_dyn(self, Box::pin(fut))
    }
}

#[inline(never)]
fn spawn_dyn<'a, T: Send + 'a>(ex: &Executor<'a>, fut: BoxFuture<'a, T>) -> Task<T> {
    ex.spawn(fut)
}

/// A branch's waker inside [`race`] and [`join`]: marks the branch woken, then wakes the task.
#[derive(Debug, Default)]
struct Branch {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Branch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let w = self.task.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl Branch {
    /// A fresh branch (woken: it is polled first time round) and its waker.
    fn new() -> (Arc<Branch>, Waker) {
        let b = Arc::new(Branch {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let w = Waker::from(b.clone());
        (b, w)
    }

    /// Notes the task's waker; true if the branch was woken since it was last polled.
    fn take(&self, cx: &Context<'_>) -> bool {
        {
            let mut t = self.task.lock().unwrap_or_else(|p| p.into_inner());
            if !t.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *t = Some(cx.waker().clone());
            }
        }
        self.woken.swap(false, Ordering::AcqRel)
    }
}

/// `futures_lite::future::or` whose branches are polled only when their own waker fired (or
/// first time round): `or` polls both on every wake, so a loop waiting on a socket read
/// beside one woken for writing makes a read that fails with `EAGAIN` per write (and the
/// other way round). For the long-running pairs of a connection's reader and writer.
pub async fn race<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let ((ba, wa), (bb, wb)) = (Branch::new(), Branch::new());
    std::future::poll_fn(move |cx| {
        if ba.take(cx)
            && let Poll::Ready(t) = a.as_mut().poll(&mut Context::from_waker(&wa))
        {
            return Poll::Ready(t);
        }
        if bb.take(cx)
            && let Poll::Ready(t) = b.as_mut().poll(&mut Context::from_waker(&wb))
        {
            return Poll::Ready(t);
        }
        Poll::Pending
    })
    .await
}

/// `futures_lite::future::zip` with the polling of [`race`]: both outputs, each branch polled
/// only when woken (the two directions of a splice).
pub async fn join<A, B>(a: impl Future<Output = A>, b: impl Future<Output = B>) -> (A, B) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let ((ba, wa), (bb, wb)) = (Branch::new(), Branch::new());
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(move |cx| {
        if ra.is_none()
            && ba.take(cx)
            && let Poll::Ready(t) = a.as_mut().poll(&mut Context::from_waker(&wa))
        {
            ra = Some(t);
        }
        if rb.is_none()
            && bb.take(cx)
            && let Poll::Ready(t) = b.as_mut().poll(&mut Context::from_waker(&wb))
        {
            rb = Some(t);
        }
        if ra.is_some() && rb.is_some() {
            return Poll::Ready((ra.take().unwrap(), rb.take().unwrap()));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::sync::atomic::AtomicUsize;

    /// Whether a [`Counted`] is ready, and the waker it last saw.
    type Ready = Arc<Mutex<(bool, Option<Waker>)>>;

    /// A future that counts its polls and is ready once `ready` is set (woken through the
    /// waker it last saw).
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Ready,
    }

    impl Future for Counted {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let n = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            let mut r = self.ready.lock().unwrap();
            if r.0 {
                return Poll::Ready(n);
            }
            r.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn counted() -> (Counted, Arc<AtomicUsize>, Ready) {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(Mutex::new((false, None)));
        (
            Counted {
                polls: polls.clone(),
                ready: ready.clone(),
            },
            polls,
            ready,
        )
    }

    fn fire(r: &Mutex<(bool, Option<Waker>)>, done: bool) {
        let w = {
            let mut g = r.lock().unwrap();
            g.0 = done;
            g.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Waking one branch polls that branch only; `race` ends with the first ready, `join`
    /// with both.
    #[test]
    fn only_the_woken_branch_is_polled() {
        let (a, pa, ra) = counted();
        let (b, pb, rb) = counted();
        let ex = Executor::new();
        let t = ex.spawn(race(a, b));
        assert!(ex.try_tick());
        assert_eq!(
            (pa.load(Ordering::Relaxed), pb.load(Ordering::Relaxed)),
            (1, 1)
        );
        // b woken but not ready, three times: a is not polled again.
        for _ in 0..3 {
            fire(&rb, false);
            assert!(ex.try_tick());
        }
        assert_eq!(
            (pa.load(Ordering::Relaxed), pb.load(Ordering::Relaxed)),
            (1, 4)
        );
        fire(&ra, true);
        assert!(ex.try_tick());
        assert_eq!(block_on(t), 2, "a's second poll made it ready");

        let (a, pa, ra) = counted();
        let (b, pb, rb) = counted();
        let t = ex.spawn(join(a, b));
        assert!(ex.try_tick());
        fire(&ra, true);
        assert!(ex.try_tick());
        assert_eq!(
            (pa.load(Ordering::Relaxed), pb.load(Ordering::Relaxed)),
            (2, 1)
        );
        fire(&rb, true);
        assert!(ex.try_tick());
        assert_eq!(block_on(t), (2, 2));
        assert_eq!(pa.load(Ordering::Relaxed), 2, "a done: not polled again");
    }
}
