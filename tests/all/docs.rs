//! The docs agree with the binary: the command synopses of the README and
//! docs/config.md name only subcommands and flags the binary has, and every
//! subcommand it has; config.md's key table names only keys the config
//! accepts, and every one it accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use wasmonkey::config::Config;

use crate::support;

fn read(path: &str) -> String {
    std::fs::read_to_string(support::root().join(path))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(args)
        .arg("--help")
        .output()
        .expect("wasmonkey runs");
    assert!(output.status.success(), "{args:?} --help: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands `wasmonkey --help` (or `wasmonkey SUB --help`) lists.
fn subcommands(args: &[&str]) -> BTreeSet<String> {
    let text = help(args);
    let Some((_, commands)) = text.split_once("Commands:\n") else {
        return BTreeSet::new();
    };
    commands
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Each `wasmonkey …` line of the first code block after `heading`, joined
/// with its continuation lines: (the subcommand words, the flags).
fn synopsis(doc: &str, heading: &str) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let after = doc
        .split_once(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))
        .1;
    let block = after
        .split("```")
        .nth(1)
        .expect("a code block after the heading");
    let mut commands: Vec<String> = Vec::new();
    for line in block.lines() {
        let line = line.split(" # ").next().unwrap_or(line);
        if let Some(rest) = line.strip_prefix("wasmonkey ") {
            commands.push(rest.to_owned());
        } else if line.starts_with(' ') {
            if let Some(last) = commands.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        }
    }
    commands
        .iter()
        .map(|c| {
            let words: Vec<String> = c
                .split_whitespace()
                .take_while(|w| {
                    w.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-') && !w.starts_with('-')
                })
                .map(str::to_owned)
                .collect();
            let flags: BTreeSet<String> = c
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_owned)
                .collect();
            (words, flags)
        })
        .collect()
}

fn check_synopsis(path: &str, heading: &str) {
    let doc = read(path);
    let lines = synopsis(&doc, heading);
    let shown: BTreeSet<&str> = lines
        .iter()
        .filter_map(|(words, _)| words.first().map(String::as_str))
        .collect();
    for command in subcommands(&[]) {
        assert!(
            shown.contains(command.as_str()),
            "{path}: the synopsis lacks `wasmonkey {command}`"
        );
    }
    for (words, flags) in &lines {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        // A flag may be a subcommand's (`cache prune --days`).
        let mut text = help(&args);
        for sub in subcommands(&args) {
            let mut deeper = args.clone();
            deeper.push(&sub);
            text.push_str(&help(&deeper));
        }
        for flag in flags {
            assert!(
                text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                "{path}: `wasmonkey {}` has no {flag}:\n{text}",
                words.join(" ")
            );
        }
    }
}

#[test]
fn the_command_synopses_are_the_binarys() {
    check_synopsis("README.md", "## Command line");
    check_synopsis("docs/config.md", "## Command line");
    // config.md's is the whole one: each subcommand's every flag.
    let doc = read("docs/config.md");
    for (words, flags) in synopsis(&doc, "## Command line") {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = help(&args);
        let offered: BTreeSet<String> = text
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2 && *w != "--help" && *w != "--version")
            .map(str::to_owned)
            .collect();
        for flag in offered {
            assert!(
                flags.contains(&flag),
                "docs/config.md: `wasmonkey {}` takes {flag}, which its synopsis does not show",
                words.join(" ")
            );
        }
    }
}

/// The field names an object schema (through `$ref`, `anyOf`, `oneOf`,
/// `allOf`, map values and array items) may have.
fn fields(schema: &serde_json::Value, node: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let Some(reference) = node["$ref"].as_str() {
        let name = reference.rsplit('/').next().expect("a name");
        fields(schema, &schema["$defs"][name], out);
    }
    if let Some(properties) = node["properties"].as_object() {
        out.extend(properties.keys().cloned());
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for variant in node[key].as_array().into_iter().flatten() {
            fields(schema, variant, out);
        }
    }
    for key in ["additionalProperties", "items"] {
        if node[key].is_object() {
            fields(schema, &node[key], out);
        }
    }
}

