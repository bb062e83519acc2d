//! Faults beyond termination (contract 0.2) on the simulated fleet, with
//! the undo the host owns: journalled and kept on disk before the fault,
//! carried out when the fault's time is up (not a poll later), when the
//! experiment ends, when a brake trips, and by `wasmonkey recover` after a
//! crash; each behind its own grant, in scope and in the blast radius.

use std::sync::Arc;

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::cloud::{Cloud, InstanceQuery, InstanceState, ScalingProcess};
use wasmonkey::config::Config;
use wasmonkey::journal::{self, Entry, Event};
use wasmonkey::runner::{self, RunOptions, RunOutput};

use crate::support;

/// The fleet with one more standalone instance, and an alarm that goes off
/// at `alarm_at` seconds (never, if 0).
fn fleet(alarm_at: u64) -> String {
    let alarm = if alarm_at > 0 {
        format!("\n[[alarm]]\nname = \"boom\"\nfrom_secs = {alarm_at}\n")
    } else {
        String::new()
    };
    format!("{}{alarm}", support::FLEET)
}

/// A config running `faulty` with `grants` and `params`, standalone
/// instances in scope, and `extra` config.
fn setup(alarm_at: u64, grants: &str, params: &str, extra: &str) -> support::Setup {
    support::setup(
        &fleet(alarm_at),
        &support::test_plugin_dir(),
        &format!(
            "[scope]\ngroups = [\"web\", \"api\", \"vault\"]\nopt_out = \"chaos-opt-out\"\nstandalone = true\n\
             [blast_radius]\nmax_terminations = 3\nmin_healthy_per_group = 1\nmax_fraction_per_group = 0.5\n\
             [recovery]\ntimeout_secs = 600\npoll_secs = 1\n{extra}\n\
             [[experiment]]\nplugin = \"faulty\"\ngrants = [{grants}]\nparams = {{ {params} }}\n"
        ),
    )
}

async fn run(setup: &support::Setup, execute: bool) -> (RunOutput, Arc<SimCloud>) {
    let config = Config::load(&setup.config).expect("config loads");
    let sim = Arc::new(
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), 1).expect("fleet"),
    );
    let options = RunOptions {
        config: setup.config.clone(),
        execute,
        ..RunOptions::default()
    };
    let output = runner::run_on(&config, sim.clone(), 1, &options, std::future::pending())
        .await
        .expect("run");
    (output, sim)
}

/// `wasmonkey report JOURNAL --html FILE`: the text it printed and the page.
fn reports(setup: &support::Setup, output: &RunOutput) -> (String, String) {
    let html = setup.dir.path().join("report.html");
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .arg("report")
        .arg(&output.journal)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("report");
    assert!(report.status.success(), "{report:?}");
    let page = std::fs::read_to_string(&html).expect("page");
    (String::from_utf8_lossy(&report.stdout).into_owned(), page)
}

fn journal_of(output: &RunOutput) -> Vec<Entry> {
    journal::read(&output.journal).expect("journal").entries
}

/// The clock of the first entry that `matches`.
fn clock_of(entries: &[Entry], matches: impl Fn(&Event) -> bool) -> Option<u64> {
    entries
        .iter()
        .find(|e| matches(&e.event))
        .map(|e| e.clock_ms)
}

/// The position of the first entry that `matches`.
fn seq_of(entries: &[Entry], matches: impl Fn(&Event) -> bool) -> Option<u64> {
    entries.iter().find(|e| matches(&e.event)).map(|e| e.seq)
}

