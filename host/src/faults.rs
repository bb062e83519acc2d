//! Faults beyond termination, and the undo the host owes for each.
//!
//! Before a fault is applied, its undo (exactly what to restore: the
//! instance to start, the processes to resume) is journalled, synced, and
//! written to the state directory's `faults/` as one small file. The host
//! carries it out when the fault's time is up, when its experiment or the
//! run ends, when a brake trips, on Ctrl-C or SIGTERM; after a crash, the
//! next `run`, `daemon` or `recover` on that state does (see [`recover`]).
//! An undo that fails is retried, reported loudly with the command that
//! finishes it by hand, and stays owed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use crate::cloud::undo::Undo;
use crate::cloud::{Cloud, Millis};
use crate::journal::{Event, Journal};
use crate::names::named;

named! {
    /// A kind of fault.
    FaultKind {
        /// An instance stopped, started again by the host.
        Stop = "stop",
        /// An instance rebooted: nothing to undo.
        Reboot = "reboot",
        /// A group's processes suspended, resumed by the host.
        SuspendProcesses = "suspend-processes",
        /// A zone's subnets behind a deny-all network ACL, moved back by
        /// the host.
        Blackhole = "blackhole",
    }
}

/// What a fault grant lets a plugin do, and how the host undoes it, in a
/// line for `plan`; none for a grant that is not a fault's.
pub(crate) fn reach_and_rollback(grant: crate::policy::Grant) -> Option<&'static str> {
    use crate::policy::Grant;
    match grant {
        Grant::Stop => Some(
            "may stop instances in scope for 1 ms to 6 h, each counted as a termination and kept above the healthy floor; the host starts each again when its time is up, at the experiment's end, at a brake, or after a crash (`wasmonkey recover`)",
        ),
        Grant::Reboot => Some(
            "may reboot instances in scope, each counted as a termination and kept above the healthy floor; nothing to undo",
        ),
        Grant::SuspendProcesses => Some(
            "may suspend scaling processes of groups in scope for 1 ms to 6 h, each suspension counted as a termination; the host resumes exactly those it suspended when their time is up, at the experiment's end, at a brake, or after a crash",
        ),
        Grant::Blackhole => Some(
            "may cut a zone's subnets off the network for 1 ms to 6 h when every instance in them is in scope, each instance counted as a termination and each group kept above its healthy floor; the host moves each subnet back behind its own network ACL and deletes the deny-all ACL when the time is up, at the experiment's end, at a brake, or after a crash",
        ),
        Grant::Terminate | Grant::Notify | Grant::ProbeTargets => None,
    }
}

/// Attempts at one undo before it is reported as failed (it stays owed).
pub(crate) const UNDO_ATTEMPTS: u32 = 3;

/// A fault whose undo is owed, as the state directory keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owed {
    /// The fault's id in its run, e.g. `f-1`.
    pub fault_id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// Its experiment's position in the config.
    pub experiment: usize,
    /// Its undo.
    pub undo: Undo,
    /// When it is due, on the run's backend clock.
    pub until_ms: Millis,
    /// The process that owes it: while it lives, the undo is its own.
    pub pid: u32,
    /// The backend it was applied on ([`Cloud::identity`]): only that
    /// backend carries it out.
    pub backend: String,
    /// The groups it reaches, whose recovery is measured once it is undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A fault that has ended (undone, or a reboot once called): its groups'
/// recovery is measured from `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// The fault.
    pub fault_id: String,
    /// Its experiment's position in the config.
    pub experiment: usize,
    /// The groups it reached.
    pub groups: Vec<String>,
    /// When it ended, on the backend's clock.
    pub at_ms: Millis,
}

/// The faults a run applied and has not undone yet.
pub(crate) struct Ledger {
    owed: Mutex<Vec<Owed>>,
    /// Faults that ended and whose recovery nobody watches yet.
    ended: Mutex<Vec<Ended>>,
    next: AtomicU64,
    run_id: String,
    /// Where each owed undo is kept until it is done; none in tests.
    dir: Option<PathBuf>,
    /// The backend's identity, written with each owed undo.
    backend: String,
}

