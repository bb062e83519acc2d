//! Faults of contract 0.2 on moto, through the official SDK: each applied
//! and undone, checked by an independent read; a plugin that spins holding
//! a stop has it undone when its time is up; and runs killed (SIGKILL) at
//! random moments leave nothing that `wasmonkey recover` does not undo,
//! with journals that tell the truth.

use std::time::{Duration, Instant};

use super::{said, variant, wasmonkey_cli, Lab};
use crate::support;

/// A lab, its standalone instance, and a config that stops it for
/// `duration_ms` while `faulty` spins (ended after `timeout_secs`).
fn stopping(
    runtime: &tokio::runtime::Runtime,
    duration_ms: u64,
    timeout_secs: u64,
) -> (Lab, String, String) {
    let lab = runtime.block_on(Lab::new());
    let standalone = lab.fleet.standalone.clone();
    let config = faulty(
        &lab,
        &lab.moto.endpoint,
        "\"stop\"",
        &format!("target = \"{standalone}\", duration-ms = {duration_ms}, spin = true"),
        timeout_secs,
    );
    (lab, standalone, config)
}

/// The lab's config running `faulty` with `grants` and `params`, standalone
/// instances in scope, plugins ended after `timeout_secs` (fuel enough to
/// spin until then).
fn faulty(lab: &Lab, endpoint: &str, grants: &str, params: &str, timeout_secs: u64) -> String {
    let config = lab.config(
        &support::test_plugin_dir(),
        endpoint,
        &format!(
            "[[experiment]]\nplugin = \"faulty\"\ngrants = [{grants}]\nparams = {{ {params} }}\nlimits = {{ timeout_secs = {timeout_secs}, fuel = 1000000000000 }}\n"
        ),
    );
    variant(
        &config,
        "faulty.toml",
        &[("[scope]\n", "[scope]\nstandalone = true\n")],
    )
}

async fn instance_state(lab: &Lab, id: &str) -> String {
    lab.states().await.get(id).cloned().unwrap_or_default()
}

