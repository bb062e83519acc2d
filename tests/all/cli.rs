//! The `wasmonkey` binary, end to end, on the example config.

use std::process::Command;

use crate::support;

fn wasmonkey() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    command.env("WASMONKEY_LOG", "warn");
    command
}

pub(crate) fn example_config(dir: &std::path::Path) -> std::path::PathBuf {
    // The example as shipped, but with its paths made absolute so that it can
    // run from a temporary directory.
    let examples = support::root().join("examples");
    let text = std::fs::read_to_string(examples.join("wasmonkey.toml")).unwrap();
    let text = text
        .replace(
            "\"fleet.toml\"",
            &format!("{:?}", examples.join("fleet.toml").display().to_string()),
        )
        .replace(
            "\"../target/plugins\"",
            &format!("{:?}", support::plugin_dir().display().to_string()),
        )
        .replace(
            "\"../target/journal\"",
            &format!("{:?}", dir.join("journal").display().to_string()),
        );
    // A kill switch of its own, not the machine's.
    let text = format!(
        "state_dir = {:?}\n{text}",
        dir.join("state").display().to_string()
    );
    let path = dir.join("wasmonkey.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_shows_the_scope_a_dry_run_then_keeps_to() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let output = wasmonkey()
        .args(["plan", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let groups = plan["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["api-prod", "web-prod"], "{plan:#}");
    let excluded = |kind: &str, rule: &str| {
        plan["out_of_scope"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind && e["rule"] == rule)
            .count()
    };
    assert_eq!(excluded("group", "opt-out"), 1, "batch-prod: {plan:#}");
    assert_eq!(
        excluded("instance", "standalone"),
        1,
        "the bastion: {plan:#}"
    );
    for condition in plan["stop_conditions"].as_array().unwrap() {
        assert_eq!(condition["state"], "clear", "{condition}");
    }
    assert_eq!(plan["stop_conditions"].as_array().unwrap().len(), 2);
    for experiment in plan["experiments"].as_array().unwrap() {
        assert_eq!(experiment["error"], serde_json::Value::Null, "{experiment}");
        assert!(experiment["grants"]
            .as_array()
            .unwrap()
            .contains(&"terminate".into()));
    }

    // What the dry run then does stays inside what the plan showed.
    let output = wasmonkey()
        .args(["run", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report = support::json_report(&output);
    let victims = report["victims"].as_array().expect("victims");
    assert!(!victims.is_empty(), "{report:#}");
    for group in groups {
        let ids = group["instances"].as_array().unwrap();
        let lost: Vec<&serde_json::Value> = victims
            .iter()
            .filter(|v| v["group"] == group["name"])
            .collect();
        assert!(lost.len() as u64 <= group["may_lose"].as_u64().unwrap());
        for victim in lost {
            assert!(
                ids.contains(&victim["instance_id"]),
                "{victim} not in {group}"
            );
        }
    }
    assert!(victims
        .iter()
        .all(|v| names.contains(&v["group"].as_str().unwrap_or_default())));
}

#[test]
fn run_json_gives_every_victim_a_recovery_time_and_report_renders_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let journal = dir.path().join("run.jsonl");
    let output = wasmonkey()
        .args(["run", "--execute", "--json", "--seed", "42", "--config"])
        .arg(&config)
        .arg("--journal")
        .arg(&journal)
        .output()
        .unwrap();
    let report = support::json_report(&output);
    let victims = report["victims"].as_array().expect("a victims array");
    assert!(victims.len() >= 2, "{report:#}");
    for victim in victims {
        for key in ["instance_id", "group", "zone"] {
            assert!(victim[key].is_string(), "{key} missing in {victim}");
        }
        let seconds = victim["recovery_seconds"]
            .as_f64()
            .expect("a recovery time for every victim");
        assert!(seconds > 0.0);
    }

    let again = wasmonkey()
        .arg("report")
        .arg(&journal)
        .arg("--json")
        .output()
        .unwrap();
    assert!(again.status.success());
    let rendered: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(rendered["victims"], report["victims"]);

    let text = wasmonkey().arg("report").arg(&journal).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("classic-monkey") && text.contains("recovered"),
        "{text}"
    );
}

#[test]
fn errors_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[backend]\nkind = \"sim\"\nfleet = \"f.toml\"\n[plugins]\ndir = \"p\"\n[scope]\ngroup = [\"x\"]\n").unwrap();
    let output = wasmonkey()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("group"),
        "{stderr}"
    );
}

#[test]
fn plugins_list_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let list = wasmonkey()
        .args(["plugins", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{stdout}");
    for name in ["classic-monkey", "az-outage", "rolling"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    let inspect = wasmonkey()
        .args(["plugins", "inspect", "classic-monkey", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{stdout}");
    for expected in [
        "parameters:",
        "probability",
        "wasmonkey:chaos/cloud@0.1.0",
        "grants asked: terminate",
        "memory 64 MiB",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing in:\n{stdout}"
        );
    }
}

/// The example config with one experiment's text replaced.
fn example_with(dir: &std::path::Path, from: &str, to: &str) -> std::path::PathBuf {
    let path = example_config(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in the example");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn plan_is_a_gate_and_run_refuses_what_plan_refuses() {
    // Each a mistake `run` used to find only once it had started.
    let params = "params = { probability = 1.0, channel = \"ops\" }";
    let cases = [
        (
            "a misspelt plugin",
            "plugin = \"classic-monkey\"",
            "plugin = \"clasic-monkey\"",
            "clasic-monkey",
        ),
        (
            "a params typo",
            params,
            "params = { probabilty = 1.0, channel = \"ops\" }",
            "probabilty",
        ),
        (
            "a param of the wrong type",
            params,
            "params = { probability = \"1.0\", channel = \"ops\" }",
            "probability",
        ),
        (
            "a scope with nothing in it",
            "groups = [\"*-prod\"]",
            "groups = [\"no-such-group\"]",
            "nothing is in scope",
        ),
    ];
    for (what, from, to, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = example_with(dir.path(), from, to);
        for json in [false, true] {
            let mut plan = wasmonkey();
            plan.arg("plan").arg("--config").arg(&config);
            if json {
                plan.arg("--json");
            }
            let output = plan.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{what}: {output:?}");
            assert!(stderr.contains(named), "{what}: {stderr}");
            if json {
                let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                let problems = plan["problems"].as_array().expect("problems");
                assert!(
                    problems
                        .iter()
                        .any(|p| p.as_str().is_some_and(|p| p.contains(named))),
                    "{what}: {plan:#}"
                );
            }
        }
        // The run refuses before anything is journalled.
        let output = wasmonkey()
            .args(["run", "--execute", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("nothing was run"),
            "{what}: {stderr}"
        );
        let journals = std::fs::read_dir(dir.path().join("journal"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(journals, 0, "{what}: a journal was started");
    }
}

/// `text`, written to `config`, refused by each of `commands` with one
/// error per line ending `# wrong`, each naming its key (`keys`, in order).
fn every_mistake_at_its_line(
    config: &std::path::Path,
    text: &str,
    commands: &[&str],
    keys: &[&str],
) {
    std::fs::write(config, text).unwrap();
    let wrong: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.ends_with("# wrong"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(wrong.len(), keys.len());
    let file = config.file_name().unwrap().to_string_lossy();
    for command in commands {
        let output = wasmonkey()
            .args([command, "--config"])
            .arg(config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{} problems in the config", keys.len())),
            "{stderr}"
        );
        for (line, key) in wrong.iter().zip(keys) {
            let at = format!("{file}:{line}: ");
            assert!(
                stderr.lines().any(|l| l.contains(&at) && l.contains(key)),
                "{key} at line {line}: {stderr}"
            );
        }
    }
}

/// Mistakes only the deserializer sees (a wrong type, a misspelt key, an
/// unknown name) are reported together with the checks', each at its line.
#[test]
fn mistakes_of_type_and_spelling_are_all_reported_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typos.toml");
    let text = "\
seed = \"eleven\" # wrong
[backend]
kind = \"sim\"
fleet = \"f.toml\"
[plugins]
dir = \"p\"
[scope]
grups = [\"*\"] # wrong
[blast_radius]
max_terminations = \"3\" # wrong
max_fraction_per_group = 5 # wrong
[[experiment]]
plugin = \"classic-monkey\"
grants = [\"terminate\", \"nuke\"] # wrong
";
    every_mistake_at_its_line(
        &config,
        text,
        &["plan"],
        &[
            "seed: invalid type",
            "scope.grups: unknown field `grups`",
            "blast_radius.max_terminations: invalid type",
            "blast_radius.max_fraction_per_group",
            "experiment.1.grants: unknown variant `nuke`",
        ],
    );
}

#[test]
fn five_independent_mistakes_get_five_errors_each_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("five.toml");
    // Each line that is wrong ends with `# wrong`.
    let text = "\
[backend]
kind = \"sim\"
fleet = \"f.toml\"
[plugins]
dir = \"p\"
[blast_radius]
max_terminations = 3
max_fraction_per_group = 5 # wrong
[recovery]
poll_secs = 0 # wrong
targets = [\"nowhere\"] # wrong
[reads]
max_age_secs = 7200 # wrong
[stop_conditions.web]
kind = \"alarm\"
alarms = [] # wrong
[[experiment]]
plugin = \"classic-monkey\"
";
    every_mistake_at_its_line(
        &config,
        text,
        &["run", "plan"],
        &[
            "blast_radius.max_fraction_per_group",
            "recovery.poll_secs",
            "recovery.targets",
            "reads.max_age_secs",
            "stop_conditions.web",
        ],
    );
}

/// A stdout whose reader has already gone, as `| true` or a `| head` that
/// has read its lines leaves it.
fn closed_stdout() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

/// Scripts pipe this tool: a reader that stops early ends every command
/// quietly with 141 (what a shell shows for `cat` there), never a panic or
/// a backtrace; a run keeps its own outcome, its report undelivered.
#[test]
fn a_closed_stdout_ends_each_command_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let config = config.to_str().expect("utf-8 path");
    for args in [
        vec!["config", "schema"],
        vec!["plan", "--config", config],
        vec!["plan", "--json", "--config", config],
        vec!["history", "--config", config],
        vec!["plugins", "list", "--config", config],
        vec!["status", "--config", config],
    ] {
        let output = wasmonkey()
            .args(&args)
            .stdout(closed_stdout())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("backtrace")
                && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
    let run = wasmonkey()
        .args(["run", "--config", config])
        .stdout(closed_stdout())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("the run's report could not be delivered") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn wit_writes_the_contract_the_binary_links_and_never_overwrites_other_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wit = dir.path().join("wit");
    let write = |contract: Option<&str>| {
        let mut cmd = wasmonkey();
        cmd.arg("wit").arg("--dir").arg(&wit);
        if let Some(contract) = contract {
            cmd.args(["--contract", contract]);
        }
        cmd.output().expect("wasmonkey runs")
    };
    let same_as = |version: &str| {
        let repo = support::root().join("wit").join(version);
        let mut files: Vec<_> = std::fs::read_dir(&repo)
            .expect("the repository's contract")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3);
        for file in files {
            assert_eq!(
                std::fs::read(wit.join(&file)).expect("written"),
                std::fs::read(repo.join(&file)).expect("repo"),
                "{file:?} of {version}"
            );
        }
    };
    let first = write(None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let said = String::from_utf8_lossy(&first.stdout);
    assert_eq!(said.matches("written ").count(), 3, "{said}");
    same_as("v0.2.0");
    let again = write(None);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .matches("unchanged ")
            .count(),
        3
    );
    // Another version's text is never written over this one's.
    let older = write(Some("0.1.0"));
    assert!(!older.status.success());
    let err = String::from_utf8_lossy(&older.stderr);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("host.wit"), "{err}");
    same_as("v0.2.0");
    let unknown = write(Some("0.3.0"));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("0.1.0, 0.2.0"));
    // Into a directory of its own, the older contract as it is.
    std::fs::remove_dir_all(&wit).expect("clean");
    assert!(write(Some("0.1.0")).status.success());
    same_as("v0.1.0");
}
