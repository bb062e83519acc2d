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
    chromium_at(page, screenshot, 1100)
}

/// [`chromium`] with a window `width` pixels wide.
fn chromium_at(page: &Path, screenshot: Option<&Path>, width: u32) -> String {
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
    ])
    .arg(format!("--window-size={width},1600"))
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

/// `text` as Chromium writes it in a text node.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
                operator: Some(EVIL.into()),
                target: Some(EVIL.into()),
                account: Some(EVIL.into()),
                region: Some(EVIL.into()),
            },
        )
        .unwrap();
    let at = |ms| (ms, Some(0));
    let entries = [
        (
            (0, None),
            Event::InForce {
                scope: EVIL.into(),
                in_scope: EVIL.into(),
                blast_radius: EVIL.into(),
                channels: vec![wasmonkey::journal::ChannelReading {
                    name: EVIL.into(),
                    to: EVIL.into(),
                    state: EVIL.into(),
                    detail: EVIL.into(),
                    optional: false,
                }],
                preflight: true,
            },
        ),
        (
            (0, None),
            Event::Brakes {
                phase: wasmonkey::journal::Phase::Before,
                readings: vec![wasmonkey::journal::BrakeReading {
                    name: EVIL.into(),
                    rule: EVIL.into(),
                    state: wasmonkey::journal::BrakeReadingState::Tripped,
                    saw: EVIL.into(),
                }],
            },
        ),
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
                zone_id: Some(EVIL.into()),
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
    assert_eq!(count(&dom, "tr", "class=\"brake\""), 1);
    assert_eq!(count(&dom, "div", "class=\"channel\""), 1);

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

/// What the page's layout does, measured in Chromium: the report under
/// test is copied with a measuring script (and without the policy that
/// forbids scripts, which only the copy loses), which writes its findings
/// into the `data-layout` attribute of the body.
const MEASURE: &str = r#"<script>
(() => {
  const vw = document.documentElement.clientWidth;
  const bad = [];
  if (document.documentElement.scrollWidth > vw) {
    bad.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + vw);
  }
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5) bad.push(el.tagName + ' past the window: ' + r.right);
  }
  for (const svg of document.querySelectorAll('svg')) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5) bad.push('label clipped: ' + t.textContent);
    }
    const marks = [...svg.querySelectorAll('polygon')].map(p => p.getBoundingClientRect());
    for (let i = 0; i < marks.length; i++) for (let j = i + 1; j < marks.length; j++) {
      const a = marks[i], b = marks[j];
      const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
      if (!apart) bad.push('two markers overlap at ' + a.left + ',' + a.top);
    }
  }
  for (const el of document.querySelectorAll('td code, td.zone > span, td.zone > small')) {
    const range = document.createRange();
    range.selectNodeContents(el);
    if (range.getClientRects().length > 1) bad.push('wrapped: ' + el.textContent);
  }
  const used = document.body.getBoundingClientRect().width;
  document.body.setAttribute('data-layout', JSON.stringify({ vw, used, bad: bad.slice(0, 20) }));
})();
</script>"#;

/// The layout `page` gets in a window `width` pixels wide.
fn layout(page: &Path, width: u32) -> serde_json::Value {
    let html = std::fs::read_to_string(page).expect("the page");
    let policy_start = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .expect("a policy");
    let policy_end = policy_start + html[policy_start..].find('>').expect("closed") + 1;
    let measured = format!("{}{}", &html[..policy_start], &html[policy_end..])
        .replace("</body>", &format!("{MEASURE}</body>"));
    let copy = page.with_extension(format!("measured-{width}.html"));
    std::fs::write(&copy, measured).expect("write the copy");
    let dom = chromium_at(&copy, None, width);
    let attribute = dom
        .split("data-layout=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the measuring script did not run:\n{dom}"));
    let json = attribute
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("{err}: {json}"))
}

