//! `plan` and `run` consume one plan: over generated fleets and configs,
//! `plan --json` and a dry `run --json` agree on which experiments run, on
//! what is in scope, and on what the blast radius lets each group lose.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::Command;

use proptest::prelude::*;
use proptest::test_runner::Config as Cases;

use wasmonkey::cloud::sim::SimCloud;

use crate::support;

/// One generated group.
#[derive(Debug, Clone)]
struct GroupSpec {
    name: &'static str,
    desired: u32,
    team_a: bool,
    opted_in: bool,
    opted_out: bool,
}

/// One generated run config's choices.
#[derive(Debug, Clone)]
struct Choices {
    groups: Vec<GroupSpec>,
    standalone: u32,
    patterns: &'static str,
    tag_team_a: bool,
    opt_in: bool,
    standalone_in_scope: bool,
    min_healthy: u32,
    fraction: f64,
    per_group_cap: Option<u32>,
    misspelt_second: bool,
}

const SEED: u64 = 11;

const NAMES: [&str; 4] = ["web-prod", "api-prod", "batch-dev", "jobs-prod"];

fn group(name: &'static str) -> impl Strategy<Value = GroupSpec> {
    (
        1..=6_u32,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(move |(desired, team_a, opted_in, opted_out)| GroupSpec {
            name,
            desired,
            team_a,
            opted_in,
            opted_out,
        })
}

fn choices() -> impl Strategy<Value = Choices> {
    let groups = (
        prop::option::weighted(0.8, group(NAMES[0])),
        prop::option::weighted(0.8, group(NAMES[1])),
        prop::option::weighted(0.5, group(NAMES[2])),
        prop::option::weighted(0.5, group(NAMES[3])),
    )
        .prop_map(|(a, b, c, d)| [a, b, c, d].into_iter().flatten().collect::<Vec<_>>());
    (
        groups,
        0..=2_u32,
        prop::sample::select(vec![
            "[\"*\"]",
            "[\"*-prod\"]",
            "[\"web-prod\", \"batch-dev\"]",
            "[\"no-such-group\"]",
        ]),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        any::<bool>(),
        0..=2_u32,
        prop::sample::select(vec![0.0, 0.34, 0.5, 1.0]),
        prop::option::of(1..=2_u32),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(
                groups,
                standalone,
                patterns,
                tag_team_a,
                opt_in,
                standalone_in_scope,
                min_healthy,
                fraction,
                per_group_cap,
                misspelt_second,
            )| Choices {
                groups,
                standalone,
                patterns,
                tag_team_a,
                opt_in,
                standalone_in_scope,
                min_healthy,
                fraction,
                per_group_cap,
                misspelt_second,
            },
        )
}

fn tags(team_a: bool, opted_in: bool, opted_out: bool) -> String {
    let mut tags = vec![format!("team = \"{}\"", if team_a { "a" } else { "b" })];
    if opted_in {
        tags.push("chaos = \"opt-in\"".into());
    }
    if opted_out {
        tags.push("chaos-opt-out = \"true\"".into());
    }
    format!("{{ {} }}", tags.join(", "))
}

fn fleet(choices: &Choices) -> String {
    let mut fleet = String::from("region = \"us-east-1\"\n");
    for g in &choices.groups {
        let _ = write!(
            fleet,
            "[[group]]\nname = \"{}\"\nzones = [\"us-east-1a\"]\ndesired = {}\nmin = 0\nmax = {}\ntags = {}\n",
            g.name,
            g.desired,
            g.desired + 2,
            tags(g.team_a, g.opted_in, g.opted_out)
        );
    }
    for i in 0..choices.standalone {
        let _ = write!(
            fleet,
            "[[instance]]\nzone = \"us-east-1a\"\ntags = {}\n",
            tags(i % 2 == 0, i == 0, false)
        );
    }
    fleet
}

fn config(choices: &Choices, targets: &[String]) -> String {
    let mut scope = format!("[scope]\ngroups = {}\n", choices.patterns);
    if choices.tag_team_a {
        scope.push_str("tags = [\"team=a\"]\n");
    }
    if choices.opt_in {
        scope.push_str("opt_in = \"chaos=opt-in\"\n");
    }
    let _ = writeln!(scope, "standalone = {}", choices.standalone_in_scope);
    let mut radius = format!(
        "[blast_radius]\nmax_terminations = 100\nmin_healthy_per_group = {}\nmax_fraction_per_group = {}\n",
        choices.min_healthy, choices.fraction
    );
    if let Some(cap) = choices.per_group_cap {
        let _ = writeln!(radius, "max_terminations_per_group_per_run = {cap}");
    }
    // A plugin that tries every instance of the fleet, in scope or not,
    // whatever the answers: what it gets is the host's decision alone.
    let mut experiments = format!(
        "[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\n\
         params = {{ attack = \"terminate\", targets = {:?} }}\n",
        targets.join(",")
    );
    if choices.misspelt_second {
        experiments.push_str("[[experiment]]\nplugin = \"hostlie\"\n");
    }
    format!(
        "seed = {SEED}\njournal_dir = \"journal\"\nstate_dir = \"state\"\n\
         [backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n\
         [plugins]\ndir = {:?}\ncache_dir = {:?}\n{scope}{radius}{experiments}",
        support::test_plugin_dir().display().to_string(),
        support::cache_dir().display().to_string(),
    )
}

/// Every instance id of the fleet, as a run with the config's seed sees it.
fn every_instance(fleet: &std::path::Path) -> Vec<String> {
    let sim = SimCloud::from_fleet_file(fleet, SEED).expect("fleet loads");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut ids = Vec::new();
    let mut groups: Vec<Option<&str>> = NAMES.iter().copied().map(Some).collect();
    groups.push(None);
    for group in groups {
        ids.extend(runtime.block_on(support::ids_of(&sim, group)));
    }
    ids.sort();
    ids
}

fn wasmonkey(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .env("WASMONKEY_LOG", "warn")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("wasmonkey runs")
}

/// The plan and the dry run of one generated case agree.
fn agree(choices: &Choices) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet_file = dir.path().join("fleet.toml");
    std::fs::write(&fleet_file, fleet(choices)).expect("fleet");
    let targets = every_instance(&fleet_file);
    let path = dir.path().join("wasmonkey.toml");
    std::fs::write(&path, config(choices, &targets)).expect("config");
    let plan = wasmonkey(&["plan", "--json"], &path);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout)
        .map_err(|err| TestCaseError::fail(format!("plan --json: {err}: {plan:?}")))?;
    let run = wasmonkey(&["run", "--json"], &path);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let problems: Vec<&str> = plan["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();

    if !problems.is_empty() {
        // The run refuses, for the plan's reasons, before any journal.
        prop_assert_eq!(run.status.code(), Some(1), "{}", stderr);
        for problem in &problems {
            prop_assert!(stderr.contains(problem), "{problem:?} not in {stderr}");
        }
        prop_assert!(!dir.path().join("journal").exists());
        return Ok(());
    }
    let report: serde_json::Value = serde_json::from_slice(&run.stdout)
        .map_err(|err| TestCaseError::fail(format!("run --json: {err}: {stderr}")))?;

    // The same experiments run.
    let planned: Vec<u64> = plan["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .filter(|e| e["error"].is_null())
        .filter_map(|e| e["index"].as_u64())
        .collect();
    let ran: Vec<u64> = report["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .filter_map(|e| e["index"].as_u64())
        .collect();
    prop_assert_eq!(&planned, &ran);

    // Victims only among what the plan showed in scope, and exactly as many
    // in each group as the plan says it may lose (the plugin tries them all).
    let in_scope: BTreeMap<String, (BTreeSet<String>, u64)> = plan["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let ids = g["instances"]
                .as_array()
                .expect("instances")
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            (
                g["name"].as_str().expect("name").to_owned(),
                (ids, g["may_lose"].as_u64().expect("may_lose")),
            )
        })
        .collect();
    let standalone: BTreeSet<&str> = plan["standalone"]
        .as_array()
        .expect("standalone")
        .iter()
        .filter_map(|i| i.as_str())
        .collect();
    let mut lost: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost_standalone = BTreeSet::new();
    for victim in report["victims"].as_array().expect("victims") {
        prop_assert_eq!(victim["status"].as_str(), Some("dry-run"));
        let id = victim["instance_id"].as_str().unwrap_or_default();
        let Some(group) = victim["group"].as_str() else {
            prop_assert!(
                standalone.contains(id),
                "standalone victim {id} not in the plan: {plan:#}"
            );
            lost_standalone.insert(id);
            continue;
        };
        prop_assert!(
            in_scope.get(group).is_some_and(|(ids, _)| ids.contains(id)),
            "victim {id} of {group} was not in the plan's scope: {plan:#}"
        );
        *lost.entry(group.to_owned()).or_default() += 1;
    }
    prop_assert_eq!(&lost_standalone, &standalone);
    for (name, (ids, may_lose)) in &in_scope {
        let expected = (*may_lose).min(ids.len() as u64);
        prop_assert_eq!(
            lost.get(name).copied().unwrap_or(0),
            expected,
            "group {}: plan {:#}\nreport {:#}",
            name,
            plan,
            report
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Cases::with_cases(64))]

    #[test]
    fn the_plan_and_the_dry_run_agree_on_scope_blast_radius_and_experiments(choices in choices()) {
        agree(&choices)?;
    }
}
