//! Logging through the host (`runtime::log`): lines go to the host log and
//! the run's journal, tagged with the plugin.

use crate::runtime::{self, LogLevel};

/// Log at `debug`.
pub fn debug(message: &str) {
    runtime::log(LogLevel::Debug, message);
}

/// Log at `info`.
pub fn info(message: &str) {
    runtime::log(LogLevel::Info, message);
}

/// Log at `warn`.
pub fn warn(message: &str) {
    runtime::log(LogLevel::Warn, message);
}

/// Log at `error`.
pub fn error(message: &str) {
    runtime::log(LogLevel::Error, message);
}
