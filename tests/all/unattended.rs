//! Unattended chaos: the daemon's loop on the simulated fleet's virtual
//! clock, its restarts, `simulate`, and the kill history it keeps.

use std::path::Path;
use std::sync::{Arc, Mutex};

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::config::Config;
use wasmonkey::daemon::{Clock, Daemon, SlotRun};
use wasmonkey::history::{Filter, History as _, SlotMark, SqliteHistory};
use wasmonkey::runner::SharedHistory;
use wasmonkey::schedule::EpochMs;

use crate::support::{self, FLEET};

/// Monday 2026-12-07 00:00 in Berlin.
const MONDAY: &str = "2026-12-07T00:00:00+01:00[Europe/Berlin]";

fn at(text: &str) -> EpochMs {
    text.parse::<jiff::Zoned>()
        .expect("a zoned time")
        .timestamp()
        .as_millisecond()
}

const DAY_MS: EpochMs = 86_400_000;

/// Scope, blast radius and schedule of these tests; `extra` adds to the
/// blast radius, `experiments` the experiments.
pub(crate) fn config(extra: &str, experiments: &str) -> String {
    format!(
        r#"
[scope]
groups = ["web", "api"]

[blast_radius]
max_terminations = 5
min_healthy_per_group = 1
max_fraction_per_group = 1.0
{extra}

[recovery]
timeout_secs = 600
poll_secs = 1

[schedule]
time_zone = "Europe/Berlin"
hours = "09:00-15:00"
mean_time_between_kills = "2 workdays"

{experiments}
"#
    )
}

pub(crate) const MONKEY_TWICE_A_DAY: &str = r#"
[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = { probability = 0.5, poll-secs = 1 }
when = "daily"

[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = { probability = 0.5, poll-secs = 1 }
when = { cron = "30 12 * * *" }
"#;

/// A daemon on a simulated fleet of its own, keeping its history in the
/// setup's state directory.
struct Lab {
    setup: support::Setup,
    config: Config,
    cloud: Arc<SimCloud>,
    history: Arc<Mutex<SqliteHistory>>,
}

impl Lab {
    fn new(body: &str, seed: u64) -> Lab {
        let setup = support::setup(FLEET, &support::plugin_dir(), body);
        let config = Config::load(&setup.config).expect("config loads");
        let cloud = Arc::new(
            SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), seed)
                .expect("fleet loads"),
        );
        let history = Arc::new(Mutex::new(
            SqliteHistory::in_state_dir(&setup.dir.path().join("state")).expect("history"),
        ));
        Lab {
            setup,
            config,
            cloud,
            history,
        }
    }

    /// A daemon (a new process, as far as it knows) on the lab's clock.
    fn daemon(&self, origin_ms: EpochMs, seed: u64) -> Daemon {
        let shared: SharedHistory = self.history.clone();
        let clock = Clock::Sim {
            cloud: Arc::clone(&self.cloud) as Arc<dyn wasmonkey::cloud::Cloud>,
            origin_ms,
        };
        Daemon::new(self.config.clone(), shared, clock, true, seed).expect("daemon")
    }

    async fn run(&self, daemon: &Daemon, until: EpochMs) -> Vec<SlotRun> {
        let (_keep, stop) = tokio::sync::watch::channel(false);
        daemon
            .run(Some(until), stop, |_| {})
            .await
            .expect("the daemon runs")
    }

    fn kills(&self) -> Vec<wasmonkey::history::KillRow> {
        self.history
            .lock()
            .unwrap()
            .kills(&Filter::default())
            .expect("kills")
    }

    fn denials(&self, rule: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.setup.dir.path().join("state/history.sqlite"))
            .expect("open");
        conn.query_row(
            "SELECT COALESCE(SUM(count), 0) FROM denials WHERE rule = ?1",
            [rule],
            |row| row.get(0),
        )
        .expect("denials")
    }
}

#[tokio::test]
async fn over_twenty_working_days_no_group_is_killed_twice_a_working_day_nor_outside_the_window() {
    let lab = Lab::new(
        &config("min_time_between_kills = \"1 workday\"", MONKEY_TWICE_A_DAY),
        11,
    );
    let start = at(MONDAY);
    let daemon = lab.daemon(start, 11);
    let slots = lab.run(&daemon, start + 28 * DAY_MS).await;
    // Four weeks: 20 working days, two slots each.
    assert_eq!(slots.len(), 40, "{slots:#?}");
    assert!(slots.iter().all(|s| s.status == "succeeded"), "{slots:#?}");
    let calendar = &daemon.schedule().calendar;
    let kills = lab.kills();
    assert!(kills.len() >= 20, "too few kills to tell: {}", kills.len());
    for kill in &kills {
        assert!(calendar.in_window(kill.killed_ms), "{kill:?}");
    }
    for group in ["web", "api"] {
        let times: Vec<EpochMs> = kills
            .iter()
            .filter(|k| k.group.as_deref() == Some(group))
            .map(|k| k.killed_ms)
            .collect();
        for pair in times.windows(2) {
            assert!(
                calendar.workdays_between(pair[0], pair[1]) >= 1,
                "{group} killed twice on {}",
                calendar.date_of(pair[1])
            );
        }
    }
    // The rule had work to do: the second slot of a day asked again.
    assert!(lab.denials("min-time-between-kills") > 0);
}

#[tokio::test]
async fn a_scheduled_run_terminates_nothing_once_the_working_hours_are_over() {
    // Rolling, one victim at a time with a 40 s recovery each, starting
    // three minutes before the window ends.
    let lab = Lab::new(
        &config(
            "",
            "[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\"]\nparams = { count = 5, poll-secs = 1 }\nwhen = { cron = \"58 14 * * *\" }\n",
        ),
        3,
    );
    let start = at(MONDAY);
    let daemon = lab.daemon(start, 3);
    let slots = lab.run(&daemon, start + DAY_MS).await;
    assert_eq!(slots.len(), 1, "{slots:#?}");
    let kills = lab.kills();
    let end = at("2026-12-07T15:00:00+01:00[Europe/Berlin]");
    assert!(!kills.is_empty());
    for kill in &kills {
        assert!(kill.killed_ms < end, "killed after hours: {kill:?}");
    }
    assert!(kills.len() < 5, "{kills:#?}");
    assert!(lab.denials("outside-hours") > 0);
}

#[tokio::test]
async fn a_daemon_restarted_mid_day_does_not_run_the_days_slot_again() {
    let body = config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let lab = Lab::new(&body, 5);
    let start = at(MONDAY);
    let first = lab.daemon(start, 5);
    let monday = first.schedule().next(start, 1).remove(0);
    let ran = lab.run(&first, monday.at + 1).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].slot.key, "1@2026-12-07");
    assert!(ran[0].victims > 0, "{ran:?}");
    // Started again (with a seed of its own, as a restart without a seed in
    // the config has) while Monday's window is still open.
    let restarted = lab.daemon(start, 6);
    let now = Clock::Sim {
        cloud: Arc::clone(&lab.cloud) as Arc<dyn wasmonkey::cloud::Cloud>,
        origin_ms: start,
    }
    .now_ms();
    let calendar = &restarted.schedule().calendar;
    assert!(
        calendar.in_window(now) && calendar.date_of(now) == calendar.date_of(monday.at),
        "the restart must come inside Monday's window for this test to tell"
    );
    let ran = lab.run(&restarted, start + 2 * DAY_MS).await;
    let keys: Vec<&str> = ran.iter().map(|s| s.slot.key.as_str()).collect();
    assert_eq!(keys, ["1@2026-12-08"], "{ran:#?}");
    let runs = lab.history.lock().unwrap().runs(10).expect("runs");
    assert_eq!(runs.len(), 2, "{runs:#?}");
}