async fn suspended(lab: &Lab, group: &str) -> Vec<String> {
    let answer = aws_sdk_autoscaling::Client::new(&lab.admin)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe groups");
    let mut names: Vec<String> = answer.auto_scaling_groups()[0]
        .suspended_processes()
        .iter()
        .filter_map(|p| p.process_name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Stop (undone by a start when its 2 s are up, while the plugin spins
/// without calling the host), suspended processes (resumed), a reboot
/// (nothing to undo): each seen by an independent read.
#[test]
fn each_fault_is_applied_and_undone_as_an_independent_read_sees() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (lab, standalone, config) = stopping(&runtime, 2000, 8);
    let journal = lab.dir.path().join("stop.jsonl");
    let mut child = wasmonkey_run_at(&lab, &config, &journal);
    let started = Instant::now();
    let mut saw_stopped = false;
    while started.elapsed() < Duration::from_secs(20) {
        let state = runtime.block_on(instance_state(&lab, &standalone));
        saw_stopped |= state == "stopped" || state == "stopping";
        if saw_stopped && state == "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let started_again = started.elapsed();
    assert!(saw_stopped, "the instance was never seen stopped");
    assert_eq!(
        runtime.block_on(instance_state(&lab, &standalone)),
        "running"
    );
    let status = child.wait().expect("the run ends");
    let ended = started.elapsed();
    assert!(
        started_again + Duration::from_secs(3) < ended,
        "started again at {started_again:?}, only when the plugin was ended at {ended:?}: {status:?}"
    );
    let report = report_of(&lab, &journal);
    assert_eq!(report["faults"][0]["status"], "undone", "{report:#}");
    assert_eq!(
        report["faults"][0]["detail"],
        format!("started {standalone}"),
        "{report:#}"
    );

    // Launch and ReplaceUnhealthy suspended on web for 2 s, seen while the
    // plugin sleeps, and resumed.
    let config = faulty(
        &lab,
        &lab.moto.endpoint,
        "\"suspend-processes\"",
        "fault = \"suspend\", target = \"web\", duration-ms = 2000, then-sleep-ms = 4000",
        30,
    );
    let journal = lab.dir.path().join("suspend.jsonl");
    let mut child = wasmonkey_run_at(&lab, &config, &journal);
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && started.elapsed() < Duration::from_secs(10) {
        seen = runtime.block_on(suspended(&lab, "web"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, ["Launch", "ReplaceUnhealthy"]);
    assert!(child.wait().expect("ends").success());
    assert!(runtime.block_on(suspended(&lab, "web")).is_empty());
    let report = report_of(&lab, &journal);
    assert_eq!(report["faults"][0]["status"], "undone", "{report:#}");

    // A reboot: applied, nothing owed.
    let config = faulty(
        &lab,
        &lab.moto.endpoint,
        "\"reboot\"",
        &format!("fault = \"reboot\", target = \"{standalone}\""),
        30,
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &config]);
    let report = support::json_report(&run);
    assert_eq!(report["faults"][0]["status"], "applied", "{report:#}");
    assert_eq!(
        runtime.block_on(instance_state(&lab, &standalone)),
        "running"
    );
}

/// `wasmonkey run --execute --journal JOURNAL --config CONFIG`, started.
fn wasmonkey_run_at(lab: &Lab, config: &str, journal: &std::path::Path) -> std::process::Child {
    let mut cmd = super::wasmonkey_with_moto_credentials();
    cmd.env("XDG_STATE_HOME", lab.dir.path().join("xdg"))
        .env("WASMONKEY_HOST_STATE_DIR", lab.dir.path().join("host"))
        .args(["run", "--execute", "--journal"])
        .arg(journal)
        .args(["--config", config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wasmonkey runs")
}

fn report_of(lab: &Lab, journal: &std::path::Path) -> serde_json::Value {
    let journal = journal.to_str().expect("path");
    let out = wasmonkey_cli(lab, &["report", "--json", journal]);
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// The kill switch set while the plugin spins holding a ten-minute stop:
/// the host starts the instance again within a couple of seconds (the
/// switches are read every second), before the plugin is ended at the
/// end of its grace, and the run says it was paused.
#[test]
fn the_kill_switch_set_mid_fault_undoes_it_without_waiting_for_the_plugin() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (lab, standalone, config) = stopping(&runtime, 600_000, 60);
    let journal = lab.dir.path().join("paused.jsonl");
    let mut child = wasmonkey_run_at(&lab, &config, &journal);
    let started = Instant::now();
    while runtime.block_on(instance_state(&lab, &standalone)) != "stopped" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the instance was never seen stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let paused_at = time::OffsetDateTime::now_utc();
    let paused = wasmonkey_cli(&lab, &["pause", "--reason", "incident 7"]);
    assert!(paused.status.success(), "{}", said(&paused));
    child.wait().expect("the run ends");
    let entries = wasmonkey::journal::read(&journal).expect("journal").entries;
    let find = |what: &str, matches: &dyn Fn(&wasmonkey::journal::Event) -> bool| {
        entries
            .iter()
            .find(|e| matches(&e.event))
            .unwrap_or_else(|| panic!("no {what} in the journal"))
    };
    use wasmonkey::journal::Event;
    let tripped = find("trip", &|e| matches!(e, Event::StopTripped { .. }));
    let undone = find("undo", &|e| matches!(e, Event::FaultUndone { .. }));
    let finished = find("experiment's end", &|e| {
        matches!(e, Event::ExperimentFinished { .. })
    });
    // The brake is journalled when it was seen, before the undo it caused.
    let after_pause = undone.at - paused_at;
    assert!(
        tripped.seq < undone.seq
            && undone.seq < finished.seq
            && after_pause < time::Duration::seconds(3),
        "undone {after_pause} after the pause (entry {}; the trip is entry {}), the experiment \
         ended at entry {}",
        undone.seq,
        tripped.seq,
        finished.seq
    );
    let report = report_of(&lab, &journal);
    assert_eq!(report["faults"][0]["status"], "undone", "{report:#}");
    assert_eq!(report["outcome"], "paused", "{report:#}");
    assert_eq!(
        runtime.block_on(instance_state(&lab, &standalone)),
        "running"
    );
}

/// Runs killed with SIGKILL at random moments while they stop an instance
/// for a minute: after `wasmonkey recover`, the instance runs and nothing
/// is owed; every journal that records the fault applied either records it
/// undone or its report says it was NOT undone.
#[test]
fn runs_killed_while_holding_a_stop_leave_nothing_recover_does_not_undo() {
    use rand::{Rng as _, SeedableRng as _};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (lab, standalone, config) = stopping(&runtime, 60_000, 30);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(26);
    let (mut owed_seen, mut before_fault) = (0, 0);
    for run in 0..super::CRASH_RUNS {
        let journal = lab.dir.path().join(format!("killed-{run}.jsonl"));
        let mut child = wasmonkey_run_at(&lab, &config, &journal);
        std::thread::sleep(Duration::from_millis(rng.random_range(50..1500)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.contains("\"fault-intent\"") {
            let report = wasmonkey_cli(&lab, &["report", journal.to_str().expect("path")]);
            let report = String::from_utf8_lossy(&report.stdout).into_owned();
            assert!(
                text.contains("\"fault-undone\"") || report.contains("NOT undone"),
                "run {run}: {report}"
            );
            owed_seen += usize::from(!text.contains("\"fault-undone\""));
        } else {
            before_fault += 1;
        }
        let recover = wasmonkey_cli(&lab, &["recover", "--config", &config]);
        assert!(recover.status.success(), "run {run}: {}", said(&recover));
        let state = runtime.block_on(instance_state(&lab, &standalone));
        assert!(
            state == "running" || state == "pending",
            "run {run}: the instance is {state} after recover: {}",
            said(&recover)
        );
        let owed = lab.dir.path().join("state").join("faults");
        let left: Vec<_> = std::fs::read_dir(&owed)
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "run {run}: {left:?} still owed");
    }
    eprintln!(
        "{} runs killed: {owed_seen} while a stop was owed, {before_fault} before any fault",
        super::CRASH_RUNS
    );
    assert!(owed_seen > 0, "no kill landed while a stop was owed");
}

/// The network ACL of `subnet` now, and every ACL a fault tagged.
async fn acl_of(lab: &Lab, subnet: &str) -> (String, Vec<String>) {
    let ec2 = aws_sdk_ec2::Client::new(&lab.admin);
    let all = ec2
        .describe_network_acls()
        .send()
        .await
        .expect("describe network ACLs");
    let mut current = String::new();
    let mut tagged = Vec::new();
    for acl in all.network_acls() {
        let id = acl.network_acl_id().unwrap_or_default().to_owned();
        if acl
            .associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet))
        {
            current = id.clone();
        }
        if acl
            .tags()
            .iter()
            .any(|t| t.key() == Some("wasmonkey:fault"))
        {
            tagged.push(id);
        }
    }
    (current, tagged)
}

/// A zone cut off on moto: the zone's subnet is seen behind a new, tagged
/// ACL while the fault lasts, and back behind its own ACL, the tagged one
/// deleted, after. With the opted-out `vault` sharing the subnet, the
/// fault is refused and nothing changes.
#[test]
fn a_zone_is_cut_off_behind_a_deny_all_acl_and_moved_back() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let lab = runtime.block_on(Lab::new());
    // The zone and subnet of an instance of the opted-out `vault` (moto
    // places a group's instances at random), and an in-scope standalone
    // instance launched there beside it.
    let (zone, subnet) = runtime.block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&lab.admin);
        let all = ec2.describe_instances().send().await.expect("describe");
        let (zone, subnet) = all
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| {
                i.tags().iter().any(|t| {
                    t.key() == Some("aws:autoscaling:groupName") && t.value() == Some("vault")
                })
            })
            .and_then(|i| {
                Some((
                    i.placement()?.availability_zone()?.to_owned(),
                    i.subnet_id()?.to_owned(),
                ))
            })
            .expect("a vault instance, with its zone and subnet");
        let launched = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(&zone)
                    .build(),
            )
            .send()
            .await
            .expect("an instance beside vault");
        assert_eq!(
            launched.instances()[0].subnet_id(),
            Some(subnet.as_str()),
            "launched into the vault's subnet"
        );
        (zone, subnet)
    });
    let (own_acl, tagged) = runtime.block_on(acl_of(&lab, &subnet));
    assert!(!own_acl.is_empty() && tagged.is_empty());
    let params = format!(
        "fault = \"blackhole\", target = \"{zone}\", duration-ms = 2000, then-sleep-ms = 4000"
    );

    // With the opted-out vault in the subnet: refused.
    let refused = faulty(&lab, &lab.moto.endpoint, "\"blackhole\"", &params, 30);
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &refused]);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("report");
    assert!(
        report["faults"].as_array().is_some_and(Vec::is_empty),
        "{report:#}"
    );
    assert!(
        report["experiments"][0]["denials"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["operation"] == "blackhole")),
        "{report:#}"
    );
    assert_eq!(
        runtime.block_on(acl_of(&lab, &subnet)),
        (own_acl.clone(), Vec::new())
    );

    // Everything in scope, budget for the whole zone: cut off, and back.
    let text = std::fs::read_to_string(&refused).expect("config");
    let whole = text
        .replace(
            "[scope]\n",
            "[scope]\nopt_out = \"wasmonkey-test-never-set\"\n",
        )
        .replace("max_terminations = 3", "max_terminations = 20")
        .replace("min_healthy_per_group = 1", "min_healthy_per_group = 0");
    let config = lab.dir.path().join("zone.toml");
    std::fs::write(&config, whole).expect("config");
    let config = config.to_str().expect("path").to_owned();
    let journal = lab.dir.path().join("zone.jsonl");
    let mut child = wasmonkey_run_at(&lab, &config, &journal);
    let started = Instant::now();
    let mut seen = None;
    while seen.is_none() && started.elapsed() < Duration::from_secs(15) {
        let (current, tagged) = runtime.block_on(acl_of(&lab, &subnet));
        if current != own_acl {
            seen = Some((current, tagged));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cut_to, tagged) = seen.expect("the subnet never left its own ACL");
    assert_eq!(
        tagged,
        [cut_to],
        "the subnet is behind the ACL the fault tagged"
    );
    assert!(child.wait().expect("ends").success());
    assert_eq!(
        runtime.block_on(acl_of(&lab, &subnet)),
        (own_acl, Vec::new())
    );
    let report = report_of(&lab, &journal);
    assert_eq!(report["faults"][0]["status"], "undone", "{report:#}");
}
