//! Bad input, generated: the config, manifest, fleet and journal parsers
//! never panic, and every error names the file (and the line, where the
//! parser knows one). Documents are a valid one with lines inserted,
//! deleted and garbled, so that most cases get past the syntax into the
//! checks behind it.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as Cases;

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::config::Config;
use wasmonkey::journal;
use wasmonkey::manifest::Manifest;
use wasmonkey::report::Report;

const CONFIG: &str = r#"seed = 3
journal_dir = "journal"
[backend]
kind = "sim"
fleet = "fleet.toml"
[plugins]
dir = "plugins"
cache_dir = "cache"
pins = { classic-monkey = "0000000000000000000000000000000000000000000000000000000000000000" }
[scope]
groups = ["web-*"]
tags = ["env=prod"]
opt_in = "chaos=opt-in"
[blast_radius]
max_terminations = 2
max_terminations_per_run = 3
min_healthy_per_group = 1
max_fraction_per_group = 0.5
[recovery]
timeout_secs = 60
poll_secs = 1.5
targets = ["web"]
[limits]
memory_mib = 64
[ceiling]
memory_mib = 512
[targets.web]
group = "web"
min_healthy = 2
[channels.ops]
topic = "t"
[report]
channel = "ops"
[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = { probability = 1.0 }
limits = { fuel = 1000 }
"#;

const CONFIG_WORDS: &[&str] = &[
    "seed",
    "journal_dir",
    "kind",
    "fleet",
    "dir",
    "cache_dir",
    "pins",
    "require_pins",
    "groups",
    "tags",
    "opt_in",
    "opt_out",
    "standalone",
    "max_terminations",
    "max_terminations_per_run",
    "max_terminations_per_group_per_run",
    "min_healthy_per_group",
    "max_fraction_per_group",
    "timeout_secs",
    "poll_secs",
    "targets",
    "fuel",
    "memory_mib",
    "stack_kib",
    "host_call_timeout_secs",
    "host_call_kib",
    "host_calls",
    "group",
    "min_healthy",
    "url",
    "expect_status",
    "timeout_ms",
    "channel",
    "topic",
    "plugin",
    "params",
    "grants",
    "limits",
    "sha256",
    "region",
    "profile",
    "endpoint_url",
    "terminate_via",
    "max_attempts",
    "attempt_timeout_secs",
    "page_size",
    "[backend]",
    "[plugins]",
    "[scope]",
    "[blast_radius]",
    "[recovery]",
    "[limits]",
    "[ceiling]",
    "[targets.x]",
    "[channels.x]",
    "[report]",
    "[[experiment]]",
];

const FLEET: &str = r#"region = "us-east-1"
throttle_every = 7
[[group]]
name = "web"
zones = ["us-east-1a", "us-east-1b"]
desired = 3
min = 1
max = 5
tags = { env = "prod" }
launch_secs = 30
launch_jitter_secs = 5
detect_secs = 10
shutdown_secs = 5
failed_launches = 1
slow_launch_factor = 2.0
[[instance]]
zone = "us-east-1a"
tags = { Name = "bastion" }
[[outage]]
zone = "us-east-1b"
from_secs = 10
until_secs = 20
"#;

const FLEET_WORDS: &[&str] = &[
    "region",
    "throttle_every",
    "name",
    "zones",
    "desired",
    "min",
    "max",
    "tags",
    "launch_secs",
    "launch_jitter_secs",
    "detect_secs",
    "shutdown_secs",
    "warmup_secs",
    "health_check_grace_secs",
    "failed_launches",
    "slow_launch_factor",
    "zone",
    "from_secs",
    "until_secs",
    "[[group]]",
    "[[instance]]",
    "[[outage]]",
];

const MANIFEST: &str = r#"name = "p"
version = "0.1.0"
description = "d"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
grants = ["terminate", "notify"]
[limits]
fuel = 1000
memory_mib = 32
"#;

const MANIFEST_WORDS: &[&str] = &[
    "name",
    "version",
    "description",
    "sha256",
    "grants",
    "limits",
    "fuel",
    "memory_mib",
    "stack_kib",
    "timeout_secs",
    "host_calls",
    "host_call_kib",
    "[limits]",
];

/// A TOML value, well-formed or not, of every kind and extreme.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()].prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
        Just("1e400".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,12}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec(".{0,6}", 0..4).prop_map(|v| format!("{v:?}")),
        Just("{ a = 1 }".to_owned()),
        Just("[1, \"x\", 2.5]".to_owned()),
        Just("\"*\"".to_owned()),
        Just("\"web-[\"".to_owned()),
        Just("\"ec2\"".to_owned()),
        Just("\"aws\"".to_owned()),
        Just("\"terminate\"".to_owned()),
    ]
}

/// One line: `word = value`, a bare word (a section header), or garbage.
fn line(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    let word = prop::sample::select(words);
    prop_oneof![
        4 => (word.clone(), value()).prop_map(|(w, v)| format!("{w} = {v}")),
        1 => word.prop_map(str::to_owned),
        1 => ".{0,40}",
    ]
}

