//! The run journal: one JSON object per line, appended *before* each action
//! and again with its outcome, so a crash or Ctrl-C never hides what was
//! done. Reports are rendered from it.
//!
//! Every entry about an action (and every run and experiment boundary) is
//! synced to disk before `append` returns. Plugin log lines and denials are
//! written but not synced on their own: the next synced entry carries them
//! to disk, so a plugin's chatter never costs an fsync.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::cloud::{Capacity, Millis};
use crate::limits::Limits;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the journal, from 0.
    pub seq: u64,
    /// Wall-clock time of writing, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The run's clock (virtual on the simulator).
    pub clock_ms: Millis,
    /// Index of the experiment in the config, for experiment events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<usize>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// When a check is read: a steady state, or the brakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the first experiment: a steady state must hold, and every
    /// brake be clear, for the run to act.
    Before,
    /// After the last experiment and its recovery.
    After,
}

/// A brake's state, read at the run's start or end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrakeReading {
    /// The stop condition's name, or `kill-switch`.
    pub name: String,
    /// What it watches: the condition's rule, or the switch's scope and
    /// where it is.
    pub rule: String,
    /// What was found.
    pub state: BrakeReadingState,
    /// What was seen, when it is not clear.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub saw: String,
}

crate::names::named! {
    /// A brake's state at one reading.
    BrakeReadingState {
        /// The condition holds; the switch is clear.
        Clear = "clear",
        /// The condition is broken (past its grace); the switch is set.
        Tripped = "tripped",
        /// It could not be read: no termination while it cannot.
        Unknown = "unknown",
        /// Not read: a kill switch was set, and a paused run reads no more.
        NotRead = "not-read",
    }
}

