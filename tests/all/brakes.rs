//! The brakes in the operator's world: every kill switch in force for a run
//! (the host's, the operator's, the config's state directory's) honoured
//! wherever the config points, switches that cannot be trusted counted as
//! set and cleared by `resume`, a brake that does not wait for the plugin
//! to call the host, and a plugin that hears the brake.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmonkey::kill_switch::{FileSwitch, SwitchScope, Switches};
use wasmonkey::report::RunOutcome;

use crate::support::{self, FLEET, RULES};

/// A machine of its own: the operator's and the host's state directories
/// in a temporary directory, so that no other test (and no operator of
/// this machine) sees its switches.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `XDG_STATE_HOME`: the operator's switch is in `wasmonkey/` below it.
    fn xdg(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// The operator's state directory.
    fn operator(&self) -> PathBuf {
        self.xdg().join("wasmonkey")
    }

    /// `WASMONKEY_HOST_STATE_DIR`.
    fn host(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    /// `wasmonkey ARGS` in this world.
    fn wasmonkey(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .args(args)
            .env("XDG_STATE_HOME", self.xdg())
            .env("WASMONKEY_HOST_STATE_DIR", self.host())
            .env("WASMONKEY_LOG", "warn")
            .output()
            .expect("wasmonkey runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// classic-monkey over [`FLEET`], with `state_dir = "state"` (a directory of
/// its own, not the operator's).
fn monkey() -> support::Setup {
    let body = format!(
        "{RULES}\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = {{ probability = 1.0, poll-secs = 1 }}\n"
    );
    support::setup(FLEET, &support::plugin_dir(), &body)
}

fn config_arg(setup: &support::Setup) -> String {
    setup.config.display().to_string()
}

/// `run --execute --json`: its exit code and the victims it reports.
fn run_execute(world: &World, setup: &support::Setup) -> (i32, usize, String) {
    let config = config_arg(setup);
    let out = world.wasmonkey(&[
        "run",
        "--execute",
        "--json",
        "--seed",
        "7",
        "--config",
        &config,
    ]);
    let victims = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|report| report["victims"].as_array().map(Vec::len))
        .unwrap_or(0);
    (out.status.code().unwrap_or(-1), victims, text(&out))
}

#[test]
fn pause_without_config_stops_a_run_whose_config_sets_another_state_dir() {
    let world = World::new();
    let setup = monkey();
    let paused = world.wasmonkey(&["pause", "--reason", "change freeze"]);
    let said = text(&paused);
    assert!(paused.status.success(), "{said}");
    assert!(said.contains("set the operator switch"), "{said}");
    assert!(
        said.contains(&world.operator().display().to_string()),
        "{said}"
    );

    let (code, victims, out) = run_execute(&world, &setup);
    assert_eq!((code, victims), (6, 0), "{out}");
    assert!(out.contains("change freeze"), "{out}");
    assert!(out.contains("operator switch"), "{out}");

    let resumed = world.wasmonkey(&["resume"]);
    assert!(
        text(&resumed).contains("cleared the operator switch"),
        "{}",
        text(&resumed)
    );
    let (code, victims, out) = run_execute(&world, &setup);
    assert_eq!(code, 0, "{out}");
    assert!(victims > 0, "{out}");
}

#[test]
fn the_host_switch_stops_every_run_and_status_names_each_switch() {
    let world = World::new();
    let setup = monkey();
    let paused = world.wasmonkey(&["pause", "--host", "--reason", "incident 42"]);
    assert!(paused.status.success(), "{}", text(&paused));
    let (code, victims, out) = run_execute(&world, &setup);
    assert_eq!((code, victims), (6, 0), "{out}");
    assert!(
        out.contains("incident 42") && out.contains("host switch"),
        "{out}"
    );

    let config = config_arg(&setup);
    let status = text(&world.wasmonkey(&["status", "--config", &config]));
    assert!(status.contains("kill switch: SET"), "{status}");
    assert!(status.contains("host switch SET"), "{status}");
    assert!(status.contains("operator switch clear"), "{status}");
    assert!(status.contains("state-dir switch clear"), "{status}");

    assert!(world.wasmonkey(&["resume", "--host"]).status.success());
    let status = text(&world.wasmonkey(&["status", "--config", &config]));
    assert!(status.contains("kill switch: clear"), "{status}");
}

/// Ways a switch can stand that the host did not write, each made at
/// `path` (the switch file) in `dir` (its state directory).
fn untrusted(case: &str, dir: &Path, path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    match case {
        "a dangling symbolic link" => {
            std::os::unix::fs::symlink(dir.join("nowhere"), path).expect("symlink")
        }
        "a FIFO" => rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo"),
        "a huge file" => std::fs::File::create(path)
            .expect("create")
            .set_len(1 << 40)
            .expect("a sparse terabyte"),
        "a directory others can write" => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod")
        }
        other => panic!("no case {other}"),
    }
}

#[test]
fn a_switch_that_cannot_be_trusted_pauses_every_command_at_once_and_resume_clears_it() {
    let world = World::new();
    let setup = monkey();
    let config = config_arg(&setup);
    let state = setup.dir.path().join("state");
    for case in [
        "a dangling symbolic link",
        "a FIFO",
        "a huge file",
        "a directory others can write",
    ] {
        std::fs::create_dir_all(&state).expect("state dir");
        untrusted(case, &state, &state.join("paused.json"));

        let started = Instant::now();
        let status = world.wasmonkey(&["status", "--config", &config]);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{case}: status took {:?}",
            started.elapsed()
        );
        let said = text(&status);
        assert!(said.contains("kill switch: SET"), "{case}: {said}");
        assert!(said.contains("cannot be trusted"), "{case}: {said}");

        let plan = text(&world.wasmonkey(&["plan", "--config", &config]));
        assert!(plan.contains("cannot be trusted"), "{case}: {plan}");

        let (code, victims, out) = run_execute(&world, &setup);
        assert_eq!((code, victims), (6, 0), "{case}: {out}");

        let resumed = world.wasmonkey(&["resume", "--config", &config]);
        assert!(resumed.status.success(), "{case}: {}", text(&resumed));
        let status = text(&world.wasmonkey(&["status", "--config", &config]));
        assert!(status.contains("kill switch: clear"), "{case}: {status}");
    }
}

#[test]
fn a_state_directory_owned_by_another_user_counts_as_set() {
    let world = World::new();
    let setup = monkey();
    let config = config_arg(&setup);
    let state = setup.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    // nobody's; this test runs as root in CI, where chown works.
    if rustix::fs::chown(&state, Some(rustix::fs::Uid::from_raw(65534)), None).is_err() {
        eprintln!("skipped: this user cannot give a directory away");
        return;
    }
    let status = text(&world.wasmonkey(&["status", "--config", &config]));
    assert!(status.contains("kill switch: SET"), "{status}");
    assert!(status.contains("owned by uid 65534"), "{status}");
    let (code, _, out) = run_execute(&world, &setup);
    assert_eq!(code, 6, "{out}");
    // resume cannot make another user's directory trusted, and says how.
    let resumed = world.wasmonkey(&["resume", "--config", &config]);
    assert!(!resumed.status.success());
    assert!(text(&resumed).contains("chown"), "{}", text(&resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_answering_and_say_paused_when_a_switch_is_a_fifo() {
    use wasmonkey::metrics::http;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state");
    untrusted("a FIFO", &state, &state.join("paused.json"));
    let switches = Switches::none().with(Arc::new(FileSwitch::with_scope(
        &state,
        SwitchScope::Operator,
    )));
    let listener = http::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("addr");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let served = http::Served {
        metrics: Arc::new(wasmonkey::metrics::Metrics::new()),
        switches,
        history: None,
    };
    tokio::spawn(http::serve(listener, served, stop));
    for _ in 0..3 {
        let scrape = tokio::time::timeout(
            Duration::from_secs(2),
            reqwest::get(format!("http://{address}/metrics")),
        )
        .await
        .expect("the scrape answers at once")
        .expect("a response");
        let body = scrape.text().await.expect("a body");
        assert!(body.contains("wasmonkey_paused 1"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_computing_without_host_calls_is_interrupted_within_the_grace_after_a_pause() {
    let body = format!(
        "{RULES}\n[ceiling]\nfuel = 1000000000000000\n\
         [[experiment]]\nplugin = \"hostile\"\nparams = {{ attack = \"loop\" }}\n\
         limits = {{ fuel = 1000000000000000, timeout_secs = 60 }}\n"
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let state = setup.dir.path().join("state");
    let paused_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let pauser = {
        let paused_at = Arc::clone(&paused_at);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            FileSwitch::new(&state)
                .pause("stop the spinning")
                .expect("pause");
            *paused_at.lock().expect("lock") = Some(Instant::now());
        })
    };
    let (output, _) = support::run(&setup, 3, true).await;
    let ended = Instant::now();
    pauser.join().expect("pauser");
    let paused_at = paused_at.lock().expect("lock").expect("paused");
    // The switch is read every second and the grace is 5 s: the plugin,
    // which never calls the host, is ended well before its 60 s timeout.
    let after_pause = ended.duration_since(paused_at);
    assert!(
        after_pause < Duration::from_secs(20),
        "the brake waited {after_pause:?} for a plugin that never calls the host"
    );
    let experiment = support::only_experiment(&output);
    let error = experiment.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("stopped by kill-switch") && error.contains("did not return"),
        "{experiment:#?}"
    );
    assert_eq!(output.report.outcome, RunOutcome::Paused);
}

#[tokio::test]
async fn a_stop_while_the_plugin_waits_keeps_the_plugins_verdict_and_the_run_is_stopped() {
    // classic-monkey terminates one instance in each of web and api and
    // waits for them; their replacements take 40 s and the budget is 10 s.
    let body = format!(
        "{RULES}\n[stop_conditions.slo]\nkind = \"recovery\"\nwithin_secs = 10\n\
         [[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\n\
         params = {{ groups = \"web\", probability = 1.0, poll-secs = 2 }}\n"
    );
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, _) = support::run(&setup, 11, true).await;
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.error, None, "{experiment:#?}");
    assert!(experiment.summary.is_some(), "{experiment:#?}");
    let victims = support::victims_of(&output, 0);
    assert_eq!(victims.len(), 1, "{victims:#?}");
    // The plugin's own account is there, beside the host's.
    assert!(victims[0].plugin_verdict.is_some(), "{victims:#?}");
    assert_eq!(victims[0].host_verdict, "recovered", "{victims:#?}");
    assert_eq!(output.report.outcome, RunOutcome::Stopped);
    // It heard the brake: its publish was refused with the stop's name.
    assert!(
        experiment
            .logs
            .iter()
            .any(|l| l.message.contains("the run is stopped by slo")),
        "{:#?}",
        experiment.logs
    );
}

/// GET `path` from `address` over a plain connection: the whole answer.
fn get(address: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).expect("connects");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: wasmonkey\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("asks");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answers");
    answer
}

#[test]
fn a_running_daemon_shows_the_operators_pause_on_its_metrics_at_once() {
    let world = World::new();
    let body = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\n{}",
        crate::unattended::config("", crate::unattended::MONKEY_TWICE_A_DAY)
    );
    // The daemon's config has a state directory of its own.
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (xdg, host) = (world.xdg(), world.host());
    let (mut child, address) = crate::unattended::start_daemon(
        &setup,
        &[
            ("XDG_STATE_HOME", &xdg),
            ("WASMONKEY_HOST_STATE_DIR", &host),
        ],
    );
    let before = get(&address, "/metrics");
    let paused = world.wasmonkey(&["pause", "--reason", "incident"]);
    let during = get(&address, "/metrics");
    let host = world.wasmonkey(&["pause", "--host"]);
    let resumed = world.wasmonkey(&["resume"]);
    let host_only = get(&address, "/metrics");
    let all_clear = world.wasmonkey(&["resume", "--host"]);
    let after = get(&address, "/metrics");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("the daemon ends").success());
    for done in [&paused, &host, &resumed, &all_clear] {
        assert!(done.status.success(), "{}", text(done));
    }
    // One series, whatever its account and region labels.
    let paused = |text: &str| {
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("wasmonkey_paused{") || l.starts_with("wasmonkey_paused "))
                .count(),
            1,
            "{text}"
        );
        crate::reports::sum_of(text, "wasmonkey_paused")
    };
    assert_eq!(paused(&before), 0.0, "{before}");
    assert_eq!(paused(&during), 1.0, "{during}");
    assert_eq!(paused(&host_only), 1.0, "{host_only}");
    assert_eq!(paused(&after), 0.0, "{after}");
}
