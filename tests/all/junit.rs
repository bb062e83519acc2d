//! `--junit FILE`: the report as JUnit XML, read back by a kept parser
//! (quick-junit's reader, the one cargo-nextest's users rely on). A case per
//! victim, fault and check; failures exactly when the run's outcome is not
//! `succeeded`; hostile journal text stays text.

use std::path::Path;
use std::process::Command;

use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus};

use crate::reports::{example_run, hostile_journal};
use crate::support;

fn read(path: &Path) -> Junit {
    let xml = std::fs::read_to_string(path).expect("the JUnit file is written");
    Junit::deserialize_from_str(&xml).unwrap_or_else(|err| panic!("{err}:\n{xml}"))
}

/// `wasmonkey report JOURNAL --junit FILE`: it must succeed.
fn junit_of(journal: &Path, dir: &Path) -> Junit {
    let file = dir.join("report.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .arg("report")
        .arg(journal)
        .arg("--junit")
        .arg(&file)
        .env("WASMONKEY_LOG", "warn")
        .output()
        .expect("wasmonkey runs");
    assert!(output.status.success(), "{output:?}");
    read(&file)
}

fn cases(junit: &Junit) -> impl Iterator<Item = &TestCase> {
    junit.test_suites.iter().flat_map(|s| &s.test_cases)
}

fn kind(case: &TestCase) -> Option<NonSuccessKind> {
    match &case.status {
        TestCaseStatus::NonSuccess { kind, .. } => Some(*kind),
        _ => None,
    }
}

fn is_skipped(case: &TestCase) -> bool {
    matches!(case.status, TestCaseStatus::Skipped { .. })
}

/// The counts the file declares are the cases it holds.
fn check_counts(junit: &Junit) {
    let all: Vec<&TestCase> = cases(junit).collect();
    assert_eq!(junit.tests, all.len());
    let failures = all
        .iter()
        .filter(|c| kind(c) == Some(NonSuccessKind::Failure))
        .count();
    let errors = all
        .iter()
        .filter(|c| kind(c) == Some(NonSuccessKind::Error))
        .count();
    assert_eq!((junit.failures, junit.errors), (failures, errors));
}

/// A victim's case, by its instance id.
fn victim_case<'a>(junit: &'a Junit, instance: &str) -> &'a TestCase {
    cases(junit)
        .find(|c| c.name.starts_with(&format!("{instance} of group")))
        .unwrap_or_else(|| panic!("no case for {instance}"))
}

#[test]
fn a_run_has_a_case_per_victim_with_its_recovery_and_no_failure_when_it_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let (report, journal, _, _) = example_run(dir.path());
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    let junit = junit_of(&journal, dir.path());
    check_counts(&junit);
    assert_eq!((junit.failures, junit.errors), (0, 0), "{junit:#?}");
    let victims = report["victims"].as_array().expect("victims");
    assert!(!victims.is_empty());
    for v in victims {
        let id = v["instance_id"].as_str().expect("id");
        let case = victim_case(&junit, id);
        assert_eq!(kind(case), None, "{case:#?}");
        let seconds = v["recovery_seconds"].as_f64().expect("measured");
        let time = case.time.expect("a recovery time").as_secs_f64();
        assert!((time - seconds).abs() < 1e-3, "{id}: {time} vs {seconds}");
        assert!(case
            .classname
            .as_ref()
            .is_some_and(|c| c.starts_with("wasmonkey.")));
    }
    // One suite per experiment and the run's own.
    let experiments = report["experiments"].as_array().expect("experiments");
    assert_eq!(junit.test_suites.len(), experiments.len() + 1);
    assert!(junit
        .name
        .contains(report["run_id"].as_str().expect("run id")));
}

