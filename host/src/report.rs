//! Reports, rendered from a journal and nothing else: a live run and
//! `wasmonkey report JOURNAL` go through the same code, and a journal cut
//! short still gives a truthful report of what it recorded.

pub mod html;
mod read;

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::journal::Replay;
use crate::limits::Limits;
use crate::text;

use crate::names::named;

named! {
    /// What became of a termination the journal records.
    VictimStatus {
        /// It took effect.
        Terminated = "terminated",
        /// A dry run: nothing was terminated.
        DryRun = "dry-run",
        /// The call failed, and the instance is known to be untouched.
        Failed = "failed",
        /// The call failed, and the host could not tell whether it took
        /// effect.
        Uncertain = "uncertain",
        /// Requested; the journal ends before its outcome.
        Unknown = "unknown",
    }
}

named! {
    /// The host's own measure of a victim's recovery.
    HostVerdict {
        /// Its group was whole and healthy again.
        Recovered = "recovered",
        /// The recovery timeout passed first.
        NotRecovered = "not-recovered",
        /// Nothing to wait for: a dry run, a failed call, or no group.
        Unchecked = "unchecked",
        /// The journal ends before it was decided.
        Pending = "pending",
    }
}

named! {
    /// What became of a notification.
    NotificationStatus {
        /// Published.
        Delivered = "delivered",
        /// Every attempt failed.
        Failed = "failed",
        /// A dry run's: journalled, not sent.
        WouldPublish = "would-publish",
        /// The journal has no outcome for it.
        Unknown = "unknown",
    }
}

/// Text from the journal as a terminal may show it: much of it is the
/// plugin's, and the journal itself may have been edited.
fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    text::one_line(text)
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The run's id, from its first entry.
    pub run_id: Option<String>,
    /// `sim` or `aws`.
    pub backend: Option<String>,
    /// The seed every experiment's randomness came from.
    pub seed: Option<u64>,
    /// Whether it was a dry run.
    pub dry_run: Option<bool>,
    /// Epoch ms of the run clock's 0 (for journals that lack it, the first
    /// entry's wall time less its clock).
    pub clock_origin_ms: Option<i64>,
    /// The run config's path.
    pub config: Option<String>,
    /// The version of the host that ran it.
    pub host_version: Option<String>,
    /// Who ran it (user@machine).
    pub operator: Option<String>,
    /// What it ran against: account, region and endpoint, as the backend
    /// names them.
    pub target: Option<String>,
    /// The account it acted in (AWS: as STS said; `sim` on the simulator).
    pub account: Option<String>,
    /// The region it acted in.
    pub region: Option<String>,
    /// When the journal began and ended, wall clock (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// See `started_at`.
    pub ended_at: Option<String>,
    /// Wall-clock seconds from the journal's first entry to its last.
    pub wall_seconds: Option<f64>,
    /// False when the journal ends before the run finished.
    pub complete: bool,
    /// Whether the operator interrupted it (Ctrl-C).
    pub interrupted: bool,
    /// What stopped the run, when a stop condition or the kill switch did.
    pub stopped: Option<StopReport>,
    /// The run's outcome as a whole, which decides the exit code.
    pub outcome: RunOutcome,
    /// The journal it was read from.
    pub journal: String,
    /// Each experiment, in config order.
    pub experiments: Vec<ExperimentReport>,
    /// Every victim of every experiment.
    pub victims: Vec<VictimReport>,
    /// Notifications of the run itself (the end-of-run report).
    pub notifications: Vec<NotificationReport>,
    /// What the run could not learn: backend calls that failed for the
    /// plugin. Any makes the run `inconclusive` at best.
    pub unknowns: Vec<String>,
    /// Things a reader must know, e.g. that the journal was cut short.
    pub notes: Vec<String>,
    /// What the host saw of each group's capacity, in journal order.
    pub capacity: Vec<CapacityPoint>,
    /// Each fault beyond termination (contract 0.2), with its undo.
    pub faults: Vec<FaultReport>,
    /// Run clock of the journal's last entry, ms: where a timeline ends.
    pub last_clock_ms: u64,
    /// Each steady-state check, with its readings before and after.
    pub steady_state: Vec<SteadyStateReport>,
    /// The rules the run was held to, as its plan found them at the start
    /// (absent in journals of older hosts).
    pub in_force: Option<InForce>,
    /// Each brake (kill switch and stop condition), read at the start and
    /// at the end.
    pub brakes: Vec<BrakeReport>,
}