impl Ledger {
    /// The ledger of run `run_id` on `backend` (its identity), keeping
    /// owed undos in `dir`.
    pub(crate) fn new(run_id: &str, backend: String, dir: Option<PathBuf>) -> Ledger {
        Ledger {
            owed: Mutex::default(),
            ended: Mutex::default(),
            next: AtomicU64::new(1),
            run_id: run_id.to_owned(),
            dir,
            backend,
        }
    }

    /// The run it belongs to.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A fresh fault id.
    pub(crate) fn next_id(&self) -> String {
        format!("f-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, Vec<Owed>> {
        self.owed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Owe `undo` for `fault_id` by `until_ms`: kept on disk (synced)
    /// before this returns, so that a crash cannot lose it. `groups` are
    /// watched for recovery once it is undone.
    pub(crate) fn owe(
        &self,
        fault_id: &str,
        experiment: usize,
        undo: Undo,
        until_ms: Millis,
        groups: Vec<String>,
    ) -> anyhow::Result<()> {
        let owed = Owed {
            fault_id: fault_id.to_owned(),
            run_id: self.run_id.clone(),
            experiment,
            undo,
            until_ms,
            pid: std::process::id(),
            backend: self.backend.clone(),
            groups,
        };
        if let Some(dir) = &self.dir {
            write_owed(dir, &owed)?;
        }
        self.owed().push(owed);
        Ok(())
    }

    /// When the next undo is due, if one is owed.
    pub(crate) fn next_due(&self) -> Option<Millis> {
        self.owed().iter().map(|owed| owed.until_ms).min()
    }

    /// Whether anything is owed.
    pub(crate) fn is_empty(&self) -> bool {
        self.owed().is_empty()
    }

    fn ended(&self) -> std::sync::MutexGuard<'_, Vec<Ended>> {
        self.ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fault ended without an undo (a reboot): its groups' recovery is
    /// measured from `at_ms`.
    pub(crate) fn end_now(
        &self,
        fault_id: &str,
        experiment: usize,
        groups: Vec<String>,
        at_ms: Millis,
    ) {
        if !groups.is_empty() {
            self.ended().push(Ended {
                fault_id: fault_id.to_owned(),
                experiment,
                groups,
                at_ms,
            });
        }
    }

    /// The faults of `experiment` that ended since the last call: whoever
    /// takes them watches their groups' recovery.
    pub(crate) fn take_ended(&self, experiment: usize) -> Vec<Ended> {
        let mut ended = self.ended();
        let (taken, left) = ended.drain(..).partition(|e| e.experiment == experiment);
        *ended = left;
        taken
    }

    /// Undo what is due by `now` (everything when `now` is `None`): each
    /// journalled as done or failed; what failed stays owed.
    pub(crate) async fn undo(
        &self,
        now: Option<Millis>,
        cloud: &dyn Cloud,
        journal: Option<&Journal>,
    ) -> anyhow::Result<()> {
        let due: Vec<Owed> = {
            let mut owed = self.owed();
            let (due, later) = owed
                .drain(..)
                .partition(|o| now.is_none_or(|now| o.until_ms <= now));
            *owed = later;
            due
        };
        for owed in due {
            if !undo_one(&owed, cloud, journal).await? {
                self.owed().push(owed);
                continue;
            }
            if let Some(dir) = &self.dir {
                remove_owed(dir, &owed);
            }
            let Owed {
                fault_id,
                experiment,
                groups,
                ..
            } = owed;
            self.end_now(&fault_id, experiment, groups, cloud.now_ms());
        }
        Ok(())
    }
}

/// Carry out one undo, up to [`UNDO_ATTEMPTS`] times; whether it was done.
async fn undo_one(
    owed: &Owed,
    cloud: &dyn Cloud,
    journal: Option<&Journal>,
) -> anyhow::Result<bool> {
    for attempt in 1..=UNDO_ATTEMPTS {
        match owed.undo.carry_out(cloud).await {
            Ok(how) => {
                tracing::info!(fault = %owed.fault_id, "undone: {how}");
                if let Some(journal) = journal {
                    journal.append(
                        cloud.now_ms(),
                        Some(owed.experiment),
                        Event::FaultUndone {
                            fault_id: owed.fault_id.clone(),
                            how,
                        },
                    )?;
                }
                return Ok(true);
            }
            Err(err) => {
                let manual = owed.undo.manual();
                tracing::error!(
                    fault = %owed.fault_id,
                    "UNDO FAILED (attempt {attempt} of {UNDO_ATTEMPTS}): {err}; to finish it by hand: {manual}"
                );
                if let Some(journal) = journal {
                    journal.append(
                        cloud.now_ms(),
                        Some(owed.experiment),
                        Event::UndoFailed {
                            fault_id: owed.fault_id.clone(),
                            attempt,
                            error: err.to_string(),
                            manual,
                        },
                    )?;
                }
                if attempt < UNDO_ATTEMPTS {
                    cloud.sleep_ms(500 << attempt).await;
                }
            }
        }
    }
    Ok(false)
}

/// Most bytes of one owed-undo file.
const OWED_FILE_BYTES: u64 = 64 * 1024;
/// Most owed-undo files read by one recovery.
const MAX_OWED_FILES: usize = 10_000;

/// The directory of owed undos in a state directory.
pub(crate) fn owed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("faults")
}

fn owed_path(dir: &Path, owed: &Owed) -> PathBuf {
    // Run ids and fault ids are the host's own: letters, digits, `-`.
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir.join(format!(
        "{}.{}.json",
        safe(&owed.run_id),
        safe(&owed.fault_id)
    ))
}

fn write_owed(dir: &Path, owed: &Owed) -> anyhow::Result<()> {
    use anyhow::Context as _;
    crate::files::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = owed_path(dir, owed);
    crate::files::write_atomic(&path, &serde_json::to_vec_pretty(owed)?)?;
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

fn remove_owed(dir: &Path, owed: &Owed) {
    let path = owed_path(dir, owed);
    if let Err(err) = std::fs::remove_file(&path) {
        tracing::warn!(
            "{}: the undo is done, but its file stays: {err}",
            path.display()
        );
    }
}

/// What a recovery found and did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Undos carried out (or found moot), with what was done.
    pub done: Vec<(Owed, String)>,
    /// Undos that failed every attempt, with the last error: still owed.
    pub failed: Vec<(Owed, String)>,
    /// Files that are not owed undos the host wrote, with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Undos owed by a process still running: left to it.
    pub running: Vec<Owed>,
    /// Undos owed on another backend (another region, the real cloud
    /// when this is the simulator): left for a recovery on that one.
    pub elsewhere: Vec<Owed>,
}

/// Whether process `pid` is running (this one included). A process this
/// user may not signal is running too.
pub(crate) fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(err) => err == rustix::io::Errno::PERM,
    }
}