/// A notification channel as the run checked it before it began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelReading {
    /// The channel's alias.
    pub name: String,
    /// Where it sends, with region and account; never a secret.
    pub to: String,
    /// `reachable`, `configured`, `unreachable` or `unchecked`.
    pub state: String,
    /// Why it cannot be reached, when it cannot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Whether the run starts without it.
    #[serde(default)]
    pub optional: bool,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Unique per run.
        run_id: String,
        /// `sim` or `aws`.
        backend: String,
        /// The seed of every experiment's randomness.
        seed: u64,
        /// True unless `--execute`.
        dry_run: bool,
        /// The run config's path.
        config: String,
        /// This host's version.
        host_version: String,
        /// Epoch ms that the run's clock 0 stands for: wall time on AWS,
        /// the simulated calendar in `simulate`. The history dates kills
        /// by it. (Journals of older hosts lack it.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_origin_ms: Option<i64>,
        /// Who ran it: the user and the machine. (Journals of older hosts
        /// lack it.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        /// What it ran against: the backend's account, region and
        /// endpoint, as the backend names them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// The account it acted in, as the cloud said (AWS: STS), when it
        /// could be learnt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        /// The region it acted in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// The rules the run is held to, as its plan found them before it
    /// began: written once, after `run-started`.
    InForce {
        /// The scope, in a line: group patterns, tags, opt-in and opt-out.
        scope: String,
        /// What of the fleet was in scope at the start, or why it is
        /// unknown.
        in_scope: String,
        /// The blast radius, in a line.
        blast_radius: String,
        /// Each notification channel, as checked before the run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        channels: Vec<ChannelReading>,
        /// Whether each termination of this dry run is asked of the cloud
        /// first (`--preflight`).
        #[serde(default)]
        preflight: bool,
    },
    /// Every brake read at once: the kill switches and each stop condition,
    /// before the run acts and after it.
    Brakes {
        /// `before` or `after`.
        phase: Phase,
        /// Each switch, then each condition.
        readings: Vec<BrakeReading>,
    },
    /// An experiment began with this plugin.
    ExperimentStarted {
        /// The plugin's name.
        plugin: String,
        /// Its version.
        version: String,
        /// Its component's sha256.
        sha256: String,
        /// Every parameter, the operator's value or the default.
        params: BTreeMap<String, serde_json::Value>,
        /// What it may do.
        grants: Vec<String>,
        /// What it runs under.
        limits: Limits,
    },
    /// About to terminate an instance. Written before the call.
    TerminateIntent {
        /// The victim.
        instance_id: String,
        /// Its group, if any.
        group: Option<String>,
        /// Its zone.
        zone: String,
        /// Its zone's id, when the backend tells.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone_id: Option<String>,
        /// The plugin's reason, bounded.
        reason: String,
        /// Whether it is a dry run.
        dry_run: bool,
    },
    /// The termination went through (or, in a dry run, was allowed).
    TerminateDone {
        /// The victim.
        instance_id: String,
        /// Whether it was a dry run.
        dry_run: bool,
        /// Set when the call failed this way but describing the instance
        /// again showed it going away.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirmed_after: Option<String>,
    },
    /// The termination call failed.
    TerminateFailed {
        /// The victim.
        instance_id: String,
        /// What the cloud answered.
        error: String,
        /// Nobody can tell whether it took effect (the answer was lost and
        /// the instance could not be described again).
        #[serde(default)]
        uncertain: bool,
    },
    /// Policy refused an operation.
    Denied {
        /// The import called, e.g. `terminate`.
        operation: String,
        /// What the plugin named, bounded.
        target: String,
        /// The rule that refused it.
        rule: String,
        /// The refusal, for the operator.
        message: String,
    },
    /// About to publish a notification. Written before the call.
    NotifyIntent {
        /// The operator's channel.
        channel: String,
        /// The subject line, bounded.
        subject: String,
        /// The message, bounded.
        body: String,
        /// Where it goes: the topic or event bus with its region and account
        /// (and role), or `webhook to HOST`; never a secret. Absent in older journals,
        /// and when the channel cannot be used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// A dry run's notification, journalled and not sent: rehearsals page
    /// no one (unless the config's `notify_dry_runs` says so).
    NotifyWithheld {
        /// The channel.
        channel: String,
    },
    /// A publish attempt succeeded.
    NotifyDone {
        /// The channel.
        channel: String,
        /// Which attempt, from 1.
        attempt: u32,
    },
    /// A publish attempt failed.
    NotifyFailed {
        /// The channel.
        channel: String,
        /// Which attempt, from 1.
        attempt: u32,
        /// What the cloud answered.
        error: String,
    },
    /// About to apply a fault (not a termination). Written, synced, before
    /// the call, with the exact undo the host owes for it.
    FaultIntent {
        /// The host's id for it in this run, e.g. `f-1`.
        fault_id: String,
        /// `stop`, `reboot` or `suspend-processes`.
        kind: String,
        /// The instance id or group name.
        target: String,
        /// The plugin's reason, bounded.
        reason: String,
        /// Whether it is only a rehearsal: nothing is applied.
        dry_run: bool,
        /// How long it lasts, when it is undone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// What undoes it; none when nothing does (a reboot, a dry run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<crate::cloud::undo::Undo>,
        /// The Auto Scaling groups it reaches, whose recovery the host
        /// measures once it ends.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
    },
    /// The fault's call succeeded.
    FaultApplied {
        /// The fault.
        fault_id: String,
        /// When the host undoes it, on the plugin's clock (from its
        /// experiment's start), as the plugin was told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// The fault's call failed (its undo is still carried out: undoing is
    /// harmless when the fault did not take).
    FaultFailed {
        /// The fault.
        fault_id: String,
        /// What the cloud answered.
        error: String,
    },
    /// A fault's undo was carried out (or found moot).
    FaultUndone {
        /// The fault.
        fault_id: String,
        /// What was done.
        how: String,
    },
    /// The host saw a group a fault reached recovered after the fault
    /// ended (its undo, or a reboot's call).
    FaultRecovered {
        /// The fault.
        fault_id: String,
        /// The group.
        group: String,
        /// From the fault's end to the group seen recovered.
        recovery_ms: Millis,
        /// The group's capacity then.
        capacity: Capacity,
    },
    /// The host gave up waiting for a group a fault reached.
    FaultNotRecovered {
        /// The fault.
        fault_id: String,
        /// The group.
        group: String,
        /// How long the host waited after the fault ended.
        waited_ms: Millis,
        /// The group's capacity last seen, if it could be read.
        capacity: Option<Capacity>,
    },
    /// An attempt at a fault's undo failed.
    UndoFailed {
        /// The fault.
        fault_id: String,
        /// Which attempt, from 1.
        attempt: u32,
        /// What the cloud answered.
        error: String,
        /// The command that finishes it by hand.
        manual: String,
    },
    /// A dry run's `--preflight` answer: whether the cloud would permit the
    /// termination (EC2's DryRun).
    Preflight {
        /// The instance.
        instance_id: String,
        /// Whether the cloud said it would be permitted.
        permitted: bool,
        /// What it said when it would not.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// The host saw a victim's group recovered.
    Recovered {
        /// The victim.
        instance_id: String,
        /// Its group.
        group: String,
        /// From the termination request to the group seen recovered.
        recovery_ms: Millis,
        /// The group's capacity then.
        capacity: Capacity,
    },
    /// The host gave up waiting for a victim's group.
    NotRecovered {
        /// The victim.
        instance_id: String,
        /// Its group.
        group: String,
        /// How long the host waited.
        waited_ms: Millis,
        /// The group's capacity last seen, if it could be read.
        capacity: Option<Capacity>,
    },
    /// A plugin's log line.
    PluginLog {
        /// `error`, `warn`, `info`, `debug` or `trace`.
        level: String,
        /// The plugin's words, bounded.
        message: String,
    },
    /// The experiment ended: the plugin's outcome, or why there is none.
    ExperimentFinished {
        /// The plugin's name.
        plugin: String,
        /// What the plugin said it did, once the host accepted it.
        outcome: Option<PluginOutcome>,
        /// Why there is no outcome.
        error: Option<String>,
        /// The limit the plugin breached, by its config key, when that
        /// ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<String>,
    },
    /// The host saw a group's capacity change (it looks before each
    /// termination and on every recovery poll): what a report's timeline
    /// draws.
    Capacity {
        /// The group.
        group: String,
        /// What the host read.
        capacity: Capacity,
    },
    /// A backend call made for the plugin failed (or was throttled): what
    /// the run saw of the fleet is incomplete, so it cannot be a success.
    CallFailed {
        /// What the host was doing, e.g. `listing instances`.
        operation: String,
        /// What the backend answered.
        error: String,
    },
    /// Plugin text the journal did not take, over its per-run bounds.
    Suppressed {
        /// Log lines not journalled.
        log_lines: u64,
        /// Their bytes.
        log_bytes: u64,
        /// Denials not journalled.
        denials: u64,
        /// Failed backend calls not journalled.
        #[serde(default)]
        call_failures: u64,
    },
    /// A steady-state check read before the run acts, or after it.
    SteadyState {
        /// The check's name (`[steady_state.NAME]`).
        name: String,
        /// `before` or `after`.
        phase: Phase,
        /// Whether it held; none when it could not be told.
        held: Option<bool>,
        /// What was seen (or why it could not be told).
        saw: String,
    },
    /// A stop condition tripped, or the kill switch was found set: the run
    /// is stopped (`condition` is the condition's name or `kill-switch`).
    StopTripped {
        /// The condition's name, or `kill-switch`.
        condition: String,
        /// Whether it is the kill switch.
        paused: bool,
        /// What was seen, for the operator.
        saw: String,
    },
    /// The run ended normally (or was interrupted, when `interrupted`).
    RunFinished {
        /// Whether the operator interrupted it (Ctrl-C).
        interrupted: bool,
    },
}

impl Event {
    /// Whether the entry must be on disk before the host goes on: anything
    /// but a plugin's own chatter and the host's capacity readings.
    pub(crate) fn must_sync(&self) -> bool {
        !matches!(
            self,
            Event::PluginLog { .. }
                | Event::Denied { .. }
                | Event::Capacity { .. }
                | Event::CallFailed { .. }
        )
    }
}

/// A plugin's own account of its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginOutcome {
    /// Its summary.
    pub summary: String,
    /// Its victims, as it judged them.
    pub victims: Vec<PluginVictim>,
}

/// The plugin's view of one victim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginVictim {
    /// The instance.
    pub instance_id: String,
    /// `recovered`, `not-recovered` or `unchecked`.
    pub verdict: String,
    /// When it judged it recovered, on its clock.
    pub recovered_at_ms: Option<Millis>,
}