#[tokio::test]
async fn a_daemon_that_died_mid_run_brings_that_runs_journal_into_the_history_on_start() {
    let body = config(
        "min_time_between_kills = \"1 workday\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let lab = Lab::new(&body, 8);
    let start = at(MONDAY);
    let first = lab.daemon(start, 8);
    let monday = first.schedule().next(start, 1).remove(0);
    let ran = lab.run(&first, monday.at + 1).await;
    let journal = lab
        .config
        .journal_dir()
        .join(format!("slot-{}.jsonl", monday.key));
    assert!(journal.exists(), "{journal:?}");
    // What a daemon killed mid-run leaves: the slot started, its journal on
    // disk, nothing of the run in the history.
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = Arc::new(Mutex::new(
        SqliteHistory::in_state_dir(dir.path()).expect("history"),
    ));
    // Its owner: a process of this host that is gone.
    let mut exited = std::process::Command::new("true").spawn().expect("true");
    let gone = exited.id();
    exited.wait().expect("reaped");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let dead_owner = format!("{}:{gone}", host.trim());
    fresh
        .lock()
        .unwrap()
        .mark_slot(&SlotMark {
            slot: &monday.key,
            experiment: 0,
            due_ms: monday.at,
            run_id: None,
            status: wasmonkey::history::SlotStatus::Started,
            journal: Some(&journal.display().to_string()),
            owner: Some(&dead_owner),
        })
        .expect("mark");
    // And a slot another host's daemon is running now, on a shared
    // history: left to it, never taken over.
    let elsewhere = wasmonkey::history::UnfinishedSlot {
        slot: "0@2026-12-01T09:00:00+01:00".to_owned(),
        journal: Some("/elsewhere/slot.jsonl".to_owned()),
        owner: Some("another-host:4242".to_owned()),
    };
    fresh
        .lock()
        .unwrap()
        .mark_slot(&SlotMark {
            slot: &elsewhere.slot,
            experiment: 0,
            due_ms: start - DAY_MS,
            run_id: None,
            status: wasmonkey::history::SlotStatus::Started,
            journal: elsewhere.journal.as_deref(),
            owner: elsewhere.owner.as_deref(),
        })
        .expect("mark");
    let shared: SharedHistory = fresh.clone();
    let clock = Clock::Sim {
        cloud: Arc::clone(&lab.cloud) as Arc<dyn wasmonkey::cloud::Cloud>,
        origin_ms: start,
    };
    let restarted = Daemon::new(lab.config.clone(), shared, clock, true, 8).expect("daemon");
    let (_keep, stop) = tokio::sync::watch::channel(false);
    restarted
        .run(Some(start + 2 * DAY_MS), stop, |_| {})
        .await
        .expect("runs");
    let fresh = fresh.lock().unwrap();
    assert_eq!(fresh.unfinished_slots().expect("slots"), [elsewhere]);
    let kills = fresh.kills(&Filter::default()).expect("kills");
    let monday_kills = kills
        .iter()
        .filter(|k| k.run_id == ran[0].run_id.clone().unwrap_or_default())
        .count();
    assert!(monday_kills > 0);
    assert_eq!(monday_kills, ran[0].victims, "{kills:#?}");
    // Monday's slot stays done; Tuesday's ran.
    assert!(kills.len() > monday_kills, "{kills:#?}");
}

fn simulate(setup: &support::Setup, seed: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args([
            "simulate",
            "--days",
            "200",
            "--start",
            "2026-12-07",
            "--json",
        ])
        .args(["--seed", seed])
        .arg("--config")
        .arg(&setup.config)
        .output()
        .expect("simulate runs")
}

#[test]
fn simulate_is_seeded_and_achieves_the_mean_time_between_kills_it_aims_for() {
    let body = config(
        "min_time_between_kills = \"1 workday\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 0.5, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let first = simulate(&setup, "21");
    let report = support::json_report(&first);
    assert_eq!(
        first.stdout,
        simulate(&setup, "21").stdout,
        "same seed, same simulation"
    );
    assert_ne!(first.stdout, simulate(&setup, "22").stdout);
    // 200 days from a Monday: 28 weeks and Monday to Thursday, 144
    // working days, one slot each.
    assert_eq!(report["runs"], 144, "{report:#}");
    assert_eq!(report["configured_mean_time_between_kills"], "2 workdays");
    let groups = report["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{report:#}");
    for group in groups {
        // About 70 kills a group: the mean of their gaps is within 0.5
        // workday of 2 (a geometric gap of p = 0.5 has a standard deviation
        // of 1.4, so its mean over 70 has one of 0.17).
        let mean = group["mean_gap_workdays"].as_f64().expect("mean");
        assert!((mean - 2.0).abs() <= 0.5, "{group:#}");
        assert_eq!(group["shortest_gap_workdays"], 1, "{group:#}");
        assert_eq!(group["below_healthy_floor"], 0, "{group:#}");
    }
}

#[test]
fn history_import_of_a_journal_cut_short_gives_the_rows_the_run_wrote() {
    let fleet_seed = 4u64;
    let setup = support::setup(FLEET, &support::test_plugin_dir(), "");
    let fleet = setup.dir.path().join("fleet.toml");
    let sim = SimCloud::from_fleet_file(&fleet, fleet_seed).expect("fleet");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let web = runtime.block_on(support::ids_of(&sim, Some("web")));
    // One termination, then a plugin that spins until it is killed.
    let body = format!(
        "[scope]\ngroups = [\"web\"]\n[blast_radius]\nmax_terminations = 1\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = \"{}\" }}\n\
         [[experiment]]\nplugin = \"hostile\"\nparams = {{ attack = \"loop\" }}\nlimits = {{ timeout_secs = 120 }}\n",
        web[0]
    );
    let text = std::fs::read_to_string(&setup.config).expect("config");
    std::fs::write(&setup.config, format!("{text}{body}")).expect("config");
    let journal = setup.dir.path().join("cut.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["run", "--execute", "--seed", &fleet_seed.to_string()])
        .arg("--config")
        .arg(&setup.config)
        .arg("--journal")
        .arg(&journal)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wasmonkey starts");
    // Wait until the history has the second experiment's start: the run is
    // spinning in it. Then kill it.
    let own = setup.dir.path().join("state/history.sqlite");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run_id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got to its second experiment"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Ok(conn) = rusqlite::Connection::open(&own) else {
            continue;
        };
        let found: Option<String> = conn
            .query_row(
                "SELECT run_id FROM experiments WHERE experiment = 1",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(run_id) = found {
            break run_id;
        }
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let replay = wasmonkey::journal::read(&journal).expect("journal");
    let report = wasmonkey::report::Report::from_journal(&replay, &journal);
    assert!(!report.complete, "the journal is cut short");
    assert_eq!(report.victims.len(), 1);

    let written = SqliteHistory::open(&own)
        .expect("open")
        .dump(&run_id)
        .expect("dump");
    let other = tempfile::tempdir().expect("temp dir");
    let mut imported = SqliteHistory::in_state_dir(other.path()).expect("history");
    imported.record(&report).expect("import");
    assert_eq!(imported.dump(&run_id).expect("dump"), written);
    // Again: nothing changes.
    imported.record(&report).expect("import");
    assert_eq!(imported.dump(&run_id).expect("dump"), written);
    assert!(
        written.iter().any(|row| row.starts_with("victims:")),
        "{written:#?}"
    );

    // The command does the same, and says the journal was cut short.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["history", "import"])
        .arg(&journal)
        .arg("--config")
        .arg(&setup.config)
        .output()
        .expect("history import");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("cut short"),
        "{stdout}"
    );
    assert_eq!(
        SqliteHistory::open(&own)
            .expect("open")
            .dump(&run_id)
            .expect("dump"),
        written
    );
}

#[test]
fn sigterm_ends_the_daemon_after_its_current_runs_journal_is_finished() {
    // No /metrics: daemons of other tests may run beside it.
    let body = "[daemon]\nlisten = \"off\"\n[scope]\ngroups = [\"web\"]\n\
        [schedule]\ntime_zone = \"UTC\"\nhours = \"00:00-24:00\"\n\
        days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
        [[experiment]]\nplugin = \"hostile\"\nparams = { attack = \"loop\" }\n\
        limits = { timeout_secs = 300 }\nwhen = { cron = \"*/10 * * * * *\" }\n";
    let setup = support::setup(FLEET, &support::test_plugin_dir(), body);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["daemon", "--seed", "1", "--config"])
        .arg(&setup.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the daemon starts");
    // Wait for the first slot's run to be spinning in its plugin.
    let journals = setup.dir.path().join("journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let journal = loop {
        assert!(std::time::Instant::now() < deadline, "no run started");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let started = std::fs::read_dir(&journals)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"experiment-started\""))
            });
        if let Some(path) = started {
            break path;
        }
    };
    let pid = i32::try_from(child.id()).expect("pid");
    // The binary turned transparent huge pages off for itself (its heap's
    // resident size; kernels before 5.0 do not show the flag).
    if cfg!(target_os = "linux") {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        if let Some(thp) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp}");
        }
    }
    support::sigterm(&child);
    let stopped_by = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < stopped_by,
            "the daemon did not stop within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let text = std::fs::read_to_string(&journal).expect("journal");
    let last = text.lines().last().expect("a line");
    assert!(
        last.contains("\"run-finished\"") && last.contains("\"interrupted\":true"),
        "{last}"
    );
    // One slot, recorded with its run; no later slot started.
    let history = SqliteHistory::in_state_dir(&setup.dir.path().join("state")).expect("history");
    let runs = history.runs(10).expect("runs");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert!(runs[0].complete, "{runs:#?}");
    assert!(history.unfinished_slots().expect("slots").is_empty());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("stdout");
    assert!(stdout.contains(": interrupted"), "{stdout}");
}

