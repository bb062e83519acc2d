//! Webhook channels, end to end on the simulated fleet: a receiver on
//! loopback gets the JSON or Slack body, signed as documented; a slow, a
//! redirecting or a 10 MB-answering receiver does not hold the run; and the
//! URL and the secret appear nowhere the operator or a plugin can read.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::receiver::{receiver, Receiver};
use crate::support;

/// The path of the URL: the part of a webhook URL that is its credential.
const SECRET_PATH: &str = "T0000/B0000/hook-path-secret-3f9a";
const SECRET: &str = "signing-secret-c81d";

/// A sim config whose report and classic-monkey's messages go to the
/// webhook channel `hook`, in `format`, with `extra` config.
fn hooked(format: &str, extra: &str) -> support::Setup {
    support::setup(
        support::FLEET,
        &support::plugin_dir(),
        &format!(
            "{extra}\n[report]\nchannel = \"hook\"\n\
             [channels.hook]\nwebhook_url_env = \"WASMONKEY_HOOK\"\nformat = \"{format}\"\n\
             signing_secret_env = \"WASMONKEY_HOOK_SECRET\"\n\
             [[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\n\
             params = {{ probability = 1.0, channel = \"hook\" }}\n"
        ),
    )
}

fn wasmonkey(setup: &support::Setup, port: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .env("WASMONKEY_LOG", "info")
        .env(
            "WASMONKEY_HOOK",
            format!("http://127.0.0.1:{port}/{SECRET_PATH}"),
        )
        .env("WASMONKEY_HOOK_SECRET", SECRET)
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .output()
        .expect("wasmonkey runs")
}