fn owed_files(setup: &support::Setup) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(setup.dir.path().join("state").join("faults"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn state_of(sim: &SimCloud, id: &str) -> Option<InstanceState> {
    sim.instances_by_id(&[id.to_owned()])
        .await
        .expect("describe")
        .first()
        .map(|i| i.state)
}

/// The standalone bastion stopped for a minute is
/// started again by the host when the minute is up, within a poll, while
/// the plugin sleeps on; its undo was journalled and kept on disk before
/// the stop, and the disk is clean after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_is_started_again_when_its_time_is_up() {
    let probe = setup(0, "\"stop\"", "", "");
    let sim = SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), 1).expect("fleet");
    let bastion = support::ids_of(&sim, None).await.remove(0);
    let setup = setup(
        0,
        "\"stop\"",
        &format!("target = \"{bastion}\", duration-ms = 60000, then-sleep-ms = 300000"),
        "",
    );
    let (output, sim) = run(&setup, true).await;
    let entries = journal_of(&output);
    let intent = clock_of(&entries, |e| {
        matches!(e, Event::FaultIntent { undo: Some(_), .. })
    })
    .expect("the intent, with its undo");
    let applied = clock_of(&entries, |e| matches!(e, Event::FaultApplied { .. })).expect("applied");
    let undone = clock_of(&entries, |e| matches!(e, Event::FaultUndone { .. })).expect("undone");
    assert!(intent <= applied, "the undo is journalled before the fault");
    assert!(
        undone >= applied + 60_000 && undone <= applied + 60_000 + 1_000,
        "undone at {undone}, applied at {applied}: not when its time was up"
    );
    let fault = &output.report.faults[0];
    assert_eq!(fault.status, "undone", "{:#?}", output.report.faults);
    assert_eq!(
        fault.detail.as_deref(),
        Some(format!("started {bastion}").as_str())
    );
    assert_eq!(output.report.outcome, "succeeded", "{:#?}", output.report);
    assert_eq!(state_of(&sim, &bastion).await, Some(InstanceState::Running));
    assert!(owed_files(&setup).is_empty(), "{:?}", owed_files(&setup));

    // `plan` says what the grant reaches and how it is undone; the text and
    // HTML reports list the fault with what undid it.
    let plan = support::wasmonkey(&["plan"], &setup.config);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        plan.contains("stop: may stop instances in scope")
            && plan.contains("the host starts each again"),
        "{plan}"
    );
    let (text, page) = reports(&setup, &output);
    assert!(
        text.contains(&format!(
            "fault f-1 stop {bastion}: undone (started {bastion})"
        )),
        "{text}"
    );
    assert!(
        page.contains("Faults (1)") && page.contains(r#"data-status="undone""#),
        "no fault in the page"
    );
}

/// A fault outlives neither its experiment nor a brake: a plugin that
/// returns at once has its ten-minute stop undone at the experiment's end,
/// and an alarm that goes off mid-fault has it undone within one poll, not
/// when the plugin (sleeping on through its grace) returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_ends_with_its_experiment_and_at_a_brake() {
    let setup_now = setup(0, "\"stop\"", "duration-ms = 600000", "");
    let (output, _) = run(&setup_now, true).await;
    let entries = journal_of(&output);
    let applied = clock_of(&entries, |e| matches!(e, Event::FaultApplied { .. })).expect("applied");
    let undone = clock_of(&entries, |e| matches!(e, Event::FaultUndone { .. })).expect("undone");
    assert!(undone < applied + 600_000, "{undone} {applied}");
    let undone_at = seq_of(&entries, |e| matches!(e, Event::FaultUndone { .. }));
    let finished_at = seq_of(&entries, |e| matches!(e, Event::ExperimentFinished { .. }));
    assert!(
        undone_at.is_some() && undone_at < finished_at,
        "undone (entry {undone_at:?}) after its experiment finished (entry {finished_at:?})"
    );

    let braked = setup(
        30,
        "\"stop\"",
        "duration-ms = 600000, then-sleep-ms = 600000, naps = 3",
        "[stop_conditions.boom]\nkind = \"alarm\"\nalarms = [\"boom\"]\n",
    );
    let (output, _) = run(&braked, true).await;
    let entries = journal_of(&output);
    let tripped = clock_of(&entries, |e| matches!(e, Event::StopTripped { .. })).expect("tripped");
    let undone = clock_of(&entries, |e| matches!(e, Event::FaultUndone { .. })).expect("undone");
    assert!(
        undone >= tripped && undone <= tripped + 1_000,
        "tripped at {tripped}, undone at {undone}"
    );
    assert_eq!(output.report.faults[0].status, "undone");
}