/// Two victims of one group at one instant, with long names and a plugin's
/// long unbroken text: the worst a report's layout meets.
fn crowded_journal(path: &Path) {
    let journal = Journal::create(path).unwrap();
    journal
        .append(
            0,
            None,
            Event::RunStarted {
                run_id: "crowded".into(),
                backend: "sim".into(),
                seed: 1,
                dry_run: false,
                config: "c.toml".into(),
                host_version: "0".into(),
                clock_origin_ms: Some(0),
                operator: Some("ops@host".into()),
                target: Some("sim".into()),
                account: Some("sim".into()),
                region: Some("eu-central-1".into()),
            },
        )
        .unwrap();
    let group = "checkout-web-production-eu-central-1";
    let at = |ms| (ms, Some(0));
    let mut entries = vec![(
        at(0),
        Event::ExperimentStarted {
            plugin: "crowd".into(),
            version: "1".into(),
            sha256: "ab".repeat(32),
            params: Default::default(),
            grants: vec!["terminate".into()],
            limits: Limits::default(),
        },
    )];
    entries.push((
        at(0),
        Event::Capacity {
            group: group.into(),
            capacity: Capacity {
                desired: 4,
                in_service: 4,
                ..Capacity::default()
            },
        },
    ));
    for id in ["i-0123456789abcdef0", "i-0fedcba9876543210"] {
        entries.push((
            at(0),
            Event::TerminateIntent {
                instance_id: id.into(),
                group: Some(group.into()),
                zone: "eu-central-1a".into(),
                zone_id: None,
                reason: "x".repeat(3000),
                dry_run: false,
            },
        ));
        entries.push((
            at(0),
            Event::TerminateDone {
                instance_id: id.into(),
                dry_run: false,
                confirmed_after: None,
            },
        ));
    }
    for id in ["i-0123456789abcdef0", "i-0fedcba9876543210"] {
        entries.push((
            at(40_000),
            Event::Recovered {
                instance_id: id.into(),
                group: group.into(),
                recovery_ms: 40_000,
                capacity: Capacity {
                    desired: 4,
                    in_service: 4,
                    ..Capacity::default()
                },
            },
        ));
    }
    entries.push((
        at(41_000),
        Event::ExperimentFinished {
            plugin: "crowd".into(),
            outcome: None,
            error: None,
            limit: None,
        },
    ));
    entries.push(((41_000, None), Event::RunFinished { interrupted: false }));
    for ((ms, experiment), event) in entries {
        journal.append(ms, experiment, event).unwrap();
    }
}

/// The run report in Chromium at 1,000 and 1,600 px: nothing past the
/// window or clipped, no two termination markers over each other, ids and
/// zones on one line, the page's width used; the header says when, how
/// long, by whom, on what, with which plugin and parameters.
#[test]
fn the_run_report_fits_the_window_and_says_who_when_and_with_what() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _, page, _) = example_run(dir.path());
    let crowded = dir.path().join("crowded.jsonl");
    crowded_journal(&crowded);
    let crowded_page = dir.path().join("crowded.html");
    report(&crowded, &[("--html", &crowded_page)]);
    for width in [1000, 1600] {
        for page in [&page, &crowded_page] {
            let measured = layout(page, width);
            assert_eq!(
                measured["bad"],
                serde_json::json!([]),
                "{} at {width} px: {measured:#}",
                page.display()
            );
            let used = measured["used"].as_f64().expect("used");
            let window = measured["vw"].as_f64().expect("vw");
            assert!(
                used >= window.min(1500.0) - 64.0,
                "{} at {width} px uses {used} of {window}",
                page.display()
            );
        }
        let png = screenshot_dir().join(format!("run-{width}.png"));
        chromium_at(&page, Some(&png), width);
        assert!(std::fs::metadata(&png).expect("screenshot").len() > 10_000);
    }
    let dom = chromium(&page, None);
    let started = dom
        .split("class=\"started\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("started");
    assert!(started.len() == 20 && started.ends_with('Z'), "{started}");
    assert!(dom.contains("class=\"operator\""), "{dom}");
    let user = std::env::var("USER").unwrap_or_default();
    if !user.is_empty() {
        assert!(dom.contains(&format!("{user}@")), "{dom}");
    }
    assert!(dom.contains("class=\"target\">sim<"), "{dom}");
    assert!(dom.contains("class=\"account\">sim<"), "{dom}");
    assert!(dom.contains("class=\"region\">us-east-1<"), "{dom}");
    // The rules in force, as the run's plan found them at the start.
    let rules = &run["in_force"];
    for (class, key) in [
        ("scope", "scope"),
        ("in-scope", "in_scope"),
        ("blast-radius", "blast_radius"),
    ] {
        let shown = rules[key].as_str().expect(key);
        assert!(!shown.is_empty(), "{rules}");
        assert!(
            dom.contains(&format!("class=\"{class}\">{}<", html_text(shown))),
            "{class}: {shown}"
        );
    }
    assert!(rules["blast_radius"]
        .as_str()
        .unwrap()
        .starts_with("3 termination(s) per experiment, 5 per run"));
    assert!(dom.contains("class=\"preflight\">not asked: the run executed<"));
    assert_eq!(count(&dom, "div", "class=\"channel\""), 1, "{dom}");
    // Every brake, each stop condition of the config among them, read at the
    // start and at the end.
    let brakes = run["brakes"].as_array().expect("brakes");
    assert_eq!(count(&dom, "tr", "class=\"brake\""), brakes.len());
    for condition in ["web-capacity", "slow-recovery"] {
        let row = dom
            .split("<tr class=\"brake\"")
            .find(|row| row.contains(&format!("data-name=\"{condition}\"")))
            .unwrap_or_else(|| panic!("no brake row for {condition}"));
        assert!(row.contains("data-before=\"clear\""), "{row}");
        assert!(row.contains("data-after=\"clear\""), "{row}");
    }
    let experiments = run["experiments"].as_array().expect("experiments");
    for e in experiments {
        let sha = e["sha256"].as_str().expect("sha256");
        assert_eq!(sha.len(), 64);
        assert!(dom.contains(sha), "{sha}");
        for (name, _) in e["params"].as_object().expect("params") {
            assert!(dom.contains(&format!("{name} = ")), "param {name}");
        }
    }
}