#[tokio::test]
async fn a_paused_daemon_runs_nothing_and_records_each_slot_as_paused() {
    use wasmonkey::kill_switch::FileSwitch;
    let body = config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let lab = Lab::new(&body, 2);
    FileSwitch::new(&lab.setup.dir.path().join("state"))
        .pause("change freeze")
        .expect("pause");
    let start = at(MONDAY);
    let slots = lab.run(&lab.daemon(start, 2), start + 7 * DAY_MS).await;
    let statuses: Vec<&str> = slots.iter().map(|s| s.status.name()).collect();
    assert_eq!(statuses, ["paused"; 5], "{slots:#?}");
    assert!(lab.kills().is_empty());
}

#[test]
fn status_shows_the_next_slots_and_the_last_runs_and_history_the_kills() {
    let body = config(
        "min_time_between_kills = \"36h\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let run = support::wasmonkey(
        &["run", "--execute", "--json", "--seed", "3"],
        &setup.config,
    );
    let report = support::json_report(&run);
    let run_id = report["run_id"].as_str().expect("run id").to_owned();
    let victims = report["victims"].as_array().expect("victims").len();
    assert!(victims > 0);

    let status = support::wasmonkey(&["status"], &setup.config);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("next slots:") && text.contains("experiment 1 (classic-monkey)"),
        "{text}"
    );
    assert!(
        text.contains(&run_id) && text.contains("succeeded"),
        "{text}"
    );

    let history = support::wasmonkey(&["history", "--json"], &setup.config);
    let kills: serde_json::Value = serde_json::from_slice(&history.stdout).expect("JSON");
    assert_eq!(kills.as_array().expect("kills").len(), victims, "{kills:#}");
    let stats = support::wasmonkey(&["history", "stats", "--json"], &setup.config);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON");
    let total: u64 = stats
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["kills"].as_u64().expect("kills"))
        .sum();
    assert_eq!(total as usize, victims, "{stats:#}");

    // A second run at once: every group killed is denied by the 36 h rule,
    // naming the group and its last kill.
    let again = support::wasmonkey(
        &["run", "--execute", "--json", "--seed", "4"],
        &setup.config,
    );
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(
        report["victims"].as_array().expect("victims").len(),
        0,
        "{report:#}"
    );
    let denials = report["experiments"][0]["denials"]
        .as_array()
        .expect("denials");
    assert!(!denials.is_empty(), "{report:#}");
    for denial in denials {
        assert_eq!(denial["rule"], "min-time-between-kills", "{denial:#}");
        assert!(
            denial["message"]
                .as_str()
                .is_some_and(|m| m.contains("was last killed at")),
            "{denial:#}"
        );
    }
}

/// GET `path` of a metrics endpoint: the status and the body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// `metrics` served on a free loopback port, with `switches` read at each
/// scrape: its address, the sender that stops it, and its task.
async fn serve_metrics(
    metrics: &Arc<wasmonkey::metrics::Metrics>,
    switches: wasmonkey::kill_switch::Switches,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    use wasmonkey::metrics::http;
    let listener = http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("a free port");
    let address = listener.local_addr().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let served = http::Served {
        metrics: Arc::clone(metrics),
        switches,
        history: None,
    };
    (
        address,
        stop_tx,
        tokio::spawn(http::serve(listener, served, stop)),
    )
}

