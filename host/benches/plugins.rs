//! wasmonkey's benchmark: what a plugin costs.
//!
//! 1. Plugin start: first compile vs loading the compiled cache, and a fresh
//!    instance from the pre-instantiated component.
//! 2. A whole classic-monkey experiment on a 1,000-instance simulated fleet.
//! 3. Victim selection over 100,000 instances inside Wasm vs the same
//!    algorithm native, against the same host session (the picks must agree).
//!
//! Figures are medians of repeated runs, printed side by side so that ratios
//! come from one run on one (noisy) machine. Needs `cargo xtask plugins`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on the first failure"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmonkey::cloud::sim::{FleetSpec, SimCloud};
use wasmonkey::cloud::{Cloud, InstanceState, Lifecycle};
use wasmonkey::config::Config;
use wasmonkey::limits::{LimitOverrides, LimitRules, Limits};
use wasmonkey::plugins::Catalog;
use wasmonkey::policy::{BlastRadius, GroupPatterns, Policy, Scope};
use wasmonkey::runner::{self, RunOptions};
use wasmonkey::sandbox::Sandbox;
use wasmonkey::session::{InstanceFilter, PluginLabel, Session, SessionSetup};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Median and minimum of `runs` timings of `f`, after one warm-up. What `f`
/// returns is dropped after the clock stops: tearing down is not its cost.
async fn measure<F, Fut, T>(runs: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    drop(f().await);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let output = f().await;
        times.push(started.elapsed());
        drop(output);
    }
    times.sort();
    (times[runs / 2], times[0])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn row(what: &str, (median, min): (Duration, Duration)) {
    println!("| {what:<58} | {:>12} | {:>12} |", ms(median), ms(min));
}

fn session(cloud: Arc<dyn Cloud>, seed: u64) -> Session {
    let label = PluginLabel {
        name: "select".into(),
        version: "0.1.0".into(),
    };
    let policy = Policy {
        scope: Scope {
            groups: GroupPatterns::new(&["*"]).expect("glob"),
            tags: Vec::new(),
            opt_in: None,
            opt_out: None,
            standalone: false,
        },
        blast_radius: BlastRadius::default(),
        dry_run: true,
        grants: Default::default(),
    };
    Session::new(SessionSetup::new(label, 0, cloud, policy, Limits::default()).seed(seed))
}

