//! Reports people look at and metrics dashboards read: the HTML report
//! rendered by a real headless Chromium (its DOM read back), and the
//! metrics file checked by Prometheus's own `promtool`. `cargo xtask test`
//! installs both from Debian's packages when they are missing and passes
//! their paths in `WASMONKEY_CHROMIUM` and `WASMONKEY_PROMTOOL`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmonkey::cloud::Capacity;
use wasmonkey::journal::{Event, Journal};
use wasmonkey::limits::Limits;
use wasmonkey::report::html::colour;

use crate::cli::example_config;
use crate::support;

fn wasmonkey() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    command.env("WASMONKEY_LOG", "warn");
    command
}

fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Where screenshots are kept for people to look at.
fn screenshot_dir() -> PathBuf {
    let dir = support::root().join("target").join("report-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Chromium, headless, on `page`: the DOM after loading, and a screenshot
/// when asked. Flags that stop it reaching for the network this machine
/// does not have.
pub(crate) fn chromium(page: &Path, screenshot: Option<&Path>) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(program("WASMONKEY_CHROMIUM", "chromium"));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1100,1600",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => cmd.arg(format!("--screenshot={}", png.display())),
        None => cmd.arg("--dump-dom"),
    };
    let output = cmd
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts (cargo xtask test installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How many elements of `tag` the DOM has whose opening tag contains
/// `attribute` (e.g. `class="victim"`).
pub(crate) fn count(dom: &str, tag: &str, attribute: &str) -> usize {
    dom.split(&format!("<{tag}"))
        .skip(1)
        .filter(|rest| {
            rest.split('>')
                .next()
                .is_some_and(|t| t.contains(attribute))
        })
        .count()
}

/// `wasmonkey report JOURNAL` with these output flags; it must succeed.
fn report(journal: &Path, outputs: &[(&str, &Path)]) {
    let mut cmd = wasmonkey();
    cmd.arg("report").arg(journal);
    for (flag, path) in outputs {
        cmd.arg(flag).arg(path);
    }
    let output = cmd.output().expect("wasmonkey runs");
    assert!(output.status.success(), "{output:?}");
}

fn termination_fill() -> String {
    format!("fill=\"{}\"", colour::hex(colour::TERMINATION))
}

/// `promtool check metrics` on a file: its verdict and what it said.
fn promtool(metrics: &Path) -> (bool, String) {
    let file = std::fs::File::open(metrics).expect("metrics file");
    let output = Command::new(program("WASMONKEY_PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(file)
        .output()
        .expect("promtool starts (cargo xtask test installs it)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The metrics file, which promtool must accept.
pub(crate) fn checked_metrics(metrics: &Path) -> String {
    let (ok, said) = promtool(metrics);
    let text = std::fs::read_to_string(metrics).expect("metrics file");
    assert!(ok, "promtool: {said}\n{text}");
    text
}

/// Denials of every experiment of a `--json` report.
fn denials_of(report: &serde_json::Value) -> usize {
    report["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .map(|e| e["denials"].as_array().map_or(0, Vec::len))
        .sum()
}

/// The value of every sample of `name` in Prometheus text, summed.
pub(crate) fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The example run, executed with `--html` and `--metrics`: the report
/// JSON, and the paths of the journal, the page and the metrics.
pub(crate) fn example_run(dir: &Path) -> (serde_json::Value, PathBuf, PathBuf, PathBuf) {
    let config = example_config(dir);
    let journal = dir.join("run.jsonl");
    let page = dir.join("report.html");
    let metrics = dir.join("run.prom");
    // Seed 7 gives a run with a denial among its victims.
    let output = wasmonkey()
        .args(["run", "--execute", "--json", "--seed", "7", "--config"])
        .arg(&config)
        .arg("--journal")
        .arg(&journal)
        .arg("--html")
        .arg(&page)
        .arg("--metrics")
        .arg(&metrics)
        .output()
        .expect("wasmonkey runs");
    let report = support::json_report(&output);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!("HTML report: {}", page.display())),
        "{said}"
    );
    (report, journal, page, metrics)
}

#[test]
fn the_html_report_of_a_run_shows_every_victim_termination_and_axis_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _journal, page, _) = example_run(dir.path());
    let victims = report["victims"].as_array().expect("victims").len();
    let denials = denials_of(&report);
    assert!(victims >= 2 && denials >= 1, "{report:#}");

    let dom = chromium(&page, None);
    assert_eq!(count(&dom, "tr", "class=\"victim\""), victims, "{dom}");
    assert_eq!(count(&dom, "tr", "class=\"denial\""), denials);
    // One marker per termination, on the chart of its group.
    assert_eq!(count(&dom, "polygon", &termination_fill()), victims);
    // Each lane has both axes, labelled.
    let lanes: usize = dom
        .split("data-lanes=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse::<usize>().ok())
        .sum();
    assert!(lanes >= 2, "{dom}");
    assert_eq!(
        dom.matches("seconds since the experiment started").count(),
        lanes
    );
    assert_eq!(dom.matches(">\ninstances\n<").count(), lanes, "{dom}");
    assert!(dom.contains("data-outcome=\"succeeded\""));
    assert!(
        !dom.contains("<script"),
        "a report has no script of its own"
    );

    let png = screenshot_dir().join("run.png");
    chromium(&page, Some(&png));
    assert!(std::fs::metadata(&png).expect("screenshot").len() > 10_000);
}

#[test]
fn the_html_report_of_a_journal_cut_short_says_so_and_draws_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal, _, _) = example_run(dir.path());
    // Keep the journal up to its first finished termination, then half a line.
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut kept = String::new();
    for line in text.lines() {
        kept.push_str(line);
        kept.push('\n');
        if line.contains("\"event\":\"terminate-done\"") {
            break;
        }
    }
    kept.push_str("{\"seq\":999,\"at\":\"2026-");
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, kept).unwrap();
    let page = dir.path().join("cut.html");
    report(&cut, &[("--html", &page)]);

    let dom = chromium(&page, None);
    assert_eq!(count(&dom, "tr", "class=\"victim\""), 1, "{dom}");
    assert_eq!(count(&dom, "polygon", &termination_fill()), 1);
    assert!(dom.contains("cut short"), "{dom}");
    assert!(dom.contains("cut off mid-write"), "{dom}");
    assert!(dom.contains("data-outcome=\"experiment-failed\""));
    chromium(&page, Some(&screenshot_dir().join("cut-short.png")));
}

/// A journal whose every string is hostile, as an edited journal or a
/// plugin's text could be.
pub(crate) fn hostile_journal(path: &Path) {
    const EVIL: &str = "</svg></table><script>document.title='owned'</script><img src=x onerror=alert(1)>\"} 1\nwasmonkey_forged_total 1";
    let journal = Journal::create(path).unwrap();
    journal
        .append(
            0,
            None,
            Event::RunStarted {
                run_id: EVIL.into(),
                backend: "sim".into(),
                seed: 1,
                dry_run: false,
                config: EVIL.into(),
                host_version: "0".into(),
                clock_origin_ms: Some(0),
            },
        )
        .unwrap();
    let at = |ms| (ms, Some(0));
    let entries = [
        (
            at(0),
            Event::ExperimentStarted {
                plugin: EVIL.into(),
                version: EVIL.into(),
                sha256: EVIL.into(),
                params: Default::default(),
                grants: vec![],
                limits: Limits::default(),
            },
        ),
        (
            at(10),
            Event::Capacity {
                group: EVIL.into(),
                capacity: Capacity {
                    desired: 2,
                    in_service: 2,
                    ..Capacity::default()
                },
            },
        ),
        (
            at(10),
            Event::TerminateIntent {
                instance_id: EVIL.into(),
                group: Some(EVIL.into()),
                zone: EVIL.into(),
                reason: EVIL.into(),
                dry_run: false,
            },
        ),
        (
            at(20),
            Event::TerminateDone {
                instance_id: EVIL.into(),
                dry_run: false,
                confirmed_after: None,
            },
        ),
        (
            at(30),
            Event::Denied {
                operation: EVIL.into(),
                target: EVIL.into(),
                rule: EVIL.into(),
                message: EVIL.into(),
            },
        ),
        (
            at(40),
            Event::PluginLog {
                level: EVIL.into(),
                message: EVIL.into(),
            },
        ),
        (
            at(5000),
            Event::Recovered {
                instance_id: EVIL.into(),
                group: EVIL.into(),
                recovery_ms: 4980,
                capacity: Capacity {
                    desired: 2,
                    in_service: 2,
                    ..Capacity::default()
                },
            },
        ),
        (
            at(6000),
            Event::ExperimentFinished {
                plugin: EVIL.into(),
                outcome: None,
                error: Some(EVIL.into()),
                limit: Some(EVIL.into()),
            },
        ),
        (
            (6000, None),
            Event::StopTripped {
                condition: EVIL.into(),
                paused: false,
                saw: EVIL.into(),
            },
        ),
        ((6000, None), Event::RunFinished { interrupted: false }),
    ];
    for ((ms, experiment), event) in entries {
        journal.append(ms, experiment, event).unwrap();
    }
}

#[test]
fn hostile_text_in_a_journal_stays_text_in_the_page_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("hostile.jsonl");
    hostile_journal(&journal);
    let page = dir.path().join("hostile.html");
    let metrics = dir.path().join("hostile.prom");
    report(&journal, &[("--html", &page), ("--metrics", &metrics)]);

    let dom = chromium(&page, None);
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(!dom.contains("owned</title>"), "{dom}");
    assert!(dom.contains("&lt;script&gt;"), "the text is shown, escaped");
    // The chart still has its one termination, and every table its row.
    assert_eq!(count(&dom, "polygon", &termination_fill()), 1, "{dom}");
    assert_eq!(count(&dom, "tr", "class=\"victim\""), 1);
    assert_eq!(count(&dom, "tr", "class=\"denial\""), 1);

    let text = checked_metrics(&metrics);
    assert!(
        !text.lines().any(|l| l.starts_with("wasmonkey_forged")),
        "{text}"
    );
    assert_eq!(sum_of(&text, "wasmonkey_terminations_total"), 1.0);
    assert_eq!(sum_of(&text, "wasmonkey_stop_condition_trips_total"), 1.0);
    assert_eq!(sum_of(&text, "wasmonkey_limit_breaches_total"), 1.0);
}