#[tokio::test]
async fn the_daemon_counts_its_runs_on_metrics_that_promtool_accepts() {
    use wasmonkey::kill_switch::FileSwitch;

    let lab = Lab::new(&config("", MONKEY_TWICE_A_DAY), 8);
    let metrics = Arc::new(wasmonkey::metrics::Metrics::new());
    let state = lab.setup.dir.path().join("state");
    let switch = Arc::new(FileSwitch::new(&state));
    let switches = wasmonkey::kill_switch::Switches::none().with(switch.clone());
    let (address, stop_tx, server) = serve_metrics(&metrics, switches).await;

    let start = at(MONDAY);
    let daemon = lab.daemon(start, 3).with_metrics(Arc::clone(&metrics));
    let slots = lab.run(&daemon, start + 5 * DAY_MS).await;
    let ran = slots.iter().filter(|s| s.run_id.is_some()).count();
    assert_eq!(ran, 10, "two slots a working day: {slots:#?}");

    let (status, text) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    let file = lab.setup.dir.path().join("scraped.prom");
    std::fs::write(&file, &text).unwrap();
    crate::reports::checked_metrics(&file);
    use crate::reports::sum_of;
    assert_eq!(sum_of(&text, "wasmonkey_runs_total"), ran as f64, "{text}");
    let kills = lab.kills().len();
    assert!(kills > 0);
    assert_eq!(sum_of(&text, "wasmonkey_terminations_total"), kills as f64);
    assert!(sum_of(&text, "wasmonkey_api_calls_total") > 0.0);
    assert_eq!(sum_of(&text, "wasmonkey_paused"), 0.0);

    // The kill switch is read at each scrape.
    switch.pause("test").expect("pause");
    assert_eq!(
        sum_of(&get(address, "/metrics").await.1, "wasmonkey_paused"),
        1.0
    );
    assert_eq!(get(address, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(address, "/elsewhere").await.0, 404);
    let posted = reqwest::Client::new()
        .post(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(posted.status().as_u16(), 405);
    let openmetrics = reqwest::Client::new()
        .get(format!("http://{address}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");

    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server stops when told")
        .expect("it did not panic");
}

/// The daemon's series, scraped by a real Prometheus server and read back
/// through its HTTP API, are the kill history: per group and zone, each
/// run, each recovery; every outcome is a series from the start; the
/// dashboard in docs/ asks only for what the daemon exports, in PromQL
/// the server accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_series_read_back_through_prometheus_are_its_history() {
    use std::collections::BTreeMap;

    // A day between kills of a group: the day's second slot meets denials.
    let lab = Lab::new(
        &config("min_time_between_kills = \"1 workday\"", MONKEY_TWICE_A_DAY),
        8,
    );
    // Labelled as the daemon labels them: with its backend's whereabouts.
    let whereabouts = wasmonkey::runner::backend(&lab.config, 8)
        .await
        .expect("the backend")
        .whereabouts()
        .await;
    let metrics = Arc::new(wasmonkey::metrics::Metrics::for_config(
        &lab.config,
        &whereabouts,
    ));
    let switches = wasmonkey::kill_switch::Switches::none();
    let (address, stop_tx, server) = serve_metrics(&metrics, switches).await;
    let start = at(MONDAY);
    let until = start + 5 * DAY_MS;
    let daemon = lab.daemon(start, 3).with_metrics(Arc::clone(&metrics));
    let slots = lab.run(&daemon, until).await;
    let ran = slots.iter().filter(|s| s.run_id.is_some()).count();
    let kills = lab.kills();
    assert!(!kills.is_empty());

    let prometheus = crate::prometheus::Prometheus::start(address.port()).await;
    let by = |expr: String, label: &'static str| {
        let prometheus = &prometheus;
        async move {
            let answer = prometheus.query(&expr).await;
            assert_eq!(answer["status"], "success", "{expr}: {answer:#}");
            answer["data"]["result"]
                .as_array()
                .expect("a vector")
                .iter()
                .map(|s| {
                    let key = s["metric"][label].as_str().unwrap_or("").to_owned();
                    let value: f64 = s["value"][1]
                        .as_str()
                        .expect("a value")
                        .parse()
                        .expect("a number");
                    (key, value)
                })
                .collect::<BTreeMap<String, f64>>()
        }
    };
    assert_eq!(
        prometheus.value("sum(wasmonkey_runs_total)").await,
        Some(ran as f64)
    );
    let mut per_zone: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_group: BTreeMap<String, f64> = BTreeMap::new();
    let mut recovered: BTreeMap<String, f64> = BTreeMap::new();
    for kill in &kills {
        let group = kill.group.clone().unwrap_or_default();
        *per_zone.entry(kill.zone.clone()).or_default() += 1.0;
        *per_group.entry(group.clone()).or_default() += 1.0;
        if kill.recovery_ms.is_some() {
            *recovered.entry(group).or_default() += 1.0;
        }
    }
    assert_eq!(
        by(
            "sum by (zone) (wasmonkey_terminations_total{dry_run=\"false\"})".into(),
            "zone"
        )
        .await,
        per_zone
    );
    assert_eq!(
        by(
            "sum by (group) (wasmonkey_terminations_total{dry_run=\"false\"})".into(),
            "group"
        )
        .await,
        per_group
    );
    let counted = by(
        "sum by (group) (wasmonkey_recovery_seconds_count)".into(),
        "group",
    )
    .await;
    assert_eq!(
        counted
            .into_iter()
            .filter(|(_, n)| *n > 0.0)
            .collect::<BTreeMap<_, _>>(),
        recovered
    );
    let denied = lab.denials("min-time-between-kills");
    assert!(denied > 0, "the second slot of a day is denied");
    assert_eq!(
        by("sum by (rule) (wasmonkey_denials_total)".into(), "rule").await,
        BTreeMap::from([("min-time-between-kills".to_owned(), denied as f64)])
    );
    // Every outcome is there before it is counted: alerts need no `or vector(0)`.
    let outcomes = by("wasmonkey_runs_total".into(), "outcome").await;
    assert_eq!(outcomes.len(), 7, "{outcomes:?}");
    assert_eq!(outcomes.get("stopped"), Some(&0.0));
    // Every series says which account and region it counts.
    let region = whereabouts.region.clone().expect("the fleet's region");
    for (label, value) in [("account", "sim".to_owned()), ("region", region)] {
        for family in [
            "wasmonkey_runs_total",
            "wasmonkey_terminations_total",
            "wasmonkey_build_info",
        ] {
            let expr = format!("count by ({label}) ({family})");
            let seen = by(expr.clone(), label).await;
            assert_eq!(
                seen.keys().collect::<Vec<_>>(),
                [&value],
                "{expr}: {seen:?}"
            );
        }
    }
    let built = by("wasmonkey_build_info".into(), "version").await;
    assert_eq!(
        built,
        BTreeMap::from([(env!("CARGO_PKG_VERSION").to_owned(), 1.0)])
    );
    let next = prometheus
        .value("wasmonkey_next_slot_timestamp_seconds")
        .await
        .expect("the next slot");
    let next_ms = (next * 1000.0) as EpochMs;
    assert!(
        next_ms >= until && next_ms < until + 3 * DAY_MS,
        "{next_ms} vs {until}"
    );

    // The dashboard: each panel's PromQL, Grafana's variables given values,
    // runs on the server, and names only series the daemon exports.
    let exported = get(address, "/metrics").await.1;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("docs/grafana-dashboard.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
    {
        let expr = target["expr"].as_str().expect("an expr");
        let concrete = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$account", ".*")
            .replace("$region", ".*");
        let answer = prometheus.query(&concrete).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer:#}");
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("wasmonkey_"))
        {
            // A family not yet counted is still declared (`# TYPE`).
            let named = |line: &str| {
                line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|word| word == name)
            };
            assert!(
                exported.lines().any(named),
                "the dashboard asks for {name}, which the daemon does not export"
            );
        }
    }
    stop_tx.send(true).unwrap();
    let _ = server.await;
}