/// The select plugin's algorithm, native, against the same session.
async fn select_native(session: &mut Session) -> String {
    let filter = InstanceFilter {
        states: vec![InstanceState::Running],
        ..InstanceFilter::default()
    };
    let instances = session.list_instances(filter).await.expect("list");
    let mut pools: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in &instances {
        if i.lifecycle == Some(Lifecycle::InService) && i.healthy {
            if let Some(group) = &i.group {
                pools.entry(group).or_default().push(&i.id);
            }
        }
    }
    let mut picks = Vec::new();
    for pool in pools.values() {
        // Rejection sampling, exactly as the SDK's `random::index`.
        let n = pool.len() as u64;
        let limit = u64::MAX - (u64::MAX % n);
        let index = loop {
            let draw = session.random_u64();
            if draw < limit {
                break (draw % n) as usize;
            }
        };
        picks.push(pool[index]);
    }
    picks.join(",")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plugins = root().join("target/plugins");
    let test_plugins = root().join("target/test-plugins");
    anyhow::ensure!(
        plugins.join("classic-monkey.wasm").is_file()
            && test_plugins.join("select.wasm").is_file()
            && test_plugins.join("select-paged.wasm").is_file(),
        "build the plugins first: cargo xtask plugins"
    );
    let scratch = tempfile::tempdir()?;
    let limits = Limits::default();
    let rules = LimitRules::default();
    println!(
        "| {:<58} | {:>12} | {:>12} |",
        "wasmonkey benchmark", "median", "min"
    );
    println!("|{}|{}|{}|", "-".repeat(60), "-".repeat(14), "-".repeat(14));

    // 1. Start-up.
    let bytes = std::fs::read(plugins.join("classic-monkey.wasm"))?;
    let compile = first_compile(&bytes, scratch.path(), 10).await;
    let warm_cache = scratch.path().join("warm");
    let sandbox = Sandbox::new(&warm_cache)?;
    let classic = plugins.join("classic-monkey.wasm");
    let cached = cached_load(&sandbox, &classic, 50).await?;
    let catalog = Catalog::scan(&plugins)?;
    let plugin = catalog
        .load(
            &sandbox,
            "classic-monkey",
            &rules,
            &LimitOverrides::default(),
        )
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let instantiate = measure(200, || async {
        sandbox
            .metadata(&plugin.prepared, &limits)
            .await
            .expect("metadata");
    })
    .await;
    row("classic-monkey (98 KB): first compile", compile);
    row("classic-monkey: load from the compiled cache", cached);
    row(
        "classic-monkey: fresh store + instantiate + metadata()",
        instantiate,
    );
    println!(
        "| {:<58} | {:>11.0}x | {:>12} |",
        "  cache speed-up over first compile",
        compile.0.as_secs_f64() / cached.0.as_secs_f64(),
        ""
    );

    // 2. A whole experiment on 1,000 instances (journal fsyncs included).
    let (config, config_path) = experiment_config(
        &scratch.path().join("fleet"),
        &plugins,
        &warm_cache,
        "classic-monkey",
    )?;
    for execute in [false, true] {
        let mut seed = 0;
        let timing = measure(20, || {
            seed += 1;
            let (config, config_path) = (&config, &config_path);
            async move {
                let cloud =
                    Arc::new(SimCloud::new(FleetSpec::uniform(10, 100), seed).expect("fleet"));
                let options = RunOptions {
                    config: config_path.clone(),
                    execute,
                    ..RunOptions::default()
                };
                let out = runner::run_on(config, cloud, seed, &options, std::future::pending())
                    .await
                    .expect("run");
                assert_eq!(out.report.victims.len(), 10);
                assert!(out
                    .report
                    .victims
                    .iter()
                    .all(|v| v.host_verdict == if execute { "recovered" } else { "unchecked" }));
            }
        })
        .await;
        let what = if execute {
            "classic-monkey, 1,000 instances, 10 victims, --execute"
        } else {
            "classic-monkey, 1,000 instances, 10 victims, dry run"
        };
        row(what, timing);
    }

    // 3. Selection over 100,000 instances: Wasm vs native.
    let select_catalog = Catalog::scan(&test_plugins)?;
    let select = select_catalog
        .load(&sandbox, "select", &rules, &LimitOverrides::default())
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let big: Arc<dyn Cloud> = Arc::new(SimCloud::new(FleetSpec::uniform(100, 1000), 7)?);
    let wasm_picks = {
        let (_, result) = sandbox
            .run(&select.prepared, session(big.clone(), 99), Vec::new())
            .await;
        result?.map_err(|e| anyhow::anyhow!("{e:?}"))?.summary
    };
    let native_picks = select_native(&mut session(big.clone(), 99)).await;
    assert_eq!(wasm_picks, native_picks, "Wasm and native disagree");
    assert_eq!(wasm_picks.split(',').count(), 100);
    let wasm = measure(10, || async {
        let (_, result) = sandbox
            .run(&select.prepared, session(big.clone(), 99), Vec::new())
            .await;
        assert!(result.is_ok());
    })
    .await;
    let native = measure(10, || async {
        select_native(&mut session(big.clone(), 99)).await;
    })
    .await;
    // The same selection over contract 0.2's paged listing, 1,000 a page.
    let paged_plugin = select_catalog
        .load(&sandbox, "select-paged", &rules, &LimitOverrides::default())
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let paged_picks = {
        let (_, result) = sandbox
            .run(&paged_plugin.prepared, session(big.clone(), 99), Vec::new())
            .await;
        result?.map_err(|e| anyhow::anyhow!("{e:?}"))?.summary
    };
    assert_eq!(paged_picks, native_picks, "paged Wasm and native disagree");
    let paged = measure(10, || async {
        let (_, result) = sandbox
            .run(&paged_plugin.prepared, session(big.clone(), 99), Vec::new())
            .await;
        assert!(result.is_ok());
    })
    .await;
    row(
        "select 100 victims from 100,000 instances: Wasm plugin",
        wasm,
    );
    row("  the same, contract 0.2's pages of 1,000", paged);
    row(
        "select 100 victims from 100,000 instances: native Rust",
        native,
    );
    println!(
        "| {:<58} | {:>11.2}x | {:>12} |",
        "  Wasm / native",
        wasm.0.as_secs_f64() / native.0.as_secs_f64(),
        ""
    );
    println!(
        "| {:<58} | {:>11.2}x | {:>12} |",
        "  Wasm paged (0.2) / native",
        paged.0.as_secs_f64() / native.0.as_secs_f64(),
        ""
    );
    println!();
    languages(&plugins, scratch.path()).await?;
    Ok(())
}