/// The rules a run was held to, as its plan found them at the start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InForce {
    /// The scope, in a line.
    pub scope: String,
    /// What of the fleet was in scope at the start.
    pub in_scope: String,
    /// The blast radius, in a line.
    pub blast_radius: String,
    /// Each notification channel, as checked before the run.
    pub channels: Vec<crate::journal::ChannelReading>,
    /// Whether each termination of a dry run was asked of the cloud first.
    pub preflight: bool,
}

/// A brake, read at the run's start and end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrakeReport {
    /// The stop condition's name, or `kill-switch`.
    pub name: String,
    /// What it watches.
    pub rule: String,
    /// Its reading before the run acted.
    pub before: Option<BrakeSeen>,
    /// Its reading after the run.
    pub after: Option<BrakeSeen>,
}

impl BrakeReport {
    /// A kill switch found clear whenever read: the text report leaves it
    /// out (the HTML report lists every brake).
    pub fn always_clear_switch(&self) -> bool {
        use crate::journal::BrakeReadingState::Clear;
        self.name == crate::guard::KILL_SWITCH
            && [&self.before, &self.after]
                .iter()
                .all(|seen| seen.as_ref().is_none_or(|s| s.state == Clear))
    }
}

/// One reading of a brake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrakeSeen {
    /// What was found.
    pub state: crate::journal::BrakeReadingState,
    /// What was seen, when it was not clear.
    pub saw: String,
    /// When, on the run's clock, seconds.
    pub at_seconds: f64,
}

/// A steady-state check of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteadyStateReport {
    /// Its name (`[steady_state.NAME]`).
    pub name: String,
    /// Before the run acted.
    pub before: Option<SteadyReading>,
    /// After the run and its recovery.
    pub after: Option<SteadyReading>,
}

/// One reading of a steady-state check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteadyReading {
    /// Whether it held; none when it could not be told.
    pub held: Option<bool>,
    /// What was seen.
    pub saw: String,
    /// When, on the run's clock, seconds.
    pub at_seconds: f64,
}

impl SteadyStateReport {
    /// `held`, `not held` or `unknown`, for one reading.
    pub fn verdict(reading: Option<&SteadyReading>) -> &'static str {
        match reading.map(|r| r.held) {
            Some(Some(true)) => "held",
            Some(Some(false)) => "not held",
            Some(None) => "unknown",
            None => "not read",
        }
    }
}

impl BrakeSeen {
    /// `clear`, `tripped (what was seen)`, or `not read`, for one reading.
    pub fn shown(seen: Option<&BrakeSeen>) -> String {
        match seen {
            None => "not read".to_owned(),
            Some(seen) if seen.saw.is_empty() => seen.state.name().to_owned(),
            Some(seen) => format!("{} ({})", seen.state, text::shown(&seen.saw, 300)),
        }
    }
}

named! {
    /// What became of a fault and its undo.
    FaultStatus {
        /// Its undo was carried out (or found moot).
        Undone = "undone",
        /// Applied, with nothing to undo (a reboot).
        Applied = "applied",
        /// A dry run: nothing was changed.
        DryRun = "dry-run",
        /// Its call failed, and nothing is owed.
        Failed = "failed",
        /// Its undo failed every attempt: still owed.
        UndoFailed = "undo-failed",
        /// Its undo is owed and the journal does not say it was done.
        Owed = "owed",
    }
}

/// One fault beyond termination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultReport {
    /// Its experiment's position in the config.
    pub experiment: usize,
    /// The host's id for it.
    pub fault_id: String,
    /// `stop`, `reboot`, `suspend-processes`.
    pub kind: String,
    /// The instance id or group name.
    pub target: String,
    /// Run clock when it was about to be applied, ms.
    pub run_clock_ms: u64,
    /// Run clock when the host undid it, ms.
    pub undone_clock_ms: Option<u64>,
    /// What became of it.
    pub status: FaultStatus,
    /// What its undo did, or the last error.
    pub detail: Option<String>,
    /// The command that finishes its undo by hand, while it is owed.
    pub manual: Option<String>,
    /// The groups it reached, each with its recovery once the fault ended.
    pub groups: Vec<FaultGroup>,
}

