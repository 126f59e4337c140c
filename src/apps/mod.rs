//! The apps, one module each behind its cargo feature `app-<name>` (DESIGN.md §5). Each
//! exposes an `AppDef` that `crate::app::table` lists.

#[cfg(feature = "app-logserver")]
pub mod logserver;
#[cfg(feature = "app-pty")]
pub mod pty;