/// A group member that stays stopped is replaced by its group (as Auto
/// Scaling does): there is nothing left to start, and the report says so.
/// Suspended `ReplaceUnhealthy` keeps it, and the host resumes exactly the
/// processes it suspended: one the operator suspended before stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_is_replaced_and_suspended_processes_are_resumed_exactly() {
    let setup_stop = setup(
        0,
        "\"stop\"",
        "duration-ms = 120000, then-sleep-ms = 300000",
        "",
    );
    let (output, _) = run(&setup_stop, true).await;
    let fault = &output.report.faults[0];
    assert_eq!(fault.status, "undone", "{fault:#?}");
    assert!(
        fault
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("nothing to undo")),
        "{fault:#?}"
    );

    let setup_suspend = setup(
        0,
        "\"suspend-processes\"",
        "fault = \"suspend\", target = \"web\", duration-ms = 60000, then-sleep-ms = 30000",
        "",
    );
    let config = Config::load(&setup_suspend.config).expect("config");
    let sim = Arc::new(
        SimCloud::from_fleet_file(&setup_suspend.dir.path().join("fleet.toml"), 1).expect("fleet"),
    );
    // The operator's own suspension, from before the run.
    sim.suspend_processes("web", &[ScalingProcess::ReplaceUnhealthy])
        .await
        .expect("suspend");
    let options = RunOptions {
        config: setup_suspend.config.clone(),
        execute: true,
        ..RunOptions::default()
    };
    let output = runner::run_on(&config, sim.clone(), 1, &options, std::future::pending())
        .await
        .expect("run");
    let entries = journal_of(&output);
    let undo = entries.iter().find_map(|e| match &e.event {
        Event::FaultIntent {
            undo: Some(undo), ..
        } => Some(undo.clone()),
        _ => None,
    });
    assert_eq!(
        undo,
        Some(wasmonkey::faults::Undo::Resume {
            group: "web".into(),
            processes: vec![ScalingProcess::Launch],
        }),
        "only what the fault suspended is its to resume"
    );
    assert_eq!(output.report.faults[0].status, "undone");
    assert_eq!(
        sim.suspended_processes("web").await.expect("read"),
        [ScalingProcess::ReplaceUnhealthy]
    );
}

/// Each fault kind has its groups' recovery measured from the fault's
/// end, as terminations have theirs from the call: a reboot from its call
/// (the simulated instance fails its health check for 30 s), a stop and a
/// suspension from their undo; the reports show it, and the timeline
/// draws the fault's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_has_its_groups_recovery_measured_from_its_end() {
    let recovery = |output: &RunOutput| -> Vec<(String, String, u64, u64)> {
        let entries = journal_of(output);
        entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::FaultRecovered {
                    fault_id,
                    group,
                    recovery_ms,
                    ..
                } => Some((fault_id.clone(), group.clone(), *recovery_ms, e.clock_ms)),
                _ => None,
            })
            .collect()
    };
    let undone_at = |output: &RunOutput| {
        clock_of(&journal_of(output), |e| {
            matches!(e, Event::FaultUndone { .. })
        })
    };
    // (fault, grant, params, recovery in ms, counted from the undo)
    for (fault, grant, extra, expected_ms, from_undo) in [
        // Unhealthy for the simulator's 30 s reboot.
        ("reboot", "\"reboot\"", "", 30_000, false),
        // Started again after 5 s, before the group noticed: running 20 s
        // (the simulator's start) after the undo.
        ("stop", "\"stop\"", ", duration-ms = 5000", 20_000, true),
        // Nothing was broken: whole the moment it is resumed.
        (
            "suspend",
            "\"suspend-processes\"",
            ", target = \"web\", duration-ms = 60000",
            0,
            true,
        ),
    ] {
        let setup = setup(
            0,
            grant,
            &format!("fault = \"{fault}\", then-sleep-ms = 200000{extra}"),
            "",
        );
        let (output, _) = run(&setup, true).await;
        let report = &output.report;
        let measured = recovery(&output);
        let [(id, group, recovery_ms, seen_at)] = measured.as_slice() else {
            panic!("{fault}: one measure expected, got {measured:?}");
        };
        assert_eq!((id.as_str(), group.as_str()), ("f-1", "web"), "{fault}");
        assert_eq!(*recovery_ms, expected_ms, "{fault}: {measured:?}");
        let ended = if from_undo {
            undone_at(&output).expect("undone")
        } else {
            clock_of(&journal_of(&output), |e| {
                matches!(e, Event::FaultApplied { .. })
            })
            .expect("applied")
        };
        assert_eq!(
            *seen_at,
            ended + expected_ms,
            "{fault}: measured from the fault's end"
        );
        let f = &report.faults[0];
        assert_eq!(
            f.recovery_seconds(),
            Some(expected_ms as f64 / 1000.0),
            "{f:#?}"
        );
        assert_eq!(report.outcome, "succeeded", "{fault}: {:#?}", report.notes);
        let text = report.render_text();
        let line = format!("web recovered in {:.1} s", expected_ms as f64 / 1000.0);
        assert!(text.contains(&line), "{fault}: no `{line}` in\n{text}");
        // The timeline draws the fault's span on web's lane.
        let (_, page) = reports(&setup, &output);
        let fill = format!(
            "fill=\"{}\"",
            wasmonkey::report::html::colour::hex(wasmonkey::report::html::colour::FAULT)
        );
        assert!(
            page.contains(&fill),
            "{fault}: no fault span in the timeline"
        );
    }

    // A group still unhealthy when the recovery timeout is up is not
    // recovered: the run is not a success, and says why.
    let slow = setup(0, "\"reboot\"", "fault = \"reboot\"", "");
    let text = std::fs::read_to_string(&slow.config).expect("config");
    std::fs::write(
        &slow.config,
        text.replace("timeout_secs = 600", "timeout_secs = 10"),
    )
    .expect("config");
    let (output, _) = run(&slow, true).await;
    let gave_up = journal_of(&output).iter().find_map(|e| match &e.event {
        Event::FaultNotRecovered {
            group, waited_ms, ..
        } => Some((group.clone(), *waited_ms)),
        _ => None,
    });
    assert_eq!(gave_up, Some(("web".to_owned(), 10_000)));
    assert_eq!(output.report.outcome, "not-recovered");
    assert!(
        output
            .report
            .notes
            .iter()
            .any(|n| n.starts_with("group web did not recover after fault f-1 (reboot of i-")),
        "{:#?}",
        output.report.notes
    );
}