#[test]
fn run_metrics_pass_promtool_and_count_what_the_report_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, _, metrics) = example_run(dir.path());
    let text = checked_metrics(&metrics);
    let victims = report["victims"].as_array().expect("victims");
    assert_eq!(
        sum_of(&text, "wasmonkey_terminations_total"),
        victims.len() as f64,
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "wasmonkey_recovery_seconds_count"),
        victims.len() as f64
    );
    let recovery: f64 = victims
        .iter()
        .filter_map(|v| v["recovery_seconds"].as_f64())
        .sum();
    assert!((sum_of(&text, "wasmonkey_recovery_seconds_sum") - recovery).abs() < 1e-6);
    let denials = denials_of(&report);
    assert_eq!(sum_of(&text, "wasmonkey_denials_total"), denials as f64);
    // The simulator counts its calls by the AWS action each stands for.
    let terminations = text
        .lines()
        .find(|l| l.contains("action=\"TerminateInstances\""))
        .expect("TerminateInstances counted");
    assert!(
        terminations.ends_with(&format!(" {}", victims.len())),
        "{terminations}"
    );
    assert_eq!(sum_of(&text, "wasmonkey_runs_total"), 1.0);
    assert_eq!(sum_of(&text, "wasmonkey_paused"), 0.0);
}

#[test]
fn history_html_charts_the_kills_the_history_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, _, _) = example_run(dir.path());
    let victims = report["victims"].as_array().expect("victims").len();
    let page = dir.path().join("history.html");
    let output = wasmonkey()
        .args(["history", "--config"])
        .arg(dir.path().join("wasmonkey.toml"))
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let dom = chromium(&page, None);
    // One run today: one day, with every victim.
    assert_eq!(count(&dom, "tr", "class=\"day\""), 1, "{dom}");
    assert!(
        dom.contains(&format!("<td class=\"num\">{victims}</td></tr>")),
        "{dom}"
    );
    assert_eq!(count(&dom, "rect", &kills_fill()), 1);
    assert_eq!(count(&dom, "circle", &recovery_fill()), victims);
    assert_eq!(count(&dom, "tr", "class=\"group\""), 2);
}

pub(crate) fn kills_fill() -> String {
    format!("fill=\"{}\"", colour::hex(wasmonkey::history::html::KILLS))
}

pub(crate) fn recovery_fill() -> String {
    format!("fill=\"{}\"", colour::hex(colour::RECOVERY))
}
