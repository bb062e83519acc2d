//! The command line: `run`, `plan`, `report`, `pause`, `resume`, `status`,
//! `daemon`, `simulate`, `history`, `plugins list`, `plugins inspect`,
//! `cache [prune]`, `config schema`, `new`.

/// `println!` that returns the write's error instead of panicking: a
/// reader that closed the pipe (`| head`) ends the command with
/// [`CLOSED_PIPE`], never a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` as [`outln!`] is `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod unattended;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::journal;
use crate::kill_switch::{FileSwitch, Switch, SwitchScope, Switches};
use crate::limits::LimitOverrides;
use crate::plugins::{Catalog, Plugin};
use crate::report::{Report, RunOutcome};
use crate::runner::{self, RunOptions};
use crate::sandbox::Sandbox;
use crate::text::{self, one_line};

/// wasmonkey: chaos experiments on AWS fleets, with strategies as sandboxed
/// WebAssembly components. Dry run unless --execute.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Files a report is also written to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Outputs {
    /// Also write the report as one self-contained HTML file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the run's metrics in the Prometheus text format, for
    /// node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Also write the report as JUnit XML, for CI: a case per victim,
    /// fault and check; failures exactly when the outcome is not
    /// `succeeded`.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

impl Outputs {
    /// Write the files asked for, and say where on stderr (stdout may be
    /// JSON).
    pub fn write(&self, report: &Report, api_calls: &crate::cloud::ApiCalls) -> anyhow::Result<()> {
        if let Some(path) = &self.html {
            write_html(path, &crate::report::html::render(report))?;
        }
        if let Some(path) = &self.junit {
            write_junit(path, &crate::junit::render(report)?)?;
        }
        if let Some(path) = &self.metrics {
            let metrics = crate::metrics::Metrics::at(&crate::cloud::Whereabouts {
                account: report.account.clone(),
                region: report.region.clone(),
            });
            let ended = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
            metrics.record_run(report, ended);
            metrics.record_api_calls(api_calls);
            metrics.set_paused(report.stopped.as_ref().is_some_and(|s| s.paused));
            crate::files::write_atomic(path, metrics.encode_text().as_bytes())?;
            eprintln!("metrics: {}", path.display());
        }
        Ok(())
    }
}

/// Write an HTML page and say where (on stderr: stdout may be JSON).
fn write_html(path: &std::path::Path, page: &str) -> anyhow::Result<()> {
    crate::files::write_atomic(path, page.as_bytes())?;
    eprintln!("HTML report: {}", path.display());
    Ok(())
}

/// Write a JUnit file and say where (on stderr: stdout may be JSON).
fn write_junit(path: &std::path::Path, xml: &str) -> anyhow::Result<()> {
    crate::files::write_atomic(path, xml.as_bytes())?;
    eprintln!("JUnit: {}", path.display());
    Ok(())
}

