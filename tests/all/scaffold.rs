//! `wasmonkey new --lang LANG NAME`: for every language, the project it
//! creates passes its own CI script (`ci.sh`: `wasmonkey plugin build`,
//! `plugins inspect`, a dry run and a run on the simulated fleet it ships)
//! in a temporary directory that holds no wasmonkey source, with nothing
//! but the `wasmonkey` binary on a `PATH` of the language tools'. Slow
//! (each builds a real component; the Rust one may build std), but honest.

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

/// The project's own `ci.sh`, run as a CI job would: from the project's
/// directory, with the `wasmonkey` binary alone in a directory first on
/// `PATH`, and the language tools that the test set-up already has in the
/// checkout's `.toolchains/` (so that the test does not download them again).
fn ci(dir: &Path, bin: &Path) -> Output {
    std::fs::create_dir_all(bin).unwrap();
    let linked = bin.join("wasmonkey");
    if !linked.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wasmonkey"), &linked).unwrap();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    Command::new("sh")
        .arg("ci.sh")
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("WASMONKEY_TOOLCHAINS", support::root().join(".toolchains"))
        .env("WASMONKEY_LOG", "warn")
        // The runs' kill switch and history: the test's own.
        .env("XDG_STATE_HOME", bin.with_file_name("state"))
        .env("XDG_CACHE_HOME", bin.with_file_name("cache"))
        .env_remove("WASMONKEY")
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("sh runs")
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
    assert!(said.contains("wasmonkey plugin build"), "{said}");
    assert!(dir.join("wit/strategy.wit").is_file());
    // What the project tells its author needs only the binary.
    for file in ["README.md", "ci.sh"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains("plugin build"), "{file}:\n{text}");
        assert!(!text.contains("xtask"), "{file}:\n{text}");
    }
    // Nothing of wasmonkey's source where the project lives.
    for above in dir.ancestors() {
        assert!(!above.join("wit/v0.1.0").exists(), "{}", above.display());
    }

    let job = ci(&dir, &temp.path().join("bin"));
    check(&format!("the {lang} project's ci.sh"), &job);
    for file in [format!("{name}.wasm"), format!("{name}.toml")] {
        assert!(dir.join("dist").join(&file).is_file(), "no dist/{file}");
    }
    let junit = std::fs::read_to_string(dir.join("build/junit.xml")).expect("ci.sh's JUnit");
    assert!(junit.contains("<testsuites"), "{junit}");

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
