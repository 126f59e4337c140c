//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod attack;
pub mod visor;

/// The known-answer vectors directory: `$SKYWIRE_VECTORS`, else `../shared/vectors` beside the
/// project. Returns `None` (the caller skips) only outside CI; under `CI` a missing directory
/// fails the test, as DESIGN.md §9 requires.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SKYWIRE_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "test vectors not found at {} (set SKYWIRE_VECTORS); CI must not skip them",
            dir.display()
        );
    }
    eprintln!("skipping: test vectors not found at {}", dir.display());
    None
}

/// Reads one vector file as text.
pub fn read_vector(name: &str) -> Option<String> {
    let dir = vectors_dir()?;
    let p = dir.join(name);
    Some(std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// Path of the built `skywire` binary under test.
pub fn skywire_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skywire"))
}

/// A child process that is killed (by its PID, through the handle) and reaped when dropped,
/// so a failing test leaves nothing running.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    /// Takes the child back (to wait for it); the guard no longer kills it.
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The venv interpreter with the Python test peers' packages (tests/deps.d/python.sh).
pub fn venv_python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} not found: run `bash tests/deps.sh` (make test does) to install the Python test peers",
        py.display()
    );
    py
}
