//! The host's brakes on the simulator: stop conditions (alarm rules of the
//! fleet file, health targets, a recovery-time budget) and the kill switch,
//! seen from the plugin (its answers), the journal, the report and the exit
//! code. Driven by the `hostile` test plugin's `terminate` attack, whose
//! `sleep:MS` lets the run's clock move on between terminations.

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::journal::{BrakeReadingState, Event, Phase};
use wasmonkey::kill_switch::FileSwitch;
use wasmonkey::report::RunOutcome;
use wasmonkey::runner::RunOutput;

use crate::rigged::{self, Faults};
use crate::support::{self, Setup, FLEET, RULES};

/// [`FLEET`] with an alarm: web below `healthy` healthy in-service
/// instances (it has 4).
fn fleet_with_alarm(healthy: u32) -> String {
    format!("{FLEET}\n[[alarm]]\nname = \"web-thin\"\ngroup = \"web\"\nbelow_healthy = {healthy}\n")
}

/// The rules, more room in the blast radius, and `extra` config.
fn rules(extra: &str) -> String {
    format!(
        "{}\n{extra}",
        RULES.replace("max_terminations = 3", "max_terminations = 5")
    )
}

/// The `terminate` attack on `targets` (ids, or `sleep:MS`).
fn attack(targets: &[String]) -> String {
    format!(
        "[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = \"{}\" }}\n",
        targets.join(",")
    )
}

/// The ids of `group` in `fleet` for `seed`.
async fn ids(fleet: &str, group: &str, seed: u64) -> Vec<String> {
    let probe = support::setup(fleet, &support::test_plugin_dir(), "");
    let sim = SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), seed).unwrap();
    support::ids_of(&sim, Some(group)).await
}