/// Each fault needs its own grant, stays in scope and in the blast
/// radius: a denied fault is journalled as a denial with no intent, and
/// the plugin hears a typed error, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_needs_its_grant_its_scope_and_its_budget() {
    // Stop asked with only the reboot grant.
    let no_grant = setup(0, "\"reboot\"", "fault = \"stop\"", "");
    let (output, _) = run(&no_grant, true).await;
    assert!(
        output.report.faults.is_empty(),
        "{:#?}",
        output.report.faults
    );
    let denials = &output.report.experiments[0].denials;
    assert!(
        denials
            .iter()
            .any(|d| d.operation == "stop" && d.rule == "grant"),
        "{denials:#?}"
    );

    // An opted-out group's instance, by id.
    let probe = setup(0, "\"stop\"", "", "");
    let sim = SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), 1).expect("fleet");
    let vault = support::ids_of(&sim, Some("vault")).await.remove(0);
    let out_of_scope = setup(0, "\"stop\"", &format!("target = \"{vault}\""), "");
    let (output, sim) = run(&out_of_scope, true).await;
    assert!(
        output.report.faults.is_empty(),
        "{:#?}",
        output.report.faults
    );
    assert_eq!(state_of(&sim, &vault).await, Some(InstanceState::Running));

    // Five reboots asked, three allowed (max_terminations = 3).
    let budget = setup(0, "\"reboot\"", "fault = \"reboot\", count = 5", "");
    let (output, _) = run(&budget, true).await;
    assert_eq!(output.report.faults.len(), 3, "{:#?}", output.report.faults);
    assert!(output.report.faults.iter().all(|f| f.status == "applied"));
    assert!(
        output.report.experiments[0]
            .denials
            .iter()
            .any(|d| d.operation == "reboot" && d.rule == "max-terminations"),
        "{:#?}",
        output.report.experiments[0].denials
    );

    // A dry run changes nothing and owes nothing.
    let dry = setup(0, "\"stop\"", "count = 2, duration-ms = 60000", "");
    let (output, sim) = run(&dry, false).await;
    assert_eq!(output.report.faults.len(), 2);
    assert!(output.report.faults.iter().all(|f| f.status == "dry-run"));
    let all = sim
        .instances(&InstanceQuery::default())
        .await
        .expect("list");
    assert!(all.iter().all(|i| i.state == InstanceState::Running));
    assert!(owed_files(&dry).is_empty());
}

