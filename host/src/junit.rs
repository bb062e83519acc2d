//! JUnit XML for CI systems (`--junit FILE`): a run's report, or a
//! simulation, as test suites and cases in the Jenkins schema that Jenkins,
//! GitLab and GitHub's reporters read.
//!
//! A run's file has a failure or an error exactly when its outcome is not
//! `succeeded`: every way [`Report`]'s judgment can fail a run is a case.
//! Failures are what the experiment found (a victim that did not recover, a
//! stop condition that tripped); errors are what the run could not tell (a
//! journal cut short, a fault still owed, a call that failed for the
//! plugin). Names and messages carry plugin text, made safe and bounded.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use crate::daemon::Simulation;
use crate::report::{
    ExperimentReport, FaultReport, FaultStatus, HostVerdict, NotificationStatus, Report,
    RunOutcome, VictimReport, VictimStatus,
};
use crate::text;

/// The most bytes of one name or message.
const MAX_TEXT: usize = 2048;

/// Text for the XML: one line, bounded, without the two noncharacters XML
/// 1.0 forbids (quick-junit drops the C0 controls and escapes markup).
fn safe(text: &str) -> String {
    text::shown(text, MAX_TEXT).replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}")
}

fn status(kind: Option<NonSuccessKind>, message: &str) -> TestCaseStatus {
    let mut status = match kind {
        Some(kind) => TestCaseStatus::non_success(kind),
        None => TestCaseStatus::success(),
    };
    if !message.is_empty() {
        if let TestCaseStatus::NonSuccess { .. } = status {
            status.set_message(safe(message));
        }
    }
    status
}

fn case(name: &str, classname: &str, status: TestCaseStatus) -> TestCase {
    let mut case = TestCase::new(safe(name), status);
    case.set_classname(safe(classname));
    case
}

fn skipped(name: &str, classname: &str, why: &str) -> TestCase {
    let mut status = TestCaseStatus::skipped();
    status.set_message(safe(why));
    case(name, classname, status)
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn timestamp(epoch_ms: i64) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::from_timestamp_millis(epoch_ms).map(|t| t.fixed_offset())
}

/// A run's report as JUnit XML: a suite per experiment (the experiment
/// itself, each victim's recovery, each fault's undo and its groups'
/// recovery) and a suite for the run (the journal, stop conditions and the
/// kill switch, notifications, what the run could not learn).
pub fn render(report: &Report) -> anyhow::Result<String> {
    let run_id = report.run_id.as_deref().unwrap_or("?");
    let mut junit = quick_junit::Report::new(format!("wasmonkey run {}", safe(run_id)));
    let origin = report.clock_origin_ms;
    if let Some(at) = origin.and_then(timestamp) {
        junit.set_timestamp(at);
    }
    junit.set_time(Duration::from_millis(report.last_clock_ms));
    for experiment in &report.experiments {
        junit.add_test_suite(experiment_suite(report, experiment, origin));
    }
    let mut run = run_suite(report);
    // Never say less than the outcome: a run judged anything but
    // `succeeded` fails in the file too, whatever made it so.
    if report.outcome != RunOutcome::Succeeded
        && junit.failures + junit.errors + run.failures + run.errors == 0
    {
        run.add_test_case(case(
            "the run's outcome",
            "wasmonkey.run",
            status(
                Some(NonSuccessKind::Error),
                &format!("outcome {}", report.outcome),
            ),
        ));
    }
    junit.add_test_suite(run);
    Ok(junit.to_string()?)
}

fn experiment_suite(
    report: &Report,
    experiment: &ExperimentReport,
    origin: Option<i64>,
) -> TestSuite {
    let class = format!("wasmonkey.{}", experiment.plugin);
    let mut suite = TestSuite::new(safe(&format!(
        "experiment {}: {}@{}",
        experiment.index, experiment.plugin, experiment.version
    )));
    if let (Some(origin), Some(start)) = (origin, experiment.started_clock_ms) {
        if let Some(at) = timestamp(origin.saturating_add_unsigned(start)) {
            suite.set_timestamp(at);
        }
    }
    if let (Some(start), Some(end)) = (experiment.started_clock_ms, experiment.finished_clock_ms) {
        suite.set_time(Duration::from_millis(end.saturating_sub(start)));
    }
    let ran = match &experiment.error {
        Some(error) => {
            let limit = experiment
                .limit_breached
                .as_ref()
                .map_or(String::new(), |limit| format!(" (limit: {limit})"));
            status(Some(NonSuccessKind::Error), &format!("{error}{limit}"))
        }
        None if !experiment.finished => status(
            Some(NonSuccessKind::Error),
            "the journal ends before the experiment did",
        ),
        None => status(None, ""),
    };
    let mut ran = case("the experiment ran to its end", &class, ran);
    if let Some(summary) = &experiment.summary {
        ran.set_system_out(safe(summary));
    }
    suite.add_test_case(ran);
    for victim in report
        .victims
        .iter()
        .filter(|v| v.experiment == experiment.index)
    {
        suite.add_test_case(victim_case(victim, &class));
    }
    for fault in report
        .faults
        .iter()
        .filter(|f| f.experiment == experiment.index)
    {
        suite.add_test_cases(fault_cases(fault, &class));
    }
    suite
}