fn answers(output: &RunOutput) -> Vec<String> {
    support::only_experiment(output)
        .summary
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn trips(output: &RunOutput) -> Vec<(String, bool)> {
    support::events(output)
        .into_iter()
        .filter_map(|e| match e {
            Event::StopTripped {
                condition, paused, ..
            } => Some((condition, paused)),
            _ => None,
        })
        .collect()
}

fn intents(output: &RunOutput) -> Vec<String> {
    support::events(output)
        .into_iter()
        .filter_map(|e| match e {
            Event::TerminateIntent { instance_id, .. } => Some(instance_id),
            _ => None,
        })
        .collect()
}

const WEB_ALARM: &str = "[stop_conditions.web]\nkind = \"alarm\"\nalarms = [\"web-thin\"]\n";

#[tokio::test]
async fn an_alarm_that_trips_mid_run_stops_later_terminations() {
    let seed = 21;
    let fleet = fleet_with_alarm(4);
    let web = ids(&fleet, "web", seed).await;
    let api = ids(&fleet, "api", seed).await;
    let targets = [web[0].clone(), web[1].clone(), api[0].clone()];
    let report_to_ops = format!("{WEB_ALARM}[report]\nchannel = \"ops\"\n");
    let body = format!("{}{}", rules(&report_to_ops), attack(&targets));
    let setup = support::setup(&fleet, &support::test_plugin_dir(), &body);
    let (output, sim) = support::run(&setup, seed, true).await;

    let answers = answers(&output);
    assert_eq!(answers[0], format!("{}: ok dry-run=false", web[0]));
    // web lost one: its alarm is in ALARM, and the host stops the run.
    for (answer, id) in answers[1..].iter().zip(&targets[1..]) {
        assert_eq!(
            *answer,
            format!("{id}: denied: the run is stopped by web: no more terminations")
        );
    }
    assert_eq!(intents(&output), [web[0].clone()]);
    assert_eq!(trips(&output), [("web".to_owned(), false)]);
    let report = &output.report;
    let stop = report.stopped.as_ref().expect("stopped");
    assert!(stop.saw.contains("web-thin is in ALARM"), "{stop:?}");
    assert_eq!(report.outcome, RunOutcome::Stopped);
    assert!(report.render_text().contains("STOPPED by web"));
    // The victim terminated before the trip is still watched to the end.
    assert_eq!(report.victims.len(), 1);
    assert_eq!(report.victims[0].host_verdict, "recovered");
    // And the report channel is told.
    let sent = sim.outbox();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(sent[0].subject.contains("STOPPED by web"), "{sent:#?}");
    assert!(sent[0].body.contains("web-thin is in ALARM"), "{sent:#?}");
}

#[tokio::test]
async fn a_condition_tripped_before_the_run_means_no_terminate_at_all() {
    let seed = 22;
    // web has 4 healthy: an alarm below 5 is in ALARM from the start.
    let fleet = fleet_with_alarm(5);
    let web = ids(&fleet, "web", seed).await;
    let body = format!("{}{}", rules(WEB_ALARM), attack(&web[..1]));
    let setup = support::setup(&fleet, &support::test_plugin_dir(), &body);
    let (output, sim) = support::run(&setup, seed, true).await;
    assert!(output.report.experiments.is_empty(), "an experiment ran");
    assert!(intents(&output).is_empty());
    assert!(sim.timeline().is_empty(), "the fleet changed");
    assert_eq!(trips(&output), [("web".to_owned(), false)]);
    assert_eq!(output.report.outcome, RunOutcome::Stopped);
    // The journal says what stopped it as it was read, at the start and
    // at the end, and the report shows both.
    let web = brake(&output, "web");
    let before = web.before.as_ref().expect("read at the start");
    assert_eq!(before.state, BrakeReadingState::Tripped);
    assert!(before.saw.contains("web-thin is in ALARM"), "{web:?}");
    assert_eq!(
        web.after.as_ref().map(|s| s.state),
        Some(BrakeReadingState::Tripped)
    );
    let text = output.report.render_text();
    assert!(
        text.contains(
            "brake web (stops when any alarm of web-thin is in ALARM): at the start tripped ("
        ),
        "{text}"
    );
}

/// The report's readings of brake `name`, at the run's start and end.
fn brake(output: &RunOutput, name: &str) -> wasmonkey::report::BrakeReport {
    output
        .report
        .brakes
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no brake {name}: {:#?}", output.report.brakes))
}

#[tokio::test]
async fn a_condition_that_cannot_be_read_at_the_start_stops_the_run_before_it_acts() {
    let seed = 24;
    let web = ids(FLEET, "web", seed).await;
    // Nothing listens on port 1: the condition's state cannot be told.
    let unreadable = "[prometheus]\nurl = \"http://127.0.0.1:1\"\n\n[stop_conditions.errors]\nkind = \"prometheus\"\nquery = \"sum(errors)\"\nabove = 1\n";
    let body = format!("{}{}", rules(unreadable), attack(&web[..1]));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let (output, sim) = support::run(&setup, seed, true).await;
    assert!(output.report.experiments.is_empty(), "an experiment ran");
    assert!(intents(&output).is_empty());
    assert!(sim.timeline().is_empty(), "the fleet changed");
    assert_eq!(trips(&output), [("stop-conditions".to_owned(), false)]);
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(
        stop.saw
            .contains("cannot tell whether the run may start: stop condition errors:"),
        "{stop:?}"
    );
    assert_eq!(output.report.outcome, RunOutcome::Stopped);
    let errors = brake(&output, "errors");
    assert_eq!(
        errors.before.as_ref().map(|s| s.state),
        Some(BrakeReadingState::Unknown)
    );
    // The brakes were journalled before anything else could act.
    let events = support::events(&output);
    let first_brakes = events
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Brakes {
                    phase: Phase::Before,
                    ..
                }
            )
        })
        .expect("brakes read at the start");
    let trip = events
        .iter()
        .position(|e| matches!(e, Event::StopTripped { .. }))
        .expect("tripped");
    assert!(first_brakes < trip);
}

