//! `wasmonkey plugin test`: the properties every strategy must keep, on a
//! matrix of simulated fleets and faults. The strategy we ship keeps them
//! all; a plugin that names a victim it never terminated, asks for an
//! instance it was never shown, or panics is caught, each by its property,
//! with exit 1.

use std::path::Path;
use std::process::Output;

use crate::support;

/// A project holding a built plugin of `dir` as its `dist/`.
fn project(from: &Path, name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("dist")).expect("dist");
    for file in [format!("{name}.wasm"), format!("{name}.toml")] {
        std::fs::copy(from.join(&file), dir.path().join("dist").join(&file)).expect("copy");
    }
    std::fs::copy(
        from.join(format!("{name}.toml")),
        dir.path().join("wasmonkey.toml"),
    )
    .expect("manifest");
    dir
}

fn plugin_test(dir: &Path, params: Option<&str>) -> (Output, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    command
        .args(["plugin", "test", "--dir"])
        .arg(dir)
        .env("XDG_STATE_HOME", dir.join("xdg-state"))
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    if let Some(params) = params {
        command.args(["--params", params]);
    }
    let output = command.output().expect("wasmonkey runs");
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, said)
}

/// The lines of a property that failed.
fn failed<'a>(said: &'a str, property: &str) -> Vec<&'a str> {
    said.lines()
        .filter(|line| line.starts_with("FAILED") && line.contains(property))
        .collect()
}

#[test]
fn the_strategy_we_ship_keeps_every_property_on_every_fleet() {
    let project = project(&support::plugin_dir(), "classic-monkey");
    let (output, said) = plugin_test(project.path(), Some("{ probability = 1.0, poll-secs = 1 }"));
    assert!(
        output.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("40 of 40 checks held"), "{said}");
    for case in [
        "one group",
        "three groups",
        "opt-out",
        "throttled",
        "no terminations allowed",
    ] {
        assert!(said.contains(case), "{case} missing in:\n{said}");
    }
    // It did act: the blast radius was used, not merely never reached.
    assert!(said.contains("2 terminated, at most 2"), "{said}");
}

#[test]
fn a_plugin_naming_a_victim_it_never_terminated_fails_its_victims_are_real() {
    let project = project(&support::test_plugin_dir(), "hostile");
    let (output, said) = plugin_test(
        project.path(),
        Some("{ attack = \"huge-list\", count = 1 }"),
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    let lines = failed(&said, "its victims are real");
    assert_eq!(lines.len(), 10, "{said}");
    assert!(lines[0].contains("never terminated it"), "{said}");
    assert!(failed(&said, "never outside scope").is_empty(), "{said}");
}

#[test]
fn a_plugin_asking_for_an_instance_it_was_never_shown_fails_never_outside_scope() {
    let project = project(&support::test_plugin_dir(), "hostile");
    let (output, said) = plugin_test(
        project.path(),
        Some("{ attack = \"terminate\", targets = \"i-0123456789abcdef0\" }"),
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    let lines = failed(&said, "never outside scope");
    // Every case but the throttled one, whose terminate is throttled before
    // the host weighs it (nothing it did is then seen as a denial).
    assert_eq!(lines.len(), 8, "{said}");
    assert!(lines.iter().all(|l| !l.contains("throttled")), "{said}");
    assert!(lines[0].contains("i-0123456789abcdef0"), "{said}");
    assert!(failed(&said, "its victims are real").is_empty(), "{said}");
}

#[test]
fn a_plugin_that_panics_fails_it_finishes() {
    let project = project(&support::test_plugin_dir(), "hostile");
    let (output, said) = plugin_test(project.path(), Some("{ attack = \"panic\" }"));
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(failed(&said, "it finishes").len(), 10, "{said}");
}