/// Carry out every undo owed in `state_dir` (faults of runs that did not
/// finish them: a crash, a kill -9). Idempotent: a second call finds
/// nothing, and undoing what is already undone changes nothing. A file it
/// cannot trust is reported, never acted on.
pub async fn recover(state_dir: &Path, cloud: &dyn Cloud) -> anyhow::Result<Recovered> {
    let dir = owed_dir(state_dir);
    let mut recovered = Recovered::default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(recovered),
        Err(err) => anyhow::bail!("{}: cannot list owed undos: {err}", dir.display()),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries.filter_map(Result::ok).take(MAX_OWED_FILES) {
        let path = entry.path();
        match crate::files::partial_writer(&entry.file_name()) {
            // Half written by a process killed before the rename: its
            // fault was never applied (the file comes first), so the
            // file is only litter.
            Some(pid) if !alive(pid) => {
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!("{}: left half written, not removed: {err}", path.display());
                }
            }
            Some(_) => {}
            None if path.extension().is_some_and(|ext| ext == "json") => paths.push(path),
            None => {}
        }
    }
    paths.sort();
    for path in paths {
        let owed = crate::files::open_no_follow(&path, OWED_FILE_BYTES)
            .map_err(|problem| problem.to_string())
            .and_then(|(file, _)| {
                crate::files::read(file, OWED_FILE_BYTES).map_err(|problem| problem.to_string())
            })
            .and_then(|bytes| serde_json::from_slice::<Owed>(&bytes).map_err(|e| e.to_string()));
        let owed = match owed {
            Ok(owed) => owed,
            Err(why) => {
                recovered.unreadable.push((path, why));
                continue;
            }
        };
        if owed.backend != cloud.identity() {
            recovered.elsewhere.push(owed);
            continue;
        }
        if owed.pid != std::process::id() && alive(owed.pid) {
            // A run in progress in another process (a daemon's slot,
            // another `run`) undoes its own faults when they are due;
            // undoing them now would end them early. This process's own
            // are those of runs that ended with an undo still failing.
            recovered.running.push(owed);
            continue;
        }
        let mut last = String::new();
        let mut done = None;
        for attempt in 1..=UNDO_ATTEMPTS {
            match owed.undo.carry_out(cloud).await {
                Ok(how) => {
                    done = Some(how);
                    break;
                }
                Err(err) => {
                    last = err.to_string();
                    if attempt < UNDO_ATTEMPTS {
                        cloud.sleep_ms(500 << attempt).await;
                    }
                }
            }
        }
        match done {
            Some(how) => {
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!("{}: undone, but the file stays: {err}", path.display());
                }
                recovered.done.push((owed, how));
            }
            None => recovered.failed.push((owed, last)),
        }
    }
    Ok(recovered)
}

