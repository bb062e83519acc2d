//! Reading a journal into a report, one event at a time: each event has its
//! own method, and the reader keeps only what later events need to find
//! their victim, experiment or notification.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    seconds, BrakeReport, BrakeSeen, CapacityPoint, DenialReport, ExperimentReport, FaultGroup,
    FaultReport, FaultStatus, HostVerdict, InForce, LogReport, NotificationReport,
    NotificationStatus, PreflightReport, Report, RunOutcome, SteadyReading, SteadyStateReport,
    StopReport, VictimReport, VictimStatus,
};
use crate::journal::{Entry, Event, Phase, PluginOutcome, Replay};
use crate::limits::Limits;

/// A report being read from a journal.
pub(super) struct Reader {
    report: Report,
    experiments: BTreeMap<usize, ExperimentReport>,
    /// Clock of each experiment's start, to express times on the plugin's
    /// clock.
    started_at: BTreeMap<usize, u64>,
    /// The latest victim of each (experiment, instance): a journal of
    /// hundreds of victims is read in one pass, not one per outcome.
    latest: BTreeMap<(usize, String), usize>,
}

impl Reader {
    /// An empty report of `journal`.
    pub(super) fn new(journal: &Path, replay: &Replay) -> Reader {
        Reader {
            report: Report {
                run_id: None,
                backend: None,
                seed: None,
                dry_run: None,
                clock_origin_ms: None,
                config: None,
                host_version: None,
                operator: None,
                target: None,
                started_at: replay.entries.first().map(|e| rfc3339(e.at)),
                ended_at: replay.entries.last().map(|e| rfc3339(e.at)),
                wall_seconds: match (replay.entries.first(), replay.entries.last()) {
                    (Some(first), Some(last)) => {
                        Some((last.at - first.at).as_seconds_f64().max(0.0))
                    }
                    _ => None,
                },
                complete: false,
                interrupted: false,
                stopped: None,
                outcome: RunOutcome::Succeeded,
                journal: journal.display().to_string(),
                experiments: Vec::new(),
                victims: Vec::new(),
                notifications: Vec::new(),
                unknowns: Vec::new(),
                notes: Vec::new(),
                capacity: Vec::new(),
                faults: Vec::new(),
                last_clock_ms: replay.entries.last().map_or(0, |e| e.clock_ms),
                steady_state: Vec::new(),
                in_force: None,
                account: None,
                region: None,
                brakes: Vec::new(),
            },
            experiments: BTreeMap::new(),
            started_at: BTreeMap::new(),
            latest: BTreeMap::new(),
        }
    }

    /// The report of every entry read, with its experiments in order.
    pub(super) fn finish(mut self) -> Report {
        self.report.experiments = self.experiments.into_values().collect();
        self.report
    }

