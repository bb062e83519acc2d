//! WASI stays closed: a Python plugin (CPython on WASI, via componentize-py)
//! gets only the deny-by-default WASI. Opening files, opening sockets,
//! resolving names and reading the environment all fail or find nothing
//! inside the plugin; what it prints reaches the host log.

use std::collections::BTreeMap;
use std::process::Command;

use crate::conformance::polyglot_test_plugin_dir;
use crate::support;

#[test]
fn a_python_plugin_cannot_reach_files_sockets_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    // Files the plugin would find if WASI let it see the host's filesystem.
    std::fs::write(dir.path().join("wasmonkey.toml"), "").unwrap();
    let setup = support::setup(
        support::FLEET,
        &polyglot_test_plugin_dir(),
        &format!(
            "{}\n[[experiment]]\nplugin = \"wasi-probe\"\n",
            support::RULES
        ),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["run", "--json", "--seed", "1", "--config"])
        .arg(&setup.config)
        .current_dir(dir.path())
        .env("WASMONKEY_LOG", "info")
        .env("HOME", "/root")
        .env("WASI_PROBE_SECRET", "leaked")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let experiment = &report["experiments"][0];
    assert_eq!(experiment["error"], serde_json::Value::Null, "{report:#}");
    let summary = experiment["summary"].as_str().expect("a summary");
    let results: BTreeMap<String, String> =
        serde_json::from_str(summary).unwrap_or_else(|err| panic!("{err}: {summary}"));

    for attempt in [
        "read /etc/passwd",
        "read ./wasmonkey.toml",
        "write /tmp/wasi-probe",
        "list /",
        "connect 127.0.0.1:22",
        "resolve localhost",
        "listen 127.0.0.1",
    ] {
        let result = results
            .get(attempt)
            .unwrap_or_else(|| panic!("no result for {attempt}: {results:#?}"));
        // Refused by the system (an OSError in Python), not a probe bug.
        assert!(
            result.starts_with("denied: "),
            "{attempt} should be refused inside the plugin, got {result}"
        );
    }
    // The environment is empty and there are no arguments.
    assert_eq!(results["env"], "ok: {}", "{results:#?}");
    assert_eq!(results["env HOME"], "ok: None", "{results:#?}");
    assert!(
        matches!(results["argv"].as_str(), "ok: []" | "ok: ['']"),
        "{results:#?}"
    );
    assert!(!summary.contains("leaked") && !summary.contains("root:"));

    // What the plugin printed went to the host log, tagged with the plugin.
    for stream in ["stdout", "stderr"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("wasi-probe: hello from {stream}")))
            .unwrap_or_else(|| panic!("no {stream} line in the host log:\n{stderr}"));
        assert!(line.contains("wasi-probe"), "{line}");
    }
}

#[test]
fn inspect_says_wasi_is_linked_deny_by_default() {
    let setup = support::setup(support::FLEET, &polyglot_test_plugin_dir(), support::RULES);
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["plugins", "inspect", "wasi-probe", "--config"])
        .arg(&setup.config)
        .env("WASMONKEY_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("wasi:filesystem"), "{stdout}");
    assert!(
        stdout.contains("WASI is linked deny-by-default"),
        "{stdout}"
    );
}