/// `base` with lines deleted, lines inserted, and some lines cut short.
fn document(base: &'static str, words: &'static [&'static str]) -> impl Strategy<Value = String> {
    let lines: Vec<String> = base.lines().map(str::to_owned).collect();
    let count = lines.len();
    (
        prop::collection::vec(any::<bool>(), count),
        prop::collection::vec((0..=count, line(words)), 0..6),
        prop::collection::vec((0..count, 0usize..30), 0..3),
    )
        .prop_map(move |(kept, inserted, cuts)| {
            let mut out: Vec<String> = lines
                .iter()
                .zip(&kept)
                .map(|(l, keep)| {
                    if *keep || l.starts_with('[') {
                        l.clone()
                    } else {
                        String::new()
                    }
                })
                .collect();
            for (at, len) in cuts {
                let cut = out[at]
                    .char_indices()
                    .nth(len)
                    .map_or(out[at].len(), |(i, _)| i);
                out[at].truncate(cut);
            }
            for (at, line) in inserted.into_iter().rev() {
                out.insert(at.min(out.len()), line);
            }
            out.join("\n")
        })
}

fn cases() -> Cases {
    Cases::with_cases(256)
}

/// The error must name the file; a TOML error must also name the line.
fn names_the_file(err: &anyhow::Error, path: &Path) -> Result<(), TestCaseError> {
    let text = format!("{err:#}");
    let file = path.display().to_string();
    prop_assert!(text.contains(&file), "{text}");
    if text.contains("TOML parse error") {
        prop_assert!(text.contains("line "), "{text}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn configs_never_panic_and_errors_name_the_file(text in document(CONFIG, CONFIG_WORDS)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasmonkey.toml");
        std::fs::write(&path, &text).unwrap();
        match Config::load(&path) {
            Ok(config) => {
                // What a run asks of a loaded config must not panic either.
                let _ = config.cache_dir();
                let _ = config.limit_rules();
                let _ = config.pins();
                let _ = config.recovery.poll_ms();
                prop_assert!(config.scope.compile().is_ok());
            }
            Err(err) => names_the_file(&err, &path)?,
        }
    }

    #[test]
    fn fleets_never_panic_and_errors_name_the_file(
        text in document(FLEET, FLEET_WORDS),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(err) = SimCloud::from_fleet_file(&path, seed) {
            names_the_file(&err, &path)?;
        }
    }

    #[test]
    fn manifests_never_panic_and_errors_name_the_file(
        text in document(MANIFEST, MANIFEST_WORDS),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        raw in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, if raw { bytes } else { text.into_bytes() }).unwrap();
        if let Err(err) = Manifest::load(&path) {
            names_the_file(&err, &path)?;
        }
    }

    #[test]
    fn journals_never_panic_and_errors_name_the_file_and_line(
        lines in prop::collection::vec(journal_line(), 0..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        match journal::read(&path) {
            Ok(replay) => {
                let report = Report::from_journal(&replay, &path);
                let _ = report.render_text();
                let _ = report.recovery_lines();
                let _ = report.succeeded();
            }
            Err(err) => {
                let text = format!("{err:#}");
                let file = path.display().to_string();
                prop_assert!(text.contains(&file), "{text}");
                prop_assert!(
                    text.contains(&format!("{file}:")) || text.contains("no journal entry"),
                    "no line named: {text}"
                );
            }
        }
    }
}

/// Journal lines of every event, whole, cut short, garbled or out of place.
fn journal_line() -> impl Strategy<Value = String> {
    let whole = prop::sample::select(SAMPLE_ENTRIES);
    prop_oneof![
        6 => whole.prop_map(str::to_owned),
        2 => (prop::sample::select(SAMPLE_ENTRIES), 0usize..200).prop_map(|(l, at)| {
            let at = l.char_indices().nth(at).map_or(l.len(), |(i, _)| i);
            l[..at].to_owned()
        }),
        1 => (prop::sample::select(SAMPLE_ENTRIES), value()).prop_map(|(l, v)| {
            l.replacen("\"clock_ms\":5", &format!("\"clock_ms\":{v}"), 1)
        }),
        1 => ".{0,40}",
    ]
}

const SAMPLE_ENTRIES: &[&str] = &[
    r#"{"seq":0,"at":"2026-12-02T00:00:00Z","clock_ms":5,"event":"run-started","run_id":"r","backend":"sim","seed":1,"dry_run":false,"config":"c","host_version":"0.1.0"}"#,
    r#"{"seq":1,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"experiment-started","plugin":"p","version":"1","sha256":"s","params":{},"grants":["terminate"],"limits":{"fuel":1,"memory_mib":1,"stack_kib":1,"timeout_secs":1,"host_call_timeout_secs":1,"host_call_kib":1,"host_calls":1}}"#,
    r#"{"seq":2,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"terminate-intent","instance_id":"i-1","group":"web","zone":"a","reason":"r","dry_run":false}"#,
    r#"{"seq":3,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"terminate-done","instance_id":"i-1","dry_run":false}"#,
    r#"{"seq":3,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":7,"event":"terminate-failed","instance_id":"i-9","error":"e","uncertain":true}"#,
    r#"{"seq":4,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"recovered","instance_id":"i-1","group":"web","recovery_ms":40000,"capacity":{"desired":1,"in_service":1,"pending":0,"terminating":0,"unhealthy":0}}"#,
    r#"{"seq":5,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"notify-intent","channel":"ops","subject":"s","body":"b"}"#,
    r#"{"seq":6,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"notify-failed","channel":"ops","attempt":9,"error":"e"}"#,
    r#"{"seq":7,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"denied","operation":"terminate","target":"i-2","rule":"scope","message":"m"}"#,
    r#"{"seq":8,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"suppressed","log_lines":1,"log_bytes":2,"denials":3}"#,
    r#"{"seq":9,"at":"2026-12-02T00:00:00Z","clock_ms":5,"experiment":0,"event":"experiment-finished","plugin":"p","outcome":{"summary":"s","victims":[{"instance_id":"i-1","verdict":"recovered","recovered_at_ms":1}]},"error":null}"#,
    r#"{"seq":10,"at":"2026-12-02T00:00:00Z","clock_ms":5,"event":"run-finished","interrupted":false}"#,
];
