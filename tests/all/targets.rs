//! Health targets end to end: a plugin checks targets by name (the host
//! performs the check and never tells it where the target lives), and the
//! host's recovery verdict waits for the operator's recovery targets.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use wasmonkey::report::ExperimentReport;

use crate::support::{self, FLEET, RULES};

/// A loopback HTTP server: `/health` answers 200, anything else 503.
/// Returns its base URL.
async fn health_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let status = if request.starts_with("GET /health ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A loopback port that accepts connections and never answers.
async fn silent_server() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    (listener, url)
}

/// A loopback URL where nothing listens.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/health", listener.local_addr().unwrap())
}

/// `[targets.*]` tables for the servers, a closed port and a group target.
fn targets(base: &str, silent: &str) -> String {
    format!(
        "[targets.site]\nurl = \"{base}/health\"\n\
         [targets.broken]\nurl = \"{base}/broken\"\n\
         [targets.mute]\nurl = \"{silent}\"\ntimeout_ms = 200\n\
         [targets.gone]\nurl = \"{}\"\n\
         [targets.web-floor]\ngroup = \"web\"\nmin_healthy = 3\n",
        closed_url()
    )
}

/// The report of the hostile plugin's `check` attack with `grants`, against
/// every kind of target and one that does not exist.
async fn check_attack(grants: &str) -> ExperimentReport {
    let base = health_server().await;
    let (_silent, silent) = silent_server().await;
    let body = format!(
        "{RULES}\n{}\n[[experiment]]\nplugin = \"hostile\"\ngrants = {grants}\n\
         params = {{ attack = \"check\", targets = \"nowhere\" }}\n",
        targets(&base, &silent),
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let (output, _) = support::run(&setup, 1, false).await;
    support::only_experiment(&output).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_checks_targets_by_name_and_never_sees_where_they_are() {
    let experiment = check_attack("[\"probe-targets\"]").await;
    assert_eq!(experiment.error, None, "{experiment:#?}");
    let summary = experiment.summary.clone().unwrap_or_default();
    let lines: Vec<&str> = summary.lines().collect();
    // probe::targets gives the names in order; then the unknown one.
    assert_eq!(
        lines,
        [
            "broken: healthy=false HTTP 503 (expects 200)",
            "gone: healthy=false cannot connect",
            "mute: healthy=false no answer within 200 ms",
            "site: healthy=true HTTP 200 (expects 200)",
            "web-floor: healthy=true 4 healthy in service in web (needs 3)",
            "nowhere: not-found: no target named nowhere",
        ],
        "{summary}"
    );
    assert!(!summary.contains("127.0.0.1"), "{summary}");
    assert!(experiment.denials.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checking_a_target_needs_the_grant() {
    let experiment = check_attack("[\"terminate\"]").await;
    let summary = experiment.summary.clone().unwrap_or_default();
    // Without the grant probe::targets names nothing (as notify::channels
    // does), so only the plugin's own guess is checked, and denied.
    assert_eq!(
        summary,
        "nowhere: denied: the plugin has no 'probe-targets' grant (its manifest must ask for it and the operator must allow it)"
    );
    assert_eq!(experiment.denials.len(), 1, "{:#?}", experiment.denials);
    assert!(experiment.denials.iter().all(|d| d.rule == "grant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_waits_for_the_operators_http_targets() {
    let base = health_server().await;
    let (_silent, silent) = silent_server().await;
    let classic = "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
                   params = { recovery-timeout-secs = 120 }\n";
    let run = |target: &'static str| {
        // A short watch: a target that never turns healthy costs 120 polls.
        let rules = RULES.replace(
            "[recovery]\ntimeout_secs = 600",
            &format!("[recovery]\ntargets = [\"{target}\"]\ntimeout_secs = 120"),
        );
        assert_ne!(rules, RULES);
        let body = format!("{rules}\n{}\n{classic}", targets(&base, &silent));
        let setup = support::setup(FLEET, &support::plugin_dir(), &body);
        async move { (support::run(&setup, 4, true).await.0, setup) }
    };

    let (healthy, _keep) = run("site").await;
    assert_eq!(healthy.report.victims.len(), 2, "{:#?}", healthy.report);
    for victim in &healthy.report.victims {
        assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
        assert_eq!(victim.recovery_seconds, Some(support::FLEET_RECOVERY_SECS));
    }
    assert!(healthy.report.succeeded());

    // The groups come back, but the site stays broken: not recovered.
    let (broken, _keep) = run("broken").await;
    assert_eq!(broken.report.victims.len(), 2, "{:#?}", broken.report);
    for victim in &broken.report.victims {
        assert_eq!(victim.host_verdict, "not-recovered", "{victim:#?}");
        assert_eq!(victim.recovery_seconds, None);
    }
    assert!(!broken.report.succeeded());
}
