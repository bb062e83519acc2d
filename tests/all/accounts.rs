//! One run over several accounts and regions (`[[account]]`) on the
//! simulator: every group, zone and subnet named `NAME/REGION/…`, scope
//! and the kill spacing applied to those names, each account-region's
//! fleet its own, and a config that reaches one account-region twice
//! refused.

use std::collections::BTreeSet;

use crate::support::{self, FLEET};

const BODY: &str = r#"
[scope]
groups = ["*/web", "blue/*/api"]
opt_out = "chaos-opt-out"

[blast_radius]
max_terminations = 20
min_healthy_per_group = 1
max_fraction_per_group = 0.5
min_time_between_kills = "1h"

[recovery]
timeout_secs = 600
poll_secs = 5

[[account]]
id = "blue"
regions = ["us-east-1", "eu-west-1"]

[[account]]
id = "green"

[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = { probability = 1.0, poll-secs = 5 }
"#;

fn victims(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["victims"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["group"].as_str().unwrap_or_default().to_owned(),
                v["zone"].as_str().unwrap_or_default().to_owned(),
                v["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_run_over_accounts_and_regions_names_groups_by_account_and_region_and_spaces_kills_per_group() {
    let setup = support::setup(FLEET, &support::plugin_dir(), BODY);

    let plan = support::wasmonkey(&["plan"], &setup.config);
    let planned = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{planned}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    for group in [
        "blue/us-east-1/web",
        "blue/eu-west-1/api",
        "green/us-east-1/web",
    ] {
        assert!(planned.contains(group), "plan names {group}: {planned}");
    }

    let run = support::wasmonkey(&["run", "--execute", "--json"], &setup.config);
    let report = support::json_report(&run);
    let got = victims(&report);
    let groups: BTreeSet<&str> = got.iter().map(|(g, _, _)| g.as_str()).collect();
    // One kill in each group in scope: `web` of all three account-regions
    // and `api` of blue's two, never another account's `api`, never
    // `vault` (opted out) or `other` (out of scope).
    assert_eq!(
        groups,
        BTreeSet::from([
            "blue/eu-west-1/api",
            "blue/eu-west-1/web",
            "blue/us-east-1/api",
            "blue/us-east-1/web",
            "green/us-east-1/web",
        ]),
        "{got:?}"
    );
    assert_eq!(got.len(), 5, "one kill per group: {got:?}");
    for (group, zone, status) in &got {
        assert_eq!(status, "terminated", "{got:?}");
        // A zone is its account-region's: blue's eu-west-1 fleet has
        // eu-west-1 zones.
        let (prefix, _) = group.rsplit_once('/').expect("qualified");
        assert!(
            zone.starts_with(&format!(
                "{prefix}/{}",
                prefix.rsplit('/').next().unwrap_or("")
            )),
            "zone {zone} of group {group}"
        );
    }
    assert_eq!(
        report["account"],
        serde_json::Value::Null,
        "several accounts name none"
    );
    // Each victim's zone is also reported by its id, the physical zone's
    // name in every account: `use1-az…` in us-east-1, `euw1-az…` in
    // eu-west-1.
    for victim in report["victims"].as_array().expect("victims") {
        let group = victim["group"].as_str().unwrap_or_default();
        let id = victim["zone_id"].as_str().unwrap_or_default();
        let short = if group.contains("/eu-west-1/") {
            "euw1-az"
        } else {
            "use1-az"
        };
        assert!(
            id.starts_with(short),
            "zone id {id:?} of a victim of {group}"
        );
    }

    // The gap is kept per account-region's group: an hour later than
    // nothing, every group in scope was just killed, so a second run kills
    // none of them.
    let again = support::wasmonkey(&["run", "--execute", "--json"], &setup.config);
    let report = support::json_report(&again);
    let got = victims(&report);
    assert!(
        got.iter().all(|(_, _, status)| status != "terminated"),
        "killed again within the gap: {got:?}"
    );
    let history = support::wasmonkey(&["history"], &setup.config);
    let text = String::from_utf8_lossy(&history.stdout);
    for group in &groups {
        assert!(text.contains(group), "history keeps {group}: {text}");
    }
}

#[test]
fn a_config_that_reaches_an_account_region_twice_or_a_role_on_the_simulator_is_refused() {
    let twice = BODY.replace(
        "[[account]]\nid = \"green\"\n",
        "[[account]]\nid = \"green\"\n\n[[account]]\nid = \"blue\"\nregions = [\"eu-west-1\"]\nrole_arn = \"arn:aws:iam::111111111111:role/chaos\"\n",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &twice);
    let plan = support::wasmonkey(&["plan"], &setup.config);
    let said = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{said}");
    assert!(
        said.contains("account.3: account blue in region eu-west-1 is listed twice"),
        "{said}"
    );
    assert!(
        said.contains("account.3.role_arn: roles are assumed on AWS only"),
        "{said}"
    );
    // Both at their lines, and nothing ran.
    assert!(
        !setup.dir.path().join("journal").exists(),
        "a journal was written"
    );
}

#[test]
fn simulate_runs_each_account_region_and_counts_its_calls() {
    let body = BODY.replace(
        "[[experiment]]",
        "[schedule]\ntime_zone = \"UTC\"\nhours = \"09:00-17:00\"\n\n[[experiment]]\nwhen = \"daily\"",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let out = support::wasmonkey(&["simulate", "--days", "7", "--json"], &setup.config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let simulation: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let calls = simulation["api_calls"].as_object().expect("api_calls");
    let legs: BTreeSet<&str> = calls.keys().map(String::as_str).collect();
    assert_eq!(
        legs,
        BTreeSet::from(["blue/eu-west-1", "blue/us-east-1", "green/us-east-1"])
    );
    assert!(
        calls.values().all(|n| n.as_u64().unwrap_or(0) > 0),
        "every account-region was read: {calls:?}"
    );
    let groups: BTreeSet<&str> = simulation["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["group"].as_str())
        .collect();
    assert!(groups.contains("green/us-east-1/web"), "{groups:?}");
    assert!(
        !groups
            .iter()
            .any(|g| g.starts_with("green/") && g.ends_with("/api")),
        "{groups:?}"
    );
}