/// A group a fault reached, and the host's measure of its recovery from
/// the fault's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultGroup {
    /// The group.
    pub group: String,
    /// Recovered, not recovered, pending; unchecked for a dry run or a
    /// fault that failed.
    pub verdict: HostVerdict,
    /// Seconds from the fault's end to the group seen recovered.
    pub recovery_seconds: Option<f64>,
}

impl FaultReport {
    /// `; web recovered in 12.0 s, api not-recovered` (empty without
    /// groups), plugin text made safe.
    pub fn recovery_line(&self) -> String {
        let each: Vec<String> = self
            .groups
            .iter()
            .map(|g| match g.recovery_seconds {
                Some(s) => format!("{} recovered in {s:.1} s", text::one_line(&g.group)),
                None => format!("{} {}", text::one_line(&g.group), g.verdict),
            })
            .collect();
        if each.is_empty() {
            String::new()
        } else {
            format!("; {}", each.join(", "))
        }
    }

    /// Every group it reached recovered (or had nothing to recover from);
    /// a fault still owed is judged by its undo, not here.
    fn recovered_or_owed(&self) -> bool {
        match self.status {
            FaultStatus::Owed | FaultStatus::UndoFailed => true,
            _ => self
                .groups
                .iter()
                .all(|g| matches!(g.verdict, HostVerdict::Recovered | HostVerdict::Unchecked)),
        }
    }

    /// Seconds until the last of its groups recovered, once all have.
    pub fn recovery_seconds(&self) -> Option<f64> {
        if self.groups.is_empty() {
            return None;
        }
        self.groups
            .iter()
            .map(|g| g.recovery_seconds)
            .try_fold(0.0_f64, |worst, s| s.map(|s| worst.max(s)))
    }
}

/// A group's capacity as the host saw it at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityPoint {
    /// The experiment during which it was read.
    pub experiment: usize,
    /// The group.
    pub group: String,
    /// Run clock, ms.
    pub clock_ms: u64,
    /// Its desired capacity.
    pub desired: u32,
    /// Its members in service.
    pub in_service: u32,
}

/// What stopped a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StopReport {
    /// The stop condition's name, or `kill-switch`.
    pub condition: String,
    /// Whether it was the kill switch.
    pub paused: bool,
    /// What the host saw.
    pub saw: String,
    /// When, in seconds on the backend's clock.
    pub at_seconds: f64,
}

named! {
    /// A run's outcome as a whole, worst first when several apply; its name
    /// is what `--json` and the history write.
    RunOutcome {
        /// The kill switch was set: nothing ran, or the run stopped.
        Paused = "paused",
        /// A stop condition tripped.
        Stopped = "stopped",
        /// The operator interrupted it (Ctrl-C, SIGTERM).
        Interrupted = "interrupted",
        /// An experiment failed, or the journal ends before the run did.
        ExperimentFailed = "experiment-failed",
        /// A victim did not recover, a termination failed, or a steady
        /// state that held before the run does not after it.
        NotRecovered = "not-recovered",
        /// Nothing went wrong that the run saw, but it could not see all:
        /// a backend call made for the plugin failed, or a notification
        /// was not delivered.
        Inconclusive = "inconclusive",
        /// Everything went as intended.
        Succeeded = "succeeded",
    }
}

impl RunOutcome {
    /// The process exit code `wasmonkey run` ends with (1 and 2 are taken by
    /// errors before a run and by bad command lines).
    pub fn exit_code(self) -> u8 {
        match self {
            RunOutcome::Succeeded => 0,
            RunOutcome::NotRecovered => 3,
            RunOutcome::ExperimentFailed => 4,
            RunOutcome::Stopped => 5,
            RunOutcome::Paused => 6,
            RunOutcome::Inconclusive => 7,
            RunOutcome::Interrupted => 8,
        }
    }
}