#[tokio::test]
async fn an_alarm_that_does_not_exist_stops_the_run() {
    let seed = 23;
    let web = ids(FLEET, "web", seed).await;
    let body = format!("{}{}", rules(WEB_ALARM), attack(&web[..1]));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let (output, sim) = support::run(&setup, seed, true).await;
    assert!(sim.timeline().is_empty());
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(stop.saw.contains("does not exist"), "{stop:?}");
}

/// Terminate web[0], sleep `sleep_ms`, then terminate api[0], under `stop`.
async fn terminate_wait_terminate(seed: u64, stop: &str, sleep_ms: u64) -> (RunOutput, Setup) {
    let web = ids(FLEET, "web", seed).await;
    let api = ids(FLEET, "api", seed).await;
    let targets = [web[0].clone(), format!("sleep:{sleep_ms}"), api[0].clone()];
    let body = format!("{}{}", rules(stop), attack(&targets));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let (output, _) = support::run(&setup, seed, true).await;
    (output, setup)
}

#[tokio::test]
async fn a_victim_over_its_recovery_budget_stops_the_run_and_the_plugin_hears_it() {
    // web's replacement takes 40 s; the budget is 20 s. The plugin sleeps
    // 60 s: the run stops at 21 s, which wakes the plugin; its next call is
    // told the run is stopped, and it returns its own outcome: the report
    // has the plugin's account, not a plugin failure.
    let stop = "[stop_conditions.slo]\nkind = \"recovery\"\nwithin_secs = 20\n";
    let (output, _keep) = terminate_wait_terminate(24, stop, 60_000).await;
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None, "{experiment:#?}");
    let answers = answers(&output);
    assert_eq!(answers[1], "slept 60000 ms");
    assert!(
        answers[2].ends_with(": denied: the run is stopped by slo: no more terminations"),
        "{answers:?}"
    );
    // Its terminate came right after the trip at 21 s, not after the 60 s.
    assert!(
        experiment.denials.iter().all(|d| d.clock_ms < 30_000),
        "the plugin slept on past the trip: {experiment:#?}"
    );
    assert_eq!(intents(&output).len(), 1, "api was terminated too");
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(
        (20.0..=22.0).contains(&stop.at_seconds),
        "tripped at {} s",
        stop.at_seconds
    );
    assert!(stop.saw.contains("not recovered within 20 s"), "{stop:?}");
    // Still watched: it recovers at 40 s.
    let victim = &output.report.victims[0];
    assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
    assert_eq!(output.report.outcome, RunOutcome::Stopped);
}

#[tokio::test]
async fn a_target_unhealthy_past_its_grace_stops_the_run() {
    // web needs all 4 healthy; after the first termination it has 3 for
    // 40 s. A grace of 10 s trips during the plugin's 30 s sleep.
    let stop = "[targets.web-full]\ngroup = \"web\"\nmin_healthy = 4\n\
                [stop_conditions.web-full]\nkind = \"target\"\ntarget = \"web-full\"\ngrace_secs = 10\n";
    let (output, _keep) = terminate_wait_terminate(25, stop, 30_000).await;
    assert_eq!(intents(&output).len(), 1);
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert_eq!(stop.condition, "web-full");
    assert!(
        (10.0..=12.0).contains(&stop.at_seconds),
        "tripped at {} s",
        stop.at_seconds
    );
    // Within the grace the same target is fine: no trip.
    let stop = "[targets.web-full]\ngroup = \"web\"\nmin_healthy = 4\n\
                [stop_conditions.web-full]\nkind = \"target\"\ntarget = \"web-full\"\ngrace_secs = 50\n";
    let (output, _keep) = terminate_wait_terminate(25, stop, 30_000).await;
    assert_eq!(output.report.stopped, None);
    assert_eq!(intents(&output).len(), 2);
}

