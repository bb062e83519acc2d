//! The kill switch: `wasmonkey pause` sets it, `wasmonkey resume` clears
//! it, and every run honours it: while it is set no run starts, and a
//! running one stops as under a stop condition.
//!
//! It lives in the operator's state directory, so every wasmonkey process
//! of the operator sees it, behind [`Switch`] so that a shared store can
//! serve it later. A switch that cannot be read counts as set: when in
//! doubt, nothing is terminated.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why and since when the switch is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// What the operator said when pausing, shown by every refused run.
    pub reason: String,
    /// When, in RFC 3339 (UTC).
    pub since: String,
    /// The user who set it.
    pub by: String,
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "paused by {} since {}", self.by, self.since)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// Where the switch is kept.
pub trait Switch: Send + Sync {
    /// The pause in force, if any. A switch that cannot be read answers a
    /// pause that says why.
    fn paused(&self) -> Option<Pause>;

    /// Set the switch.
    fn pause(&self, reason: &str) -> anyhow::Result<Pause>;

    /// Clear the switch; the pause it cleared, if it was set.
    fn resume(&self) -> anyhow::Result<Option<Pause>>;

    /// Where it is, for messages.
    fn location(&self) -> String;
}

/// The switch as a file, `paused.json`, in a state directory.
#[derive(Debug, Clone)]
pub struct FileSwitch {
    path: PathBuf,
}

impl FileSwitch {
    /// The switch of the state directory `dir`.
    pub fn new(dir: &Path) -> FileSwitch {
        FileSwitch {
            path: dir.join("paused.json"),
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown time".into())
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", uid()))
}

/// The real user id, from /proc where there is one.
fn uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

impl Switch for FileSwitch {
    fn paused(&self) -> Option<Pause> {
        let unreadable = |err: &dyn std::fmt::Display| Pause {
            reason: format!(
                "the kill switch {} cannot be read ({err}); counted as set",
                self.path.display()
            ),
            since: now_rfc3339(),
            by: "wasmonkey".into(),
        };
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).unwrap_or_else(|err| unreadable(&err)))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => Some(unreadable(&err)),
        }
    }

    fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        use anyhow::Context as _;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::files::create_private_dir(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let pause = Pause {
            reason: reason.to_owned(),
            since: now_rfc3339(),
            by: user(),
        };
        // Written whole, then renamed over: a reader never sees half a file.
        let tmp = dir.join(format!(".paused.json.{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(&pause)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("setting the kill switch {}", self.path.display()))?;
        Ok(pause)
    }

    fn resume(&self) -> anyhow::Result<Option<Pause>> {
        let was = self.paused();
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(was),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(anyhow::anyhow!(
                "clearing the kill switch {}: {err}",
                self.path.display()
            )),
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let switch = FileSwitch::new(&dir.path().join("state"));
        assert_eq!(switch.paused(), None);
        let pause = switch.pause("game day over").unwrap();
        assert_eq!(switch.paused(), Some(pause.clone()));
        assert!(pause.to_string().ends_with(": game day over"), "{pause}");
        assert_eq!(switch.resume().unwrap(), Some(pause));
        assert_eq!(switch.paused(), None);
        assert_eq!(switch.resume().unwrap(), None);
    }

    #[test]
    fn a_switch_that_cannot_be_read_counts_as_set() {
        let dir = tempfile::tempdir().unwrap();
        let switch = FileSwitch::new(dir.path());
        std::fs::write(dir.path().join("paused.json"), "{not json").unwrap();
        let pause = switch.paused().expect("counted as set");
        assert!(pause.reason.contains("cannot be read"), "{pause}");
    }
}