/// An open journal file. Appends are serialised.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Appender>,
}

/// The file and its counters, behind the journal's lock.
#[derive(Debug)]
struct Appender {
    file: File,
    seq: u64,
    syncs: u64,
    /// False only for throw-away journals (see [`Journal::create_unsynced`]).
    durable: bool,
    /// Every entry written so far: the run's report is built from what the
    /// journal holds without reading the file back, so nothing after an
    /// action can fail on a read.
    written: Vec<Entry>,
}

impl Appender {
    fn new(file: File) -> Appender {
        Appender {
            file,
            seq: 0,
            syncs: 0,
            durable: true,
            written: Vec::new(),
        }
    }
}

impl Journal {
    /// Create a new journal file (never overwrites one).
    pub fn create(path: &Path) -> anyhow::Result<Journal> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating journal directory {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating journal {}", path.display()))?;
        Ok(Journal {
            path: path.to_owned(),
            inner: Mutex::new(Appender::new(file)),
        })
    }

    /// A journal that never syncs: for `simulate`, whose runs act on the
    /// simulated fleet only and whose history is thrown away, so a crash
    /// loses nothing real.
    pub(crate) fn create_unsynced(path: &Path) -> anyhow::Result<Journal> {
        let journal = Journal::create(path)?;
        if let Ok(mut appender) = journal.inner.lock() {
            appender.durable = false;
        }
        Ok(journal)
    }

