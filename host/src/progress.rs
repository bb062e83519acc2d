//! A live line on the terminal while the host waits for recovery: elapsed
//! time and group health. Quiet when stderr is not a terminal or the report
//! goes out as JSON.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cloud::Capacity;

/// The progress line, or nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress line on stderr, if `wanted` and stderr is a terminal.
    pub(crate) fn new(wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress::default();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    /// A progress that never shows.
    pub(crate) fn hidden() -> Progress {
        Progress::default()
    }

    /// Show the groups being waited for.
    pub(crate) fn waiting(&self, run_clock_ms: u64, groups: &[(String, Capacity)]) {
        let Some(bar) = &self.bar else { return };
        let health: Vec<String> = groups
            .iter()
            .map(|(name, c)| {
                format!(
                    "{name} {}/{} in service{}{}",
                    c.in_service,
                    c.desired,
                    if c.pending > 0 {
                        format!(", {} pending", c.pending)
                    } else {
                        String::new()
                    },
                    if c.unhealthy > 0 {
                        format!(", {} unhealthy", c.unhealthy)
                    } else {
                        String::new()
                    },
                )
            })
            .collect();
        bar.set_message(format!(
            "waiting for recovery at {:.0} s on the run clock: {}",
            run_clock_ms as f64 / 1000.0,
            health.join("; ")
        ));
    }

    /// Remove the line.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