/// `wasmonkey daemon` of `setup` (its config listening on a free port)
/// with `env`, started; the child and where it serves `/metrics`.
pub(crate) fn start_daemon(
    setup: &support::Setup,
    env: &[(&str, &std::path::Path)],
) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    command
        .args(["daemon", "--config"])
        .arg(&setup.config)
        .env("WASMONKEY_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the daemon starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the daemon says where it serves")
            .expect("a line");
        if let Some((_, rest)) = line.split_once("serving /metrics and /healthz on http://") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining, so the daemon never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, address)
}

#[test]
fn the_daemon_binary_serves_healthz_on_its_configured_address_and_stops_on_sigterm() {
    let body = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\n{}",
        config("", MONKEY_TWICE_A_DAY)
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (mut child, address) = start_daemon(&setup, &[]);
    let health = (|| -> std::io::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&address)?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: wasmonkey\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    // SIGTERM before asserting, so a failure leaves no daemon behind.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let health = health.expect("/healthz answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let status = child.wait().expect("the daemon ends");
    assert!(status.success(), "{status:?}");
}

#[test]
fn simulate_html_draws_a_bar_per_day_with_kills_and_a_dot_per_recovery() {
    use crate::reports::{chromium, count, kills_fill, recovery_fill};
    let body = config(
        "min_time_between_kills = \"1 workday\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 0.5, poll-secs = 1 }\nwhen = \"daily\"\n",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let page = setup.dir.path().join("simulate.html");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args([
            "simulate",
            "--days",
            "40",
            "--start",
            "2026-12-07",
            "--json",
        ])
        .args(["--seed", "5", "--config"])
        .arg(&setup.config)
        .arg("--html")
        .arg(&page)
        .output()
        .expect("simulate runs");
    let report = support::json_report(&output);
    let dom = chromium(&page, None);
    let days: Vec<u64> = dom
        .split("<tr class=\"day\">")
        .skip(1)
        .filter_map(|row| {
            row.split("<td class=\"num\">")
                .nth(1)?
                .split('<')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(days.iter().sum::<u64>(), report["kills"].as_u64().unwrap());
    assert_eq!(count(&dom, "rect", &kills_fill()), days.len(), "{dom}");
    let groups = report["groups"].as_array().expect("groups");
    let recovered: u64 = groups
        .iter()
        .map(|g| g["kills"].as_u64().unwrap() - g["not_recovered"].as_u64().unwrap())
        .sum();
    assert!(recovered > 10, "{report:#}");
    assert_eq!(count(&dom, "circle", &recovery_fill()), recovered as usize);
    assert_eq!(count(&dom, "tr", "class=\"group\""), groups.len());
}

/// A schedule open all day every day, and an experiment every 30 s that
/// terminates nothing: a catch-up storm's conditions, quick to run.
fn every_thirty_seconds() -> String {
    config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\nparams = { probability = 0.0, poll-secs = 1 }\nwhen = { cron = \"*/30 * * * * *\" }\n",
    )
    .replace(
        "hours = \"09:00-15:00\"",
        "hours = \"00:00-24:00\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]",
    )
}

fn missed(slots: &[SlotRun]) -> usize {
    slots.iter().filter(|s| s.status.name() == "missed").count()
}

#[tokio::test]
async fn a_first_start_runs_no_past_slot() {
    let lab = Lab::new(&every_thirty_seconds(), 1);
    // Noon: 1,440 slots of the day are already past.
    let start = at(MONDAY) + DAY_MS / 2;
    let ran = lab.run(&lab.daemon(start, 1), start + 120_000).await;
    let keys: Vec<&str> = ran.iter().map(|s| s.slot.key.as_str()).collect();
    assert_eq!(ran.len(), 4, "{keys:?}");
    assert!(ran.iter().all(|s| s.slot.at >= start), "{keys:?}");
    assert_eq!(missed(&ran), 0, "{keys:?}");
}

#[tokio::test]
async fn after_three_hours_down_at_most_one_slot_catches_up() {
    let lab = Lab::new(&every_thirty_seconds(), 2);
    let start = at(MONDAY) + DAY_MS / 2;
    let first = lab.run(&lab.daemon(start, 2), start + 300_000).await;
    assert_eq!(first.len(), 10, "{first:#?}");
    // Down for three hours: 360 slots pass with no daemon.
    let clock = Clock::Sim {
        cloud: Arc::clone(&lab.cloud) as Arc<dyn wasmonkey::cloud::Cloud>,
        origin_ms: start,
    };
    let down = 3 * 3_600_000;
    wasmonkey::cloud::Cloud::sleep_ms(
        lab.cloud.as_ref(),
        u64::try_from(start + 300_000 + down - clock.now_ms()).unwrap(),
    )
    .await;
    let restarted_at = clock.now_ms();
    let ran = lab.run(&lab.daemon(start, 3), restarted_at + 61_000).await;
    let during: Vec<&SlotRun> = ran.iter().filter(|s| s.slot.at <= restarted_at).collect();
    let caught_up = during
        .iter()
        .filter(|s| s.status.name() != "missed")
        .count();
    assert_eq!(
        caught_up,
        1,
        "at most one run for the downtime: {}",
        during.len()
    );
    assert!(
        missed(&ran) >= 300,
        "the rest are recorded as missed: {}",
        missed(&ran)
    );
    // Then on time again: 15:05:30 and 15:06:00.
    let after = ran.iter().filter(|s| s.slot.at > restarted_at).count();
    assert_eq!(
        after,
        2,
        "{:?}",
        ran.iter().rev().take(3).collect::<Vec<_>>()
    );
    // Never two runs closer than the schedule's 30 s.
    let mut runs: Vec<EpochMs> = ran
        .iter()
        .filter(|s| s.status.name() != "missed")
        .map(|s| s.slot.at)
        .collect();
    runs.sort_unstable();
    assert!(runs.windows(2).all(|w| w[1] - w[0] >= 30_000), "{runs:?}");
}

#[test]
fn sixteen_processes_opening_a_new_history_together_all_open_it() {
    // Over many new files: switching one to write-ahead logging answers
    // "locked" at once, without waiting, to all but one of those that
    // meet there, and they meet only now and then.
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..40 {
        let path = dir.path().join(format!("history{round}.sqlite"));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let opened: Vec<_> = (0..16)
            .map(|_| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteHistory::open(&path)
                        .map(drop)
                        .map_err(|err| format!("{err:#}"))
                })
            })
            .collect();
        for handle in opened {
            if let Err(err) = handle.join().expect("no panic") {
                panic!("round {round}: the history does not open: {err}");
            }
        }
    }
}

#[tokio::test]
async fn two_runs_started_in_the_same_second_with_one_seed_keep_two_histories() {
    let body = config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\n",
    );
    let lab = Lab::new(&body, 4);
    let mut ids = Vec::new();
    for execute in [true, false] {
        let sim = Arc::new(
            SimCloud::from_fleet_file(&lab.setup.dir.path().join("fleet.toml"), 4).expect("fleet"),
        );
        let options = wasmonkey::runner::RunOptions {
            config: lab.setup.config.clone(),
            execute,
            clock_origin_ms: Some(at(MONDAY) + DAY_MS / 2),
            history: Some(lab.history.clone()),
            ..wasmonkey::runner::RunOptions::default()
        };
        let output =
            wasmonkey::runner::run_on(&lab.config, sim, 4, &options, std::future::pending())
                .await
                .expect("run");
        ids.push(output.report.run_id.clone().expect("an id"));
    }
    assert_ne!(ids[0], ids[1]);
    let runs = lab.history.lock().unwrap().runs(10).expect("runs");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    // The executed run's kills are still there: the dry run replaced none.
    assert!(!lab.kills().iter().all(|k| k.dry_run), "{:#?}", lab.kills());
}

