//! Stop conditions and the steady state from a real Prometheus server
//! (Debian's `prometheus`, which `cargo xtask test` installs and passes in
//! `WASMONKEY_PROMETHEUS`), started here on loopback and scraping an
//! application the test serves: a gauge `app_errors` the test sets.
//!
//! The run is on the simulator, whose clock is virtual: a run takes no real
//! time, so the application's errors are raised from within the run. A
//! health target of the run's (`slow`) is the application's `/slow`, which
//! raises the gauge and answers only after Prometheus has scraped it; the
//! hostile plugin checks that target between two terminations.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmonkey::journal::{Event, Phase};

use crate::support::{self, FLEET};

/// The application: `/metrics` serves `app_errors`; `/slow` sets it to 1
/// and answers after `hold`.
struct App {
    port: u16,
}

impl App {
    fn start(hold: Duration) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let errors = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&errors);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let errors = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &errors, hold));
            }
        });
        App { port }
    }
}

fn serve(mut stream: TcpStream, errors: &AtomicU64, hold: Duration) {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let body = if request_line.starts_with("GET /slow") {
        errors.store(1, Ordering::SeqCst);
        std::thread::sleep(hold);
        "ok\n".to_owned()
    } else {
        format!(
            "# TYPE app_errors gauge\napp_errors {}\n",
            errors.load(Ordering::SeqCst)
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A Prometheus server on loopback scraping one target every second;
/// killed when dropped.
pub(crate) struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

impl Prometheus {
    /// Start one scraping `127.0.0.1:port`, and wait for its first scrape.
    pub(crate) async fn start(port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                port
            ),
        )
        .expect("write config");
        let own = free_port();
        let program =
            std::env::var("WASMONKEY_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned());
        let child = Command::new(&program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{own}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{program} starts (cargo xtask test installs Debian's prometheus): {err}")
            });
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{own}"),
            _dir: dir,
        };
        let started = Instant::now();
        while prometheus.value("up").await != Some(1.0) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Prometheus at {} never scraped 127.0.0.1:{port}",
                prometheus.url
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    /// Prometheus's answer to an instant query, whole (its API's JSON).
    pub(crate) async fn query(&self, expr: &str) -> serde_json::Value {
        self.try_query(expr)
            .await
            .unwrap_or_else(|| panic!("Prometheus at {} does not answer {expr}", self.url))
    }

    /// [`Prometheus::query`], or none while the server does not answer.
    async fn try_query(&self, expr: &str) -> Option<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", expr)])
            .send()
            .await
            .ok()?;
        let body = response.bytes().await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// The value of the first series `expr` gives, if it gives one.
    pub(crate) async fn value(&self, expr: &str) -> Option<f64> {
        self.try_query(expr).await?["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// `app_errors` as Prometheus has it now, if it has a sample.
    async fn errors(&self) -> Option<f64> {
        self.value("app_errors").await
    }

    /// Wait until Prometheus has scraped `app_errors` at `value`.
    async fn wait_for_errors(&self, value: u64) {
        let started = Instant::now();
        while self.errors().await != Some(value as f64) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Prometheus at {} never scraped app_errors = {value}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A config on [`FLEET`]: `[prometheus]` at `url`, a target `slow` at the
/// app's `/slow`, `rules` (stop conditions, steady state), and three
/// experiments of the hostile plugin: terminate `first`, check `slow`,
/// terminate `second`.
async fn setup(prometheus: &Prometheus, app: &App, rules: &str) -> (support::Setup, Vec<String>) {
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let sim =
        wasmonkey::cloud::sim::SimCloud::from_fleet_file(&probe.dir.path().join("fleet.toml"), 5)
            .expect("fleet");
    let web = support::ids_of(&sim, Some("web")).await;
    let body = format!(
        "{}\n[prometheus]\nurl = {:?}\n\n[targets.slow]\nurl = \"http://127.0.0.1:{}/slow\"\ntimeout_ms = 20000\n\n{rules}\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = {:?} }}\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"probe-targets\"]\nlimits = {{ host_call_timeout_secs = 30, timeout_secs = 60 }}\nparams = {{ attack = \"check\" }}\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = {:?} }}\n",
        support::RULES,
        prometheus.url,
        app.port,
        web[0],
        web[1],
    );
    (
        support::setup(FLEET, &support::test_plugin_dir(), &body),
        web,
    )
}

fn terminated(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TerminateIntent { instance_id, .. } => Some(instance_id.clone()),
            _ => None,
        })
        .collect()
}

fn steady(events: &[Event]) -> Vec<(String, Phase, Option<bool>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SteadyState {
                name, phase, held, ..
            } => Some((name.clone(), *phase, *held)),
            _ => None,
        })
        .collect()
}

/// The application's errors rise mid-run: the PromQL stop condition trips
/// and the termination after it never happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promql_stop_condition_trips_mid_run_and_stops_later_terminations() {
    let app = App::start(Duration::from_secs(4));
    let prometheus = Prometheus::start(app.port).await;
    prometheus.wait_for_errors(0).await;
    let (setup, web) = setup(
        &prometheus,
        &app,
        "[stop_conditions.errors]\nkind = \"prometheus\"\nquery = \"max(app_errors)\"\nabove = 0\n",
    )
    .await;
    let (output, _) = support::run(&setup, 5, true).await;
    let events = support::events(&output);
    assert_eq!(terminated(&events), vec![web[0].clone()], "{events:#?}");
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert_eq!(stop.condition, "errors", "{stop:?}");
    assert!(
        stop.saw.contains("max(app_errors)") && stop.saw.ends_with(": 1"),
        "{stop:?}"
    );
    assert_eq!(output.report.outcome.name(), "stopped");
    // The gauge did rise, and Prometheus saw it: the trip is its reading.
    assert_eq!(prometheus.errors().await, Some(1.0));
}

/// A steady state that does not hold before the run starts nothing; one
/// that held before and is broken after makes the run not-recovered; one
/// that holds throughout is shown held twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steady_state_is_read_before_and_after_and_gates_the_run() {
    let app = App::start(Duration::from_secs(4));
    let prometheus = Prometheus::start(app.port).await;
    prometheus.wait_for_errors(0).await;
    let rules =
        "[steady_state.errors]\nkind = \"prometheus\"\nquery = \"max(app_errors)\"\nabove = 0\n\
                 [steady_state.fleet]\nkind = \"target\"\ntarget = \"web-whole\"\n\
                 [targets.web-whole]\ngroup = \"web\"\nmin_healthy = 2\n";

    // Broken after: the check experiment raised the errors.
    let (after, web) = setup(&prometheus, &app, rules).await;
    let (output, _) = support::run(&after, 5, true).await;
    let events = support::events(&output);
    assert_eq!(terminated(&events), vec![web[0].clone(), web[1].clone()]);
    let errors = |phase| ("errors".to_owned(), phase, Some(phase == Phase::Before));
    let fleet = |phase| ("fleet".to_owned(), phase, Some(true));
    assert_eq!(
        steady(&events),
        vec![
            errors(Phase::Before),
            fleet(Phase::Before),
            errors(Phase::After),
            fleet(Phase::After)
        ]
    );
    assert_eq!(output.report.outcome.name(), "not-recovered");
    let text = output.report.render_text();
    assert!(
        text.contains("steady state errors: before held (0); after not held (1)"),
        "{text}"
    );
    // CI sees it too: the reading after is a failing case.
    let xml = wasmonkey::junit::render(&output.report).expect("JUnit");
    let junit = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit reads back");
    let case = |name: &str| {
        junit
            .test_suites
            .iter()
            .flat_map(|s| &s.test_cases)
            .find(|c| c.name.as_str() == name)
            .map(|c| matches!(c.status, quick_junit::TestCaseStatus::Success { .. }))
            .unwrap_or_else(|| panic!("no case {name:?} in {xml}"))
    };
    assert!(case("steady state errors holds before the run"));
    assert!(!case("steady state errors holds after the run"));
    assert!(case("steady state fleet holds after the run"));

    // Broken before: the gauge is still 1, so nothing acts.
    prometheus.wait_for_errors(1).await;
    let (before, _) = setup(&prometheus, &app, rules).await;
    let (output, _) = support::run(&before, 5, true).await;
    let events = support::events(&output);
    assert!(terminated(&events).is_empty(), "{events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ExperimentStarted { .. })),
        "no experiment starts: {events:#?}"
    );
    assert_eq!(
        steady(&events),
        vec![
            ("errors".to_owned(), Phase::Before, Some(false)),
            fleet(Phase::Before)
        ]
    );
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert_eq!(stop.condition, "steady-state");
    assert!(stop.saw.contains("errors does not hold"), "{stop:?}");
    assert_eq!(output.report.outcome.name(), "stopped");

    // No data is not a healthy reading: a query with no series stops the
    // run before it acts, as unknown.
    let unknown = rules.replace("max(app_errors)", "max(no_such_metric)");
    let (no_data, _) = setup(&prometheus, &app, &unknown).await;
    let (output, _) = support::run(&no_data, 5, true).await;
    let events = support::events(&output);
    assert!(terminated(&events).is_empty(), "{events:#?}");
    assert_eq!(
        steady(&events)[0],
        ("errors".to_owned(), Phase::Before, None)
    );
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(
        stop.saw.contains("errors cannot be read") && stop.saw.contains("no series"),
        "{stop:?}"
    );
}