/// The reference strategy in each language: component size, first compile,
/// start-up from the compiled cache step by step and as a whole, what the
/// cache's mapping and remembered hashes save, and a whole experiment.
async fn languages(rust_plugins: &Path, scratch: &Path) -> anyhow::Result<()> {
    let examples = root().join("target/example-plugins");
    let plugins = [
        ("Rust", "classic-monkey", rust_plugins.to_path_buf()),
        ("Python", "classic-monkey-py", examples.clone()),
        ("JavaScript", "classic-monkey-js", examples.clone()),
        ("C", "classic-monkey-c", examples.clone()),
        ("Zig", "classic-monkey-zig", examples.clone()),
    ];
    if let Some((_, name, dir)) = plugins
        .iter()
        .find(|(_, name, dir)| !dir.join(format!("{name}.wasm")).is_file())
    {
        println!(
            "(per language: skipped, {name}.wasm is missing in {}: build every language with \
             `cargo xtask plugins --all`)",
            dir.display()
        );
        return Ok(());
    }
    let limits = Limits::default();
    let rules = LimitRules::default();
    println!(
        "| language | component | compiled code | first compile | load from the cache | link | fresh store + instance | first call: fresh instance + metadata() | start-up: manifest to a live instance | (saved: sha256 of the component) | (saved: reading the cache entry) | experiment, 1,000 instances, dry run |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (lang, name, dir) in &plugins {
        let file = dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&file)?;
        let big = bytes.len() > 1024 * 1024;
        // First compile: into a fresh cache each time.
        let compile = first_compile(&bytes, scratch, if big { 1 } else { 5 }).await;
        let cache = scratch.join(format!("warm-{name}"));
        let sandbox = Sandbox::new(&cache)?;
        let cached = cached_load(&sandbox, &file, 100).await?;
        let cwasm = std::fs::read_dir(&cache)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .ok_or_else(|| anyhow::anyhow!("no cache entry in {}", cache.display()))?;
        let compiled_size = std::fs::metadata(&cwasm)?.len();
        let compiled = sandbox.compile_file(&file, limits.stack_bytes())?;
        let link = measure(100, || async {
            sandbox.prepare(compiled.clone()).expect("link")
        })
        .await;
        let catalog = Catalog::scan(dir)?;
        let plugin = catalog
            .load(&sandbox, name, &rules, &LimitOverrides::default())
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))?;
        let instantiate = measure(100, || async {
            sandbox
                .instantiate(&plugin.prepared, &limits)
                .await
                .expect("instantiate");
        })
        .await;
        // The plugin's first call, its language runtime's start included.
        let first_call = measure(100, || async {
            sandbox
                .metadata(&plugin.prepared, &limits)
                .await
                .expect("metadata");
        })
        .await;
        // Start-up as the host does it: manifest, load, link, the checks on
        // the remembered metadata() answer, then a fresh instance.
        let start = measure(100, || async {
            let plugin = catalog
                .load(&sandbox, name, &rules, &LimitOverrides::default())
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))
                .expect("load");
            sandbox
                .instantiate(&plugin.prepared, &limits)
                .await
                .expect("instantiate");
            plugin
        })
        .await;
        // What the host no longer does on each load.
        let hash = measure(20, || async {
            use sha2::Digest as _;
            std::hint::black_box(sha2::Sha256::digest(&bytes));
        })
        .await;
        let read = measure(20, || async { std::fs::read(&cwasm).expect("read") }).await;
        // A whole experiment (dry run) on 1,000 instances in 10 groups.
        let (config, config_path) =
            experiment_config(&scratch.join(format!("run-{name}")), dir, &cache, name)?;
        let mut seed = 0;
        let experiment = measure(if big { 5 } else { 10 }, || {
            seed += 1;
            let (config, config_path) = (&config, &config_path);
            async move {
                let cloud =
                    Arc::new(SimCloud::new(FleetSpec::uniform(10, 100), seed).expect("fleet"));
                let options = RunOptions {
                    config: config_path.clone(),
                    execute: false,
                    ..RunOptions::default()
                };
                let out = runner::run_on(config, cloud, seed, &options, std::future::pending())
                    .await
                    .expect("run");
                assert_eq!(out.report.victims.len(), 10, "{name}: {:?}", out.report);
            }
        })
        .await;
        println!(
            "| {lang} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size(bytes.len() as u64),
            size(compiled_size),
            ms(compile.0),
            ms(cached.0),
            ms(link.0),
            ms(instantiate.0),
            ms(first_call.0),
            ms(start.0),
            ms(hash.0),
            ms(read.0),
            ms(experiment.0),
        );
    }
    println!("(medians: start-up and its steps over 100 runs each, the rest over 5-20; first compile of Python and JavaScript: one run)");
    Ok(())
}