/// One experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentReport {
    /// Its position in the config, from 0.
    pub index: usize,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
    /// The plugin component's sha256.
    pub sha256: String,
    /// Every parameter it ran with, the operator's value or the default.
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
    /// What it was allowed to do.
    pub grants: Vec<String>,
    /// Whether the journal records its end.
    pub finished: bool,
    /// The plugin's summary.
    pub summary: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// What the policy refused it.
    pub denials: Vec<DenialReport>,
    /// What it published.
    pub notifications: Vec<NotificationReport>,
    /// A dry run's `--preflight` answers, one per termination checked.
    pub preflight: Vec<PreflightReport>,
    /// The limits the plugin ran under (absent when it never started).
    pub limits: Option<Limits>,
    /// The limit whose breach ended the plugin, by its config key.
    pub limit_breached: Option<String>,
    /// Run clock at its start and end, ms.
    pub started_clock_ms: Option<u64>,
    /// Run clock at its end, ms.
    pub finished_clock_ms: Option<u64>,
    /// The plugin's log lines the journal kept.
    pub logs: Vec<LogReport>,
}

/// A plugin's log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogReport {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The plugin's words, bounded.
    pub message: String,
    /// Run clock, ms.
    pub clock_ms: u64,
}

/// A refused operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenialReport {
    /// Run clock, ms.
    pub clock_ms: u64,
    /// The import called, e.g. `terminate`.
    pub operation: String,
    /// What it named.
    pub target: String,
    /// The rule that refused it.
    pub rule: String,
    /// The refusal, for the operator.
    pub message: String,
}

/// Whether the cloud would permit a dry run's termination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreflightReport {
    /// The instance.
    pub instance_id: String,
    /// Whether it would be permitted.
    pub permitted: bool,
    /// What the cloud said when it would not.
    pub detail: String,
}

/// A notification and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationReport {
    /// The channel's name.
    pub channel: String,
    /// Where it went: the topic or event bus with its region and account
    /// (and role), or `webhook to HOST`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The subject line.
    pub subject: String,
    /// What became of it.
    pub status: NotificationStatus,
    /// How many times it was tried.
    pub attempts: u32,
}

/// One victim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VictimReport {
    /// Its experiment's position in the config, from 0.
    pub experiment: usize,
    /// The plugin that asked for it.
    pub plugin: String,
    /// The instance.
    pub instance_id: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its zone.
    pub zone: String,
    /// Its zone's id, when the backend told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// The plugin's reason.
    pub reason: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// What became of the termination.
    pub status: VictimStatus,
    /// Plugin clock (from its experiment's start) at the termination
    /// request, ms.
    pub terminated_at_ms: u64,
    /// Run clock at the termination request, ms.
    pub run_clock_ms: u64,
    /// The host's measure: termination to recovered group.
    pub recovery_seconds: Option<f64>,
    /// The host's measure of its recovery.
    pub host_verdict: HostVerdict,
    /// What the plugin said, if it said.
    pub plugin_verdict: Option<String>,
    /// What the plugin measured: termination to its recovered verdict.
    pub plugin_recovery_seconds: Option<f64>,
}

impl VictimReport {
    /// Its zone, with the zone's id when known: `us-east-1a (use1-az2)`.
    pub fn zone_shown(&self) -> String {
        match &self.zone_id {
            Some(id) => format!("{} ({id})", self.zone),
            None => self.zone.clone(),
        }
    }
}

impl ExperimentReport {
    fn new(index: usize, plugin: &str, version: &str) -> ExperimentReport {
        ExperimentReport {
            index,
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            sha256: String::new(),
            params: std::collections::BTreeMap::new(),
            grants: Vec::new(),
            finished: false,
            summary: None,
            error: None,
            denials: Vec::new(),
            notifications: Vec::new(),
            preflight: Vec::new(),
            limits: None,
            limit_breached: None,
            started_clock_ms: None,
            finished_clock_ms: None,
            logs: Vec::new(),
        }
    }
}

/// The text report's victims table.
const VICTIM_COLUMNS: [&str; 7] = [
    "instance",
    "group",
    "zone",
    "status",
    "recovery",
    "host verdict",
    "plugin",
];

/// The most bytes of a table cell: a longer name is cut, and the cut marked.
const CELL: usize = 64;