fn victim_case(v: &VictimReport, class: &str) -> TestCase {
    let name = format!(
        "{} of group {} in {} recovers",
        v.instance_id,
        v.group.as_deref().unwrap_or("(none)"),
        v.zone
    );
    let (kind, message) = match (v.status, v.host_verdict) {
        (VictimStatus::DryRun, _) => return skipped(&name, class, "dry run: not terminated"),
        (VictimStatus::Terminated, HostVerdict::Recovered) => (None, String::new()),
        (VictimStatus::Terminated, _) if v.group.is_none() => {
            return skipped(&name, class, "terminated; in no group, nothing to recover");
        }
        (VictimStatus::Terminated, HostVerdict::NotRecovered) => (
            Some(NonSuccessKind::Failure),
            "its group did not recover within the recovery timeout".to_owned(),
        ),
        (VictimStatus::Terminated, verdict) => (
            Some(NonSuccessKind::Error),
            format!("recovery {verdict}: the journal ends before it was decided"),
        ),
        (VictimStatus::Failed, _) => (
            Some(NonSuccessKind::Failure),
            "the termination failed".to_owned(),
        ),
        (VictimStatus::Uncertain, _) => (
            Some(NonSuccessKind::Error),
            "the termination failed and the host could not tell whether it took effect".to_owned(),
        ),
        (VictimStatus::Unknown, _) => (
            Some(NonSuccessKind::Error),
            "requested; the journal ends before its outcome".to_owned(),
        ),
    };
    let mut case = case(&name, class, status(kind, &message));
    if let Some(s) = v.recovery_seconds {
        case.set_time(seconds(s));
    }
    case.set_system_out(safe(&format!("reason: {}", v.reason)));
    case
}

fn fault_cases(fault: &FaultReport, class: &str) -> Vec<TestCase> {
    let what = format!(
        "fault {} ({} of {})",
        fault.fault_id, fault.kind, fault.target
    );
    let undo = match fault.status {
        FaultStatus::DryRun => return vec![skipped(&what, class, "dry run: nothing changed")],
        FaultStatus::Undone | FaultStatus::Applied => status(None, ""),
        FaultStatus::Failed => status(Some(NonSuccessKind::Failure), "the fault's call failed"),
        FaultStatus::UndoFailed | FaultStatus::Owed => status(
            Some(NonSuccessKind::Error),
            &format!(
                "NOT undone ({}): run `wasmonkey recover`, or by hand: {}",
                fault.status,
                fault.manual.as_deref().unwrap_or("?")
            ),
        ),
    };
    let mut cases = vec![case(&format!("{what} is undone"), class, undo)];
    for g in &fault.groups {
        let name = format!("group {} recovers after {what}", g.group);
        let (kind, message) = match g.verdict {
            HostVerdict::Recovered => (None, String::new()),
            HostVerdict::Unchecked => {
                cases.push(skipped(&name, class, "nothing to recover from"));
                continue;
            }
            HostVerdict::NotRecovered => (
                Some(NonSuccessKind::Failure),
                "it did not recover within the recovery timeout".to_owned(),
            ),
            HostVerdict::Pending => (
                Some(NonSuccessKind::Error),
                "the journal ends before its recovery was decided".to_owned(),
            ),
        };
        let mut c = case(&name, class, status(kind, &message));
        if let Some(s) = g.recovery_seconds {
            c.set_time(seconds(s));
        }
        cases.push(c);
    }
    cases
}

fn run_suite(report: &Report) -> TestSuite {
    let class = "wasmonkey.run";
    let mut suite = TestSuite::new("run");
    suite.set_time(Duration::from_millis(report.last_clock_ms));
    let ended = if !report.complete {
        status(
            Some(NonSuccessKind::Error),
            "the journal ends before the run did: anything after it is unknown",
        )
    } else if report.interrupted {
        status(
            Some(NonSuccessKind::Failure),
            "the run was interrupted (Ctrl-C or SIGTERM)",
        )
    } else {
        status(None, "")
    };
    suite.add_test_case(case("the run ran to its end", class, ended));
    let held = match &report.stopped {
        Some(stop) => status(
            Some(NonSuccessKind::Failure),
            &format!(
                "{} at {:.1} s: {}",
                if stop.paused {
                    "the kill switch was set".to_owned()
                } else {
                    format!("stop condition {} tripped", stop.condition)
                },
                stop.at_seconds,
                stop.saw
            ),
        ),
        None => status(None, ""),
    };
    suite.add_test_case(case(
        "no stop condition tripped and the kill switch stayed off",
        class,
        held,
    ));
    let undelivered: Vec<String> = report
        .every_notification()
        .filter(|n| {
            matches!(
                n.status,
                NotificationStatus::Failed | NotificationStatus::Unknown
            )
        })
        .map(|n| format!("{} to {}: {}", n.subject, n.channel, n.status))
        .collect();
    let delivered = if undelivered.is_empty() {
        status(None, "")
    } else {
        status(Some(NonSuccessKind::Error), &undelivered.join("; "))
    };
    suite.add_test_case(case("every notification was delivered", class, delivered));
    for check in &report.steady_state {
        for (phase, reading) in [("before", &check.before), ("after", &check.after)] {
            let Some(reading) = reading else { continue };
            let name = format!("steady state {} holds {phase} the run", check.name);
            let outcome = match reading.held {
                Some(true) => status(None, ""),
                Some(false) => status(Some(NonSuccessKind::Failure), &reading.saw),
                None => status(Some(NonSuccessKind::Error), &reading.saw),
            };
            let mut c = case(&name, class, outcome);
            c.set_system_out(safe(&reading.saw));
            suite.add_test_case(c);
        }
    }
    for (i, unknown) in report.unknowns.iter().enumerate() {
        suite.add_test_case(case(
            &format!("what the run could not learn #{}", i + 1),
            class,
            status(Some(NonSuccessKind::Error), unknown),
        ));
    }
    suite
}