/// First compiles of `bytes`, each into a new, empty cache under `scratch`.
async fn first_compile(bytes: &[u8], scratch: &Path, runs: usize) -> (Duration, Duration) {
    let stack = Limits::default().stack_bytes();
    measure(runs, || {
        let cache = tempfile::tempdir_in(scratch).expect("cache dir");
        async move {
            let sandbox = Sandbox::new(cache.path()).expect("sandbox");
            let compiled = sandbox.compile(bytes, stack).expect("compile");
            assert!(!compiled.from_cache);
            (compiled, sandbox, cache)
        }
    })
    .await
}

/// Loads of `file` as the host does them once it is compiled: its hash
/// remembered, its cache entry mapped.
async fn cached_load(
    sandbox: &Sandbox,
    file: &Path,
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let stack = Limits::default().stack_bytes();
    sandbox.compile_file(file, stack)?;
    Ok(measure(runs, || async {
        let compiled = sandbox.compile_file(file, stack).expect("load");
        assert!(compiled.from_cache);
        compiled
    })
    .await)
}

/// A config in `dir` for one dry-run-able experiment of `plugin` (up to 10
/// victims); the fleet is the caller's.
fn experiment_config(
    dir: &Path,
    plugins: &Path,
    cache: &Path,
    plugin: &str,
) -> anyhow::Result<(Config, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("wasmonkey.toml");
    std::fs::write(
        &config_path,
        format!(
            "[backend]\nkind = \"sim\"\nfleet = \"unused.toml\"\n[plugins]\ndir = {:?}\ncache_dir = {:?}\n\
             [blast_radius]\nmax_terminations = 10\n\
             [[experiment]]\nplugin = \"{plugin}\"\ngrants = [\"terminate\"]\n",
            plugins.display().to_string(),
            cache.display().to_string()
        ),
    )?;
    Ok((Config::load(&config_path)?, config_path))
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KB", bytes as f64 / 1024.0)
    }
}
