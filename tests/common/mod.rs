//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod attack;
pub mod dmsg;
pub mod net_node;
pub mod netns;
pub mod skychat;
pub mod visor;

/// The known-answer vectors directory: `$SKYWIRE_VECTORS`, else `../shared/vectors` beside the
/// project, where they always are. A missing directory fails the test (never a silent skip,
/// under `make test` as under CI), naming where it looked.
pub fn vectors_dir() -> PathBuf {
    let (dir, from) = match std::env::var_os("SKYWIRE_VECTORS") {
        Some(d) => (PathBuf::from(d), "$SKYWIRE_VECTORS"),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"),
            "the default ../shared/vectors beside the project; set $SKYWIRE_VECTORS to \
             read them from elsewhere",
        ),
    };
    assert!(
        dir.is_dir(),
        "test vectors not found at {} ({from}); the known-answer tests do not skip",
        dir.display()
    );
    dir
}

/// Reads one vector file as text; a missing file fails the test with its path.
pub fn read_vector(name: &str) -> String {
    let p = vectors_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "test vector {}: {e} (vectors are read from $SKYWIRE_VECTORS, else \
             ../shared/vectors beside the project)",
            p.display()
        )
    })
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
