//! The shipped strategies on the simulated fleet: victims, recovery times,
//! determinism, dry runs.

use wasmonkey::cloud::InstanceState;
use wasmonkey::journal::Event;

use crate::rigged::{self, Faults};
use crate::support::{self, FLEET, FLEET_RECOVERY_SECS, RULES};

fn classic(extra: &str) -> String {
    format!(
        "{RULES}{extra}\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\nparams = {{ channel = \"ops\" }}\n"
    )
}

/// Host and plugin agree, within the poll interval, on a recovery that the
/// fleet's timings fix at 40 s.
fn assert_recovered_in_fleet_time(victim: &wasmonkey::report::VictimReport) {
    let host = victim.recovery_seconds.expect("host measured recovery");
    assert!(
        (FLEET_RECOVERY_SECS..=FLEET_RECOVERY_SECS + 1.0).contains(&host),
        "{} recovered in {host} s, expected 40–41 s",
        victim.instance_id
    );
    assert_eq!(victim.host_verdict, "recovered");
    assert_eq!(victim.plugin_verdict.as_deref(), Some("recovered"));
    let plugin = victim
        .plugin_recovery_seconds
        .expect("plugin reported recovery");
    assert!(
        (FLEET_RECOVERY_SECS..=FLEET_RECOVERY_SECS + 6.0).contains(&plugin),
        "plugin saw {plugin} s (polls every 5 s)"
    );
}

#[tokio::test]
async fn classic_monkey_takes_one_victim_per_group_and_times_recovery() {
    let setup = support::setup(FLEET, &support::plugin_dir(), &classic(""));
    let (output, sim) = support::run(&setup, 7, true).await;
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None);
    let victims = support::victims_of(&output, 0);
    let mut groups: Vec<_> = victims.iter().map(|v| v.group.clone().unwrap()).collect();
    groups.sort();
    // vault opted out: only web and api are eligible.
    assert_eq!(groups, ["api", "web"]);
    for victim in &victims {
        assert_eq!(victim.status, "terminated");
        assert_recovered_in_fleet_time(victim);
        let seen = sim
            .describe_instance(&victim.instance_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.state, InstanceState::Terminated);
    }
    assert!(output.report.succeeded());
    // The recovery times went out on the configured channel.
    let outbox = sim.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:#?}");
    assert_eq!(outbox[0].topic, "chaos-reports");
    for victim in &victims {
        assert!(
            outbox[0].body.contains(&victim.instance_id),
            "{}",
            outbox[0].body
        );
    }
    assert_eq!(experiment.notifications[0].status, "delivered");
}

/// After an EC2 termination an Auto Scaling group lists the victim as in
/// service and healthy until its next health check: its capacity looks
/// whole. The host waits for the group to stop counting the victim, and
/// so still measures the fleet's 40 s.
#[tokio::test]
async fn a_victim_its_group_still_counts_in_service_has_not_recovered() {
    let setup = support::setup(FLEET, &support::plugin_dir(), &classic(""));
    let faults = Faults {
        groups_notice_after_ms: Some(3_000),
        ..Faults::default()
    };
    let (output, _) = rigged::run(&setup, 7, true, faults).await;
    assert_eq!(support::only_experiment(&output).error, None);
    let victims = support::victims_of(&output, 0);
    assert_eq!(victims.len(), 2, "{victims:#?}");
    for victim in &victims {
        assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
        let host = victim.recovery_seconds.expect("host measured recovery");
        assert!(
            (FLEET_RECOVERY_SECS..=FLEET_RECOVERY_SECS + 1.0).contains(&host),
            "{} recovered in {host} s, expected 40–41 s",
            victim.instance_id
        );
    }
}

