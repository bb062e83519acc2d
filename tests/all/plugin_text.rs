//! What the operator reads: plugin text reaches no terminal, log or report
//! raw, and is bounded wherever it is kept. Driven through the `wasmonkey`
//! binary, so what is checked is what a terminal would receive.

use std::process::Command;

use wasmonkey::journal::{self, Event};
use wasmonkey::text::is_unsafe;

use crate::support::{self, wasmonkey, FLEET, RULES};

/// Every raw control or invisible character in `bytes` (newlines are the
/// output's own), and every line that starts like a forged report row.
fn raw_text(what: &str, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut found: Vec<String> = text
        .chars()
        .filter(|&c| is_unsafe(c) && c != '\n')
        .map(|c| format!("{what}: raw U+{:04X}", u32::from(c)))
        .collect();
    found.extend(
        text.lines()
            .filter(|l| l.starts_with("experiment 9") || l.trim_start().starts_with("i-forged"))
            .map(|l| format!("{what}: forged row {l:?}")),
    );
    found
}

fn experiment(attack: &str, grants: &str, more: &str) -> String {
    format!(
        "[[experiment]]\nplugin = \"hostile\"\ngrants = {grants}\n\
         params = {{ attack = \"{attack}\"{more} }}\n"
    )
}

#[tokio::test]
async fn plugin_text_reaches_no_terminal_log_or_report_raw() {
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let sim =
        wasmonkey::cloud::sim::SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), 11)
            .unwrap();
    let web = support::ids_of(&sim, Some("web")).await;
    let body = format!(
        "{RULES}\n{}\n{}",
        experiment(
            "forge",
            "[\"terminate\", \"notify\"]",
            &format!(", targets = \"{},i-not-there\"", web[0])
        ),
        experiment("forge-error", "[]", ""),
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let journal = setup.dir.path().join("forged.jsonl");
    let journal_arg = journal.display().to_string();
    let run = wasmonkey(
        &["run", "--seed", "11", "--journal", &journal_arg],
        &setup.config,
    );
    assert!(
        journal.is_file(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["report", &journal_arg])
        .output()
        .unwrap();
    let json = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["report", "--json", &journal_arg])
        .output()
        .unwrap();
    let mut found = raw_text("run stdout", &run.stdout);
    found.extend(raw_text("run stderr", &run.stderr));
    found.extend(raw_text("report", &report.stdout));
    found.extend(raw_text("report --json", &json.stdout));
    found.extend(raw_text("journal", &std::fs::read(&journal).unwrap()));
    assert!(found.is_empty(), "{found:#?}");

    // The text is all there, escaped: visible, on its line.
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("summary: title\\u{1b}]0;owned\\u{7} clear\\u{1b}[2J"),
        "{text}"
    );
    assert!(text.contains("cr\\rOVERWRITTEN csi8\\u{9b}31m bidi\\u{202e}exe.txt\\n"));
    assert!(text.contains("error: plugin hostile@0.1.0: plugin failed: "));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("title\\u{1b}]0;owned"), "{stderr}");
    // JSON and the journal keep the very text, escaped the JSON way.
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let summary = value["experiments"][0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("title\u{1b}]0;owned\u{7}"), "{summary}");
    let replay = journal::read(&journal).unwrap();
    assert!(replay.entries.iter().any(|e| matches!(
        &e.event,
        Event::TerminateIntent { reason, .. } if reason.contains("\u{202e}exe.txt")
    )));
}

#[test]
fn plugin_listings_show_hostile_metadata_escaped() {
    let forged = "desc\u{1b}[2J\u{1b}]0;owned\u{7}\r\nforged-row 9.9.9 evil\u{202e}";
    let plugins = crate::sandbox_limits::directory(&[(
        "forger",
        crate::sandbox_limits::Wat::new("forger")
            .version("1.0\u{1b}[31m")
            .description(forged)
            .build(),
    )]);
    let setup = support::setup(
        FLEET,
        plugins.path(),
        "[[experiment]]\nplugin = \"forger\"\n",
    );
    let list = wasmonkey(&["plugins", "list"], &setup.config);
    // A run's host log names the plugin by its own name and version.
    let run = wasmonkey(&["run"], &setup.config);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("plugin=forger@1.0\\u{1b}[31m") && log.contains("experiment 1 starting"),
        "{log}"
    );
    let mut found = raw_text("run stderr", &run.stderr);
    found.extend(raw_text("run stdout", &run.stdout));
    let inspect = wasmonkey(&["plugins", "inspect", "forger"], &setup.config);
    found.extend(raw_text("list", &list.stdout));
    found.extend(raw_text("inspect", &inspect.stdout));
    found.extend(raw_text("list stderr", &list.stderr));
    assert!(found.is_empty(), "{found:#?}");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("forger"), "{listed}");
    assert!(listed.contains("desc\\u{1b}[2J"), "{listed}");
    assert!(
        !listed.lines().any(|l| l.starts_with("forged-row")),
        "{listed}"
    );
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(shown.starts_with("forger@1.0\\u{1b}[31m: desc"), "{shown}");
}

#[test]
fn plugin_text_is_bounded_wherever_it_is_kept() {
    let body = format!(
        "{RULES}\n{}\n{}\n{}limits = {{ host_call_kib = 2048 }}\n",
        // 40 MiB of logs; 3000 denials of 60 KB ids; a 1 MiB summary.
        experiment("log-flood", "[]", ", count = 40000, size = 1024"),
        experiment("deny-flood", "[]", ", count = 3000, size = 60000"),
        experiment("big-summary", "[]", ", size = 1048576"),
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let journal = setup.dir.path().join("bounded.jsonl");
    let run = wasmonkey(
        &["run", "--journal", &journal.display().to_string()],
        &setup.config,
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("summary: flooded"), "{stdout}");
    assert!(stdout.contains("summary: 3000 denied"), "{stdout}");
    // The host log took at most the per-run budget of plugin text.
    assert!(
        run.stderr.len() < 3 << 20,
        "stderr: {} bytes",
        run.stderr.len()
    );
    let size = std::fs::metadata(&journal).unwrap().len();
    assert!(size < 3 << 20, "journal: {size} bytes");
    let entries = journal::read(&journal).unwrap().entries;
    let denials: Vec<&String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Denied { target, .. } => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(denials.len(), 1000);
    assert!(denials
        .iter()
        .all(|t| t.len() <= 256 && t.ends_with("bytes cut]")));
    let suppressed: Vec<(u64, u64)> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Suppressed {
                log_lines, denials, ..
            } => Some((log_lines, denials)),
            _ => None,
        })
        .collect();
    assert_eq!(suppressed.len(), 2, "{suppressed:?}");
    assert!(suppressed[0].0 > 30_000, "{suppressed:?}");
    assert_eq!(suppressed[1], (0, 2000));
    let summary = entries
        .iter()
        .find_map(|e| match &e.event {
            Event::ExperimentFinished {
                outcome: Some(o), ..
            } if o.summary.starts_with("sss") => Some(o.summary.clone()),
            _ => None,
        })
        .expect("the big summary's experiment");
    assert!(
        summary.len() <= 16 * 1024 && summary.ends_with("bytes cut]"),
        "{}",
        summary.len()
    );
    // And the report says what was left out.
    assert!(stdout.contains("were counted, not journalled"), "{stdout}");
}

#[test]
fn a_file_without_a_journal_entry_is_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-journal.jsonl");
    std::fs::write(&path, "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .arg("report")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "a report was printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not-a-journal.jsonl") && stderr.contains("no journal entry"),
        "{stderr}"
    );
}