    /// Read one entry.
    pub(super) fn entry(&mut self, entry: &Entry) {
        let index = entry.experiment.unwrap_or(0);
        match &entry.event {
            Event::RunStarted {
                run_id,
                backend,
                seed,
                dry_run,
                clock_origin_ms,
                config,
                host_version,
                operator,
                target,
                account,
                region,
            } => {
                let written_ms =
                    i64::try_from(entry.at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                let report = &mut self.report;
                report.clock_origin_ms = clock_origin_ms.or(Some(
                    written_ms.saturating_sub(i64::try_from(entry.clock_ms).unwrap_or(0)),
                ));
                report.run_id = Some(run_id.clone());
                report.backend = Some(backend.clone());
                report.seed = Some(*seed);
                report.dry_run = Some(*dry_run);
                report.config = Some(config.clone());
                report.host_version = Some(host_version.clone());
                report.operator.clone_from(operator);
                report.target.clone_from(target);
                report.account.clone_from(account);
                report.region.clone_from(region);
            }
            Event::ExperimentStarted {
                plugin,
                version,
                sha256,
                limits,
                params,
                grants,
            } => {
                self.experiment_started(index, entry.clock_ms, plugin, version, sha256, limits);
                if let Some(started) = self.experiments.get_mut(&index) {
                    started.params.clone_from(params);
                    started.grants.clone_from(grants);
                }
            }
            Event::TerminateIntent {
                instance_id,
                group,
                zone,
                zone_id,
                reason,
                dry_run,
            } => self.terminate_intent(
                index,
                entry.clock_ms,
                VictimReport {
                    experiment: index,
                    plugin: String::new(),
                    instance_id: instance_id.clone(),
                    group: group.clone(),
                    zone: zone.clone(),
                    zone_id: zone_id.clone(),
                    reason: reason.clone(),
                    dry_run: *dry_run,
                    status: VictimStatus::Unknown,
                    terminated_at_ms: 0,
                    run_clock_ms: entry.clock_ms,
                    recovery_seconds: None,
                    host_verdict: HostVerdict::Pending,
                    plugin_verdict: None,
                    plugin_recovery_seconds: None,
                },
            ),
            Event::TerminateDone {
                instance_id,
                dry_run,
                ..
            } => {
                if let Some(v) = self.victim(index, instance_id) {
                    v.status = if *dry_run {
                        VictimStatus::DryRun
                    } else {
                        VictimStatus::Terminated
                    };
                    if *dry_run || v.group.is_none() {
                        v.host_verdict = HostVerdict::Unchecked;
                    }
                }
            }
            Event::TerminateFailed {
                instance_id,
                uncertain,
                ..
            } => {
                if let Some(v) = self.victim(index, instance_id) {
                    v.status = if *uncertain {
                        VictimStatus::Uncertain
                    } else {
                        VictimStatus::Failed
                    };
                    v.host_verdict = HostVerdict::Unchecked;
                }
            }
            Event::Recovered {
                instance_id,
                recovery_ms,
                ..
            } => {
                if let Some(v) = self.victim(index, instance_id) {
                    v.recovery_seconds = Some(seconds(*recovery_ms));
                    v.host_verdict = HostVerdict::Recovered;
                }
            }
            Event::NotRecovered { instance_id, .. } => {
                if let Some(v) = self.victim(index, instance_id) {
                    v.host_verdict = HostVerdict::NotRecovered;
                }
            }
            Event::Denied {
                operation,
                target,
                rule,
                message,
            } => {
                if crate::policy::UNKNOWING_RULES.contains(&rule.as_str()) {
                    self.report.unknowns.push(format!(
                        "experiment {}: {operation} of {target} denied, {rule}: {message}",
                        index + 1
                    ));
                }
                if let Some(experiment) = self.experiments.get_mut(&index) {
                    experiment.denials.push(DenialReport {
                        clock_ms: entry.clock_ms,
                        operation: operation.clone(),
                        target: target.clone(),
                        rule: rule.clone(),
                        message: message.clone(),
                    });
                }
            }
            Event::NotifyIntent {
                channel,
                subject,
                to,
                ..
            } => self.notify_intent(entry.experiment, channel, subject, to.as_deref()),
            Event::NotifyWithheld { .. } => {
                self.notify_outcome(entry.experiment, 0, NotificationStatus::WouldPublish);
            }
            Event::Preflight {
                instance_id,
                permitted,
                detail,
            } => {
                if let Some(experiment) = self.experiments.get_mut(&index) {
                    experiment.preflight.push(PreflightReport {
                        instance_id: instance_id.clone(),
                        permitted: *permitted,
                        detail: detail.clone(),
                    });
                }
            }
            Event::NotifyDone { attempt, .. } => {
                self.notify_outcome(entry.experiment, *attempt, NotificationStatus::Delivered);
            }
            Event::NotifyFailed { attempt, .. } => {
                self.notify_outcome(entry.experiment, *attempt, NotificationStatus::Failed);
            }
            Event::PluginLog { level, message } => {
                if let Some(experiment) = self.experiments.get_mut(&index) {
                    experiment.logs.push(LogReport {
                        level: level.clone(),
                        message: message.clone(),
                        clock_ms: entry.clock_ms,
                    });
                }
            }
            Event::Capacity { group, capacity } => self.report.capacity.push(CapacityPoint {
                experiment: index,
                group: group.clone(),
                clock_ms: entry.clock_ms,
                desired: capacity.desired,
                in_service: capacity.in_service,
            }),
            Event::Suppressed {
                log_lines,
                log_bytes,
                denials,
                call_failures,
            } => {
                self.report.notes.push(format!(
                    "experiment {}: {log_lines} log line(s) ({log_bytes} bytes), {denials} denial(s) and {call_failures} failed call(s) over the per-run bounds were counted, not journalled",
                    index + 1
                ));
                if *call_failures > 0 {
                    self.report.unknowns.push(format!(
                        "experiment {}: {call_failures} more failed backend call(s)",
                        index + 1
                    ));
                }
            }
            Event::CallFailed { operation, error } => {
                self.report.unknowns.push(format!(
                    "experiment {}: {operation} failed: {error}",
                    index + 1
                ));
            }
            Event::ExperimentFinished {
                plugin,
                outcome,
                error,
                limit,
            } => self.experiment_finished(
                index,
                entry.clock_ms,
                plugin,
                outcome.as_ref(),
                error,
                limit,
            ),
            Event::InForce {
                scope,
                in_scope,
                blast_radius,
                channels,
                preflight,
            } => {
                self.report.in_force.get_or_insert_with(|| InForce {
                    scope: scope.clone(),
                    in_scope: in_scope.clone(),
                    blast_radius: blast_radius.clone(),
                    channels: channels.clone(),
                    preflight: *preflight,
                });
            }
            Event::Brakes { phase, readings } => {
                for reading in readings {
                    let seen = BrakeSeen {
                        state: reading.state,
                        saw: reading.saw.clone(),
                        at_seconds: seconds(entry.clock_ms),
                    };
                    let brakes = &mut self.report.brakes;
                    let at = match brakes
                        .iter()
                        .position(|b| b.name == reading.name && b.rule == reading.rule)
                    {
                        Some(at) => at,
                        None => {
                            brakes.push(BrakeReport {
                                name: reading.name.clone(),
                                rule: reading.rule.clone(),
                                before: None,
                                after: None,
                            });
                            brakes.len() - 1
                        }
                    };
                    let brake = &mut brakes[at];
                    match phase {
                        Phase::Before => brake.before.get_or_insert(seen),
                        Phase::After => brake.after.get_or_insert(seen),
                    };
                }
            }
            Event::SteadyState {
                name,
                phase,
                held,
                saw,
            } => {
                let reading = SteadyReading {
                    held: *held,
                    saw: saw.clone(),
                    at_seconds: seconds(entry.clock_ms),
                };
                let at = match self
                    .report
                    .steady_state
                    .iter()
                    .position(|s| &s.name == name)
                {
                    Some(at) => at,
                    None => {
                        self.report.steady_state.push(SteadyStateReport {
                            name: name.clone(),
                            before: None,
                            after: None,
                        });
                        self.report.steady_state.len() - 1
                    }
                };
                let check = &mut self.report.steady_state[at];
                match phase {
                    Phase::Before => check.before.get_or_insert(reading),
                    Phase::After => check.after.get_or_insert(reading),
                };
            }
            Event::StopTripped {
                condition,
                paused,
                saw,
            } => {
                self.report.stopped.get_or_insert(StopReport {
                    condition: condition.clone(),
                    paused: *paused,
                    saw: saw.clone(),
                    at_seconds: seconds(entry.clock_ms),
                });
            }
            fault @ (Event::FaultIntent { .. }
            | Event::FaultApplied { .. }
            | Event::FaultFailed { .. }
            | Event::FaultUndone { .. }
            | Event::FaultRecovered { .. }
            | Event::FaultNotRecovered { .. }
            | Event::UndoFailed { .. }) => self.fault(index, entry.clock_ms, fault),
            Event::RunFinished { interrupted } => {
                self.report.complete = true;
                self.report.interrupted = *interrupted;
            }
        }
    }

    /// The latest victim of this instance in this experiment.
    fn victim(&mut self, index: usize, id: &str) -> Option<&mut VictimReport> {
        let i = *self.latest.get(&(index, id.to_owned()))?;
        self.report.victims.get_mut(i)
    }

    fn experiment_started(
        &mut self,
        index: usize,
        clock_ms: u64,
        plugin: &str,
        version: &str,
        sha256: &str,
        limits: &Limits,
    ) {
        self.started_at.insert(index, clock_ms);
        let mut started = ExperimentReport::new(index, plugin, version);
        sha256.clone_into(&mut started.sha256);
        started.limits = Some(*limits);
        started.started_clock_ms = Some(clock_ms);
        self.experiments.insert(index, started);
    }

    /// A new victim, on its experiment's clock; later events find it by
    /// instance.
    fn terminate_intent(&mut self, index: usize, clock_ms: u64, mut victim: VictimReport) {
        victim.plugin = self
            .experiments
            .get(&index)
            .map(|e| e.plugin.clone())
            .unwrap_or_default();
        let start = self.started_at.get(&index).copied().unwrap_or(0);
        victim.terminated_at_ms = clock_ms.saturating_sub(start);
        self.latest.insert(
            (index, victim.instance_id.clone()),
            self.report.victims.len(),
        );
        self.report.victims.push(victim);
    }

    /// A notification of the run (no experiment) or of an experiment.
    fn notify_intent(
        &mut self,
        experiment: Option<usize>,
        channel: &str,
        subject: &str,
        to: Option<&str>,
    ) {
        let notification = NotificationReport {
            channel: channel.to_owned(),
            to: to.map(str::to_owned),
            subject: subject.to_owned(),
            status: NotificationStatus::Unknown,
            attempts: 0,
        };
        match experiment {
            None => self.report.notifications.push(notification),
            Some(index) => {
                if let Some(experiment) = self.experiments.get_mut(&index) {
                    experiment.notifications.push(notification);
                }
            }
        }
    }

    /// What became of the latest notification of the run or experiment.
    fn notify_outcome(
        &mut self,
        experiment: Option<usize>,
        attempt: u32,
        status: NotificationStatus,
    ) {
        let last = match experiment {
            None => self.report.notifications.last_mut(),
            Some(index) => self
                .experiments
                .get_mut(&index)
                .and_then(|e| e.notifications.last_mut()),
        };
        if let Some(n) = last {
            n.attempts = attempt;
            n.status = status;
        }
    }

    /// An experiment's end, with what its plugin said of its victims. One
    /// that ended before it started (its plugin did not load, asked too
    /// much, got bad params) is still reported, with why.
    fn experiment_finished(
        &mut self,
        index: usize,
        clock_ms: u64,
        plugin: &str,
        outcome: Option<&PluginOutcome>,
        error: &Option<String>,
        limit: &Option<String>,
    ) {
        let experiment = self
            .experiments
            .entry(index)
            .or_insert_with(|| ExperimentReport::new(index, plugin, "?"));
        experiment.finished = true;
        experiment.finished_clock_ms = Some(clock_ms);
        experiment.error.clone_from(error);
        experiment.limit_breached.clone_from(limit);
        experiment.summary = outcome.map(|o| o.summary.clone());
        for claimed in outcome.iter().flat_map(|o| &o.victims) {
            if let Some(v) = self.victim(index, &claimed.instance_id) {
                v.plugin_verdict = Some(claimed.verdict.clone());
                v.plugin_recovery_seconds = claimed
                    .recovered_at_ms
                    .map(|at| seconds(at.saturating_sub(v.terminated_at_ms)));
            }
        }
    }
}

impl Reader {
    /// A fault's event: its intent starts its report, the others settle it.
    fn fault(&mut self, experiment: usize, clock_ms: u64, event: &Event) {
        if let Event::FaultIntent {
            fault_id,
            kind,
            target,
            dry_run,
            undo,
            groups,
            ..
        } = event
        {
            self.report.faults.push(FaultReport {
                experiment,
                fault_id: fault_id.clone(),
                kind: kind.clone(),
                target: target.clone(),
                run_clock_ms: clock_ms,
                undone_clock_ms: None,
                status: match (dry_run, undo) {
                    (true, _) => FaultStatus::DryRun,
                    (false, Some(_)) => FaultStatus::Owed,
                    (false, None) => FaultStatus::Applied,
                },
                detail: None,
                manual: undo.as_ref().map(crate::faults::Undo::manual),
                groups: groups
                    .iter()
                    .map(|group| FaultGroup {
                        group: group.clone(),
                        verdict: if *dry_run {
                            HostVerdict::Unchecked
                        } else {
                            HostVerdict::Pending
                        },
                        recovery_seconds: None,
                    })
                    .collect(),
            });
            return;
        }
        let id = match event {
            Event::FaultApplied { fault_id, .. }
            | Event::FaultFailed { fault_id, .. }
            | Event::FaultUndone { fault_id, .. }
            | Event::FaultRecovered { fault_id, .. }
            | Event::FaultNotRecovered { fault_id, .. }
            | Event::UndoFailed { fault_id, .. } => fault_id,
            _ => return,
        };
        let Some(fault) = self
            .report
            .faults
            .iter_mut()
            .rev()
            .find(|f| f.fault_id == *id && f.experiment == experiment)
        else {
            return;
        };
        match event {
            Event::FaultFailed { error, .. } => {
                if fault.status != FaultStatus::Owed {
                    fault.status = FaultStatus::Failed;
                    // Nothing happened to them: nothing to recover.
                    for g in &mut fault.groups {
                        g.verdict = HostVerdict::Unchecked;
                    }
                }
                fault.detail = Some(error.clone());
            }
            Event::FaultUndone { how, .. } => {
                fault.status = FaultStatus::Undone;
                fault.undone_clock_ms = Some(clock_ms);
                fault.detail = Some(how.clone());
                fault.manual = None;
            }
            Event::UndoFailed { error, manual, .. } => {
                fault.status = FaultStatus::UndoFailed;
                fault.detail = Some(error.clone());
                fault.manual = Some(manual.clone());
            }
            Event::FaultRecovered {
                group, recovery_ms, ..
            } => {
                if let Some(g) = fault.groups.iter_mut().find(|g| g.group == *group) {
                    g.verdict = HostVerdict::Recovered;
                    g.recovery_seconds = Some(seconds(*recovery_ms));
                }
            }
            Event::FaultNotRecovered { group, .. } => {
                if let Some(g) = fault.groups.iter_mut().find(|g| g.group == *group) {
                    g.verdict = HostVerdict::NotRecovered;
                }
            }
            _ => {}
        }
    }
}

/// A wall-clock instant as RFC 3339 in UTC, to the second.
fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
