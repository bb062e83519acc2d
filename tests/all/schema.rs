//! The run config's JSON Schema: what `wasmonkey config schema` prints, the
//! copy editors find in `docs/`, and every shipped config valid against it.

use std::path::Path;

use wasmonkey::config::Config;

use crate::support;

/// A TOML file as the JSON value a schema validator reads.
fn as_json(text: &str, origin: &Path) -> serde_json::Value {
    let value: toml::Value =
        toml::from_str(text).unwrap_or_else(|err| panic!("{}: {err}", origin.display()));
    serde_json::to_value(value).expect("TOML is JSON")
}

#[test]
fn every_shipped_config_validates_against_the_schema_and_typos_do_not() {
    let schema = Config::schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let root = support::root();
    let shipped = [
        "examples/wasmonkey.toml",
        "examples/aws/wasmonkey.toml",
        "examples/unattended.toml",
        "templates/common/try.toml",
    ];
    for file in shipped {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&text, &path))
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:#?}");
    }
    // The unattended example also loads, with a schedule to run.
    let unattended = Config::load(&root.join("examples/unattended.toml")).expect("loads");
    let schedule = unattended
        .schedule(0)
        .expect("schedule")
        .expect("a [schedule]");
    assert!(!schedule.is_empty());
    // What the loader refuses, the schema refuses too: a typo, a wrong type,
    // an unknown grant, a backend that does not exist.
    let good = std::fs::read_to_string(root.join("examples/wasmonkey.toml")).unwrap();
    for (from, to) in [
        ("max_terminations = 3 ", "max_kills = 3 "),
        ("max_terminations = 3 ", "max_terminations = \"three\" "),
        (
            "grants = [\"terminate\", \"notify\"]  #",
            "grants = [\"sudo\"]  #",
        ),
        ("kind = \"sim\"", "kind = \"gcp\""),
    ] {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        assert!(
            !validator.is_valid(&as_json(&bad, Path::new("bad.toml"))),
            "the schema accepts {to}"
        );
    }
}

#[test]
fn the_schema_in_docs_is_the_one_the_host_prints() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, Config::schema());
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("docs/wasmonkey.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(
        committed == printed,
        "docs/wasmonkey.schema.json is stale: regenerate it with \
         `cargo run -p wasmonkey -- config schema > docs/wasmonkey.schema.json`"
    );
}