#[tokio::test]
async fn kill_times_the_calendar_cannot_read_deny_as_a_kill_just_now() {
    let body = config(
        "min_time_between_kills = \"1 workday\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\n",
    );
    let lab = Lab::new(&body, 6);
    // Forged rows: a time past the calendar's range for web, a text for api.
    let conn = rusqlite::Connection::open(lab.setup.dir.path().join("state/history.sqlite"))
        .expect("open");
    for (group, killed) in [
        ("web", rusqlite::types::Value::Integer(i64::MAX / 2)),
        ("api", rusqlite::types::Value::Text("yesterday".into())),
    ] {
        conn.execute(
            "INSERT INTO victims (run_id, instance_id, experiment, group_name, zone, killed_ms, status, dry_run, host_verdict)
             VALUES ('forged', ?1, 0, ?2, 'us-east-1a', ?3, 'terminated', 0, 'recovered')",
            rusqlite::params![format!("i-{group}"), group, killed],
        )
        .expect("insert");
    }
    let sim = Arc::new(
        SimCloud::from_fleet_file(&lab.setup.dir.path().join("fleet.toml"), 6).expect("fleet"),
    );
    let options = wasmonkey::runner::RunOptions {
        config: lab.setup.config.clone(),
        execute: true,
        clock_origin_ms: Some(at(MONDAY) + DAY_MS / 2),
        ..wasmonkey::runner::RunOptions::default()
    };
    let output = wasmonkey::runner::run_on(&lab.config, sim, 6, &options, std::future::pending())
        .await
        .expect("run");
    assert!(
        output.report.victims.is_empty(),
        "{:#?}",
        output.report.victims
    );
    let denials = &support::only_experiment(&output).denials;
    assert_eq!(denials.len(), 2, "{denials:#?}");
    for denial in denials {
        assert_eq!(denial.rule, "min-time-between-kills");
        assert!(
            denial
                .message
                .contains("at a time the history cannot read (counted as just now)"),
            "{denial:#?}"
        );
    }
}

/// `wasmonkey ARGS --config` of `setup` with a deadline: its exit code and
/// all it printed.
fn bounded_run(args: &[&str], setup: &support::Setup) -> (Option<i32>, String) {
    let started = std::time::Instant::now();
    let out = support::wasmonkey(args, &setup.config);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{args:?} took {:?}",
        started.elapsed()
    );
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_operators_own_input_cannot_ask_for_unbounded_work() {
    let daily = config("", MONKEY_TWICE_A_DAY);
    let setup = support::setup(FLEET, &support::plugin_dir(), &daily);
    let (code, out) = bounded_run(&["simulate", "--days", "100000000"], &setup);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("at most 3660 days (ten years) are simulated"),
        "{out}"
    );

    // A cron every second is a typo, refused by every command.
    let per_second = every_thirty_seconds().replace("*/30 * * * * *", "* * * * * *");
    let per_second = format!("[daemon]\nlisten = \"off\"\n{per_second}");
    let setup = support::setup(FLEET, &support::plugin_dir(), &per_second);
    for args in [&["simulate", "--days", "1"][..], &["daemon"], &["status"]] {
        let (code, out) = bounded_run(args, &setup);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(
            out.contains("when.cron = \"* * * * * *\" fires every 1 s; the shortest interval allowed is 10 s"),
            "{args:?}: {out}"
        );
    }

    // A cron at the shortest interval, over years: too many runs to simulate.
    let dense = every_thirty_seconds().replace("*/30 * * * * *", "*/10 * * * * *");
    let setup = support::setup(FLEET, &support::plugin_dir(), &dense);
    let (code, out) = bounded_run(&["simulate", "--days", "3000"], &setup);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("slots; at most 200000 are simulated"), "{out}");

    // A daemon with nothing to run says so and fails.
    let never = "[daemon]\nlisten = \"off\"\n".to_owned()
        + &config(
        "",
        "[[experiment]]\nplugin = \"classic-monkey\"\nparams = { probability = 0.0 }\nwhen = { cron = \"0 3 * * *\" }\n",
        );
    let setup = support::setup(FLEET, &support::plugin_dir(), &never);
    let (code, out) = bounded_run(&["daemon"], &setup);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("the daemon has nothing to run"), "{out}");
}