/// config.md's key table: each table (`""` for the top level) and the keys
/// its rows name.
fn key_table(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let table = doc
        .split_once("| key | meaning | default |")
        .expect("the key table")
        .1;
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row
            .split(" | ")
            .next()
            .unwrap_or("")
            .trim_start_matches('|');
        let mut current = String::new();
        for (i, span) in first.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let rest = if let Some(inner) = span.strip_prefix('[') {
                let inner = inner.trim_start_matches('[');
                let (name, rest) = inner.split_once(']').expect("a closed table name");
                current = name.split('.').next().unwrap_or(name).to_owned();
                rest.trim_start_matches(']')
            } else {
                span
            };
            let keys = named.entry(current.clone()).or_default();
            for piece in rest.split(',') {
                let key = piece.split('=').next().unwrap_or("").trim();
                let word = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
                if !key.is_empty() && key.chars().all(word) {
                    keys.insert(key.to_owned());
                }
            }
        }
    }
    named
}

#[test]
fn the_key_table_is_the_configs() {
    let schema = Config::schema();
    let named = key_table(&read("docs/config.md"));
    let top: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    // Every key it names exists.
    for (table, keys) in &named {
        let known = if table.is_empty() {
            top.clone()
        } else {
            assert!(
                top.contains(table),
                "docs/config.md names [{table}], which the config does not take"
            );
            let mut known = BTreeSet::new();
            fields(&schema, &schema["properties"][table], &mut known);
            known
        };
        for key in keys {
            assert!(
                known.contains(key),
                "docs/config.md names {key} in [{table}], which the config does not take (it takes {known:?})"
            );
        }
    }
    // Every key the config takes is named, but for the limits, which have
    // a section of their own (## Limits) rather than rows.
    for key in &top {
        assert!(
            named.contains_key(key) || named.get("").is_some_and(|k| k.contains(key)),
            "docs/config.md's key table lacks `{key}`"
        );
    }
    for (table, keys) in &named {
        if table.is_empty() || table == "limits" || table == "ceiling" {
            continue;
        }
        let mut known = BTreeSet::new();
        fields(&schema, &schema["properties"][table], &mut known);
        for key in known {
            assert!(
                keys.contains(&key),
                "docs/config.md's key table lacks {key} of [{table}]"
            );
        }
    }
}

/// The deployment recipes hold together with this build: their config
/// loads (every key one the binary takes, every rule it checks), and the
/// image, the Kubernetes manifests and the ECS task agree with it on where
/// the config, the plugins and the metrics port are.
#[cfg(feature = "postgres")]
#[test]
fn the_deployment_recipes_config_loads_and_the_manifests_agree_with_it() {
    let config = Config::load(&crate::support::root().join("deploy/wasmonkey.toml"))
        .unwrap_or_else(|err| panic!("deploy/wasmonkey.toml: {err:#}"));
    assert!(config.state.is_some(), "the recipes share a database");
    assert_eq!(config.accounts.len(), 2);
    let dockerfile = read("deploy/Dockerfile");
    let deployment = read("deploy/k8s/deployment.yaml");
    let cronjob = read("deploy/k8s/cronjob.yaml");
    let task = read("deploy/ecs/task-definition.json");
    let plugins = config.plugins.dir.display().to_string();
    assert!(
        dockerfile.contains(&format!("/out{}", plugins.trim_end_matches("/plugins"))),
        "the image puts the plugins where the config reads them ({plugins})"
    );
    for (name, text) in [
        ("Dockerfile", &dockerfile),
        ("deployment.yaml", &deployment),
        ("cronjob.yaml", &cronjob),
        ("task-definition.json", &task),
    ] {
        assert!(
            text.contains("/etc/wasmonkey/wasmonkey.toml"),
            "{name} runs the config at /etc/wasmonkey/wasmonkey.toml"
        );
    }
    let port = config
        .daemon
        .listen
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    assert!(
        deployment.contains(&format!("containerPort: {port}"))
            && dockerfile.contains(&format!("EXPOSE {port}")),
        "the pod and the image expose the daemon's port {port}"
    );
    assert!(
        !config.daemon.listen.starts_with("127."),
        "probes reach the pod's address, not its loopback"
    );
}