/// A run killed (SIGKILL) while it holds a stop leaves the undo on disk and
/// the journal saying it is owed; `wasmonkey recover` carries it out and a
/// second recover finds nothing; the next run would have done the same.
#[test]
fn a_fault_left_by_a_killed_run_is_undone_by_recover() {
    let setup = setup(0, "\"stop\"", "duration-ms = 600000, spin = true", "");
    let journal = setup.dir.path().join("killed.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["run", "--execute", "--seed", "0", "--journal"])
        .arg(&journal)
        .arg("--config")
        .arg(&setup.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while owed_files(&setup).is_empty()
        || !std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .contains("fault-applied")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no fault applied in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(owed_files(&setup).len(), 1);
    let text = String::from_utf8_lossy(
        &std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .args(["report"])
            .arg(&journal)
            .output()
            .expect("report")
            .stdout,
    )
    .into_owned();
    assert!(
        text.contains("NOT undone") && text.contains("wasmonkey recover"),
        "{text}"
    );

    // An undo owed on another backend is left for that one: a simulation
    // never "undoes" (and forgets) a real fault.
    let owed = owed_files(&setup).remove(0);
    let text = std::fs::read_to_string(&owed).expect("owed");
    let elsewhere = text.replace(
        "\"backend\": \"sim\"",
        "\"backend\": \"aws region eu-west-1\"",
    );
    assert_ne!(text, elsewhere, "{text}");
    std::fs::write(&owed, &elsewhere).expect("owed");
    let left = support::wasmonkey(&["recover"], &setup.config);
    assert!(
        String::from_utf8_lossy(&left.stdout).contains("owed on aws region eu-west-1"),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert_eq!(owed_files(&setup), std::slice::from_ref(&owed));
    std::fs::write(&owed, &text).expect("owed");

    let recover = support::wasmonkey(&["recover"], &setup.config);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&recover.stdout),
        String::from_utf8_lossy(&recover.stderr)
    );
    assert!(recover.status.success(), "{said}");
    assert!(said.contains("f-1") && said.contains("started"), "{said}");
    assert!(owed_files(&setup).is_empty(), "{:?}", owed_files(&setup));
    let again = support::wasmonkey(&["recover"], &setup.config);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing owed"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

/// The contract version is the one the component imports and exports: an
/// unknown one is refused, naming it and the versions this host speaks.
#[test]
fn the_contract_version_is_read_from_the_imports_and_exports() {
    use wasmonkey::contract::Version;
    assert_eq!(
        Version::of_interfaces([
            "wasmonkey:chaos/cloud@0.2.0",
            "wasmonkey:chaos/runtime@0.2.0",
            "wasmonkey:chaos/strategy@0.2.0",
        ]),
        Ok(Version::V0_2_0)
    );
    assert_eq!(
        Version::of_interfaces(["wasmonkey:chaos/cloud@0.1.0", "wasi:io/error@0.2.0"]),
        Ok(Version::V0_1_0)
    );
    // A strategy that imports nothing of the contract is read from its export.
    assert_eq!(
        Version::of_interfaces(["wasmonkey:chaos/strategy@0.1.0"]),
        Ok(Version::V0_1_0)
    );
    let unknown = Version::of_interfaces(["wasmonkey:chaos/cloud@0.3.0"]).unwrap_err();
    assert!(
        unknown.contains("0.3.0") && unknown.contains("wasmonkey:chaos@0.2.0"),
        "{unknown}"
    );
    let both = Version::of_interfaces([
        "wasmonkey:chaos/cloud@0.1.0",
        "wasmonkey:chaos/strategy@0.2.0",
    ])
    .unwrap_err();
    assert!(both.contains("several"), "{both}");
}

/// A zone cut off: the subnet of the in-scope instances in `us-east-1b`
/// goes behind a deny-all ACL for a minute, its exact restore journalled
/// first, and is moved back when the minute is up; every instance cut off
/// counts against the blast radius. `us-east-1a` is refused: its subnet
/// also holds the opted-out `vault`, and the journal says which instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_is_cut_off_and_reconnected_only_when_all_of_it_is_in_scope() {
    let zone_b = setup(
        0,
        "\"blackhole\"",
        "fault = \"blackhole\", target = \"us-east-1b\", duration-ms = 60000, then-sleep-ms = 120000",
        "",
    );
    let (output, sim) = run(&zone_b, true).await;
    let entries = journal_of(&output);
    let undo = entries.iter().find_map(|e| match &e.event {
        Event::FaultIntent {
            undo: Some(undo), ..
        } => Some(undo.clone()),
        _ => None,
    });
    let Some(wasmonkey::faults::Undo::Restore { subnets, .. }) = undo else {
        panic!("no restore journalled: {undo:?}");
    };
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    assert_eq!(subnets[0].subnet, "subnet-us-east-1b");
    let applied = clock_of(&entries, |e| matches!(e, Event::FaultApplied { .. })).expect("applied");
    let undone = clock_of(&entries, |e| matches!(e, Event::FaultUndone { .. })).expect("undone");
    assert!(
        undone >= applied + 60_000 && undone <= applied + 61_000,
        "{applied} {undone}"
    );
    assert_eq!(
        output.report.faults[0].status, "undone",
        "{:#?}",
        output.report.faults
    );
    // Both groups it cut off are measured from the reconnection.
    let reached: Vec<(&str, Option<f64>)> = output.report.faults[0]
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.recovery_seconds))
        .collect();
    // (The simulator's instances pass their checks the moment they are
    // reconnected.)
    assert_eq!(reached, [("api", Some(0.0)), ("web", Some(0.0))]);
    let all = sim
        .instances(&InstanceQuery::default())
        .await
        .expect("list");
    assert!(
        all.iter().all(|i| i.healthy),
        "still cut off after the undo"
    );
    // Three instances were cut off: the budget (3) is spent.
    assert_eq!(
        all.iter().filter(|i| i.zone == "us-east-1b").count(),
        3,
        "the fleet changed"
    );

    // Every instance cut off counts: with two terminations left, the
    // zone's three are refused. And each group keeps its healthy floor:
    // web (4, two of them in the zone) may not go below 3.
    for (from, to, rule) in [
        (
            "max_terminations = 3",
            "max_terminations = 2",
            "max-terminations",
        ),
        (
            "min_healthy_per_group = 1\nmax_fraction_per_group = 0.5",
            "min_healthy_per_group = 3\nmax_fraction_per_group = 1.0",
            "min-healthy-per-group",
        ),
    ] {
        let tight = setup(
            0,
            "\"blackhole\"",
            "fault = \"blackhole\", target = \"us-east-1b\", duration-ms = 60000",
            "",
        );
        let text = std::fs::read_to_string(&tight.config).expect("config");
        assert!(text.contains(from), "{text}");
        std::fs::write(&tight.config, text.replace(from, to)).expect("config");
        let (output, _) = run(&tight, true).await;
        assert!(
            output.report.faults.is_empty(),
            "{:#?}",
            output.report.faults
        );
        assert!(
            output.report.experiments[0]
                .denials
                .iter()
                .any(|d| d.operation == "blackhole" && d.rule == rule),
            "{rule}: {:#?}",
            output.report.experiments[0].denials
        );
    }

    let zone_a = setup(
        0,
        "\"blackhole\"",
        "fault = \"blackhole\", target = \"us-east-1a\", duration-ms = 60000",
        "",
    );
    let (output, _) = run(&zone_a, true).await;
    assert!(
        output.report.faults.is_empty(),
        "{:#?}",
        output.report.faults
    );
    let denial = &output.report.experiments[0].denials;
    assert!(
        denial.iter().any(|d| d.operation == "blackhole"
            && d.message.contains("subnet-us-east-1a also holds")
            && d.message.contains("opted out")),
        "{denial:#?}"
    );
}