/// `v1=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY`, as docs/config.md
/// tells a receiver to compute it.
fn expected_signature(timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

#[test]
fn a_webhook_gets_signed_messages_and_its_url_and_secret_are_shown_nowhere() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (port, got) = receiver(&runtime, Receiver::Ok);
    let setup = hooked("json", "");
    let journal = setup.dir.path().join("run.jsonl");
    let html = setup.dir.path().join("report.html");
    let run = wasmonkey(
        &setup,
        port,
        &[
            "run",
            "--execute",
            "--json",
            "--journal",
            journal.to_str().expect("path"),
            "--html",
            html.to_str().expect("path"),
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let got = got.lock().expect("got").clone();
    // classic-monkey's own message, then the run's report.
    assert_eq!(got.len(), 2, "{got:#?}");
    for message in &got {
        let timestamp = message.header("x-wasmonkey-timestamp").expect("timestamp");
        assert_eq!(
            message.header("x-wasmonkey-signature"),
            Some(expected_signature(timestamp, &message.body).as_str()),
            "{message:#?}"
        );
        let json: serde_json::Value = serde_json::from_str(&message.body).expect("json body");
        assert_eq!(json["source"], "wasmonkey");
        assert_eq!(json["channel"], "hook");
    }
    let report: serde_json::Value = serde_json::from_str(&got[1].body).expect("json");
    assert!(
        report["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("wasmonkey run "))
            && report["body"]
                .as_str()
                .is_some_and(|b| b.contains("recovered")),
        "{report:#}"
    );

    // The secrets, nowhere: report (JSON, text, HTML), journal, log, plan.
    let text_report = Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .arg("report")
        .arg(&journal)
        .output()
        .expect("report");
    let plan = wasmonkey(&setup, port, &["plan"]);
    let plan_json = wasmonkey(&setup, port, &["plan", "--json"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        plan_text.contains("hook: webhook to 127.0.0.1 — configured"),
        "{plan_text}"
    );
    let places = [
        (
            "run stdout",
            String::from_utf8_lossy(&run.stdout).into_owned(),
        ),
        ("run log", stderr),
        (
            "journal",
            std::fs::read_to_string(&journal).expect("journal"),
        ),
        ("html", std::fs::read_to_string(&html).expect("html")),
        (
            "text report",
            String::from_utf8_lossy(&text_report.stdout).into_owned(),
        ),
        ("plan", plan_text),
        (
            "plan json",
            String::from_utf8_lossy(&plan_json.stdout).into_owned(),
        ),
        (
            "plan log",
            String::from_utf8_lossy(&plan.stderr).into_owned(),
        ),
    ];
    for (place, text) in &places {
        assert!(
            !text.is_empty() || place.ends_with("log"),
            "{place} is empty"
        );
        for secret in ["hook-path-secret", SECRET, &format!("127.0.0.1:{port}")] {
            assert!(!text.contains(secret), "{secret} in the {place}:\n{text}");
        }
    }

    // Slack's format: one `text`, plugin text unable to mention anyone.
    let (port, got) = receiver(&runtime, Receiver::Ok);
    let slack = hooked("slack", "");
    let run = wasmonkey(&slack, port, &["run", "--execute"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = got.lock().expect("got").clone();
    assert_eq!(got.len(), 2, "{got:#?}");
    let body: serde_json::Value = serde_json::from_str(&got[1].body).expect("json");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.starts_with("*wasmonkey run ") && text.contains("recovered"),
        "{text}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body:#}");
}

/// A receiver that holds its answer, one that redirects, and one that
/// answers 10 MB slowly: none holds the run past the call timeout (1 s,
/// three attempts at most), and what was not delivered is not a success.
#[test]
fn a_slow_redirecting_or_huge_receiver_does_not_hold_the_run() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let limits = "[limits]\nhost_call_timeout_secs = 1\n";
    let hold = Duration::from_secs(120);

    let (port, got) = receiver(&runtime, Receiver::Slow(hold));
    let started = Instant::now();
    let run = wasmonkey(&hooked("json", limits), port, &["run", "--execute"]);
    let took = started.elapsed();
    assert_eq!(
        run.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        took < hold / 2,
        "the run waited {took:?} for a slow receiver"
    );
    // Two messages, each tried three times (a timeout may heal).
    assert_eq!(got.lock().expect("got").len(), 6);

    let (elsewhere, redirected) = receiver(&runtime, Receiver::Ok);
    let (port, got) = receiver(&runtime, Receiver::Redirect(elsewhere));
    let run = wasmonkey(&hooked("json", limits), port, &["run", "--execute"]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("a redirect, which is not followed"),
        "{stderr}"
    );
    // Each message once (a redirect is refused, not retried), never followed.
    assert_eq!(got.lock().expect("got").len(), 2);
    assert_eq!(redirected.lock().expect("got").len(), 0);

    let (port, got) = receiver(&runtime, Receiver::Huge);
    let started = Instant::now();
    let run = wasmonkey(&hooked("json", limits), port, &["run", "--execute"]);
    let took = started.elapsed();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The 10 MB take 40 s to send: the run did not read them.
    assert!(took < Duration::from_secs(20), "the run took {took:?}");
    assert_eq!(got.lock().expect("got").len(), 2);
}

/// A webhook whose variable is not set (or whose URL is plain http off
/// loopback) stops an `--execute` run before it starts, naming the
/// variable; `plan` says the same.
#[test]
fn a_webhook_that_cannot_be_used_stops_the_run_before_it_starts() {
    let setup = hooked("json", "");
    for (url, words) in [
        (None, "the environment variable WASMONKEY_HOOK (the webhook's URL) is not set"),
        (
            Some("http://hooks.example.com/T0/B0/hook-path-secret"),
            "$WASMONKEY_HOOK: the webhook to hooks.example.com must be https (http only on loopback)",
        ),
    ] {
        for args in [&["run", "--execute"][..], &["plan"][..]] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
            command
                .env("WASMONKEY_LOG", "warn")
                .env("WASMONKEY_HOOK_SECRET", SECRET)
                .env_remove("WASMONKEY_HOOK")
                .args(args)
                .arg("--config")
                .arg(&setup.config);
            if let Some(url) = url {
                command.env("WASMONKEY_HOOK", url);
            }
            let output = command.output().expect("wasmonkey runs");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(output.status.code(), Some(1), "{args:?}: {said}");
            assert!(said.contains(words), "{args:?}: {said}");
            assert!(!said.contains("hook-path-secret"), "{args:?}: {said}");
        }
    }
    assert!(!setup.dir.path().join("journal").exists(), "a run started");
}

/// What a run's steps on an event bus must be, against its report (JSON):
/// `Run Started` first and `Run Finished` (with the report's outcome) last,
/// each victim terminated before its recovery verdict, every detail of
/// the documented schema, times in order. `events` are (detail-type,
/// detail, epoch ms) in the order they arrived; plugin messages are
/// checked for their fields and otherwise left out. Returns the step types
/// in order.
pub fn check_steps(
    events: &[(String, serde_json::Value, i64)],
    report: &serde_json::Value,
) -> Vec<String> {
    use wasmonkey::notify::steps;
    let run_id = report["run_id"].as_str().expect("run id");
    let dry_run = report["dry_run"].as_bool().expect("dry run");
    let mut types = Vec::new();
    let mut last_time = i64::MIN;
    let mut terminated = std::collections::BTreeSet::new();
    for (detail_type, detail, time) in events {
        if detail_type == steps::MESSAGE {
            for field in ["channel", "subject", "body"] {
                assert!(detail[field].is_string(), "{field} in {detail}");
            }
            continue;
        }
        assert_eq!(detail["version"], steps::SCHEMA_VERSION, "{detail}");
        assert_eq!(detail["run_id"], run_id, "{detail}");
        assert_eq!(detail["dry_run"], dry_run, "{detail}");
        assert!(
            *time >= last_time,
            "{detail_type} at {time} before {last_time}"
        );
        last_time = *time;
        let victim = || {
            report["victims"]
                .as_array()
                .expect("victims")
                .iter()
                .find(|v| v["instance_id"] == detail["instance_id"])
                .unwrap_or_else(|| panic!("{detail} names no victim of {report:#}"))
        };
        match detail_type.as_str() {
            steps::RUN_STARTED => {
                assert!(types.is_empty(), "{types:?}");
                assert_eq!(detail["backend"], report["backend"], "{detail}");
            }
            steps::INSTANCE_TERMINATED => {
                let victim = victim();
                for field in ["plugin", "group", "zone", "status"] {
                    assert_eq!(detail[field], victim[field], "{field}: {detail} {victim}");
                }
                assert!(
                    terminated.insert(victim["instance_id"].to_string()),
                    "twice: {detail}"
                );
            }
            steps::INSTANCE_RECOVERED | steps::INSTANCE_NOT_RECOVERED => {
                let victim = victim();
                assert!(
                    terminated.contains(&victim["instance_id"].to_string()),
                    "recovery before termination: {detail}"
                );
                assert_eq!(detail["verdict"], victim["host_verdict"], "{detail}");
                assert_eq!(
                    detail["recovery_seconds"], victim["recovery_seconds"],
                    "{detail}"
                );
            }
            steps::RUN_FINISHED => {
                assert_eq!(detail["outcome"], report["outcome"], "{detail}");
                assert_eq!(
                    detail["victims"].as_u64(),
                    report["victims"].as_array().map(|v| v.len() as u64)
                );
            }
            other => panic!("an undocumented detail type {other}: {detail}"),
        }
        types.push(detail_type.clone());
    }
    assert_eq!(
        types.first().map(String::as_str),
        Some(steps::RUN_STARTED),
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some(steps::RUN_FINISHED),
        "{types:?}"
    );
    let victims = report["victims"].as_array().expect("victims").len();
    assert_eq!(terminated.len(), victims, "{types:?}");
    types
}

/// An event bus as the run's channel, on the simulated fleet: every step of
/// a two-victim run is put, in order, in the documented schema, in one call
/// at the start, one when the experiment ends and one at the end (never a
/// call per event); the plugin's message is one event. A dry run puts
/// nothing unless `notify_dry_runs` asks.
#[test]
fn a_runs_steps_reach_an_event_bus_in_order_in_three_calls() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bused = |top: &str| {
        let setup = support::setup(
            support::FLEET,
            &support::plugin_dir(),
            &format!(
                "{}\n[report]\nchannel = \"bus\"\n[channels.bus]\nevent_bus = \"chaos\"\n\
                 [[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\n\
                 params = {{ probability = 1.0, channel = \"bus\" }}\n",
                support::RULES
            ),
        );
        let text = std::fs::read_to_string(&setup.config).expect("config");
        std::fs::write(&setup.config, format!("{top}\n{text}")).expect("config");
        setup
    };
    let setup = bused("");
    let (output, sim) = runtime.block_on(support::run(&setup, 3, true));
    let report = serde_json::to_value(&output.report).expect("report");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(output.report.victims.len(), 2, "{report:#}");
    let put = sim.bus_events();
    assert!(put.iter().all(|(bus, _)| bus == "chaos"), "{put:#?}");
    let events: Vec<(String, serde_json::Value, i64)> = put
        .iter()
        .map(|(_, e)| {
            let detail = serde_json::from_str(&e.detail).expect("detail is JSON");
            (e.detail_type.clone(), detail, e.time_ms)
        })
        .collect();
    let types = check_steps(&events, &report);
    assert_eq!(types.len(), 6, "{types:?}");
    assert_eq!(
        events
            .iter()
            .filter(|(t, _, _)| t == wasmonkey::notify::steps::MESSAGE)
            .count(),
        1,
        "{events:#?}"
    );
    // The run's own calls: at the start, after the experiment, at the end.
    let calls: Vec<&wasmonkey::report::NotificationReport> =
        output.report.notifications.iter().collect();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(calls.iter().all(|c| c.status == "delivered"), "{calls:#?}");

    // A dry run journals what it would put, and puts nothing.
    let (output, sim) = runtime.block_on(support::run(&setup, 3, false));
    assert!(sim.bus_events().is_empty(), "{:#?}", sim.bus_events());
    assert!(
        !output.report.notifications.is_empty()
            && output
                .report
                .notifications
                .iter()
                .all(|c| c.status == "would-publish"),
        "{:#?}",
        output.report.notifications
    );
    // Asked to, it puts its steps, each saying it is a dry run.
    let (output, sim) = runtime.block_on(support::run(&bused("notify_dry_runs = true"), 3, false));
    let report = serde_json::to_value(&output.report).expect("report");
    let events: Vec<(String, serde_json::Value, i64)> = sim
        .bus_events()
        .iter()
        .map(|(_, e)| {
            (
                e.detail_type.clone(),
                serde_json::from_str(&e.detail).expect("JSON"),
                e.time_ms,
            )
        })
        .collect();
    check_steps(&events, &report);
}