/// Rows under a header, each column as wide as its widest cell; the fifth
/// (a duration) right-aligned. Cells are already made safe.
fn table<const N: usize>(out: &mut String, header: [&str; N], rows: Vec<[String; N]>) {
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                let _ = write!(text, "  {cell:>width$}");
            } else {
                let _ = write!(text, "  {cell:<width$}");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl Report {
    /// Build a report from a journal's entries: each entry in turn, by its
    /// event ([`read`]), then what the journal's end says.
    pub fn from_journal(replay: &Replay, journal: &Path) -> Report {
        let mut reader = read::Reader::new(journal, replay);
        for entry in &replay.entries {
            reader.entry(entry);
        }
        let mut report = reader.finish();
        report.add_notes(replay);
        report.outcome = report.judge();
        report
    }

    /// What the reader of the report must know: a torn or cut-short
    /// journal, victims in doubt, an interrupted run.
    fn add_notes(&mut self, replay: &Replay) {
        if let Some(line) = replay.torn_tail {
            self.notes.push(format!(
                "line {line} of the journal was cut off mid-write and is ignored"
            ));
        }
        if !self.complete {
            let last = replay.entries.last().map_or(0, |e| e.seq);
            self.notes.push(format!(
                "the journal ends after entry {last}: the run was cut short; anything after it is unknown"
            ));
        }
        for v in &self.victims {
            let why = match v.status {
                VictimStatus::Unknown => "was about to be terminated when the journal ends",
                VictimStatus::Uncertain => {
                    "may or may not be terminated: the call failed and the host could not tell"
                }
                _ => continue,
            };
            self.notes
                .push(format!("{} {why}: check it by hand", v.instance_id));
        }
        if self.interrupted {
            self.notes
                .push("the run was interrupted (Ctrl-C or SIGTERM)".into());
        }
        for fault in &self.faults {
            if matches!(fault.status, FaultStatus::Owed | FaultStatus::UndoFailed) {
                self.notes.push(format!(
                    "fault {} ({} of {}) was NOT undone: run `wasmonkey recover`, or by hand: {}",
                    fault.fault_id,
                    fault.kind,
                    text::one_line(&fault.target),
                    fault.manual.as_deref().unwrap_or("?")
                ));
            }
            for g in &fault.groups {
                if g.verdict == HostVerdict::NotRecovered {
                    self.notes.push(format!(
                        "group {} did not recover after fault {} ({} of {}) ended",
                        text::one_line(&g.group),
                        fault.fault_id,
                        fault.kind,
                        text::one_line(&fault.target)
                    ));
                }
            }
        }
    }

    fn judge(&self) -> RunOutcome {
        match &self.stopped {
            Some(stop) if stop.paused => return RunOutcome::Paused,
            Some(_) => return RunOutcome::Stopped,
            None => {}
        }
        if self.interrupted {
            return RunOutcome::Interrupted;
        }
        if !self.complete || self.experiments.iter().any(|e| e.error.is_some()) {
            return RunOutcome::ExperimentFailed;
        }
        if !self.succeeded() {
            return RunOutcome::NotRecovered;
        }
        let after_unknown = self
            .steady_state
            .iter()
            .any(|s| s.after.as_ref().is_some_and(|r| r.held.is_none()));
        let undelivered = self.every_notification().any(|n| {
            matches!(
                n.status,
                NotificationStatus::Failed | NotificationStatus::Unknown
            )
        });
        let owed = self
            .faults
            .iter()
            .any(|f| matches!(f.status, FaultStatus::Owed | FaultStatus::UndoFailed));
        if undelivered || owed || after_unknown || !self.unknowns.is_empty() {
            RunOutcome::Inconclusive
        } else {
            RunOutcome::Succeeded
        }
    }

    /// Every notification of the run: each experiment's (its plugin's),
    /// then the run's own.
    pub fn every_notification(&self) -> impl Iterator<Item = &NotificationReport> {
        self.experiments
            .iter()
            .flat_map(|e| &e.notifications)
            .chain(&self.notifications)
    }

    /// Whether the run went as intended: it finished, no experiment failed,
    /// every termination went through (or was a dry run), and every real
    /// victim recovered.
    pub fn succeeded(&self) -> bool {
        self.complete
            && self.stopped.is_none()
            && self.experiments.iter().all(|e| e.error.is_none())
            && self.victims.iter().all(|v| match v.status {
                VictimStatus::Terminated => {
                    v.host_verdict == HostVerdict::Recovered || v.group.is_none()
                }
                VictimStatus::DryRun => true,
                VictimStatus::Failed | VictimStatus::Uncertain | VictimStatus::Unknown => false,
            })
            && self.faults.iter().all(FaultReport::recovered_or_owed)
            && self
                .steady_state
                .iter()
                .all(|s| s.after.as_ref().is_none_or(|r| r.held != Some(false)))
    }

    /// One line per victim with its recovery time, for notifications.
    pub fn recovery_lines(&self) -> String {
        let mut out = String::new();
        for v in &self.victims {
            let fate = match (v.status, v.recovery_seconds) {
                (_, Some(seconds)) => format!("recovered in {seconds:.1} s"),
                (VictimStatus::DryRun, _) => "dry run: not terminated".to_owned(),
                (VictimStatus::Failed, _) => "termination failed".to_owned(),
                _ => format!("{} ({})", v.host_verdict, v.status),
            };
            let _ = writeln!(
                out,
                "{} ({}, {}) by {}: {fate}",
                safe(&v.instance_id),
                safe(v.group.as_deref().unwrap_or("no group")),
                safe(&v.zone_shown()),
                safe(&v.plugin)
            );
        }
        if self.victims.is_empty() {
            out.push_str("no victims\n");
        }
        out
    }

    /// Human-readable summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mode = match self.dry_run {
            Some(true) => "dry run (leashed: nothing was changed; pass --execute to act)",
            Some(false) => "executed",
            None => "unknown mode",
        };
        let _ = writeln!(
            out,
            "wasmonkey run {} on {} — seed {} — {mode}",
            safe(self.run_id.as_deref().unwrap_or("?")),
            safe(self.backend.as_deref().unwrap_or("?")),
            self.seed.map_or("?".to_string(), |s| s.to_string()),
        );
        if let (Some(started), Some(ended)) = (&self.started_at, &self.ended_at) {
            let _ = writeln!(
                out,
                "started {started}, ended {ended} ({:.1} s){}{}",
                self.wall_seconds.unwrap_or(0.0),
                self.operator
                    .as_deref()
                    .map_or(String::new(), |o| format!(", by {}", safe(o))),
                self.target
                    .as_deref()
                    .map_or(String::new(), |t| format!(", on {}", safe(t))),
            );
        }
        if self.account.is_some() || self.region.is_some() {
            let _ = writeln!(
                out,
                "account {}, region {}",
                safe(self.account.as_deref().unwrap_or("?")),
                safe(self.region.as_deref().unwrap_or("?"))
            );
        }
        if let Some(stop) = &self.stopped {
            let _ = writeln!(
                out,
                "STOPPED by {} at {:.1} s: {}",
                safe(&stop.condition),
                stop.at_seconds,
                safe(&stop.saw)
            );
        }
        if let Some(rules) = &self.in_force {
            let _ = writeln!(out, "scope: {}", safe(&rules.scope));
            let _ = writeln!(out, "in scope at the start: {}", safe(&rules.in_scope));
            let _ = writeln!(out, "blast radius: {}", safe(&rules.blast_radius));
        }
        for brake in self.brakes.iter().filter(|b| !b.always_clear_switch()) {
            let _ = writeln!(
                out,
                "brake {} ({}): at the start {}; at the end {}",
                safe(&brake.name),
                safe(&brake.rule),
                BrakeSeen::shown(brake.before.as_ref()),
                BrakeSeen::shown(brake.after.as_ref())
            );
        }
        for check in &self.steady_state {
            let reading = |r: Option<&SteadyReading>| match r {
                Some(r) => format!(
                    "{} ({})",
                    SteadyStateReport::verdict(Some(r)),
                    text::shown(&r.saw, 300)
                ),
                None => "not read".to_owned(),
            };
            let _ = writeln!(
                out,
                "steady state {}: before {}; after {}",
                safe(&check.name),
                reading(check.before.as_ref()),
                reading(check.after.as_ref())
            );
        }
        for experiment in &self.experiments {
            let _ = writeln!(
                out,
                "\nexperiment {} — {}@{}",
                experiment.index + 1,
                safe(&experiment.plugin),
                safe(&experiment.version)
            );
            let victims: Vec<&VictimReport> = self
                .victims
                .iter()
                .filter(|v| v.experiment == experiment.index)
                .collect();
            if victims.is_empty() {
                let _ = writeln!(out, "  no victims");
            } else {
                let rows = victims.iter().map(|v| {
                    [
                        text::shown(&v.instance_id, CELL),
                        text::shown(v.group.as_deref().unwrap_or("-"), CELL),
                        text::shown(&v.zone_shown(), CELL),
                        v.status.to_string(),
                        v.recovery_seconds
                            .map_or("-".to_string(), |s| format!("{s:.1} s")),
                        v.host_verdict.to_string(),
                        text::shown(v.plugin_verdict.as_deref().unwrap_or("-"), CELL),
                    ]
                });
                table(&mut out, VICTIM_COLUMNS, rows.collect());
            }
            for f in self
                .faults
                .iter()
                .filter(|f| f.experiment == experiment.index)
            {
                let _ = writeln!(
                    out,
                    "  fault {} {} {}: {}{}{}",
                    safe(&f.fault_id),
                    safe(&f.kind),
                    safe(&f.target),
                    f.status,
                    f.detail
                        .as_deref()
                        .map_or(String::new(), |d| format!(" ({})", safe(d))),
                    f.recovery_line()
                );
            }
            for d in &experiment.denials {
                let _ = writeln!(
                    out,
                    "  denied {} {} [{}]: {}",
                    safe(&d.operation),
                    safe(&d.target),
                    safe(&d.rule),
                    safe(&d.message)
                );
            }
            for p in &experiment.preflight {
                let _ = match p.permitted {
                    true => writeln!(out, "  preflight {}: permitted", safe(&p.instance_id)),
                    false => writeln!(
                        out,
                        "  preflight {}: REFUSED: {}",
                        safe(&p.instance_id),
                        safe(&p.detail)
                    ),
                };
            }
            for n in &experiment.notifications {
                let _ = match n.status {
                    NotificationStatus::WouldPublish => writeln!(
                        out,
                        "  would publish to {} \"{}\" (dry run: not sent)",
                        safe(&n.channel),
                        safe(&n.subject)
                    ),
                    _ => writeln!(
                        out,
                        "  notified {}{} \"{}\": {} after {} attempt(s)",
                        safe(&n.channel),
                        n.to.as_ref()
                            .map_or(String::new(), |to| format!(" ({})", safe(to))),
                        safe(&n.subject),
                        n.status,
                        n.attempts
                    ),
                };
            }
            if let Some(summary) = &experiment.summary {
                let _ = writeln!(out, "  summary: {}", safe(summary));
            }
            if let Some(error) = &experiment.error {
                let _ = writeln!(out, "  error: {}", safe(error));
            }
        }
        for n in &self.notifications {
            let _ = match n.status {
                NotificationStatus::WouldPublish => writeln!(
                    out,
                    "\nrun notification to {}: would publish (dry run: not sent)",
                    safe(&n.channel)
                ),
                _ => writeln!(
                    out,
                    "\nrun notification to {}: {} after {} attempt(s)",
                    safe(&n.channel),
                    n.status,
                    n.attempts
                ),
            };
        }
        for unknown in &self.unknowns {
            let _ = writeln!(out, "\nunknown: {}", safe(unknown));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nnote: {}", safe(note));
        }
        let _ = writeln!(out, "\njournal: {}", safe(&self.journal));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns are as wide as their widest cell: a long group name moves the
    /// columns after it on every row alike, and durations line up on the
    /// right.
    #[test]
    fn a_tables_columns_fit_their_widest_cell() {
        let row = |group: &str, recovery: &str| {
            [
                "i-1",
                group,
                "us-east-1a",
                "terminated",
                recovery,
                "recovered",
                "-",
            ]
            .map(str::to_owned)
        };
        let mut out = String::new();
        table(
            &mut out,
            VICTIM_COLUMNS,
            vec![
                row("checkout-web-production", "40.0 s"),
                row("api", "120.5 s"),
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let zone_at: Vec<usize> = lines
            .iter()
            .map(|l| l.find("zone").or_else(|| l.find("us-east-1a")).unwrap())
            .collect();
        assert!(zone_at.iter().all(|&at| at == zone_at[0]), "{out}");
        let end_of = |l: &str, s: &str| l.find(s).map(|at| at + s.len()).unwrap();
        assert_eq!(
            end_of(lines[1], "40.0 s"),
            end_of(lines[2], "120.5 s"),
            "{out}"
        );
        assert_eq!(
            end_of(lines[0], "recovery"),
            end_of(lines[2], "120.5 s"),
            "{out}"
        );
    }
}