/// A ledger shared by a run's experiments and its watcher.
pub(crate) type SharedLedger = Arc<Ledger>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ScalingProcess;

    #[tokio::test]
    async fn recovery_clears_what_a_killed_writer_left_half_written_and_no_live_ones() {
        let state = tempfile::tempdir().unwrap();
        let dir = owed_dir(state.path());
        std::fs::create_dir_all(&dir).unwrap();
        // A process that has exited: its pid is not alive.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let left = dir.join(format!(".partial-{gone_pid}-aB3d"));
        let writing = dir.join(format!(".partial-{}-xY9z", std::process::id()));
        for path in [&left, &writing] {
            std::fs::write(path, b"{").unwrap();
        }
        let sim = crate::cloud::sim::SimCloud::new(Default::default(), 1).unwrap();
        let recovered = recover(state.path(), &sim).await.unwrap();
        assert!(!left.exists(), "a dead writer's half file stays");
        assert!(writing.exists(), "a live writer's file was removed");
        assert!(
            recovered.unreadable.is_empty(),
            "{:?}",
            recovered.unreadable
        );
    }

    #[test]
    fn an_undo_names_the_command_that_finishes_it_by_hand() {
        let start = Undo::Start {
            instance_id: "i-0abc".into(),
        };
        assert_eq!(
            start.manual(),
            "aws ec2 start-instances --instance-ids i-0abc"
        );
        let resume = Undo::Resume {
            group: "web".into(),
            processes: vec![ScalingProcess::Launch, ScalingProcess::AzRebalance],
        };
        assert_eq!(
            resume.manual(),
            "aws autoscaling resume-processes --auto-scaling-group-name web --scaling-processes Launch AZRebalance"
        );
        let json = serde_json::to_string(&resume).unwrap();
        assert_eq!(
            json,
            r#"{"action":"resume","group":"web","processes":["Launch","AZRebalance"]}"#
        );
    }
}