/// A simulation as JUnit XML: a suite for the schedule (slots that did not
/// run for a reason other than the calendar) and one per group (each kill's
/// recovery, the healthy floor).
pub fn render_simulation(simulation: &Simulation) -> anyhow::Result<String> {
    let mut junit = quick_junit::Report::new(format!(
        "wasmonkey simulate: {} days from {}, seed {}",
        simulation.days, simulation.start, simulation.seed
    ));
    let class = "wasmonkey.simulate";
    let mut schedule = TestSuite::new("schedule");
    for (why, kind) in [
        ("failed", NonSuccessKind::Error),
        ("stopped", NonSuccessKind::Failure),
        ("paused", NonSuccessKind::Failure),
        ("missed", NonSuccessKind::Failure),
    ] {
        let n = simulation.skipped.get(why).copied().unwrap_or(0);
        let outcome = if n == 0 {
            status(None, "")
        } else {
            status(Some(kind), &format!("{n} slot(s) {why}"))
        };
        schedule.add_test_case(case(&format!("no slot {why}"), class, outcome));
    }
    junit.add_test_suite(schedule);
    for group in &simulation.groups {
        let name = &group.stats.group;
        let mut suite = TestSuite::new(safe(&format!("group {name}")));
        for kill in simulation
            .kill_points
            .iter()
            .filter(|k| k.group.as_deref() == Some(name.as_str()))
        {
            let when = jiff::Timestamp::from_millisecond(kill.killed_ms)
                .map_or_else(|_| kill.killed_ms.to_string(), |t| t.to_string());
            let title = format!("{name} killed at {when} recovers");
            let (kind, message) = match kill.host_verdict {
                HostVerdict::Recovered => (None, ""),
                HostVerdict::NotRecovered => (
                    Some(NonSuccessKind::Failure),
                    "it did not recover within the recovery timeout",
                ),
                HostVerdict::Pending => (
                    Some(NonSuccessKind::Error),
                    "its recovery was never decided",
                ),
                HostVerdict::Unchecked => {
                    suite.add_test_case(skipped(&title, class, "dry run: not terminated"));
                    continue;
                }
            };
            let mut c = case(&title, class, status(kind, message));
            if let Some(ms) = kill.recovery_ms.and_then(|ms| u64::try_from(ms).ok()) {
                c.set_time(Duration::from_millis(ms));
            }
            suite.add_test_case(c);
        }
        let floor = if group.below_healthy_floor == 0 {
            status(None, "")
        } else {
            status(
                Some(NonSuccessKind::Failure),
                &format!(
                    "its healthy in-service count fell below min_healthy_per_group {} time(s)",
                    group.below_healthy_floor
                ),
            )
        };
        suite.add_test_case(case(
            &format!("{name} keeps its healthy floor"),
            class,
            floor,
        ));
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Event, Journal};

    fn finished_run(dir: &std::path::Path) -> Report {
        let path = dir.join("run.jsonl");
        let journal = Journal::create(&path).unwrap();
        journal
            .append(
                0,
                None,
                Event::RunStarted {
                    run_id: "r-1".into(),
                    backend: "sim".into(),
                    seed: 1,
                    dry_run: false,
                    config: "c".into(),
                    host_version: "0".into(),
                    clock_origin_ms: Some(0),
                    operator: None,
                    target: None,
                    account: None,
                    region: None,
                },
            )
            .unwrap();
        journal
            .append(10, None, Event::RunFinished { interrupted: false })
            .unwrap();
        Report::from_journal(&journal.replay(), &path)
    }

    /// Whatever made a run fail, its file fails too: an outcome that no case
    /// accounts for gets a case of its own.
    #[test]
    fn the_file_never_says_less_than_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = finished_run(dir.path());
        assert_eq!(report.outcome, RunOutcome::Succeeded);
        let xml = render(&report).unwrap();
        let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!((junit.failures, junit.errors), (0, 0), "{xml}");
        report.outcome = RunOutcome::Inconclusive;
        let xml = render(&report).unwrap();
        let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(junit.errors, 1, "{xml}");
        assert!(xml.contains("outcome inconclusive"), "{xml}");
    }
}
