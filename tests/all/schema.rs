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

#[test]
fn the_schema_and_the_binary_agree_on_every_boundary() {
    let schema = Config::schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    // Each value just inside and just outside what the host accepts.
    let cases = [
        ("[blast_radius]\nmax_fraction_per_group = 0.0", true),
        ("[blast_radius]\nmax_fraction_per_group = 1.0", true),
        ("[blast_radius]\nmax_fraction_per_group = 1.01", false),
        ("[blast_radius]\nmax_fraction_per_group = 5", false),
        ("[blast_radius]\nmax_fraction_per_group = -0.01", false),
        ("[reads]\nmax_age_secs = 0", true),
        ("[reads]\nmax_age_secs = 3600", true),
        ("[reads]\nmax_age_secs = 3600.5", false),
        ("[reads]\nmax_age_secs = -1", false),
        ("[recovery]\npoll_secs = 0.001", true),
        ("[recovery]\npoll_secs = 0", false),
        ("[recovery]\npoll_secs = -1", false),
        ("[stop_conditions.a]\nkind = \"alarm\"\nalarms = [\"x\"]", true),
        ("[stop_conditions.a]\nkind = \"alarm\"\nalarms = []", false),
        ("[stop_conditions.r]\nkind = \"recovery\"\nwithin_secs = 0.5", true),
        ("[stop_conditions.r]\nkind = \"recovery\"\nwithin_secs = 0", false),
        (
            "[prometheus]\nurl = \"http://p:9090\"\n[stop_conditions.p]\nkind = \"prometheus\"\nquery = \"up\"\nbelow = 1\ngrace_secs = 0",
            true,
        ),
        (
            "[prometheus]\nurl = \"http://p:9090\"\n[stop_conditions.p]\nkind = \"prometheus\"\nquery = \"up\"\nbelow = 1\ngrace_secs = -1",
            false,
        ),
        (
            "[prometheus]\nurl = \"http://p:9090\"\n[stop_conditions.p]\nkind = \"prometheus\"\nquery = \"up\"\nbelow = 1\ngrace = 2",
            false,
        ),
        (
            "[prometheus]\nurl = \"http://p:9090\"\n[steady_state.p]\nkind = \"prometheus\"\nquery = \"\"\nabove = 1",
            false,
        ),
        (
            "[prometheus]\nurl = \"http://p:9090\"\n[steady_state.p]\nkind = \"prometheus\"\nquery = \"up\"\nabove = 1\nwhat = 2",
            false,
        ),
        (
            "[targets.t]\ngroup = \"web\"\nmin_healthy = 1\n[stop_conditions.t]\nkind = \"target\"\ntarget = \"t\"\ngrace_secs = 0",
            true,
        ),
        (
            "[targets.t]\ngroup = \"web\"\nmin_healthy = 1\n[stop_conditions.t]\nkind = \"target\"\ntarget = \"t\"\ngrace_secs = -1",
            false,
        ),
    ];
    for (edge, valid) in cases {
        let text = format!(
            "[backend]\nkind = \"sim\"\nfleet = \"f.toml\"\n[plugins]\ndir = \"p\"\n{edge}\n[[experiment]]\nplugin = \"classic-monkey\"\n"
        );
        std::fs::write(&path, &text).unwrap();
        let loaded = Config::load(&path);
        assert_eq!(loaded.is_ok(), valid, "the binary on {edge:?}: {loaded:?}");
        assert_eq!(
            validator.is_valid(&as_json(&text, &path)),
            valid,
            "the schema on {edge:?}"
        );
    }
}