    /// A journal on a file already open for writing, such as a descriptor
    /// a supervisor handed over. Entries are numbered from 0.
    pub fn over(file: File, path: &Path) -> Journal {
        Journal {
            path: path.to_owned(),
            inner: Mutex::new(Appender::new(file)),
        }
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Times the journal was synced to disk so far.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.inner.lock().map_or(0, |appender| appender.syncs)
    }

    /// Append an entry; one that [`Event::must_sync`] is on disk, with every
    /// entry before it, when this returns.
    pub fn append(
        &self,
        clock_ms: Millis,
        experiment: Option<usize>,
        event: Event,
    ) -> anyhow::Result<Entry> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("journal {} is poisoned", self.path.display()))?;
        let appender = &mut *guard;
        let sync = event.must_sync() && appender.durable;
        let entry = Entry {
            seq: appender.seq,
            at: time::OffsetDateTime::now_utc(),
            clock_ms,
            experiment,
            event,
        };
        // Plugin text stays JSON-escaped, down to the controls and invisible
        // characters serde_json would leave raw: `cat` of a journal is safe.
        let json = serde_json::to_string(&entry)?;
        let mut line = crate::text::json_safe(&json).into_owned().into_bytes();
        line.push(b'\n');
        let file = &mut appender.file;
        file.write_all(&line)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
            .with_context(|| format!("writing journal {}", self.path.display()))?;
        appender.seq += 1;
        appender.syncs += u64::from(sync);
        appender.written.push(entry.clone());
        Ok(entry)
    }

    /// What the journal holds so far: every entry written, as [`read`]
    /// would give them back, without touching the file.
    pub fn replay(&self) -> Replay {
        Replay {
            entries: self.inner.lock().map_or_else(
                |poisoned| poisoned.into_inner().written.clone(),
                |a| a.written.clone(),
            ),
            torn_tail: None,
        }
    }
}

/// A journal read back.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Every whole entry, in order.
    pub entries: Vec<Entry>,
    /// A last line that was cut off mid-write (a crash), if any.
    pub torn_tail: Option<usize>,
}

impl Replay {
    /// Whether the run did something beyond reading: a real terminate was
    /// about to be made, or a notification about to be sent. A run that
    /// acted always ends with its report, never with "nothing was done".
    pub fn acted(&self) -> bool {
        self.entries.iter().any(|entry| {
            matches!(
                entry.event,
                Event::TerminateIntent { dry_run: false, .. } | Event::NotifyIntent { .. }
            )
        })
    }
}

