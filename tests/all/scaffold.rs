//! `wasmonkey new --lang LANG NAME`: for every language, the project it
//! creates builds with the documented command (`cargo xtask build-plugin
//! DIR`), loads in `wasmonkey plugins inspect` with the config it ships, and
//! runs on the simulated fleet it ships. Slow (each builds a real
//! component; the Rust one may build std), but honest.

use std::path::Path;
use std::process::{Command, Output};

use crate::support;

fn wasmonkey() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    command.env("WASMONKEY_LOG", "warn");
    command
}

fn check(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `cargo xtask build-plugin DIR`, as docs/plugins.md says.
fn build(dir: &Path) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "build-plugin"])
        .arg(dir)
        .current_dir(support::root())
        .output()
        .expect("cargo runs")
}

/// `wasmonkey new` in `lang`, for `contract` (the default when none): the
/// project builds, loads as a plugin of that contract version and runs.
fn scaffold_builds_loads_and_runs(lang: &str, contract: Option<&str>) {
    let temp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-strategy");
    let dir = temp.path().join(&name);
    let mut new = wasmonkey();
    new.args(["new", "--lang", lang, &name, "--dir"]).arg(&dir);
    if let Some(contract) = contract {
        new.args(["--contract", contract]);
    }
    let created = new.output().unwrap();
    let said = check("wasmonkey new", &created);
    let version = contract.unwrap_or("0.2.0");
    assert!(
        said.contains(&format!("wasmonkey:chaos@{version}")),
        "{said}"
    );
    assert!(said.contains("cargo xtask build-plugin"), "{said}");
    assert!(dir.join("wit/strategy.wit").is_file());

    let built = build(&dir);
    check(&format!("building the {lang} project"), &built);
    for file in [format!("{name}.wasm"), format!("{name}.toml")] {
        assert!(dir.join("dist").join(&file).is_file(), "no dist/{file}");
    }

    let config = dir.join("try.toml");
    let inspect = wasmonkey()
        .args(["plugins", "inspect", &name, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let shown = check("wasmonkey plugins inspect", &inspect);
    for expected in [
        format!("{name}@0.1.0"),
        "groups".to_owned(),
        format!("wasmonkey:chaos/cloud@{version}"),
        "grants asked: terminate".to_owned(),
    ] {
        assert!(
            shown.contains(&expected),
            "{expected:?} missing in:\n{shown}"
        );
    }

    // The project's config keeps the operator's default state directory:
    // this run's kill switch and history stay in the test's own.
    let run = wasmonkey()
        .env("XDG_STATE_HOME", temp.path().join("state"))
        .args(["run", "--execute", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&check("wasmonkey run", &run)).expect("--json prints JSON");
    let victims = report["victims"].as_array().expect("a victims array");
    assert_eq!(victims.len(), 1, "{report:#}");
    assert_eq!(victims[0]["status"], "terminated", "{report:#}");
    assert_eq!(victims[0]["host_verdict"], "recovered", "{report:#}");
}

#[test]
fn a_new_rust_plugin_builds_and_loads() {
    scaffold_builds_loads_and_runs("rust", None);
}

#[test]
fn a_new_python_plugin_builds_and_loads() {
    scaffold_builds_loads_and_runs("python", None);
}

#[test]
fn a_new_js_plugin_builds_and_loads() {
    scaffold_builds_loads_and_runs("js", None);
}

#[test]
fn a_new_c_plugin_builds_and_loads() {
    scaffold_builds_loads_and_runs("c", None);
}

#[test]
fn a_new_zig_plugin_builds_and_loads() {
    scaffold_builds_loads_and_runs("zig", None);
}

#[test]
fn a_new_js_plugin_for_contract_0_1_builds_and_loads() {
    scaffold_builds_loads_and_runs("js", Some("0.1.0"));
}

#[test]
fn a_contract_this_host_does_not_speak_is_refused_by_new() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("p");
    let refused = wasmonkey()
        .args(["new", "--lang", "c", "p", "--contract", "0.3.0", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("0.3.0") && said.contains("0.1.0, 0.2.0"),
        "{said}"
    );
    assert!(!dir.exists(), "nothing written");
}
