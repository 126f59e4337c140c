//! The one way library code starts a task on the executor it is handed: boxed.
//!
//! `Executor::spawn` instantiates the executor's task machinery (the raw task, its vtable,
//! its poll and drop glue, with the future's body inlined into them) once per future type;
//! the tree spawns some thirty distinct future types. Boxing each future as
//! `Pin<Box<dyn Future<Output = T> + Send>>` makes that once per output type (a handful), at
//! the cost of one allocation per spawned task and one indirect call per poll — nothing on a
//! per-frame path spawns. docs/benchmarks.md ("Size changes of issue 12") has what it saves.

use std::future::Future;
use std::pin::Pin;

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