/// The largest journal read back. A run's plugin text is bounded per
/// experiment (a megabyte of log lines), so a real journal is far smaller;
/// anything larger is not read into memory.
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// Read a journal. A torn last line (from a crash mid-write) is tolerated and
/// reported; a bad line elsewhere is an error naming the file and line, and
/// so is a file without one whole entry. The file must be a regular file of
/// at most [`MAX_JOURNAL_BYTES`], checked before a byte is read and opened
/// without blocking (a FIFO or a device is refused, not waited on).
pub fn read(path: &Path) -> anyhow::Result<Replay> {
    read_opened(path, crate::files::open(path, MAX_JOURNAL_BYTES))
}

/// [`read`], for a path the host did not just write but reads back from
/// its own state (a daemon's unfinished slot): a symbolic link there is
/// refused, not followed.
pub fn read_no_follow(path: &Path) -> anyhow::Result<Replay> {
    read_opened(path, crate::files::open_no_follow(path, MAX_JOURNAL_BYTES))
}

fn read_opened(
    path: &Path,
    opened: Result<(File, std::fs::Metadata), crate::files::FileProblem>,
) -> anyhow::Result<Replay> {
    let (file, _) = opened.with_context(|| format!("opening journal {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file.take(MAX_JOURNAL_BYTES))
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading journal {}", path.display()))?;
    let mut replay = Replay::default();
    let last = lines.len();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) => replay.entries.push(entry),
            Err(_) if number == last => replay.torn_tail = Some(number),
            Err(err) => anyhow::bail!("{}:{number}: not a journal entry: {err}", path.display()),
        }
    }
    if replay.entries.is_empty() {
        anyhow::bail!(
            "{}: no journal entry in it{}",
            path.display(),
            if replay.torn_tail.is_some() {
                " (only a line cut off mid-write: the run stopped as it began)"
            } else {
                " (is this a wasmonkey journal?)"
            }
        );
    }
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let journal = Journal::create(&path).unwrap();
        journal
            .append(
                5,
                Some(0),
                Event::TerminateIntent {
                    instance_id: "i-1".into(),
                    group: Some("web".into()),
                    zone: "a".into(),
                    zone_id: None,
                    reason: "test".into(),
                    dry_run: false,
                },
            )
            .unwrap();
        journal
            .append(6, None, Event::RunFinished { interrupted: false })
            .unwrap();
        // Simulate a crash mid-write.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":2,\"at\":").unwrap();
        let replay = read(&path).unwrap();
        assert_eq!(replay.entries.len(), 2);
        assert_eq!(replay.entries[0].seq, 0);
        assert_eq!(replay.entries[0].clock_ms, 5);
        assert!(matches!(replay.entries[1].event, Event::RunFinished { .. }));
        assert_eq!(replay.torn_tail, Some(3));
    }

    #[test]
    fn a_bad_line_in_the_middle_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:1"), "{err}");
    }

    #[test]
    fn a_file_without_an_entry_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("empty.jsonl", ""),
            ("blank.jsonl", "\n\n"),
            ("torn.jsonl", "{\"seq\":0,"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("no journal entry"),
                "{err}"
            );
        }
    }

    #[test]
    fn only_actions_pay_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(&dir.path().join("j.jsonl")).unwrap();
        for _ in 0..100 {
            journal
                .append(
                    0,
                    Some(0),
                    Event::PluginLog {
                        level: "info".into(),
                        message: String::new(),
                    },
                )
                .unwrap();
        }
        assert_eq!(journal.syncs(), 0);
        journal
            .append(0, None, Event::RunFinished { interrupted: false })
            .unwrap();
        assert_eq!(journal.syncs(), 1);
        assert_eq!(read(journal.path()).unwrap().entries.len(), 101);
    }

    #[test]
    fn an_existing_journal_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, "keep me\n").unwrap();
        assert!(Journal::create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");
    }
}