#[test]
fn a_victim_that_does_not_recover_fails_its_case_and_a_dry_run_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::cli::example_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("timeout_secs = 900"));
    // The simulator replaces an instance in tens of seconds: a second is
    // not enough.
    std::fs::write(
        &config,
        text.replace("timeout_secs = 900", "timeout_secs = 1"),
    )
    .unwrap();
    let run = |execute: bool, name: &str| {
        let file = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
        cmd.args(["run", "--json", "--seed", "7", "--config"])
            .arg(&config)
            .arg("--junit")
            .arg(&file)
            .env("WASMONKEY_LOG", "warn");
        if execute {
            cmd.arg("--execute");
        }
        let output = cmd.output().expect("wasmonkey runs");
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{output:?}"));
        (report, read(&file))
    };

    let (report, junit) = run(true, "executed.xml");
    assert_eq!(report["outcome"], "not-recovered", "{report:#}");
    check_counts(&junit);
    let victims = report["victims"].as_array().expect("victims");
    assert!(!victims.is_empty());
    for v in victims {
        let case = victim_case(&junit, v["instance_id"].as_str().expect("id"));
        assert_eq!(kind(case), Some(NonSuccessKind::Failure), "{case:#?}");
    }
    assert_eq!(junit.failures, victims.len(), "{junit:#?}");

    let (report, junit) = run(false, "dry.xml");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    check_counts(&junit);
    assert_eq!((junit.failures, junit.errors), (0, 0), "{junit:#?}");
    let victims = report["victims"].as_array().expect("victims");
    assert!(!victims.is_empty());
    for v in victims {
        let case = victim_case(&junit, v["instance_id"].as_str().expect("id"));
        assert!(is_skipped(case), "{case:#?}");
    }
}

#[test]
fn hostile_journal_text_stays_text_and_the_stop_and_the_error_fail() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("hostile.jsonl");
    hostile_journal(&journal);
    let junit = junit_of(&journal, dir.path());
    check_counts(&junit);
    let xml = std::fs::read_to_string(dir.path().join("report.xml")).unwrap();
    assert!(!xml.contains("<script"), "{xml}");
    assert!(
        !xml.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t')),
        "{xml}"
    );
    // The stop condition that tripped and the experiment's error fail it.
    let failed: Vec<&str> = cases(&junit)
        .filter(|c| kind(c).is_some())
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed
            .iter()
            .any(|n| n.starts_with("no stop condition tripped")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|n| n.starts_with("the experiment ran")),
        "{failed:?}"
    );
    // The plugin's text is there, as text, on one line.
    let victim = cases(&junit)
        .find(|c| c.name.contains("</svg>"))
        .expect("the victim's case, its id as text");
    assert!(victim.name.contains("\\n"), "{:?}", victim.name);
}

/// A simulation: a case per kill, failed when its group did not recover
/// in time (a 30 s recovery timeout is shorter than the simulator's).
#[test]
fn a_simulation_has_a_case_per_kill_failed_when_it_did_not_recover() {
    let body = crate::unattended::config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 0.5, poll-secs = 1 }\nwhen = \"daily\"\n",
    )
    .replace("timeout_secs = 600", "timeout_secs = 30")
        // A Prometheus nobody serves: the simulation leaves its checks out
        // (had it asked, every slot would have stopped before acting).
        + "\n[prometheus]\nurl = \"http://127.0.0.1:9\"\n[stop_conditions.errors]\nkind = \"prometheus\"\nquery = \"up\"\nbelow = 1\n";
    let setup = support::setup(support::FLEET, &support::plugin_dir(), &body);
    let file = setup.dir.path().join("simulation.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args([
            "simulate",
            "--days",
            "30",
            "--start",
            "2026-12-07",
            "--seed",
            "3",
            "--json",
        ])
        .arg("--config")
        .arg(&setup.config)
        .arg("--junit")
        .arg(&file)
        .output()
        .expect("wasmonkey runs");
    let simulation = support::json_report(&output);
    assert_eq!(
        simulation["left_out"],
        serde_json::json!(["stop condition errors"])
    );
    let junit = read(&file);
    check_counts(&junit);
    let kills = simulation["kills"].as_u64().expect("kills");
    assert!(kills > 0, "{simulation:#}");
    let kill_cases: Vec<&TestCase> = cases(&junit)
        .filter(|c| c.name.contains(" killed at "))
        .collect();
    assert_eq!(kill_cases.len() as u64, kills);
    let not_recovered: u64 = simulation["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["not_recovered"].as_u64().expect("count"))
        .sum();
    assert!(not_recovered > 0, "{simulation:#}");
    let failed = kill_cases.iter().filter(|c| kind(c).is_some()).count();
    assert_eq!(failed as u64, not_recovered, "{simulation:#}");
}