#[test]
fn runs_started_together_on_one_history_never_kill_a_group_twice_within_the_gap() {
    let body = config(
        "min_time_between_kills = \"1h\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1, recovery-timeout-secs = 0 }\n",
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    // Six operators (or daemons) at once, each on the fleet as it stands.
    let children: Vec<_> = (0..6)
        .map(|n| {
            std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
                .args([
                    "run",
                    "--execute",
                    "--json",
                    "--seed",
                    &n.to_string(),
                    "--config",
                ])
                .arg(&setup.config)
                .env("WASMONKEY_LOG", "error")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("runs")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("ends");
        assert!(out.status.code().is_some(), "{out:?}");
    }
    let history = SqliteHistory::in_state_dir(&setup.dir.path().join("state")).expect("history");
    let kills = history.kills(&Filter::default()).expect("kills");
    let mut per_group: std::collections::BTreeMap<String, usize> = Default::default();
    for kill in kills.iter().filter(|k| !k.dry_run) {
        *per_group
            .entry(kill.group.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(!per_group.is_empty(), "nothing was killed at all");
    assert!(
        per_group.values().all(|&n| n == 1),
        "{per_group:?} {kills:#?}"
    );
}

/// The preloadable libfaketime: `WASMONKEY_LIBFAKETIME` (`cargo xtask
/// test` installs Debian's `faketime` and sets it), else where Debian puts it.
fn libfaketime() -> std::path::PathBuf {
    if let Some(lib) = std::env::var_os("WASMONKEY_LIBFAKETIME") {
        return lib.into();
    }
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime").join("libfaketime.so.1"))
        .find(|lib| lib.is_file())
        .expect("libfaketime (apt-get install faketime, or run the tests with `cargo xtask test`)")
}

/// Slot runs the daemon has started: one journal each.
fn journals_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

/// A daemon's config: classic-monkey every 10 s, all day, every day, with
/// `rules` (scope, blast radius). No /metrics: daemons of other tests may
/// run beside it.
fn every_ten_seconds(rules: &str) -> String {
    format!(
        "[daemon]\nlisten = \"off\"\n{rules}\
         [schedule]\ntime_zone = \"UTC\"\nhours = \"00:00-24:00\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         [[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
         params = {{ probability = 1.0, poll-secs = 1 }}\nwhen = {{ cron = \"*/10 * * * * *\" }}\n"
    )
}

#[test]
fn the_system_clock_jumping_an_hour_either_way_runs_no_extra_slot() {
    let setup = support::setup(
        FLEET,
        &support::plugin_dir(),
        &every_ten_seconds("[scope]\ngroups = [\"web\"]\n"),
    );
    // The offset libfaketime adds to the system clock, read again at every
    // clock read; the monotonic clock (the daemon's sleeps) stays real.
    let offset = setup.dir.path().join("offset");
    std::fs::write(&offset, "+0\n").expect("offset");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["daemon", "--seed", "1", "--config"])
        .arg(&setup.config)
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("WASMONKEY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let journals = setup.dir.path().join("journal");
    let wait_for = |count: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while journals_in(&journals) < count {
            assert!(std::time::Instant::now() < deadline, "no slot ran");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for(1);
    // An hour forward: 360 slots pass at once.
    std::fs::write(&offset, "+1h\n").expect("offset");
    let forward = std::time::Instant::now();
    wait_for(2);
    std::thread::sleep(std::time::Duration::from_secs(12));
    let before_back = journals_in(&journals);
    let forward_secs = forward.elapsed().as_secs();
    // And back: the next slot is an hour away again.
    std::fs::write(&offset, "+0\n").expect("offset");
    std::thread::sleep(std::time::Duration::from_secs(12));
    let after_back = journals_in(&journals);
    support::sigterm(&child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("stdout");
    assert!(child.wait().expect("wait").success(), "{stdout}");
    // The jump cost at most the runs real time allows: one per 10 s, plus
    // the one on time at the jump; and it was seen (the slots in between
    // recorded as missed).
    let forward_runs = before_back - 1;
    let allowed = usize::try_from(forward_secs / 10 + 2).expect("small");
    assert!(
        forward_runs <= allowed,
        "{forward_runs} runs in {forward_secs} s after the jump forward\n{stdout}"
    );
    let missed = stdout.lines().filter(|l| l.ends_with(": missed")).count();
    assert!(
        missed >= 350,
        "{missed} missed: the jump was not seen\n{stdout}"
    );
    assert_eq!(
        after_back, before_back,
        "a run after the jump back\n{stdout}"
    );
}

#[test]
fn four_hundred_history_imports_beside_a_running_daemon_all_land() {
    const IMPORTS: usize = 400;
    let setup = support::setup(
        FLEET,
        &support::plugin_dir(),
        &every_ten_seconds(
            "[scope]\ngroups = [\"web\", \"api\"]\n\
             [blast_radius]\nmax_terminations = 2\nmin_healthy_per_group = 1\n",
        ),
    );
    // One executed run's journal, copied under 400 run ids.
    let template = setup.dir.path().join("template.jsonl");
    let made = support::wasmonkey(
        &[
            "run",
            "--execute",
            "--seed",
            "3",
            "--journal",
            template.to_str().expect("utf-8"),
        ],
        &setup.config,
    );
    assert!(made.status.success(), "{made:?}");
    let text = std::fs::read_to_string(&template).expect("journal");
    let replay = wasmonkey::journal::read(&template).expect("journal");
    let report = wasmonkey::report::Report::from_journal(&replay, &template);
    let run_id = report.run_id.clone().expect("a run id");
    let victims = u32::try_from(report.victims.len()).expect("few");
    assert!(victims > 0, "the template run killed nothing");
    let copies = setup.dir.path().join("copies");
    std::fs::create_dir(&copies).expect("dir");
    let ids: Vec<String> = (0..IMPORTS).map(|i| format!("{run_id}-copy{i}")).collect();
    for id in &ids {
        std::fs::write(
            copies.join(format!("{id}.jsonl")),
            text.replace(&run_id, id),
        )
        .expect("copy");
    }
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["daemon", "--execute", "--seed", "1", "--config"])
        .arg(&setup.config)
        .env("WASMONKEY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the daemon starts");
    // Its first slot is running (or ran) when the imports start.
    let journals = setup.dir.path().join("journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while journals_in(&journals) < 1 {
        assert!(std::time::Instant::now() < deadline, "no slot ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let imports: Vec<_> = ids
        .iter()
        .map(|id| {
            std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
                .args(["history", "--config"])
                .arg(&setup.config)
                .arg("import")
                .arg(copies.join(format!("{id}.jsonl")))
                .env("WASMONKEY_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("an import starts")
        })
        .collect();
    let failed: Vec<String> = imports
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait"))
        .filter(|out| !out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
        .collect();
    support::sigterm(&daemon);
    let stopped = daemon.wait().expect("wait");
    assert!(
        failed.is_empty(),
        "{} imports failed: {failed:#?}",
        failed.len()
    );
    assert!(stopped.success(), "the daemon: {stopped:?}");
    let history = SqliteHistory::in_state_dir(&setup.dir.path().join("state")).expect("history");
    let runs = history.runs(10_000).expect("runs");
    for id in &ids {
        let row = runs.iter().find(|r| r.run_id == *id);
        assert_eq!(row.map(|r| r.victims), Some(victims), "{id}: {row:?}");
    }
    // And every slot the daemon ran is in it, with its kills.
    let slots = journals_in(&journals);
    let daemon_runs = runs
        .iter()
        .filter(|r| r.journal.starts_with(&journals.display().to_string()))
        .count();
    assert_eq!(daemon_runs, slots, "{runs:#?}");
    assert!(history.unfinished_slots().expect("slots").is_empty());
}

/// An operator's `run --execute` on the simulated fleet and its clock
/// (whose 0 is `origin`), writing `history`.
fn manual_run(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    cloud: &Arc<SimCloud>,
    history: &SharedHistory,
    origin: EpochMs,
    seed: u64,
) {
    let options = wasmonkey::runner::RunOptions {
        config: config.path.clone(),
        execute: true,
        clock_origin_ms: Some(origin),
        history: Some(Arc::clone(history)),
        ..wasmonkey::runner::RunOptions::default()
    };
    let cloud: Arc<dyn wasmonkey::cloud::Cloud> = cloud.clone();
    runtime
        .block_on(wasmonkey::runner::run_on(
            config,
            cloud,
            seed,
            &options,
            std::future::pending(),
        ))
        .expect("a manual run");
}

#[test]
fn two_daemons_and_a_manual_run_on_one_history_never_kill_a_group_twice_within_the_gap() {
    let open = |state: &Path| -> SharedHistory {
        Arc::new(Mutex::new(
            SqliteHistory::in_state_dir(state).expect("history"),
        ))
    };
    let (times, _setup) = race_on_one_history(&open);
    assert!(times.len() >= 3, "too few kills to tell: {times:?}");
}

/// Two daemons and an operator's runs racing for one group with
/// `min_time_between_kills = "1h"`, each with its own connection to the
/// history `open` opens for a state directory: the executed kills of the
/// group, in time order, each checked to be an hour or more after the last,
/// and the set-up (its journals stay while it does).
pub(crate) fn race_on_one_history(
    open: &(dyn Fn(&Path) -> SharedHistory + Sync),
) -> (Vec<EpochMs>, support::Setup) {
    // Two daemons (every 7 and every 10 minutes) and an operator's runs,
    // each on a thread of its own with its own connection to one history,
    // all on one simulated fleet and clock, over a working day, racing for
    // the one group in scope.
    let experiment = |cron: &str| {
        format!(
            "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
             params = {{ probability = 1.0, poll-secs = 5, recovery-timeout-secs = 60 }}\n\
             when = {{ cron = \"{cron}\" }}\n"
        )
    };
    let body = config(
        "min_time_between_kills = \"1h\"",
        &experiment("*/10 * * * *"),
    )
    .replace("groups = [\"web\", \"api\"]", "groups = [\"web\"]");
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let other = setup.dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&setup.config)
            .expect("config")
            .replace("*/10 * * * *", "*/7 * * * *"),
    )
    .expect("second config");
    let cloud = Arc::new(
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), 8).expect("fleet"),
    );
    let state = setup.dir.path().join("state");
    let open = || open(&state);
    // Monday 09:00 in Berlin, the window's start; the day ends at 15:00.
    let origin = at(MONDAY) + 9 * 3_600_000;
    let until = origin + 6 * 3_600_000;
    let clock = Clock::Sim {
        cloud: Arc::clone(&cloud) as Arc<dyn wasmonkey::cloud::Cloud>,
        origin_ms: origin,
    };
    std::thread::scope(|scope| {
        for (path, seed) in [(&setup.config, 1), (&other, 2)] {
            let (clock, history) = (clock.clone(), open());
            scope.spawn(move || {
                let config = Config::load(path).expect("config");
                let daemon = Daemon::new(config, history, clock, true, seed).expect("daemon");
                let (_keep, stop) = tokio::sync::watch::channel(false);
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(daemon.run(Some(until), stop, |_| {}))
                    .expect("the daemon runs");
            });
        }
        let (cloud, history, clock) = (Arc::clone(&cloud), open(), clock.clone());
        let config = Config::load(&setup.config).expect("config");
        scope.spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            for seed in 0..40 {
                if clock.now_ms() >= until {
                    break;
                }
                manual_run(&runtime, &config, &cloud, &history, origin, 100 + seed);
            }
        });
    });
    let history = open();
    let mut times: Vec<EpochMs> = history
        .lock()
        .expect("history")
        .kills(&Filter::default())
        .expect("kills")
        .into_iter()
        .filter(|k| !k.dry_run && k.group.as_deref() == Some("web"))
        .map(|k| k.killed_ms)
        .collect();
    times.sort_unstable();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3_600_000,
            "web killed {} s apart: {times:?}",
            (pair[1] - pair[0]) / 1000
        );
    }
    (times, setup)
}

/// A history that lets another process's sleep move the shared simulated
/// clock while a kill is being reserved, and keeps the reserved instants.
#[derive(Debug)]
struct ClockMovedDuringReserve {
    inner: SqliteHistory,
    cloud: Arc<SimCloud>,
    reserved: Arc<Mutex<Vec<EpochMs>>>,
}

impl wasmonkey::history::History for ClockMovedDuringReserve {
    fn record(&mut self, report: &wasmonkey::report::Report) -> anyhow::Result<()> {
        self.inner.record(report)
    }
    fn last_kills(
        &self,
        dry_runs: bool,
    ) -> anyhow::Result<std::collections::BTreeMap<String, EpochMs>> {
        self.inner.last_kills(dry_runs)
    }
    fn kills(&self, filter: &Filter) -> anyhow::Result<Vec<wasmonkey::history::KillRow>> {
        self.inner.kills(filter)
    }
    fn kill_points(&self, filter: &Filter) -> anyhow::Result<Vec<wasmonkey::history::KillPoint>> {
        self.inner.kill_points(filter)
    }
    fn runs(&self, limit: usize) -> anyhow::Result<Vec<wasmonkey::history::RunRow>> {
        self.inner.runs(limit)
    }
    fn slot_done(&self, slot: &str) -> anyhow::Result<bool> {
        self.inner.slot_done(slot)
    }
    fn mark_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<()> {
        self.inner.mark_slot(mark)
    }
    fn claim_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<bool> {
        self.inner.claim_slot(mark)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn unfinished_slots(&self) -> anyhow::Result<Vec<wasmonkey::history::UnfinishedSlot>> {
        self.inner.unfinished_slots()
    }
    fn daemon_seen(&self) -> anyhow::Result<Option<EpochMs>> {
        self.inner.daemon_seen()
    }
    fn note_daemon(&mut self, at: EpochMs) -> anyhow::Result<()> {
        self.inner.note_daemon(at)
    }
    fn reserve_kill(
        &mut self,
        kill: &wasmonkey::history::LedgerKill<'_>,
        allowed: &mut dyn FnMut(Option<EpochMs>) -> bool,
    ) -> anyhow::Result<bool> {
        let reserved = self.inner.reserve_kill(kill, allowed)?;
        if reserved {
            self.reserved.lock().expect("reserved").push(kill.at);
        }
        // Another run on this fleet sleeps a minute meanwhile.
        futures::executor::block_on(wasmonkey::cloud::Cloud::sleep_ms(
            self.cloud.as_ref(),
            60_000,
        ));
        Ok(reserved)
    }
    fn release_kill(&mut self, run_id: &str, instance: &str) -> anyhow::Result<()> {
        self.inner.release_kill(run_id, instance)
    }
}

#[test]
fn a_kill_is_recorded_at_the_instant_its_gap_was_checked_even_when_the_clock_moves_between() {
    // The gap is checked and the kill reserved at one instant; if the kill
    // were recorded at a later reading of a clock other runs move, the
    // history would show kills closer than the gap that let them through.
    let body = config(
        "min_time_between_kills = \"1h\"",
        "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
         params = { probability = 1.0, poll-secs = 5, recovery-timeout-secs = 60 }\n",
    )
    .replace("groups = [\"web\", \"api\"]", "groups = [\"web\"]");
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let cloud = Arc::new(
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), 8).expect("fleet"),
    );
    let state = setup.dir.path().join("state");
    let reserved = Arc::new(Mutex::new(Vec::new()));
    let history: SharedHistory = Arc::new(Mutex::new(ClockMovedDuringReserve {
        inner: SqliteHistory::in_state_dir(&state).expect("history"),
        cloud: Arc::clone(&cloud),
        reserved: Arc::clone(&reserved),
    }));
    let origin = at(MONDAY) + 9 * 3_600_000;
    let config = Config::load(&setup.config).expect("config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for seed in 0..3 {
        manual_run(&runtime, &config, &cloud, &history, origin, seed);
        // The next run comes just after the gap of this one's kill.
        let next = origin + 3_600_000 * (seed as i64 + 1);
        let now =
            origin + i64::try_from(wasmonkey::cloud::Cloud::now_ms(cloud.as_ref())).expect("ms");
        runtime.block_on(wasmonkey::cloud::Cloud::sleep_ms(
            cloud.as_ref(),
            u64::try_from(next - now).unwrap_or(0),
        ));
    }
    let reserved = reserved.lock().expect("reserved").clone();
    let killed: Vec<EpochMs> = SqliteHistory::in_state_dir(&state)
        .expect("history")
        .kills(&Filter::default())
        .expect("kills")
        .into_iter()
        .filter(|k| !k.dry_run)
        .map(|k| k.killed_ms)
        .collect();
    assert!(!reserved.is_empty(), "nothing was killed");
    assert_eq!(
        killed, reserved,
        "kills recorded at other instants than reserved"
    );
    for pair in killed.windows(2) {
        assert!(pair[1] - pair[0] >= 3_600_000, "{killed:?}");
    }
}
