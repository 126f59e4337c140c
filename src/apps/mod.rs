//! Apps (DESIGN.md §5): one module per app, each behind its cargo feature `app-<name>`.

#[cfg(feature = "app-pty")]
pub mod pty;