/// A hostile plugin of contract 0.2 aims every new operation at what it
/// may not reach (an opted-out group's instance, an unscoped group's, an
/// unknown id; the opted-out and unscoped groups; a zone holding them),
/// lists with absurd page sizes and forged cursors, asks for durations no
/// fault may have, and gives a reason full of terminal escapes: it gets a
/// typed error for each, sees nothing outside scope, changes nothing
/// outside scope, and its one allowed fault is journalled with its reason
/// bounded and its escapes escaped (`cat` of the journal is safe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugin_reaches_nothing_outside_scope_with_the_new_operations() {
    let probe = SimCloud::from_fleet_file(
        &setup(0, "\"stop\"", "", "").dir.path().join("fleet.toml"),
        1,
    )
    .expect("fleet");
    let vault = support::ids_of(&probe, Some("vault")).await.remove(0);
    let other = support::ids_of(&probe, Some("other")).await.remove(0);
    let victim = support::ids_of(&probe, Some("web")).await.remove(0);
    let outside = [vault.as_str(), other.as_str(), "i-ffffffffffffffff"];
    let setup = support::setup(
        &fleet(0),
        &support::test_plugin_dir(),
        &format!(
            "[scope]\ngroups = [\"web\", \"api\", \"vault\"]\nopt_out = \"chaos-opt-out\"\n\
             [blast_radius]\nmax_terminations = 50\nmin_healthy_per_group = 1\nmax_fraction_per_group = 0.5\n\
             [recovery]\ntimeout_secs = 600\npoll_secs = 1\n\
             [[experiment]]\nplugin = \"hostile-faults\"\n\
             grants = [\"stop\", \"reboot\", \"suspend-processes\", \"blackhole\"]\n\
             params = {{ targets = \"{}\", groups = \"vault,other,nope\", zones = \"us-east-1a,nowhere\", victim = \"{victim}\" }}\n",
            outside.join(",")
        ),
    );
    let config = Config::load(&setup.config).expect("config loads");
    let sim = Arc::new(
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), 1).expect("fleet"),
    );
    let options = RunOptions {
        config: setup.config.clone(),
        execute: true,
        ..RunOptions::default()
    };
    let output = runner::run_on(&config, sim.clone(), 1, &options, std::future::pending())
        .await
        .expect("run");
    let experiment = &output.report.experiments[0];
    assert_eq!(experiment.error, None, "{experiment:#?}");
    let summary = experiment.summary.clone().unwrap_or_default();
    let said: Vec<&str> = summary.split("; ").collect();
    let answer = |what: &str| -> &str {
        said.iter()
            .find_map(|s| s.strip_prefix(&format!("{what} => ")))
            .unwrap_or_else(|| panic!("no answer to {what}: {summary}"))
    };
    for id in outside {
        for op in ["stop", "reboot"] {
            let got = answer(&format!("{op} {id}"));
            assert!(got == "denied" || got == "not-found", "{op} {id} => {got}");
        }
    }
    for group in ["vault", "other", "nope"] {
        let got = answer(&format!("suspend {group}"));
        assert!(
            got == "denied" || got == "not-found",
            "suspend {group} => {got}"
        );
    }
    for zone in ["us-east-1a", "nowhere"] {
        let got = answer(&format!("blackhole {zone}"));
        assert!(
            got == "denied" || got == "not-found",
            "blackhole {zone} => {got}"
        );
    }
    for duration in [0, u64::MAX, 6 * 3_600_000 + 1] {
        assert_eq!(answer(&format!("stop {victim} for {duration}")), "invalid");
        assert_eq!(answer(&format!("blackhole for {duration}")), "invalid");
    }
    assert_eq!(answer("suspend nothing"), "invalid");
    assert_eq!(answer(&format!("stop {victim}")), "ok f-1");

    // It saw only what is in scope: web's and api's instances.
    let in_scope: Vec<String> = [
        support::ids_of(&sim, Some("web")).await,
        support::ids_of(&sim, Some("api")).await,
    ]
    .concat();
    let seen = said
        .iter()
        .find_map(|s| s.strip_prefix("seen="))
        .expect("seen");
    assert!(!seen.is_empty(), "{summary}");
    for id in seen.split(',') {
        assert!(in_scope.iter().any(|i| i == id), "{id} was shown: {seen}");
    }

    // Nothing outside scope changed; the one fault was undone.
    for id in [&vault, &other] {
        assert_eq!(
            state_of(&sim, id).await,
            Some(InstanceState::Running),
            "{id}"
        );
    }
    for group in ["vault", "other"] {
        assert!(sim
            .suspended_processes(group)
            .await
            .expect("read")
            .is_empty());
    }
    let acls = sim
        .subnet_acls(&["subnet-us-east-1a".to_owned()])
        .await
        .expect("acls");
    assert!(
        acls.iter().all(|a| !a.acl.starts_with("acl-deny-all")),
        "{acls:?}"
    );
    assert_eq!(output.report.faults.len(), 1, "{:#?}", output.report.faults);
    assert_eq!(output.report.faults[0].status, "undone");

    // Its reason: bounded in the journal, its escapes gone from the report.
    let reason = journal_of(&output)
        .iter()
        .find_map(|e| match &e.event {
            Event::FaultIntent { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("the intent");
    assert!(reason.len() <= 1024, "{} bytes of reason", reason.len());
    assert!(reason.contains('\u{1b}'), "the reason is kept, escaped");
    let raw = std::fs::read(&output.journal).expect("journal");
    assert!(
        !raw.contains(&0x1b) && !raw.contains(&0x07),
        "raw escapes in the journal file"
    );
}