#[tokio::test]
async fn a_run_started_while_paused_does_nothing() {
    let seed = 26;
    let web = ids(FLEET, "web", seed).await;
    // FLEET has no alarm web-thin: read, the condition would trip.
    let body = format!("{}{}", rules(WEB_ALARM), attack(&web[..1]));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    FileSwitch::new(&setup.dir.path().join("state"))
        .pause("game day is over")
        .unwrap();
    let (output, sim) = support::run(&setup, seed, true).await;
    assert!(output.report.experiments.is_empty());
    assert!(sim.timeline().is_empty());
    assert_eq!(trips(&output), [("kill-switch".to_owned(), true)]);
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(stop.saw.contains("game day is over"), "{stop:?}");
    assert_eq!(output.report.outcome, RunOutcome::Paused);
    // The state directory's switch is journalled set; a paused run reads
    // no condition.
    let switches: Vec<_> = output
        .report
        .brakes
        .iter()
        .filter(|b| b.name == "kill-switch")
        .collect();
    let set: Vec<_> = switches
        .iter()
        .filter(|b| b.before.as_ref().map(|s| s.state) == Some(BrakeReadingState::Tripped))
        .collect();
    assert_eq!(set.len(), 1, "{switches:#?}");
    assert!(set[0].rule.contains("state"), "{switches:#?}");
    let saw = &set[0].before.as_ref().expect("read").saw;
    assert!(saw.contains("game day is over"), "{saw}");
    let web = brake(&output, "web");
    assert_eq!(
        web.before.as_ref().map(|s| s.state),
        Some(BrakeReadingState::NotRead)
    );
}

#[tokio::test]
async fn pausing_while_a_run_waits_stops_it() {
    let seed = 27;
    let web = ids(FLEET, "web", seed).await;
    let api = ids(FLEET, "api", seed).await;
    let targets = [web[0].clone(), "sleep:60000".into(), api[0].clone()];
    let body = format!("{}{}", rules(""), attack(&targets));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let faults = Faults {
        pause_at: Some((3_000, setup.dir.path().join("state"))),
        ..Faults::default()
    };
    let (output, _) = rigged::run(&setup, seed, true, faults).await;
    assert_eq!(intents(&output), [web[0].clone()]);
    assert_eq!(trips(&output), [("kill-switch".to_owned(), true)]);
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!((3.0..=4.0).contains(&stop.at_seconds), "{stop:?}");
    // The pause woke the plugin and answered its next terminate: it
    // returned its outcome within its grace.
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None, "{experiment:#?}");
    assert!(
        answers(&output)[2]
            .ends_with(": denied: the run is stopped by kill-switch: no more terminations"),
        "{experiment:#?}"
    );
    assert_eq!(output.report.victims[0].host_verdict, "recovered");
    assert_eq!(output.report.outcome, RunOutcome::Paused);
}

