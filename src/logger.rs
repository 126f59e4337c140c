//! The process's logger: `LEVEL [target] message` lines on stderr, no colours, no timestamps
//! (journald and the RPC log add them) — the format simple_logger printed with those turned
//! off, in the few lines this needs (`make size`).

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = match record.target() {
            "" => record.module_path().unwrap_or_default(),
            t => t,
        };
        // A closed stderr must not end the process: the line is dropped.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{:<5} [{target}] {}",
            record.level().as_str(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger at `level`. A second call (tests running commands in one process)
/// keeps the first logger and only changes the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