/// `wasmonkey recover`: every owed undo of the config's state, carried out
/// or named with the command that finishes it; exit 1 while one is owed.
async fn recover(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let cloud = runner::backend(&config, config.seed.unwrap_or(0)).await?;
    let state_dir = config.state_dir()?;
    let recovered = crate::faults::recover(&state_dir, cloud.as_ref()).await?;
    for (owed, how) in &recovered.done {
        outln!(
            "{} of run {}: {}",
            one_line(&owed.fault_id),
            one_line(&owed.run_id),
            one_line(how)
        )?;
    }
    for owed in &recovered.running {
        outln!(
            "{} of run {}: owed by process {}, still running: left to it",
            one_line(&owed.fault_id),
            one_line(&owed.run_id),
            owed.pid
        )?;
    }
    for (path, why) in &recovered.unreadable {
        outln!("{}: not an owed undo: {}", path.display(), one_line(why))?;
    }
    for owed in &recovered.elsewhere {
        outln!(
            "{} of run {}: owed on {}, not on this config's backend ({}): left for a recover with that backend",
            one_line(&owed.fault_id),
            one_line(&owed.run_id),
            one_line(&owed.backend),
            one_line(&cloud.identity())
        )?;
    }
    for (owed, err) in &recovered.failed {
        outln!(
            "{} of run {}: UNDO FAILED: {}; finish it by hand: {}",
            one_line(&owed.fault_id),
            one_line(&owed.run_id),
            one_line(err),
            owed.undo.manual()
        )?;
    }
    if recovered.done.is_empty()
        && recovered.failed.is_empty()
        && recovered.running.is_empty()
        && recovered.unreadable.is_empty()
        && recovered.elsewhere.is_empty()
    {
        outln!("nothing owed in {}", state_dir.display())?;
    }
    Ok(
        if recovered.failed.is_empty() && recovered.unreadable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the config's experiments and print a report.
    Run {
        /// Run config (TOML).
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
        /// Run only the experiments of this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Seed for every random choice (and the simulated fleet).
        #[arg(long)]
        seed: Option<u64>,
        /// Really terminate instances. Without it, nothing is changed.
        #[arg(long)]
        execute: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Journal file to write (default: a new file in the journal dir).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// With a dry run: also ask the cloud whether each termination would
        /// be permitted (EC2 DryRun), to find a missing IAM action first.
        #[arg(long, conflicts_with = "execute")]
        preflight: bool,
        /// Where else to write the report.
        #[command(flatten)]
        outputs: Outputs,
    },
    /// What a run would be allowed to touch: scope, blast radius, stop
    /// conditions, plugins with their grants and limits. Runs nothing.
    Plan {
        /// The run config.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Render the report of a journal again (also one cut short).
    Report {
        /// Journal file (JSONL).
        journal: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Where else to write the report.
        #[command(flatten)]
        outputs: Outputs,
    },
    /// Set a kill switch: no run starts, and running ones stop. Without a
    /// flag, the operator's own, which every run of theirs honours,
    /// wherever its config points.
    Pause {
        /// Why, for the operators who find it set.
        #[arg(long, default_value = "")]
        reason: String,
        /// Which switch.
        #[command(flatten)]
        which: WhichSwitch,
    },
    /// Clear a kill switch (whatever stands at its place), and say which
    /// switches are still set.
    Resume {
        /// Which switch.
        #[command(flatten)]
        which: WhichSwitch,
    },
    /// Undo the faults a run left owed (a crash, a kill -9): start what it
    /// stopped, resume what it suspended. Idempotent; `run` and `daemon`
    /// do it too before they start.
    Recover {
        /// The run config: its backend and its state_dir.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
    },
    /// Every kill switch in force and its state; with --config, also the
    /// stop conditions, the schedule's next slots and the last runs.
    Status {
        /// A run config: its state_dir's switch (and, on AWS, its
        /// account's) are in force too; its stop conditions, next slots
        /// and last runs are shown.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the config's scheduled experiments (those with a `when`) until
    /// SIGTERM or SIGINT. Dry run unless --execute.
    Daemon {
        /// The run config, with its schedule.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
        /// Really terminate instances. Without it, nothing is changed.
        #[arg(long)]
        execute: bool,
        /// Seed of the slots' times and runs (default: the config's, else a
        /// fresh one, logged).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the daemon's own loop over N days on the simulated fleet and its
    /// virtual clock, with a throw-away history; nothing real is touched.
    Simulate {
        /// The run config, with its schedule and a simulated fleet.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
        /// Days to simulate.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// First day (YYYY-MM-DD, in the schedule's time zone; default today).
        #[arg(long)]
        start: Option<String>,
        /// Seed of the simulation (default: the config's, else a fresh one, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Print the simulation as JSON.
        #[arg(long)]
        json: bool,
        /// Also write it as an HTML page: per-group statistics, kills per
        /// day, recovery times.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write it as JUnit XML, for CI: a case per kill's recovery
        /// and per group's healthy floor, and one per way a slot can fail.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// The kill history: kills (default), `stats` per group, or `import`
    /// of a journal.
    History {
        /// Which history, and which kills.
        #[command(flatten)]
        args: unattended::HistoryArgs,
        /// What to show or do.
        #[command(subcommand)]
        command: Option<unattended::HistoryCommand>,
    },
    /// List or inspect the plugins of a config's plugin directory.
    Plugins {
        /// What to show.
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// What the compiled-code cache holds; `prune` removes what went unused.
    Cache {
        /// The run config, whose plugins' cache it is.
        #[arg(long, default_value = "wasmonkey.toml", global = true)]
        config: PathBuf,
        /// What to do (default: show what the cache holds).
        #[command(subcommand)]
        command: Option<CacheCommand>,
    },
    /// The run config itself.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write the contract's WIT files, as this binary carries them, for a
    /// plugin project built without wasmonkey's source.
    Wit {
        /// Where (default: ./wit).
        #[arg(long, default_value = "wit")]
        dir: PathBuf,
        /// The contract version (default: the newest).
        #[arg(long, value_name = "VERSION", value_parser = crate::scaffold::parse_contract)]
        contract: Option<crate::contract::Version>,
    },
    /// Create a plugin project that builds and loads as it is.
    New {
        /// The plugin's language.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The plugin's name (lowercase letters, digits and `-`).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The contract version it is written for (default: the newest).
        #[arg(long, value_name = "VERSION", value_parser = crate::scaffold::parse_contract)]
        contract: Option<crate::contract::Version>,
    },
    /// A plugin author's commands: build the project `new` wrote.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// A plugin author's commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Build the plugin project in DIR into DIR/dist/NAME.wasm and its
    /// manifest, with the language's published tools (set up on first use
    /// in WASMONKEY_TOOLCHAINS, else ~/.cache/wasmonkey/toolchains); prints
    /// the component's path.
    Build {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Push the project's built plugin (DIR/dist/) to an OCI registry, in
    /// the layout wkg uses, its manifest with it; prints REF@sha256:… for
    /// an operator's [plugins.sources]. Credentials, if the registry needs
    /// them: WASMONKEY_REGISTRY_USERNAME and WASMONKEY_REGISTRY_PASSWORD.
    Push {
        /// Where: REGISTRY/REPOSITORY[:TAG].
        reference: String,
        /// The project's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run the project's built plugin (DIR/dist/) on a matrix of simulated
    /// fleets and faults, checking what every strategy must keep: it
    /// finishes through throttling and denials, stays within the blast
    /// radius and the scope, and names only real victims. Exit 1 if any
    /// property fails.
    Test {
        /// The project's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The plugin's parameters, as a TOML inline table (default: its
        /// own defaults), e.g. '{ groups = "web*" }'.
        #[arg(long)]
        params: Option<String>,
    },
    /// Sign a pushed plugin's digest with a key, as `cosign sign --key`
    /// does (the key's password in COSIGN_PASSWORD).
    Sign {
        /// REGISTRY/REPOSITORY@sha256:…
        reference: String,
        /// The private key: cosign's, or a PKCS#8 PEM.
        #[arg(long)]
        key: PathBuf,
    },
    /// Write a new key pair, as `cosign generate-key-pair` does:
    /// DIR/cosign.key (encrypted with COSIGN_PASSWORD) and DIR/cosign.pub.
    Keygen {
        /// Where.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// Which kill switch `pause` and `resume` act on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WhichSwitch {
    /// The switch of this run config's state: its database's when it
    /// names one (every host on it honours it), else its state_dir's (with
    /// --account: its account's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The host's switch, honoured by every user's runs on this machine
    /// (`/var/lib/wasmonkey`, or WASMONKEY_HOST_STATE_DIR): root or its
    /// group may set it.
    #[arg(long, conflicts_with = "account")]
    pub host: bool,
    /// The account-and-region switch of the config's AWS backend (an SSM
    /// parameter), honoured by every operator of the account; needs
    /// --config.
    #[arg(long, requires = "config")]
    pub account: bool,
}

/// Compiled-code cache commands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove compiled plugins not used for `--days` days (those of an
    /// older wasmtime among them), and what was remembered of them.
    Prune {
        /// Days without a use after which an entry goes.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
}

/// Run config commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of `wasmonkey.toml`, for editors to validate
    /// it (e.g. with taplo's `#:schema` directive).
    Schema,
}

/// Plugin directory commands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin, loaded and checked; failures with their reason.
    List {
        /// The run config, whose plugin directory it lists.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
    },
    /// Pull a plugin by digest from an OCI registry into the config's
    /// plugin directory, every blob checked against its digest, with the
    /// signatures stored beside it; says how to name it in [plugins.sources].
    Pull {
        /// REGISTRY/REPOSITORY@sha256:…
        reference: String,
        /// Its name, when what was pushed does not say it (no manifest).
        #[arg(long)]
        name: Option<String>,
        /// The run config, whose plugin directory it goes to.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
    },
    /// One plugin: metadata, parameters, imports, limits, grants.
    Inspect {
        /// The plugin's name (its file stem).
        name: String,
        /// The run config, whose plugin directory holds it.
        #[arg(long, default_value = "wasmonkey.toml")]
        config: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A simulation runs hundreds of runs: only what went wrong is logged.
    let level = match cli.command {
        Command::Simulate { .. } => "warn",
        // `plugin test` runs dozens of runs: its table says what happened.
        Command::Plugin {
            command: PluginCommand::Test { .. },
        } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMONKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet_libraries(level))),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal, and never under NO_COLOR (no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        // Whoever read our output stopped (`| head`): end quietly, with the
        // status of a process SIGPIPE ended, which no script takes for a
        // success. `run` never gets here: it reports an undelivered report
        // and keeps its outcome's code.
        Err(err) if closed_pipe(&err) => ExitCode::from(CLOSED_PIPE),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a command whose reader closed stdout: 128 + SIGPIPE,
/// what a shell reports for `cat` in the same place.
pub const CLOSED_PIPE: u8 = 141;

/// Whether `err` is a write to a pipe nobody reads any more.
fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            config,
            plugin,
            seed,
            execute,
            json,
            journal,
            preflight,
            outputs,
        } => {
            let options = RunOptions {
                config,
                plugin,
                seed,
                execute,
                journal,
                preflight,
                progress: !json,
                ..RunOptions::default()
            };
            // SIGTERM (a service manager, `kill`) as Ctrl-C: the journal is
            // finished, the victims named, and the exit code says so.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let shutdown = async move {
                let name = tokio::select! {
                    interrupt = tokio::signal::ctrl_c() => match interrupt {
                        Ok(()) => "SIGINT",
                        Err(_) => std::future::pending().await,
                    },
                    _ = term.recv() => "SIGTERM",
                };
                tracing::warn!("{name}: finishing the journal");
            };
            let output = runner::run(&options, shutdown).await?;
            Ok(ExitCode::from(deliver(&output, json, &outputs)))
        }
        Command::Plan { config, json } => {
            let config = Config::load(&config)?;
            let seed = config.seed.unwrap_or_else(runner::fresh_seed);
            let cloud = runner::backend(&config, seed).await?;
            let plan = crate::plan::plan(&config, cloud).await?;
            let mut stdout = std::io::stdout().lock();
            if json {
                writeln!(
                    stdout,
                    "{}",
                    text::json_safe(&serde_json::to_string_pretty(&plan)?)
                )?;
            } else {
                write!(stdout, "{}", plan.render_text())?;
            }
            stdout.flush()?;
            // A gate for scripts: a plan the run would refuse, or one that
            // could do nothing, is not a success.
            if plan.problems.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in &plan.problems {
                    eprintln!("error: {}: {}", config.path.display(), one_line(problem));
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Pause { reason, which } => {
            // Every switch chosen is tried, and each said, before a failure
            // is reported: a pause must reach as far as it can.
            let mut failed = Vec::new();
            for switch in chosen_switches(&which).await? {
                match switch.pause(&reason).await {
                    Ok(pause) => outln!(
                        "set the {} switch ({}): {}",
                        switch.scope(),
                        one_line(&switch.location()),
                        one_line(&pause.to_string())
                    )?,
                    Err(err) => failed.push(format!("{}: {err:#}", one_line(&switch.location()))),
                }
            }
            if !failed.is_empty() {
                anyhow::bail!("could not set:\n  {}", failed.join("\n  "));
            }
            print_switches(&switches_in_force(which.config.as_deref()).await?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { which } => {
            for switch in chosen_switches(&which).await? {
                let scope = switch.scope();
                let location = one_line(&switch.location()).into_owned();
                match switch.resume().await? {
                    Some(was) => outln!(
                        "cleared the {scope} switch ({location}); it was {}",
                        one_line(&was.to_string())
                    )?,
                    None => outln!("the {scope} switch ({location}) was not set")?,
                }
            }
            let in_force = switches_in_force(which.config.as_deref()).await?;
            if print_switches(&in_force).await? {
                outln!("runs stay paused until every switch above is clear")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Recover { config } => recover(&config).await,
        Command::Status { config } => {
            print_switches(&switches_in_force(config.as_deref()).await?).await?;
            if let Some(path) = config {
                let config = Config::load(&path)?;
                if config.stop_conditions.is_empty() {
                    outln!("stop conditions: none")?;
                }
                for (name, condition) in &config.stop_conditions {
                    outln!(
                        "stop condition {}: {}",
                        one_line(name),
                        one_line(&condition.to_string())
                    )?;
                }
                unattended::status(&config)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon {
            config,
            execute,
            seed,
        } => unattended::daemon(&config, execute, seed).await,
        Command::Simulate {
            config,
            days,
            start,
            seed,
            json,
            html,
            junit,
        } => {
            let files = (html.as_deref(), junit.as_deref());
            unattended::simulate(&config, days, start.as_deref(), seed, json, files).await
        }
        Command::History { args, command } => unattended::history(&args, command),
        Command::Report {
            journal,
            json,
            outputs,
        } => {
            // A file with no whole entry is an error, not an empty report.
            let replay = journal::read(&journal)?;
            let report = Report::from_journal(&replay, &journal);
            print_report(&report, json)?;
            // A journal does not record API calls.
            outputs.write(&report, &crate::cloud::ApiCalls::new())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins { command } => plugins(command).await,
        Command::Cache { config, command } => {
            let config = Config::load(&config)?;
            let dir = config.cache_dir()?;
            match command {
                None => {
                    let usage = Sandbox::cache_usage(&dir)?;
                    outln!(
                        "compiled-code cache {}",
                        one_line(&dir.display().to_string())
                    )?;
                    outln!(
                        "  {} compiled plugin(s), {:.1} MiB; {} remembered metadata() answer(s); {} plugin file record(s)",
                        usage.entries,
                        mib(usage.entry_bytes),
                        usage.answers,
                        usage.records
                    )?;
                }
                Some(CacheCommand::Prune { days }) => {
                    let max_age = std::time::Duration::from_secs(days.saturating_mul(24 * 3600));
                    let gone = Sandbox::prune_cache(&dir, max_age)?;
                    let left = Sandbox::cache_usage(&dir)?;
                    outln!(
                        "removed {} compiled plugin(s) ({:.1} MiB) unused for {days} day(s), {} answer(s) and {} file record(s); {} compiled plugin(s) ({:.1} MiB) remain",
                        gone.entries,
                        mib(gone.entry_bytes),
                        gone.answers,
                        gone.records,
                        left.entries,
                        mib(left.entry_bytes)
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Schema,
        } => {
            outln!("{}", serde_json::to_string_pretty(&Config::schema())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wit { dir, contract } => {
            let contract = contract.unwrap_or(crate::contract::Version::LATEST);
            for (path, state) in crate::scaffold::write_wit(contract, &dir)? {
                outln!("{state} {}", one_line(&path.display().to_string()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::New {
            lang,
            name,
            dir,
            contract,
        } => {
            let contract = contract.unwrap_or(crate::contract::Version::LATEST);
            crate::scaffold::run(lang, contract, &name, dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Push { reference, dir },
        } => {
            let shown = crate::shipping::push(&reference, &dir).await?;
            outln!("{}", one_line(&shown))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Test { dir, params },
        } => {
            let findings = crate::plugin_test::run(&dir, params.as_deref()).await?;
            let failed = findings.iter().filter(|f| !f.held).count();
            for finding in &findings {
                outln!(
                    "{:<6} {:<48} {:<24} {}",
                    if finding.held { "ok" } else { "FAILED" },
                    one_line(&finding.case),
                    finding.property,
                    text::shown(&finding.detail, DESCRIPTION_BYTES)
                )?;
            }
            outln!(
                "{} of {} checks held{}",
                findings.len() - failed,
                findings.len(),
                if failed == 0 {
                    ""
                } else {
                    "; see FAILED above"
                }
            )?;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plugin {
            command: PluginCommand::Sign { reference, key },
        } => {
            let said = crate::shipping::sign(&reference, &key).await?;
            outln!("{}", one_line(&said))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Keygen { dir },
        } => {
            for line in crate::shipping::keygen(&dir)? {
                outln!("{}", one_line(&line))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Build { dir },
        } => {
            let toolchains = crate::plugin_build::toolchains_dir()?;
            // The tools run for minutes: off the async runtime's threads.
            let built =
                tokio::task::spawn_blocking(move || crate::plugin_build::build(&dir, &toolchains))
                    .await??;
            outln!("{}", one_line(&built.display().to_string()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The default log filter: `level` for wasmonkey, and nothing of the AWS
/// SDK's and its HTTP stack's own logging, which writes its errors as Rust
/// debug dumps (an IMDS 403 answer, whole). Every SDK error that matters
/// reaches the operator through the host, as one line that says what to
/// check; `WASMONKEY_LOG` can still turn them on.
fn quiet_libraries(level: &str) -> String {
    const QUIET: [&str; 9] = [
        "aws_config",
        "aws_runtime",
        "aws_sigv4",
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_http_client",
        "hyper",
        "hyper_util",
        "rustls",
    ];
    std::iter::once(level.to_owned())
        .chain(QUIET.iter().map(|target| format!("{target}=off")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The switch `pause` or `resume` acts on.
async fn chosen_switches(which: &WhichSwitch) -> anyhow::Result<Vec<Arc<dyn Switch>>> {
    if which.host {
        return Ok(vec![Arc::new(FileSwitch::host())]);
    }
    let Some(path) = &which.config else {
        let dir = crate::kill_switch::operator_state_dir().ok_or_else(|| {
            anyhow::anyhow!("no state directory: set XDG_STATE_HOME or HOME, or pass --config")
        })?;
        return Ok(vec![Arc::new(FileSwitch::with_scope(
            &dir,
            SwitchScope::Operator,
        ))]);
    };
    let config = Config::load(path)?;
    if !which.account {
        // A config whose state is shared pauses every host on it.
        if let Some(shared) = crate::history::shared_switch(&config)? {
            return Ok(vec![shared]);
        }
        return Ok(vec![Arc::new(FileSwitch::new(&config.state_dir()?))]);
    }
    let cloud = runner::backend(&config, config.seed.unwrap_or(0)).await?;
    let switches = cloud.account_switches();
    if switches.is_empty() {
        anyhow::bail!(
            "{}: the {} backend has no account switch (backend kind = \"aws\" has one, unless account_switch is \"off\")",
            config.path.display(),
            cloud.kind()
        );
    }
    Ok(switches)
}

/// Every switch in force for a run of `config` (or, without one, for any
/// run of this operator's on this host).
async fn switches_in_force(config: Option<&std::path::Path>) -> anyhow::Result<Switches> {
    let Some(path) = config else {
        return Ok(Switches::local(None));
    };
    let config = Config::load(path)?;
    let cloud = runner::backend(&config, config.seed.unwrap_or(0)).await?;
    crate::history::switches(&config, cloud.as_ref())
}

/// Print each switch's state and the verdict; whether any is set.
async fn print_switches(switches: &Switches) -> std::io::Result<bool> {
    let states = switches.states(true).await;
    let set = states.iter().any(|s| s.pause.is_some());
    match states.iter().find_map(|s| s.pause.as_ref()) {
        Some(pause) => outln!("kill switch: SET, {}", one_line(&pause.to_string()))?,
        None => outln!("kill switch: clear")?,
    }
    for state in &states {
        outln!("  {}", one_line(&state.to_string()))?;
    }
    Ok(set)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Print a finished run's report and write the files asked for; the exit
/// code. What the run did decides it: a report that cannot be printed or
/// written never turns a run that acted into exit 1 ("nothing was done"),
/// and never leaves it a success either (inconclusive, as an undelivered
/// notification is).
fn deliver(output: &runner::RunOutput, json: bool, outputs: &Outputs) -> u8 {
    let delivered = print_report(&output.report, json)
        .and_then(|()| outputs.write(&output.report, &output.api_calls));
    let outcome = output.report.outcome;
    match delivered {
        Ok(()) => outcome.exit_code(),
        Err(err) => {
            eprintln!(
                "error: the run's report could not be delivered: {err:#} (the journal {} keeps it: `wasmonkey report {0}`)",
                output.journal.display()
            );
            if outcome == RunOutcome::Succeeded {
                RunOutcome::Inconclusive.exit_code()
            } else {
                outcome.exit_code()
            }
        }
    }
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    // Written, not `println!`: a closed stdout is an error to report, not
    // a panic.
    let mut stdout = std::io::stdout().lock();
    if json {
        let json = serde_json::to_string_pretty(report)?;
        writeln!(stdout, "{}", text::json_safe(&json))?;
    } else {
        write!(stdout, "{}", report.render_text())?;
    }
    stdout.flush()?;
    Ok(())
}

async fn plugins(command: PluginsCommand) -> anyhow::Result<ExitCode> {
    let config_path = match &command {
        PluginsCommand::List { config }
        | PluginsCommand::Inspect { config, .. }
        | PluginsCommand::Pull { config, .. } => config.clone(),
    };
    let config = Config::load(&config_path)?;
    if let PluginsCommand::Pull {
        reference, name, ..
    } = &command
    {
        for line in crate::shipping::pull(&config, reference, name.as_deref()).await? {
            outln!("{}", one_line(&line))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = Catalog::scan(&config.plugin_dir())?
        .with_pins(config.pins())
        .with_provenance(crate::provenance::Provenance::of(&config)?);
    let sandbox = Sandbox::new(&config.cache_dir()?)?;
    let rules = config.limit_rules();
    match command {
        PluginsCommand::Pull { .. } => Ok(ExitCode::SUCCESS),
        PluginsCommand::List { .. } => {
            let (loaded, failed) = catalog.load_all(&sandbox, &rules).await;
            for plugin in &loaded {
                outln!(
                    "{:<20} {:<9} {:<17} {}",
                    one_line(&plugin.metadata.name),
                    one_line(&plugin.metadata.version),
                    pinning(&catalog, plugin),
                    text::shown(&plugin.metadata.description, DESCRIPTION_BYTES)
                )?;
                outln!("{:<20} {}", "", origin(plugin))?;
            }
            for failure in &failed {
                outln!("FAILED {failure}")?;
            }
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PluginsCommand::Inspect { name, .. } => {
            let plugin = catalog
                .load(&sandbox, &name, &rules, &LimitOverrides::default())
                .await
                .map_err(|failure| anyhow::anyhow!("{failure}"))?;
            out!("{}", describe(&plugin))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Who pinned a loaded plugin: the operator (config), only its own manifest
/// (which whoever can replace the component can rewrite), or nobody.
fn pinning(catalog: &Catalog, plugin: &Plugin) -> &'static str {
    if catalog.pin(&plugin.name).is_some() {
        "pinned"
    } else if plugin.manifest.as_ref().is_some_and(|m| m.sha256.is_some()) {
        "manifest-pin-only"
    } else {
        "unpinned"
    }
}

/// Where a loaded plugin came from and who signed it.
fn origin(plugin: &Plugin) -> String {
    match &plugin.provenance {
        Some(checked) => format!(
            "source {} · {}",
            one_line(&checked.source.reference),
            one_line(&checked.signed.to_string())
        ),
        None => "source: a local file (no [plugins.sources] entry) · unsigned".to_owned(),
    }
}

/// Most bytes of a plugin's own description shown.
const DESCRIPTION_BYTES: usize = 512;

/// Everything an operator needs to know about a plugin before running it.
/// All the metadata is the plugin's own text, shown neutralised.
pub fn describe(plugin: &Plugin) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let meta = &plugin.metadata;
    let compiled = &plugin.prepared.compiled;
    let _ = writeln!(
        out,
        "{}@{}: {}",
        one_line(&meta.name),
        one_line(&meta.version),
        text::shown(&meta.description, DESCRIPTION_BYTES)
    );
    let _ = writeln!(
        out,
        "file:    {}",
        one_line(&plugin.path.display().to_string())
    );
    let _ = writeln!(out, "sha256:  {}", compiled.sha256);
    let _ = writeln!(out, "origin:  {}", origin(plugin));
    let _ = writeln!(
        out,
        "loaded:  {:.1} ms ({})",
        compiled.load_time.as_secs_f64() * 1000.0,
        if compiled.from_cache {
            "compiled cache"
        } else {
            "compiled now"
        }
    );
    let _ = writeln!(out, "parameters:");
    for p in &meta.params {
        let default = p.default.to_json();
        let kind = p.default.kind();
        let _ = writeln!(
            out,
            "  {:<24} {kind:<8} default {:<10} {}",
            one_line(&p.name),
            text::shown(&default.to_string(), DESCRIPTION_BYTES),
            text::shown(&p.description, DESCRIPTION_BYTES)
        );
    }
    let _ = writeln!(out, "imports:");
    for import in &compiled.imports {
        let _ = writeln!(out, "  {}", one_line(import));
    }
    if compiled.imports_wasi() {
        let _ = writeln!(
            out,
            "  (WASI is linked deny-by-default: no files, network, env or args)"
        );
    }
    let manifest = plugin.manifest.as_ref();
    let asked: Vec<String> = manifest
        .map(|m| m.grants.iter().map(|g| g.name().to_owned()).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "grants asked: {}",
        if asked.is_empty() {
            "none".into()
        } else {
            asked.join(", ")
        }
    );
    let limits = plugin.limits;
    let _ = writeln!(
        out,
        "limits:  fuel {}, memory {} MiB, stack {} KiB, timeout {} s, host calls {}, {} KiB per call",
        text::thousands(limits.fuel), limits.memory_mib, limits.stack_kib, limits.timeout_secs, text::thousands(limits.host_calls), limits.host_call_kib
    );
    out
}