/// `wasmonkey run --config` on a setup: its exit code and stdout.
fn exit_code(setup: &Setup, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    let out = support::wasmonkey(&args, &setup.config);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn every_exit_code_means_what_the_docs_say() {
    let seed = "28";
    let web = ids(FLEET, "web", 28).await;
    let plugins = support::test_plugin_dir();
    let run = |fleet: &str, body: &str, extra: &[&str]| {
        let setup = support::setup(fleet, &plugins, body);
        let mut args = vec!["--seed", seed];
        args.extend_from_slice(extra);
        (exit_code(&setup, &args), setup)
    };
    let terminate = format!("{}{}", rules(""), attack(&web[..1]));

    let ((code, out), _s) = run(FLEET, &terminate, &[]);
    assert_eq!(code, 0, "a dry run that went as planned: {out}");

    let never = FLEET.replacen(
        "shutdown_secs = 5",
        "shutdown_secs = 5\nfailed_launches = 100",
        1,
    );
    let short = terminate.replace("timeout_secs = 600", "timeout_secs = 60");
    let ((code, out), _s) = run(&never, &short, &["--execute"]);
    assert_eq!(code, 3, "a victim that did not recover: {out}");

    let panics = format!(
        "{}[[experiment]]\nplugin = \"hostile\"\nparams = {{ attack = \"panic\" }}\n",
        rules("")
    );
    let ((code, out), _s) = run(FLEET, &panics, &[]);
    assert_eq!(code, 4, "an experiment error: {out}");

    let stopped = format!("{}{}", rules(WEB_ALARM), attack(&web[..1]));
    let ((code, out), _s) = run(&fleet_with_alarm(5), &stopped, &["--execute"]);
    assert_eq!(code, 5, "stopped by a condition: {out}");

    let ((code, out), setup) = run(FLEET, &terminate, &[]);
    assert_eq!(code, 0, "{out}");
    let paused = support::wasmonkey(&["pause", "--reason", "incident 42"], &setup.config);
    assert!(paused.status.success(), "{paused:?}");
    let status = support::wasmonkey(&["status"], &setup.config);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("kill switch: SET") && status.contains("incident 42"),
        "{status}"
    );
    let (code, out) = exit_code(&setup, &["--seed", seed]);
    assert_eq!(code, 6, "paused: {out}");
    let resumed = support::wasmonkey(&["resume"], &setup.config);
    assert!(resumed.status.success(), "{resumed:?}");
    let (code, out) = exit_code(&setup, &["--seed", seed]);
    assert_eq!(code, 0, "resumed: {out}");

    let bad = support::setup(FLEET, &plugins, "[blast_radius]\nmax_terminatons = 1\n");
    let (code, out) = exit_code(&bad, &[]);
    assert_eq!(code, 1, "a bad config: {out}");
    assert!(out.contains("max_terminatons"), "{out}");

    let (code, out) = exit_code(&bad, &["--no-such-flag"]);
    assert_eq!(code, 2, "a bad command line: {out}");
}

#[tokio::test]
async fn a_run_that_could_not_read_the_fleet_is_inconclusive_never_succeeded() {
    // Every group read is throttled: the terminate cannot be decided, the
    // plugin reports it and returns; nothing went wrong that the run saw,
    // but it could not see what it needed.
    let seed = 29;
    let web = ids(FLEET, "web", seed).await;
    let body = format!("{}{}", rules(""), attack(&web[..1]));
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let faults = Faults {
        throttle_groups_from_ms: Some(0),
        ..Faults::default()
    };
    let (output, _) = rigged::run(&setup, seed, true, faults).await;
    assert!(output.report.victims.is_empty());
    assert_eq!(support::only_experiment(&output).error, None);
    assert_eq!(output.report.outcome, RunOutcome::Inconclusive);
    assert_eq!(output.report.outcome.exit_code(), 7);
    assert!(
        output
            .report
            .unknowns
            .iter()
            .any(|u| u.starts_with("experiment 1: describing an instance failed: throttled")),
        "{:#?}",
        output.report.unknowns
    );
    assert!(output
        .report
        .render_text()
        .contains("unknown: experiment 1: describing an instance failed"));
}

#[tokio::test]
async fn a_probe_that_failed_for_the_plugin_makes_the_run_inconclusive() {
    // The plugin checks a group target while every group read is
    // throttled: it reports the failure and returns normally.
    let body = format!(
        "{}[targets.web-up]\ngroup = \"web\"\nmin_healthy = 1\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"probe-targets\"]\nparams = {{ attack = \"check\" }}\n",
        rules("")
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let faults = Faults {
        throttle_groups_from_ms: Some(0),
        ..Faults::default()
    };
    let (output, _) = rigged::run(&setup, 30, false, faults).await;
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None, "{experiment:#?}");
    assert!(
        experiment
            .summary
            .as_deref()
            .is_some_and(|s| s.contains("web-up: throttled")),
        "{experiment:#?}"
    );
    assert_eq!(output.report.outcome, RunOutcome::Inconclusive);
}