#[tokio::test]
async fn the_same_seed_picks_the_same_victims() {
    let setup = support::setup(FLEET, &support::plugin_dir(), &classic(""));
    let pick = |output: &wasmonkey::runner::RunOutput| -> Vec<String> {
        output
            .report
            .victims
            .iter()
            .map(|v| v.instance_id.clone())
            .collect()
    };
    let (first, _) = support::run(&setup, 1234, true).await;
    let (second, _) = support::run(&setup, 1234, true).await;
    assert_eq!(pick(&first), pick(&second));
    assert_eq!(first.report.victims.len(), 2);
    let times = |o: &wasmonkey::runner::RunOutput| -> Vec<Option<f64>> {
        o.report
            .victims
            .iter()
            .map(|v| v.recovery_seconds)
            .collect()
    };
    assert_eq!(times(&first), times(&second));
    // Other seeds pick other victims (ids differ with the seed too, so compare
    // positions within each group).
    let mut positions = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let (output, sim) = support::run(&setup, seed, true).await;
        let web = support::ids_of(&sim, Some("web")).await;
        let victim = output
            .report
            .victims
            .iter()
            .find(|v| v.group.as_deref() == Some("web"))
            .unwrap();
        positions.insert(web.iter().position(|id| *id == victim.instance_id).unwrap());
    }
    assert!(
        positions.len() > 1,
        "every seed picked the same position: {positions:?}"
    );
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let setup = support::setup(FLEET, &support::plugin_dir(), &classic(""));
    let (output, sim) = support::run(&setup, 7, false).await;
    assert_eq!(output.report.dry_run, Some(true));
    let victims = support::victims_of(&output, 0);
    assert_eq!(victims.len(), 2);
    for victim in victims {
        assert_eq!(victim.status, "dry-run");
        assert_eq!(victim.host_verdict, "unchecked");
        assert_eq!(victim.plugin_verdict.as_deref(), Some("unchecked"));
        let seen = sim
            .describe_instance(&victim.instance_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.state, InstanceState::Running);
    }
    assert!(
        sim.timeline().is_empty(),
        "the fleet changed: {:?}",
        sim.timeline()
    );
}

#[tokio::test]
async fn az_outage_takes_the_zone_within_the_blast_radius() {
    let body = format!(
        "{}\n[[experiment]]\nplugin = \"az-outage\"\ngrants = [\"terminate\"]\nparams = {{ zone = \"us-east-1a\" }}\n",
        RULES.replace("max_terminations = 3", "max_terminations = 10")
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, _) = support::run(&setup, 3, true).await;
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None);
    let victims = support::victims_of(&output, 0);
    // web: 2 of 4 in us-east-1a, both allowed (0.5 × 4); api: 2 of 3 in
    // us-east-1a, one allowed (0.5 × 3 = 1.5 → 1), the other denied.
    assert_eq!(victims.len(), 3, "{victims:#?}");
    assert!(victims.iter().all(|v| v.zone == "us-east-1a"));
    assert_eq!(
        victims
            .iter()
            .filter(|v| v.group.as_deref() == Some("web"))
            .count(),
        2
    );
    assert!(experiment
        .denials
        .iter()
        .any(|d| d.rule == "max-fraction-per-group"));
    for victim in &victims {
        assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
        assert!(victim.recovery_seconds.unwrap() >= FLEET_RECOVERY_SECS);
    }
}

#[tokio::test]
async fn rolling_waits_for_each_recovery_before_the_next_victim() {
    let body = format!(
        "{}\n[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\"]\nparams = {{ count = 3 }}\n",
        RULES.replace("max_fraction_per_group = 0.5", "max_fraction_per_group = 1.0")
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, _) = support::run(&setup, 11, true).await;
    assert_eq!(support::only_experiment(&output).error, None);
    let victims = support::victims_of(&output, 0);
    assert_eq!(victims.len(), 3);
    for pair in victims.windows(2) {
        let recovered_at =
            pair[0].terminated_at_ms as f64 / 1000.0 + pair[0].recovery_seconds.unwrap();
        assert!(
            pair[1].terminated_at_ms as f64 / 1000.0 >= recovered_at,
            "{} was terminated before {} recovered",
            pair[1].instance_id,
            pair[0].instance_id
        );
    }
    for victim in victims {
        assert_recovered_in_fleet_time(victim);
    }
}

#[tokio::test]
async fn rolling_stops_when_a_group_does_not_recover() {
    // Every replacement launch of web fails: the group never recovers.
    let fleet = FLEET.replacen(
        "shutdown_secs = 5",
        "shutdown_secs = 5\nfailed_launches = 1000",
        1,
    );
    let body = format!(
        "{}\n[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\"]\nparams = {{ count = 3, groups = \"web\", recovery-timeout-secs = 120 }}\n",
        RULES.replace("timeout_secs = 600", "timeout_secs = 180")
    );
    let setup = support::setup(&fleet, &support::plugin_dir(), &body);
    let (output, _) = support::run(&setup, 5, true).await;
    let experiment = support::only_experiment(&output);
    let victims = support::victims_of(&output, 0);
    assert_eq!(
        victims.len(),
        1,
        "rolling went on after a failed recovery: {victims:#?}"
    );
    assert_eq!(victims[0].plugin_verdict.as_deref(), Some("not-recovered"));
    assert_eq!(victims[0].host_verdict, "not-recovered");
    assert_eq!(victims[0].recovery_seconds, None);
    let summary = experiment.summary.as_deref().unwrap_or_default();
    assert!(summary.contains("stop"), "{summary}");
    assert!(!output.report.succeeded());
    assert!(support::events(&output)
        .iter()
        .any(|e| matches!(e, Event::NotRecovered { waited_ms, .. } if *waited_ms >= 180_000)));
}
