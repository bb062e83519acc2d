//! Exit 1 means nothing was done: a run that acted ends with its report
//! and the code of what it did, whatever fails after the action.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use wasmonkey::cloud::sim::SimCloud;

use crate::support::{self, FLEET};

/// A sim setup whose first experiment terminates one `web` instance (the
/// hostile plugin, seed 5) and whose second one is `second`; `rules` adds
/// to the blast radius.
async fn acting_setup(rules: &str, second: &str) -> support::Setup {
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let sim = SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), 5).expect("fleet");
    let web = support::ids_of(&sim, Some("web")).await;
    let body = format!(
        "{}[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\n\
         params = {{ attack = \"terminate\", targets = {:?} }}\n{second}",
        support::RULES.replace("[blast_radius]", &format!("[blast_radius]\n{rules}")),
        web[0]
    );
    support::setup(FLEET, &support::test_plugin_dir(), &body)
}

fn run(setup: &support::Setup, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    cmd.args(["run", "--execute", "--json", "--seed", "5", "--config"])
        .arg(&setup.config)
        .args(extra)
        .env("WASMONKEY_LOG", "warn");
    cmd
}

#[tokio::test]
async fn a_report_that_cannot_be_written_after_a_kill_never_exits_1_or_0() {
    let setup = acting_setup("", "").await;
    // The HTML report's directory does not exist: the write fails after
    // the run terminated an instance.
    let html = setup.dir.path().join("missing").join("report.html");
    let output = run(&setup, &["--html", html.to_str().expect("utf-8")])
        .output()
        .expect("wasmonkey runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The run itself succeeded; the report did not reach the operator.
    assert_eq!(output.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("could not be delivered") && stderr.contains("report.html"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the report was printed");
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(report["victims"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_journal_that_fills_up_after_a_kill_ends_with_the_report_not_exit_1() {
    // The second experiment floods the journal past the file size limit
    // the run is given: the write after the kill fails.
    let setup = acting_setup(
        "min_time_between_kills = \"36h\"",
        "[[experiment]]\nplugin = \"hostile\"\nparams = { attack = \"log-flood\", count = 1000, size = 500 }\n",
    )
    .await;
    let mut cmd = run(&setup, &[]);
    // SAFETY: between fork and exec only async-signal-safe calls:
    // setrlimit(2) and signal(2). An ignored SIGXFSZ survives exec, so a
    // write past the limit fails with EFBIG instead of killing the run.
    #[allow(unsafe_code, reason = "a file size limit for the child alone")]
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 128 * 1024,
                rlim_max: 128 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = cmd.output().expect("wasmonkey runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    assert_ne!(code, Some(1), "it terminated an instance: {stderr}");
    assert_ne!(code, Some(0), "the run was cut short: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the report was printed");
    assert_eq!(report["complete"], false, "{report:#}");
    assert_eq!(report["victims"].as_array().map(Vec::len), Some(1));
    assert!(
        report["notes"].as_array().into_iter().flatten().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("the host could not go on"))),
        "{report:#}"
    );
    // The kill reaches the history (the file size limit may have refused
    // that write too: then the next run imports the journal first), and
    // the next run may not kill in the group again.
    let next = run(&setup, &[]).output().expect("wasmonkey runs");
    let again: serde_json::Value = serde_json::from_slice(&next.stdout).expect("a report");
    assert_eq!(
        again["victims"].as_array().map(Vec::len),
        Some(0),
        "{again:#}"
    );
    assert_eq!(
        again["experiments"][0]["denials"][0]["rule"], "min-time-between-kills",
        "{again:#}"
    );
    let history = wasmonkey::history::SqliteHistory::in_state_dir(&setup.dir.path().join("state"))
        .expect("history");
    let runs = wasmonkey::history::History::runs(&history, 10).expect("runs");
    let cut = runs
        .iter()
        .find(|r| Some(r.run_id.as_str()) == report["run_id"].as_str())
        .expect("the run cut short");
    assert_eq!(cut.victims, 1, "{runs:#?} {report:#}");
}
