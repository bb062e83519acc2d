//! The shared state in a real PostgreSQL server: Debian's, which `cargo
//! xtask test` installs and passes in `WASMONKEY_POSTGRES_BIN`, started here
//! on loopback for each test, as the `postgres` user when the tests run as
//! root (the server refuses root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use wasmonkey::history::postgres::{Database, PostgresHistory, SharedSwitch};
use wasmonkey::history::{Filter, History, LedgerKill, SqliteHistory};
use wasmonkey::runner::SharedHistory;

use crate::support;

/// A PostgreSQL server of its own, stopped (fast) when dropped.
pub(crate) struct Postgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The server's programs: `WASMONKEY_POSTGRES_BIN`, else Debian's newest.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMONKEY_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql (cargo xtask test installs it)")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").1
}

fn as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    #[allow(
        unsafe_code,
        reason = "the effective uid, for whether to drop to postgres"
    )]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// `program`, run as the `postgres` user when this is root.
fn server_command(program: &Path) -> Command {
    if as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

impl Postgres {
    /// A new cluster with a trusted superuser `wasmonkey`, listening on
    /// 127.0.0.1 only; ready when this returns.
    pub(crate) fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let sockets = dir.path().join("run");
        std::fs::create_dir(&sockets).expect("socket dir");
        if as_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown to postgres");
        }
        let init = server_command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "wasmonkey", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|err| panic!("{} runs: {err}", bin.join("initdb").display()));
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let child = server_command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(&sockets)
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let server = Postgres {
            child,
            port,
            _dir: dir,
        };
        // On a thread of its own: the synchronous client refuses to run
        // inside an async test's runtime.
        let url = server.url();
        let ready = std::thread::spawn(move || {
            let started = Instant::now();
            while postgres::Client::connect(&url, postgres::NoTls).is_err() {
                if started.elapsed() > Duration::from_secs(60) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            true
        });
        assert!(
            ready.join().expect("the wait"),
            "PostgreSQL never answered on {}",
            server.url()
        );
        server
    }

    /// The URL of its `postgres` database, as a config names it.
    pub(crate) fn url(&self) -> String {
        format!("postgres://wasmonkey@127.0.0.1:{}/postgres", self.port)
    }

    /// The history in it, on a connection of its own.
    pub(crate) fn history(&self) -> PostgresHistory {
        PostgresHistory::connect(&Database::parse(&self.url()).expect("URL")).expect("history")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: a plain kill(2) of the server this test started: SIGINT
        // is PostgreSQL's fast shutdown.
        #[allow(unsafe_code, reason = "std can only SIGKILL a child")]
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

/// `state = URL` put at the top of the set-up's config (a top-level key).
fn with_state(setup: &support::Setup, url: &str) {
    let config = std::fs::read_to_string(&setup.config).expect("config");
    std::fs::write(&setup.config, format!("state = {url:?}\n{config}")).expect("config");
}

#[test]
fn a_database_url_with_a_password_is_refused_and_none_is_ever_shown() {
    let err = Database::parse("postgres://chaos:hunter2@db.internal:5432/chaos")
        .expect_err("a password in the config");
    assert!(err.contains("PGPASSWORD"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    for (url, why) in [
        ("mysql://chaos@db/chaos", "postgres://"),
        ("postgres://db.internal/chaos", "no user"),
        ("postgres://chaos@db.internal", "no database"),
    ] {
        let err = Database::parse(url).expect_err(url);
        assert!(err.contains(why), "{url}: {err}");
    }
    let shown = Database::parse("postgres://chaos@db.internal:6432/chaos").expect("URL");
    assert_eq!(shown.shown(), "postgres://chaos@db.internal:6432/chaos");
    // In a config, the problem is named by its key.
    let setup = support::setup(support::FLEET, &support::test_plugin_dir(), "");
    with_state(&setup, "postgres://chaos:hunter2@127.0.0.1:1/chaos");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["plan", "--config"])
        .arg(&setup.config)
        .output()
        .expect("plan runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(said.contains("state holds a password"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}

#[test]
fn a_database_that_cannot_be_reached_stops_a_run_before_it_acts() {
    // Nothing listens on port 1.
    let body = format!(
        "{}[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = \"i-0\" }}\n",
        support::RULES.replace(
            "max_terminations = 3",
            "max_terminations = 3\nmin_time_between_kills = \"1h\""
        )
    );
    let setup = support::setup(support::FLEET, &support::test_plugin_dir(), &body);
    with_state(&setup, "postgres://chaos@127.0.0.1:1/chaos");
    let journal = setup.dir.path().join("run.jsonl");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["run", "--execute", "--config"])
        .arg(&setup.config)
        .arg("--journal")
        .arg(&journal)
        .env("PGPASSWORD", "s3cret-pw")
        .output()
        .expect("run runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(
            "state: the shared kill switch: postgres://chaos@127.0.0.1:1/chaos: connecting"
        ),
        "{said}"
    );
    assert!(!said.contains("s3cret-pw"), "{said}");
    assert!(!journal.exists(), "a run began");
}

#[test]
fn a_database_a_newer_release_migrated_is_refused_unchanged() {
    let server = Postgres::start();
    drop(server.history());
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    admin
        .execute("UPDATE wasmonkey.schema_version SET version = 99", &[])
        .expect("update");
    let err = PostgresHistory::connect(&Database::parse(&server.url()).expect("URL"))
        .expect_err("a newer schema");
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
    let version: i32 = admin
        .query_one("SELECT version FROM wasmonkey.schema_version", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, 99);
}

/// Hosts starting together on a new database: each history and each switch
/// connects, and the schema is made once. To make them meet, the test holds
/// the catalog of schemas against writes until every host waits on a lock,
/// so each has looked for the schema before any can create it: made outside
/// the migration's lock, all but one failed on the catalog's key.
#[test]
fn twelve_hosts_starting_together_on_a_new_database_all_connect() {
    const HOSTS: usize = 12;
    let server = Postgres::start();
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    admin
        .batch_execute("CREATE DATABASE fresh")
        .expect("create database");
    let url = format!("{}fresh", server.url().trim_end_matches("postgres"));
    let database = Database::parse(&url).expect("URL");
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut hold = holder.transaction().expect("transaction");
    hold.batch_execute("LOCK TABLE pg_catalog.pg_namespace IN SHARE MODE")
        .expect("lock");
    let started: Vec<_> = (0..HOSTS)
        .map(|host| {
            let database = database.clone();
            std::thread::spawn(move || {
                let connected = if host % 2 == 0 {
                    PostgresHistory::connect(&database).map(drop)
                } else {
                    SharedSwitch::connect(&database).map(drop)
                };
                connected.map_err(|err| format!("host {host}: {err:#}"))
            })
        })
        .collect();
    let waiting = Instant::now();
    loop {
        let waiters: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fresh' AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("activity")
            .get(0);
        if waiters == i64::try_from(HOSTS).unwrap_or(i64::MAX) {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(15),
            "{waiters} of {HOSTS} hosts wait on a lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hold.commit().expect("release");
    let failed: Vec<String> = started
        .into_iter()
        .filter_map(|handle| handle.join().expect("no panic").err())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let version: i32 = holder
        .query_one("SELECT version FROM wasmonkey.schema_version", &[])
        .expect("version")
        .get(0);
    assert!(version >= 1, "{version}");
}

/// Eight hosts reserve a kill of one group at once, each on its own
/// connection, the first to read holding its decision a while: exactly one
/// reservation per round passes `min_time_between_kills`, because the read
/// and the write are one transaction under the group's lock.
#[test]
fn hosts_racing_to_reserve_a_kill_of_one_group_never_both_pass_the_gap() {
    const HOSTS: usize = 8;
    const GAP: i64 = 3_600_000;
    let server = Postgres::start();
    let histories: Vec<Mutex<PostgresHistory>> =
        (0..HOSTS).map(|_| Mutex::new(server.history())).collect();
    for round in 0..5_i64 {
        let at = 1_000_000_000 + round * GAP;
        let start = Barrier::new(HOSTS);
        let passed: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = histories
                .iter()
                .enumerate()
                .map(|(host, history)| {
                    let start = &start;
                    scope.spawn(move || {
                        let run = format!("run-{round}-{host}");
                        let instance = format!("i-{host}");
                        let kill = LedgerKill {
                            run_id: &run,
                            instance: &instance,
                            group: "web",
                            at,
                        };
                        let mut allowed = |last: Option<i64>| {
                            // Whoever reads first keeps the others waiting,
                            // if anything makes them wait.
                            std::thread::sleep(Duration::from_millis(150));
                            last.is_none_or(|last| at - last >= GAP)
                        };
                        start.wait();
                        history
                            .lock()
                            .expect("history")
                            .reserve_kill(&kill, &mut allowed)
                            .expect("reserve")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("host"))
                .collect()
        });
        assert_eq!(
            passed.iter().filter(|p| **p).count(),
            1,
            "round {round}: {passed:?}"
        );
    }
    let last = histories[0]
        .lock()
        .expect("history")
        .last_kills(false)
        .expect("last kills");
    assert_eq!(last.get("web"), Some(&(1_000_000_000 + 4 * GAP)));
}

/// The daemons-and-operator race of the SQLite history, on one database:
/// no group killed twice within the gap; and what the database keeps of
/// each run is what SQLite keeps of the same journals.
#[test]
fn two_daemons_and_a_manual_run_on_one_database_never_kill_a_group_twice_within_the_gap() {
    let server = Postgres::start();
    let open = |_: &Path| -> SharedHistory { Arc::new(Mutex::new(server.history())) };
    let (times, _setup) = crate::unattended::race_on_one_history(&open);
    assert!(times.len() >= 3, "too few kills to tell: {times:?}");

    let shared = server.history();
    let runs = shared.runs(10_000).expect("runs");
    assert!(runs.len() >= 3, "{runs:#?}");
    let copy = tempfile::tempdir().expect("temp dir");
    let mut sqlite = SqliteHistory::in_state_dir(copy.path()).expect("sqlite");
    for run in &runs {
        let journal = PathBuf::from(&run.journal);
        let replay = wasmonkey::journal::read(&journal).expect("journal");
        sqlite
            .record(&wasmonkey::report::Report::from_journal(&replay, &journal))
            .expect("record");
    }
    let all = Filter {
        dry_runs: true,
        ..Filter::default()
    };
    assert_eq!(
        shared.kills(&all).expect("kills"),
        sqlite.kills(&all).expect("kills")
    );
    assert_eq!(
        shared.kill_points(&all).expect("points"),
        sqlite.kill_points(&all).expect("points")
    );
    assert_eq!(
        shared.runs(10_000).expect("runs"),
        sqlite.runs(10_000).expect("runs")
    );
}

/// A daemon's `/healthz` asks its history: ok while the database answers,
/// 503 saying no kill is allowed once it does not (the ledger then denies
/// every kill), never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_when_the_database_is_lost() {
    use wasmonkey::metrics::http;
    let server = Postgres::start();
    let history: SharedHistory = Arc::new(Mutex::new(server.history()));
    let listener = http::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("address");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let served = http::Served {
        metrics: Arc::new(wasmonkey::metrics::Metrics::new()),
        switches: wasmonkey::kill_switch::Switches::none(),
        history: Some(Arc::clone(&history)),
    };
    tokio::spawn(http::serve(listener, served, stop));
    let healthz = || async {
        let response = reqwest::get(format!("http://{address}/healthz"))
            .await
            .expect("the endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    };
    assert_eq!(healthz().await, (200, "ok\n".to_owned()));
    drop(server);
    let (status, body) = healthz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no kill is allowed"), "{body}");
    assert!(body.contains("postgres://wasmonkey@127.0.0.1:"), "{body}");
    // And the ledger denies: a reservation fails, it does not pass.
    let err = tokio::task::spawn_blocking(move || {
        let kill = LedgerKill {
            run_id: "r",
            instance: "i-1",
            group: "web",
            at: 0,
        };
        history
            .lock()
            .expect("history")
            .reserve_kill(&kill, &mut |_| true)
    })
    .await
    .expect("joined");
    assert!(err.is_err(), "{err:?}");
}

/// Three `wasmonkey daemon` processes on one database and one schedule (a
/// slot a second; `web` killed at most every 3 s), each SIGKILLed and
/// restarted at random moments for over 100 slots: no slot ran twice, no
/// two kills of `web` closer than the gap, and every termination a
/// journal records is in the ledger.
#[test]
fn three_daemons_killed_and_restarted_at_random_run_each_slot_once_and_never_kill_within_the_gap() {
    use rand::{Rng as _, SeedableRng as _};
    const GAP_MS: i64 = 3_000;
    let server = Postgres::start();
    let body = format!(
        "[daemon]\nlisten = \"off\"\n\
         [scope]\ngroups = [\"web\"]\n\
         [blast_radius]\nmax_terminations = 1\nmin_healthy_per_group = 1\nmax_fraction_per_group = 1.0\nmin_time_between_kills = \"3s\"\n\
         [recovery]\ntimeout_secs = 60\npoll_secs = 1\n\
         [schedule]\ntime_zone = \"UTC\"\nhours = \"00:00-24:00\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n{}",
        // A slot every second: ten experiments, each every 10 s (the
        // shortest a cron may fire), a second apart.
        (0..10)
            .map(|second| format!(
                "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
                 params = {{ probability = 1.0, poll-secs = 1 }}\nwhen = {{ cron = \"{second}-59/10 * * * * *\" }}\n"
            ))
            .collect::<String>()
    );
    let setup = support::setup(support::FLEET, &support::plugin_dir(), &body);
    with_state(&setup, &server.url());
    // Three hosts: each daemon keeps its journals in a directory of its
    // own, as on machines of their own, so a slot run twice would leave two.
    let base = std::fs::read_to_string(&setup.config).expect("config");
    let configs: Vec<PathBuf> = (0..3)
        .map(|host| {
            let path = setup.dir.path().join(format!("host-{host}.toml"));
            let own = base.replace(
                "journal_dir = \"journal\"",
                &format!("journal_dir = \"journal-{host}\""),
            );
            assert_ne!(own, base, "the set-up names its journal directory");
            std::fs::write(&path, own).expect("config");
            path
        })
        .collect();
    let spawn = |host: usize, seed: u64| {
        Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .args([
                "daemon",
                "--execute",
                "--seed",
                &seed.to_string(),
                "--config",
            ])
            .arg(&configs[host])
            .env("WASMONKEY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a daemon starts")
    };
    let mut daemons: Vec<Child> = (0..3).map(|host| spawn(host, host as u64)).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(27);
    let started = Instant::now();
    let mut restarts = 0_u64;
    while started.elapsed() < Duration::from_secs(110) {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..6_000)));
        let victim = rng.random_range(0..daemons.len());
        daemons[victim].kill().expect("SIGKILL");
        daemons[victim].wait().expect("reaped");
        restarts += 1;
        daemons[victim] = spawn(victim, 100 + restarts);
    }
    for daemon in &daemons {
        support::sigterm(daemon);
    }
    for daemon in &mut daemons {
        daemon.wait().expect("a daemon ends");
    }

    let mut db = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    let slots: Vec<(String, Option<String>)> = db
        .query(
            "SELECT slot, journal FROM wasmonkey.slots WHERE journal IS NOT NULL",
            &[],
        )
        .expect("slots")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(slots.len() >= 100, "only {} slots ran", slots.len());
    // Each journal is one slot's, holds at most one run, and no slot has
    // journals on two hosts.
    let mut executed: Vec<(String, String)> = Vec::new();
    let mut files = 0;
    let mut runs_of: std::collections::BTreeMap<std::ffi::OsString, usize> = Default::default();
    let entries = (0..3).flat_map(|host| {
        std::fs::read_dir(setup.dir.path().join(format!("journal-{host}")))
            .expect("journals")
            .flatten()
    });
    for entry in entries {
        files += 1;
        *runs_of.entry(entry.file_name()).or_default() += 1;
        let path = entry.path().display().to_string();
        assert_eq!(
            slots
                .iter()
                .filter(|(_, j)| j.as_deref() == Some(&path))
                .count(),
            1,
            "{path} is not one slot's journal"
        );
        let text = std::fs::read_to_string(entry.path()).expect("journal");
        assert!(
            text.matches("\"event\":\"run-started\"").count() <= 1,
            "{path}"
        );
        let run_id = text
            .lines()
            .find_map(|line| line.split("\"run_id\":\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        for line in text
            .lines()
            .filter(|l| l.contains("\"event\":\"terminate-done\""))
        {
            if line.contains("\"dry_run\":false") {
                let instance = line
                    .split("\"instance_id\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .expect("an instance");
                executed.push((run_id.clone().expect("a run id"), instance.to_owned()));
            }
        }
    }
    let twice: Vec<_> = runs_of.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "slots run on two hosts: {twice:?}");
    // A daemon killed between taking a slot and creating its journal
    // leaves a slot without one.
    assert!(files <= slots.len() && files >= 100, "{files} journals");
    assert!(executed.len() >= 10, "too few kills to tell: {executed:?}");
    let ledger: Vec<(String, String, i64)> = db
        .query(
            "SELECT run_id, instance_id, at_ms FROM wasmonkey.ledger WHERE group_name = 'web' ORDER BY at_ms",
            &[],
        )
        .expect("ledger")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    for (run, instance) in &executed {
        assert!(
            ledger.iter().any(|(r, i, _)| r == run && i == instance),
            "{run} {instance} terminated, not in the ledger"
        );
    }
    for pair in ledger.windows(2) {
        assert!(
            pair[1].2 - pair[0].2 >= GAP_MS,
            "web killed {} ms apart: {pair:?}",
            pair[1].2 - pair[0].2
        );
    }
    eprintln!(
        "{} slots, {restarts} daemons killed and restarted, {} kills",
        slots.len(),
        executed.len()
    );
}

/// `wasmonkey` with `args`, in a machine of its own: its host and operator
/// switches under `home`.
fn wasmonkey_at(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(args)
        .env("XDG_STATE_HOME", home.join("xdg"))
        .env("WASMONKEY_HOST_STATE_DIR", home.join("host"))
        .env("WASMONKEY_LOG", "warn")
        .output()
        .expect("wasmonkey runs")
}

/// One pause on the shared state stops the runs of every host on it: set
/// through one host's config, it stops another's run (exit 6) and shows in
/// its status; resumed through the other, both are clear again. A shared
/// switch that cannot be read stops the run too.
#[test]
fn a_pause_on_the_shared_state_stops_every_host_on_it() {
    let server = Postgres::start();
    let body = format!(
        "{}[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = \"i-0\" }}\n",
        support::RULES
    );
    // Two hosts: two set-ups, each with a state directory of its own.
    let hosts: Vec<support::Setup> = (0..2)
        .map(|_| {
            let setup = support::setup(support::FLEET, &support::test_plugin_dir(), &body);
            with_state(&setup, &server.url());
            setup
        })
        .collect();
    let config = |host: usize| hosts[host].config.display().to_string();
    let home = |host: usize| hosts[host].dir.path().to_owned();
    let paused = wasmonkey_at(
        &home(0),
        &["pause", "--config", &config(0), "--reason", "incident 42"],
    );
    assert!(
        paused.status.success(),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );

    let status = wasmonkey_at(&home(1), &["status", "--config", &config(1)]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("kill switch: SET"), "{said}");
    assert!(said.contains("shared switch SET"), "{said}");
    assert!(said.contains("incident 42"), "{said}");
    let run = wasmonkey_at(&home(1), &["run", "--execute", "--config", &config(1)]);
    assert_eq!(
        run.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("shared switch"));

    let resumed = wasmonkey_at(&home(1), &["resume", "--config", &config(1)]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    for host in 0..2 {
        let status = wasmonkey_at(&home(host), &["status", "--config", &config(host)]);
        let said = String::from_utf8_lossy(&status.stdout);
        assert!(said.contains("kill switch: clear"), "host {host}: {said}");
        assert!(said.contains("shared switch clear"), "host {host}: {said}");
    }

    // The database gone: nothing starts.
    drop(server);
    let run = wasmonkey_at(&home(0), &["run", "--execute", "--config", &config(0)]);
    assert_ne!(run.status.code(), Some(0));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("postgres://wasmonkey@127.0.0.1:"), "{said}");
}

/// [`support::RULES`] with `web` killed at most once an hour, and
/// classic-monkey killing one instance of each group `groups` names.
fn spaced_body(experiments: &[&str]) -> String {
    let rules = support::RULES.replace(
        "max_fraction_per_group = 0.5",
        "max_fraction_per_group = 0.5\nmin_time_between_kills = \"1h\"",
    );
    let mut body = rules;
    for groups in experiments {
        body.push_str(&format!(
            "\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = {{ probability = 1.0, groups = \"{groups}\", poll-secs = 1 }}\n"
        ));
    }
    body
}

fn terminated(report: &serde_json::Value) -> Vec<String> {
    report["victims"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["status"] == "terminated")
        .map(|v| v["group"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Two `wasmonkey run --execute` processes (two hosts) started together on
/// one database race for `web`'s one allowed kill of the hour: exactly one
/// kills; the other is denied by the ledger's gap.
#[test]
fn two_runs_racing_for_a_groups_last_allowed_kill_kill_once() {
    // On a new database: both processes also migrate it together.
    let server = Postgres::start();
    let body = spaced_body(&["web"]);
    let hosts: Vec<support::Setup> = (0..2)
        .map(|_| {
            let setup = support::setup(support::FLEET, &support::plugin_dir(), &body);
            with_state(&setup, &server.url());
            setup
        })
        .collect();
    for round in 0..3 {
        let children: Vec<Child> = hosts
            .iter()
            .map(|host| {
                Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
                    .args(["run", "--execute", "--json", "--config"])
                    .arg(&host.config)
                    .env("XDG_STATE_HOME", host.dir.path().join("xdg"))
                    .env("WASMONKEY_HOST_STATE_DIR", host.dir.path().join("host"))
                    .env("WASMONKEY_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("wasmonkey starts")
            })
            .collect();
        let reports: Vec<serde_json::Value> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wasmonkey ends");
                serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stderr)))
            })
            .collect();
        let kills: Vec<String> = reports.iter().flat_map(terminated).collect();
        let expected: &[&str] = if round == 0 { &["web"] } else { &[] };
        assert_eq!(kills, expected, "round {round}: {reports:#?}");
    }
}

/// The database stopped mid-run (while the host waits for the first
/// experiment's recovery, its health target stops it): the second
/// experiment's terminate is denied by the ledger, which names the
/// database; nothing is terminated after the last committed ledger row,
/// and the run does not end `succeeded`.
#[test]
fn a_database_lost_mid_run_lets_no_terminate_through() {
    use std::io::{Read as _, Write as _};
    let server = Arc::new(Mutex::new(Some(Postgres::start())));
    let url = server.lock().expect("server").as_ref().expect("up").url();
    let gate = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = gate.local_addr().expect("address");
    let stopper = Arc::clone(&server);
    std::thread::spawn(move || {
        for stream in gate.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            // The first look at the target stops the database.
            drop(stopper.lock().expect("server").take());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let body = spaced_body(&["web", "api"])
        .replace(
            "[recovery]\ntimeout_secs = 600",
            "[recovery]\ntargets = [\"gate\"]\ntimeout_secs = 600",
        )
        .replace(
            "[channels.ops]",
            &format!("[targets.gate]\nurl = \"http://{address}/health\"\n\n[channels.ops]"),
        );
    let setup = support::setup(support::FLEET, &support::plugin_dir(), &body);
    with_state(&setup, &url);
    let run = wasmonkey_at(
        setup.dir.path(),
        &[
            "run",
            "--execute",
            "--json",
            "--config",
            &setup.config.display().to_string(),
        ],
    );
    let said = String::from_utf8_lossy(&run.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&run.stdout).unwrap_or_else(|err| panic!("{err}: {said}"));
    assert!(
        server.lock().expect("server").is_none(),
        "the gate was never checked"
    );
    assert_eq!(terminated(&report), ["web"], "{report:#}");
    let journal =
        std::fs::read_to_string(report["journal"].as_str().expect("journal")).expect("the journal");
    assert_eq!(
        journal.matches("\"terminate-intent\"").count(),
        1,
        "a terminate after the database was lost: {journal}"
    );
    let denials = report["experiments"][1]["denials"].to_string();
    assert!(denials.contains("ledger"), "{denials}");
    assert!(
        denials.contains("postgres://wasmonkey@127.0.0.1:"),
        "{denials}"
    );
    assert_ne!(report["outcome"], "succeeded", "{report:#}");
    assert_ne!(run.status.code(), Some(0), "{said}");
}
