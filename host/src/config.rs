//! The operator's run config (`wasmonkey.toml`): which backend, which
//! plugins, and every rule they run under.
//!
//! Relative paths are resolved against the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cloud::aws_settings::AwsSettings;
use crate::limits::{LimitOverrides, LimitRules, Limits};
use crate::policy::{BlastRadius, Grant, GroupPatterns, Scope, TagSelector};
use crate::schedule::{Calendar, KillGap, Schedule, ScheduleConfig, When};

mod accounts;
pub use accounts::{account_regions, AccountConfig, AccountRegion, FanOutConfig, Role};

/// The whole config file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed for the run's randomness (and the simulated fleet), unless
    /// `--seed` is given. Without either a random seed is drawn and reported.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Where journals are written (default: `journal/` beside the config).
    #[serde(default)]
    pub journal_dir: Option<PathBuf>,
    /// Where the fleet is: the simulator or AWS.
    pub backend: BackendConfig,
    /// The accounts (and their regions) one run reaches, each through a
    /// role the host assumes; none: the backend's own account and region.
    /// Group and zone names then read `ACCOUNT/REGION/NAME`.
    #[serde(rename = "account", default)]
    pub accounts: Vec<AccountConfig>,
    /// How a run over several account-regions reads and acts.
    #[serde(default)]
    pub fan_out: FanOutConfig,
    /// Where the plugins are, and their compiled-code cache.
    pub plugins: PluginsConfig,
    /// Which groups and instances a run may touch.
    #[serde(default)]
    pub scope: ScopeConfig,
    /// How much a run may take away.
    #[serde(default)]
    pub blast_radius: BlastRadius,
    /// How the host waits for and judges recovery.
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// How old a read of the fleet may be when the host uses it.
    #[serde(default)]
    pub reads: ReadsConfig,
    /// Defaults for every plugin, over the built-in ones.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The most any plugin may ask for, over the built-in ceilings.
    #[serde(default)]
    pub ceiling: LimitOverrides,
    /// Named health targets plugins may check and recovery may wait on.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Notification channel aliases, mapped to backend topics.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    /// The end-of-run notification.
    #[serde(default)]
    pub report: ReportConfig,
    /// Send the notifications of dry runs (their subject says "[dry run]").
    /// By default a dry run journals each as "would publish" and sends
    /// nothing: rehearsals page no one.
    #[serde(default)]
    pub notify_dry_runs: bool,
    /// Conditions that stop the run, checked by the host before it starts,
    /// before every termination and on every poll.
    #[serde(default)]
    pub stop_conditions: BTreeMap<String, StopCondition>,
    /// What must hold before the run acts and again after it recovered:
    /// checked before the first experiment (a check that does not hold, or
    /// cannot be read, stops the run before any action) and after the
    /// last; the report shows both readings.
    #[serde(default)]
    pub steady_state: BTreeMap<String, SteadyState>,
    /// The Prometheus server that `prometheus` stop conditions and
    /// steady-state checks query.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    /// Where the kill switch and the kill history live (default
    /// `$XDG_STATE_HOME/wasmonkey`, else `~/.local/state/wasmonkey`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// A PostgreSQL database several hosts share for the kill history, the
    /// schedule's slots and the kill ledger:
    /// `postgres://USER@HOST:PORT/DATABASE`, its password from the
    /// `PGPASSWORD` environment variable (never in the file). Unset: the
    /// SQLite file in the state directory.
    #[serde(default)]
    pub state: Option<String>,
    /// When `wasmonkey daemon` runs the experiments that have a `when`:
    /// working days and hours in a time zone.
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// What `wasmonkey daemon` serves while it runs.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The experiments to run, in order.
    #[serde(rename = "experiment", default)]
    pub experiments: Vec<ExperimentConfig>,
    /// Directory of the config file; relative paths start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself.
    #[serde(skip)]
    pub path: PathBuf,
    /// `scope`, compiled once by [`Config::load`] when it checked it.
    #[serde(skip)]
    compiled_scope: Option<Scope>,
}

/// `[daemon]` in the run config.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of `/metrics` (Prometheus) and `/healthz`: loopback unless
    /// set otherwise, port 0 for any free one, `"off"` for none.
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

impl DaemonConfig {
    /// The address to serve on, `None` when off.
    pub(crate) fn listen_address(&self) -> Result<Option<std::net::SocketAddr>, String> {
        if self.listen == "off" {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            format!(
                "daemon.listen: {:?} is not an address like \"127.0.0.1:9464\" (or \"off\")",
                self.listen
            )
        })
    }
}

/// Which cloud to run against.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The embedded simulated fleet.
    Sim {
        /// Fleet description (TOML).
        fleet: PathBuf,
    },
    /// Real AWS through the official SDK.
    Aws(AwsSettings),
}

/// Where plugins are and where their compiled code is cached.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `.wasm` components (each with an optional manifest).
    pub dir: PathBuf,
    /// Compiled-code cache (default: `$XDG_CACHE_HOME/wasmonkey`, else
    /// `~/.cache/wasmonkey`). It must be the user's own and writable by no
    /// one else: its entries run as native code.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The sha256 of each plugin's component, by plugin name. A plugin whose
    /// file does not match is refused before any of its code runs.
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
    /// Refuse, under `--execute`, every plugin the operator has not pinned.
    #[serde(default)]
    pub require_pins: bool,
    /// Where each pulled plugin came from, by name: its OCI manifest by
    /// digest (`REGISTRY/REPOSITORY@sha256:…`). Its component and manifest
    /// must be what that digest names, or it is refused before any of its
    /// code runs.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Public keys (PEM files, cosign's format) whose signatures count.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Refuse every plugin without a source and a signature over its
    /// digest by a trusted key, in a dry run as under `--execute` (a
    /// preview never differs from the run).
    #[serde(default)]
    pub require_signatures: bool,
}

/// The part of the fleet experiments may touch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Group name globs.
    #[serde(default = "all_groups")]
    pub groups: Vec<String>,
    /// Tags every instance in scope must carry (`key` or `key=value`).
    #[serde(default)]
    pub tags: Vec<TagSelector>,
    /// When set, only instances (or groups) carrying this tag are in scope.
    #[serde(default)]
    pub opt_in: Option<TagSelector>,
    /// Instances or groups carrying this tag are never in scope.
    #[serde(default = "default_opt_out")]
    pub opt_out: Option<TagSelector>,
    /// Whether instances outside any Auto Scaling group are in scope.
    #[serde(default)]
    pub standalone: bool,
}

fn all_groups() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_opt_out() -> Option<TagSelector> {
    Some(TagSelector {
        key: "chaos-opt-out".to_owned(),
        value: None,
    })
}

/// Whether `url` names a database this build can keep the state in.
#[cfg(feature = "postgres")]
fn state_database(url: &str) -> Result<(), String> {
    crate::database::Database::parse(url).map(drop)
}

#[cfg(not(feature = "postgres"))]
fn state_database(_url: &str) -> Result<(), String> {
    Err("names a PostgreSQL database, and this wasmonkey was built without PostgreSQL (build it with the default features)".into())
}

impl std::fmt::Display for ScopeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "groups {}", self.groups.join(", "))?;
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(ToString::to_string).collect();
            write!(f, "; tagged {}", tags.join(", "))?;
        }
        if let Some(opt_in) = &self.opt_in {
            write!(f, "; opted in by {opt_in}")?;
        }
        if let Some(opt_out) = &self.opt_out {
            write!(f, "; opted out by {opt_out}")?;
        }
        f.write_str(if self.standalone {
            "; standalone instances too"
        } else {
            "; no standalone instance"
        })
    }
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            groups: all_groups(),
            tags: Vec::new(),
            opt_in: None,
            opt_out: default_opt_out(),
            standalone: false,
        }
    }
}

impl Config {
    /// The scope every policy of a run enforces: compiled once when the
    /// config was loaded (and checked), else now.
    pub(crate) fn policy_scope(&self) -> anyhow::Result<Scope> {
        match &self.compiled_scope {
            Some(scope) => Ok(scope.clone()),
            None => self
                .scope
                .compile()
                .map_err(|err| anyhow::anyhow!("{}: scope: {err}", self.path.display())),
        }
    }
}

impl ScopeConfig {
    /// Compile into the policy's scope.
    pub fn compile(&self) -> Result<Scope, String> {
        Ok(Scope {
            groups: GroupPatterns::new(&self.groups)?,
            tags: self.tags.clone(),
            opt_in: self.opt_in.clone(),
            opt_out: self.opt_out.clone(),
            standalone: self.standalone,
        })
    }
}

/// How the host decides a victim has recovered.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// How long the host waits, after a plugin finishes, for its victims'
    /// groups to recover.
    #[serde(default = "default_recovery_timeout")]
    pub timeout_secs: u64,
    /// How often the host looks, on the run's clock.
    #[serde(default = "default_poll")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub poll_secs: f64,
    /// Targets that must also be healthy for a recovery to count.
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_recovery_timeout() -> u64 {
    900
}

fn default_poll() -> f64 {
    1.0
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            timeout_secs: default_recovery_timeout(),
            poll_secs: default_poll(),
            targets: Vec::new(),
        }
    }
}

impl RecoveryConfig {
    /// Poll interval in ms, at least 1.
    pub fn poll_ms(&self) -> u64 {
        ((self.poll_secs * 1000.0) as u64).max(1)
    }
}

/// How the host reuses its reads of the fleet: every plugin read, policy
/// decision and recovery look within the bound shares one read.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadsConfig {
    /// A read of the fleet is reused, to answer a plugin or decide a
    /// termination, while it is younger than this, counted from when it
    /// was sent; older data is read again, and 0 reads everything afresh.
    /// Default: the recovery poll interval.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 3600.0))]
    pub max_age_secs: Option<f64>,
}

impl Config {
    /// The bound on a read's age, in ms.
    pub(crate) fn max_read_age_ms(&self) -> u64 {
        match self.reads.max_age_secs {
            Some(secs) => (secs * 1000.0) as u64,
            None => self.recovery.poll_ms(),
        }
    }
}

/// What stops a run.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StopCondition {
    /// Any of these alarms in ALARM (CloudWatch on AWS; on the simulator,
    /// the fleet file's `[[alarm]]` rules). An alarm that does not exist
    /// stops the run too.
    Alarm {
        /// The alarms' names.
        #[schemars(length(min = 1))]
        alarms: Vec<String>,
    },
    /// A `[targets.NAME]` unhealthy for longer than `grace_secs`.
    Target {
        /// The target's name.
        target: String,
        /// How long it may be unhealthy before the run stops, in seconds.
        #[serde(default)]
        #[schemars(range(min = 0.0))]
        grace_secs: f64,
    },
    /// A victim not recovered within `within_secs` of its termination.
    Recovery {
        /// Seconds from a termination to its group's recovery.
        #[schemars(extend("exclusiveMinimum" = 0))]
        within_secs: f64,
    },
    /// A PromQL query (against `[prometheus] url`) out of its bounds for
    /// longer than `grace_secs`.
    Prometheus {
        /// The query and its bounds.
        #[serde(flatten)]
        query: PromQuery,
        /// How long it may be out of bounds before the run stops, in
        /// seconds.
        #[serde(default)]
        #[schemars(range(min = 0.0))]
        grace_secs: f64,
    },
}

/// Where PromQL is asked.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server's base URL, e.g. `http://prometheus:9090` (its HTTP API
    /// is under `/api/v1/`).
    pub url: String,
    /// An environment variable holding a bearer token to send, for a
    /// server behind authentication. The token is never logged.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

/// A PromQL instant query and the bounds its every series must keep.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromQuery {
    /// The PromQL expression, evaluated now. Every series it returns is
    /// held to the bounds; none at all is unknown, not fine (write
    /// `... or vector(0)` when no series means zero).
    #[schemars(length(min = 1))]
    pub query: String,
    /// A value above this breaks it.
    #[serde(default)]
    pub above: Option<f64>,
    /// A value below this breaks it.
    #[serde(default)]
    pub below: Option<f64>,
}

impl PromQuery {
    /// What is wrong with it, for the config check.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut wrong = Vec::new();
        if self.query.trim().is_empty() {
            wrong.push(("query", "query is empty".to_owned()));
        }
        if self.above.is_none() && self.below.is_none() {
            wrong.push(("above", "give `above`, `below` or both".to_owned()));
        }
        for (field, bound) in [("above", self.above), ("below", self.below)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                wrong.push((field, format!("{field} must be a finite number")));
            }
        }
        wrong
    }
}

impl std::fmt::Display for PromQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bounds: Vec<String> = [("above", self.above), ("below", self.below)]
            .into_iter()
            .filter_map(|(word, b)| b.map(|b| format!("{word} {b}")))
            .collect();
        write!(f, "`{}` {}", self.query, bounds.join(" or "))
    }
}

/// A check of the steady state, before the run and after it.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SteadyState {
    /// Every one of these alarms is not in ALARM (and exists).
    Alarm {
        /// The alarms' names.
        #[schemars(length(min = 1))]
        alarms: Vec<String>,
    },
    /// A `[targets.NAME]` is healthy.
    Target {
        /// The target's name.
        target: String,
    },
    /// Every series of a PromQL query keeps within its bounds.
    Prometheus(PromQuery),
}

impl std::fmt::Display for SteadyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SteadyState::Alarm { alarms } => {
                write!(
                    f,
                    "holds while no alarm of {} is in ALARM",
                    alarms.join(", ")
                )
            }
            SteadyState::Target { target } => write!(f, "holds while target {target} is healthy"),
            SteadyState::Prometheus(query) => write!(f, "breaks when {query}"),
        }
    }
}

impl SteadyState {
    /// The stop condition that trips exactly when this does not hold.
    pub(crate) fn as_condition(&self) -> StopCondition {
        match self {
            SteadyState::Alarm { alarms } => StopCondition::Alarm {
                alarms: alarms.clone(),
            },
            SteadyState::Target { target } => StopCondition::Target {
                target: target.clone(),
                grace_secs: 0.0,
            },
            SteadyState::Prometheus(query) => StopCondition::Prometheus {
                query: query.clone(),
                grace_secs: 0.0,
            },
        }
    }
}

impl StopCondition {
    /// What is wrong with it, each as (field, message), all at once.
    fn problems(&self, targets: &BTreeMap<String, TargetConfig>) -> Vec<(&'static str, String)> {
        let mut wrong = Vec::new();
        let grace = |grace_secs: f64, wrong: &mut Vec<(&'static str, String)>| {
            if !(grace_secs.is_finite() && grace_secs >= 0.0) {
                wrong.push((
                    "grace_secs",
                    format!("grace_secs must be 0 or more, got {grace_secs}"),
                ));
            }
        };
        match self {
            StopCondition::Alarm { alarms } => {
                if alarms.is_empty() {
                    wrong.push(("alarms", "alarms is empty".to_owned()));
                }
            }
            StopCondition::Target { target, grace_secs } => {
                if !targets.contains_key(target) {
                    wrong.push((
                        "target",
                        format!("target {target:?} is not a [targets.{target}] entry"),
                    ));
                }
                grace(*grace_secs, &mut wrong);
            }
            StopCondition::Recovery { within_secs } => {
                if !(within_secs.is_finite() && *within_secs > 0.0) {
                    wrong.push((
                        "within_secs",
                        format!("within_secs must be above 0, got {within_secs}"),
                    ));
                }
            }
            StopCondition::Prometheus { query, grace_secs } => {
                wrong.extend(query.problems());
                grace(*grace_secs, &mut wrong);
            }
        }
        wrong
    }
}

impl std::fmt::Display for StopCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopCondition::Alarm { alarms } => {
                write!(
                    f,
                    "stops when any alarm of {} is in ALARM",
                    alarms.join(", ")
                )
            }
            StopCondition::Target { target, grace_secs } => write!(
                f,
                "stops when target {target} is unhealthy for {grace_secs} s"
            ),
            StopCondition::Recovery { within_secs } => write!(
                f,
                "stops when a victim is not recovered within {within_secs} s"
            ),
            StopCondition::Prometheus { query, grace_secs } => {
                write!(f, "stops when {query} for {grace_secs} s")
            }
        }
    }
}

/// A named health target: either a group with a floor of healthy
/// instances, or an HTTP endpoint the host checks. Plugins only see the name.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Healthy when this group has at least `min_healthy` healthy
    /// in-service instances.
    #[serde(default)]
    pub group: Option<String>,
    /// With `group`: the fewest healthy in-service instances it may have.
    #[serde(default)]
    pub min_healthy: Option<u32>,
    /// Healthy when a GET of this URL answers `expect_status` in time.
    #[serde(default)]
    pub url: Option<String>,
    /// With `url`: the status that means healthy (default 200).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// With `url`: how long the answer may take, in ms (default 2000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// What a target checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCheck<'a> {
    /// A group with a floor.
    Group {
        /// The group.
        group: &'a str,
        /// The fewest healthy in-service instances it may have.
        min_healthy: u32,
    },
    /// An HTTP endpoint.
    Http {
        /// The URL to GET.
        url: &'a str,
        /// The status that means healthy.
        expect_status: u16,
        /// How long the answer may take.
        timeout_ms: u64,
    },
}

impl TargetConfig {
    /// The check this target describes, or what is wrong with it.
    pub fn check(&self) -> Result<TargetCheck<'_>, String> {
        match (&self.group, &self.url) {
            (Some(group), None) => {
                if self.expect_status.is_some() || self.timeout_ms.is_some() {
                    return Err("expect_status and timeout_ms go with url, not group".into());
                }
                Ok(TargetCheck::Group {
                    group,
                    min_healthy: self.min_healthy.ok_or("a group target needs min_healthy")?,
                })
            }
            (None, Some(url)) => {
                if self.min_healthy.is_some() {
                    return Err("min_healthy goes with group, not url".into());
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("url {url:?} must start with http:// or https://"));
                }
                Ok(TargetCheck::Http {
                    url,
                    expect_status: self.expect_status.unwrap_or(200),
                    timeout_ms: self.timeout_ms.unwrap_or(2000),
                })
            }
            _ => Err("give either group (with min_healthy) or url".into()),
        }
    }
}

/// The notification sent at the end of every run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Channel alias that gets every run's recovery times.
    #[serde(default)]
    pub channel: Option<String>,
}

/// A notification channel alias.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// An SNS topic: its ARN on AWS (published to in the region it names),
    /// any name on the simulator. One of `topic`, `event_bus` and
    /// `webhook_url_env`.
    #[serde(default)]
    pub topic: Option<String>,
    /// An EventBridge bus, by name (in the backend's region) or ARN (in the
    /// region it names): the run's steps go there as events when it is the
    /// `[report] channel`, and each plugin message as one event.
    #[serde(default)]
    pub event_bus: Option<String>,
    /// A webhook: the environment variable that holds its URL (HTTPS, or
    /// HTTP on loopback). The URL is a secret: only its host is ever shown.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    /// A webhook's body: `json` (the message's fields) or `slack` (an
    /// incoming-webhook message).
    #[serde(default)]
    pub format: Option<WebhookFormat>,
    /// A webhook's signing secret, by environment variable: each POST then
    /// carries an HMAC-SHA256 of its timestamp and body (docs/config.md).
    #[serde(default)]
    pub signing_secret_env: Option<String>,
    /// A role to assume (through STS) to reach `topic` or `event_bus`: one
    /// of another account. Not for webhooks.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for. Only with
    /// `role_arn`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Whether a run that would publish starts even when this channel cannot
    /// be reached (checked before the run starts). Left false, such a run
    /// refuses to start: a page that cannot arrive is found before the
    /// chaos, not after.
    #[serde(default)]
    pub optional: bool,
}

impl ChannelConfig {
    /// What is wrong with this channel's keys together, each in a line.
    fn problems(&self) -> Vec<&'static str> {
        let mut wrong = Vec::new();
        let webhook_only = self.format.is_some() || self.signing_secret_env.is_some();
        let given = [
            self.topic.is_some(),
            self.event_bus.is_some(),
            self.webhook_url_env.is_some(),
        ];
        if given.iter().filter(|given| **given).count() != 1 {
            wrong.push(
                "give one of topic (SNS), event_bus (EventBridge) and webhook_url_env (a webhook)",
            );
        } else if self.webhook_url_env.is_none() && webhook_only {
            wrong.push("format and signing_secret_env are for webhook_url_env channels");
        } else if self.webhook_url_env.is_some() && self.role_arn.is_some() {
            wrong.push("role_arn is for topic and event_bus channels");
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            wrong.push("external_id needs role_arn");
        }
        wrong
    }
}

/// The body a webhook channel posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// `{"source", "channel", "subject", "body"}`.
    #[default]
    Json,
    /// `{"text"}`, as Slack's (and compatible) incoming webhooks read it.
    Slack,
}

/// One experiment: a plugin, its parameters, and what the operator allows it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Plugin name (the `.wasm` file stem in the plugin directory).
    pub plugin: String,
    /// Parameter values; unknown names and wrong kinds are refused.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub params: BTreeMap<String, toml::Value>,
    /// What the operator allows this plugin (intersected with its manifest).
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The operator's limits for this plugin, over its manifest's requests.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The sha256 the plugin's component must have (as `plugins.pins` does).
    #[serde(default)]
    pub sha256: Option<String>,
    /// When `wasmonkey daemon` runs it: `"daily"` (once per working day at
    /// a random time in the working hours) or `{ cron = "0 10 * * *" }`.
    /// Without it the daemon leaves the experiment to `wasmonkey run`.
    #[serde(default)]
    pub when: Option<When>,
}

impl Config {
    /// Read and check a config file. Errors name the file and the field.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("{}: cannot read config: {err}", path.display()))?;
        let read = read_past_mistakes(&text);
        let problems = match (read.config, read.mistakes.len()) {
            (Some(mut config), 0) => {
                config.path = path.to_owned();
                config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let problems = config.problems();
                if problems.is_empty() {
                    config.compiled_scope = config.scope.compile().ok();
                    return Ok(config);
                }
                problems
            }
            (config, count) => {
                let problems = config.map(|c| c.problems()).unwrap_or_default();
                if count == 1 && problems.is_empty() {
                    // One mistake: TOML's own words, with the line shown.
                    if let Some(err) = read.first {
                        anyhow::bail!("{}: invalid config: {err}", path.display());
                    }
                }
                problems
            }
        };
        // Every problem at once, each at its line, in the file's order; the
        // text parsed once more, with spans, for the lines.
        let document = toml_edit::ImDocument::parse(text.as_str()).ok();
        let mut located: Vec<(Option<usize>, &str)> = read
            .mistakes
            .iter()
            .map(|(line, message)| (*line, message.as_str()))
            .collect();
        located.extend(problems.iter().map(|(key, message)| {
            let line = document.as_ref().and_then(|d| line_of(&text, d, key));
            (line, message.as_str())
        }));
        located.sort_by_key(|(line, _)| line.unwrap_or(0));
        let lines = located
            .into_iter()
            .map(|(line, message)| match line {
                Some(line) => format!("{}:{line}: {message}", path.display()),
                None => format!("{}: {message}", path.display()),
            })
            .collect::<Vec<_>>();
        if let [only] = &lines[..] {
            anyhow::bail!("{only}");
        }
        anyhow::bail!(
            "{} problems in the config:\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    }

    /// Every problem of a parsed config, each with the dotted key it is
    /// at (for its line) and the message: the operator fixes them all in
    /// one pass.
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |key: String, message: String| problems.push((key, message));
        if let Err(err) = self.scope.compile() {
            problem("scope.groups".into(), format!("scope.groups: {err}"));
        }
        let fraction = self.blast_radius.max_fraction_per_group;
        if !(0.0..=1.0).contains(&fraction) {
            problem(
                "blast_radius.max_fraction_per_group".into(),
                format!("blast_radius.max_fraction_per_group must be within 0..=1, got {fraction}"),
            );
        }
        for (key, message) in accounts::problems(&self.accounts, &self.fan_out, &self.backend) {
            problem(key, message);
        }
        if let Some(url) = &self.state {
            if let Err(why) = state_database(url) {
                problem("state".into(), format!("state {why}"));
            }
        }
        for (name, channel) in &self.channels {
            let at = format!("channels.{name}");
            for wrong in channel.problems() {
                problem(at.clone(), format!("{at}: {wrong}"));
            }
        }
        // A steady-state check is checked as the stop condition it reads as.
        let conditions = self
            .stop_conditions
            .iter()
            .map(|(name, c)| (format!("stop_conditions.{name}"), c.clone()))
            .chain(
                self.steady_state
                    .iter()
                    .map(|(name, c)| (format!("steady_state.{name}"), c.as_condition())),
            );
        for (at, condition) in conditions {
            for (field, message) in condition.problems(&self.targets) {
                problem(format!("{at}.{field}"), format!("{at}: {message}"));
            }
        }
        let asks_prometheus = self
            .stop_conditions
            .values()
            .any(|c| matches!(c, StopCondition::Prometheus { .. }))
            || self
                .steady_state
                .values()
                .any(|c| matches!(c, SteadyState::Prometheus(_)));
        match &self.prometheus {
            None if asks_prometheus => problem(
                "prometheus".into(),
                "prometheus: a `prometheus` stop condition or steady-state check needs [prometheus] url".into(),
            ),
            Some(server) => {
                let scheme_ok = reqwest::Url::parse(&server.url)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
                if !scheme_ok {
                    problem(
                        "prometheus.url".into(),
                        format!(
                            "prometheus.url: {:?} is not an http(s) URL like \"http://prometheus:9090\"",
                            server.url
                        ),
                    );
                }
            }
            None => {}
        }
        match self.calendar() {
            Err(err) => problem("schedule".into(), err),
            Ok(None) => {
                for (i, _) in self
                    .experiments
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.when.is_some())
                {
                    problem(
                        format!("experiment.{}.when", i + 1),
                        format!(
                            "experiment {} has a when, but there is no [schedule] to read it in",
                            i + 1
                        ),
                    );
                }
                if let Some(KillGap::Workdays(_)) = self.blast_radius.min_time_between_kills {
                    problem(
                        "blast_radius.min_time_between_kills".into(),
                        "blast_radius.min_time_between_kills counts workdays, which need a [schedule]"
                            .into(),
                    );
                }
            }
            Ok(Some(_)) => {
                if let Err(err) = self.schedule(0) {
                    problem(schedule_key(&err), err);
                }
            }
        }
        if let Some(secs) = self.reads.max_age_secs {
            if !(0.0..=3600.0).contains(&secs) {
                problem(
                    "reads.max_age_secs".into(),
                    format!("reads.max_age_secs must be within 0..=3600, got {secs}"),
                );
            }
        }
        if self.recovery.poll_secs.is_nan() || self.recovery.poll_secs <= 0.0 {
            problem(
                "recovery.poll_secs".into(),
                format!(
                    "recovery.poll_secs must be above 0, got {}",
                    self.recovery.poll_secs
                ),
            );
        }
        for (name, target) in &self.targets {
            if let Err(err) = target.check() {
                problem(format!("targets.{name}"), format!("targets.{name}: {err}"));
            }
        }
        if let Some(channel) = &self.report.channel {
            if !self.channels.contains_key(channel) {
                problem(
                    "report.channel".into(),
                    format!(
                        "report.channel names {channel:?}, which is not a [channels.{channel}] entry"
                    ),
                );
            }
        }
        for name in &self.recovery.targets {
            if !self.targets.contains_key(name) {
                problem(
                    "recovery.targets".into(),
                    format!(
                        "recovery.targets names {name:?}, which is not a [targets.{name}] entry"
                    ),
                );
            }
        }
        if let Err(err) = self.merged_pins() {
            problem("plugins.pins".into(), err);
        }
        for (name, source) in &self.plugins.sources {
            if let Err(err) = crate::registry::Source::parse(source) {
                problem(
                    format!("plugins.sources.{name}"),
                    format!("plugins.sources.{name}: {err}"),
                );
            }
        }
        for (index, key) in self.plugins.trusted_keys.iter().enumerate() {
            if let Err(err) = crate::signing::TrustedKey::load(&self.resolve(key)) {
                problem(
                    format!("plugins.trusted_keys.{index}"),
                    format!("plugins.trusted_keys: {err:#}"),
                );
            }
        }
        if self.plugins.require_signatures && self.plugins.trusted_keys.is_empty() {
            problem(
                "plugins.require_signatures".into(),
                "plugins.require_signatures = true, but plugins.trusted_keys lists no key: no plugin could run".into(),
            );
        }
        for (key, asked, max) in self.default_limits().exceeding(&self.ceiling()) {
            problem(
                format!("limits.{key}"),
                format!("limits.{key} = {asked} is above the ceiling {max}"),
            );
        }
        problems
    }

    /// Resolve a path from the config against its directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Limits a plugin gets unless its manifest asks otherwise.
    pub(crate) fn default_limits(&self) -> Limits {
        Limits::default().with(&self.limits)
    }

    /// The most any plugin may have.
    pub fn ceiling(&self) -> Limits {
        Limits::default_ceiling().with(&self.ceiling)
    }

    /// The defaults and the ceiling together: what plugins are held to.
    pub fn limit_rules(&self) -> LimitRules {
        LimitRules {
            defaults: self.default_limits(),
            ceiling: self.ceiling(),
        }
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.resolve(&self.plugins.dir)
    }

    /// The operator's pins: `plugins.pins` and each experiment's `sha256`,
    /// by plugin name, in lower case.
    pub fn pins(&self) -> BTreeMap<String, String> {
        self.merged_pins().unwrap_or_default()
    }

    fn merged_pins(&self) -> Result<BTreeMap<String, String>, String> {
        let mut pins = BTreeMap::new();
        let given = self
            .plugins
            .pins
            .iter()
            .map(|(name, pin)| (name, pin, format!("plugins.pins.{name}")))
            .chain(self.experiments.iter().enumerate().filter_map(|(i, e)| {
                e.sha256
                    .as_ref()
                    .map(|pin| (&e.plugin, pin, format!("experiment {} sha256", i + 1)))
            }));
        for (name, pin, field) in given {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{field} = {pin:?} is not a sha256 (64 hex digits)"));
            }
            let pin = pin.to_ascii_lowercase();
            if let Some(earlier) = pins.insert(name.clone(), pin.clone()) {
                if earlier != pin {
                    return Err(format!(
                        "{field} pins {name} to {pin}, but it is already pinned to {earlier}"
                    ));
                }
            }
        }
        Ok(pins)
    }

    /// The compiled-code cache directory: `plugins.cache_dir`, else
    /// `$XDG_CACHE_HOME/wasmonkey` (when absolute), else
    /// `$HOME/.cache/wasmonkey`. Never a shared directory such as `/tmp`.
    pub fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.plugins.cache_dir {
            return Ok(self.resolve(dir));
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|dir| dir.join("wasmonkey"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no place for the compiled-code cache: set plugins.cache_dir, or XDG_CACHE_HOME or HOME (a shared directory such as /tmp is never used: its entries run as native code)",
                    self.path.display()
                )
            })
    }

    /// The state directory: the kill switch and the kill history.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.state_dir {
            return Ok(self.resolve(dir));
        }
        crate::kill_switch::operator_state_dir().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no place for the state directory (the kill switch and the kill history): set state_dir, or XDG_STATE_HOME or HOME",
                self.path.display()
            )
        })
    }

    /// Every kill switch in force for a run of this config on `cloud`: the
    /// host's, the operator's, the state directory's and the account's.
    pub fn switches(
        &self,
        cloud: &dyn crate::cloud::Cloud,
    ) -> anyhow::Result<crate::kill_switch::Switches> {
        let mut switches = crate::kill_switch::Switches::local(Some(&self.state_dir()?));
        for account in cloud.account_switches() {
            // Read no more often than the fleet: a pause reaches a run
            // within one poll.
            switches = switches.with(std::sync::Arc::new(crate::kill_switch::Cached::new(
                account,
                std::time::Duration::from_millis(self.max_read_age_ms()),
            )));
        }
        Ok(switches)
    }

    /// The working calendar of `[schedule]`, if there is one.
    pub fn calendar(&self) -> Result<Option<Calendar>, String> {
        self.schedule
            .as_ref()
            .map(|s| Calendar::new(s).map_err(|err| format!("schedule.{err}")))
            .transpose()
    }

    /// The daemon's schedule: every experiment with a `when`, if there is a
    /// `[schedule]`.
    pub fn schedule(&self, seed: u64) -> Result<Option<Schedule>, String> {
        let Some(calendar) = self.calendar()? else {
            return Ok(None);
        };
        let whens: Vec<(usize, &When)> = self
            .experiments
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.when.as_ref().map(|w| (i, w)))
            .collect();
        Schedule::new(calendar, &whens, seed).map(Some)
    }

    /// The JSON Schema of the run config, for editors to validate
    /// `wasmonkey.toml` against (`wasmonkey config schema`).
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.resolve(self.journal_dir.as_deref().unwrap_or(Path::new("journal")))
    }
}

/// The key a schedule error is about: its message starts with it
/// (`schedule.hours …`, `experiment 2 when …`).
fn schedule_key(err: &str) -> String {
    if let Some(rest) = err.strip_prefix("experiment ") {
        let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return format!("experiment.{number}.when");
    }
    err.split([' ', ':'])
        .next()
        .unwrap_or("schedule")
        .to_owned()
}

/// Most mistakes one reading of a config reports.
const MAX_MISTAKES: usize = 20;

/// A config's text read past its mistakes.
struct ReadPastMistakes {
    /// The config, when the text reads once its mistaken lines are blanked.
    config: Option<Config>,
    /// Each mistake, at its line, naming its key.
    mistakes: Vec<(Option<usize>, String)>,
    /// The first mistake, as TOML words it.
    first: Option<toml::de::Error>,
}

/// Deserialize a config, going on past each mistake that sits on one line:
/// that line is blanked (its newline kept, so every later line keeps its
/// number) and the text read again, so the operator gets every mistake at
/// once. A mistake across lines (a missing field, a whole table) or one
/// whose blanking breaks the syntax ends the reading: what would follow may
/// be its consequence, not the operator's.
fn read_past_mistakes(text: &str) -> ReadPastMistakes {
    let mut read = ReadPastMistakes {
        config: None,
        mistakes: Vec::new(),
        first: None,
    };
    let mut current = text.to_owned();
    let document = toml_edit::ImDocument::parse(text).ok();
    for _ in 0..MAX_MISTAKES {
        let err = match toml::from_str::<Config>(&current) {
            Ok(config) => {
                read.config = Some(config);
                break;
            }
            Err(err) => err,
        };
        let span = err.span();
        let on_one_line = span
            .clone()
            .filter(|s| current.get(s.clone()).is_some_and(|t| !t.contains('\n')));
        if !read.mistakes.is_empty() && on_one_line.is_none() {
            break;
        }
        let line = span
            .as_ref()
            .and_then(|s| current.get(..s.start))
            .map(|before| before.matches('\n').count() + 1);
        let key = match (&document, &span) {
            (Some(document), Some(span)) => key_at(document.as_table(), span.start, ""),
            _ => None,
        };
        let message = err.message().trim_end().replace('\n', " ");
        read.mistakes.push((
            line,
            key.map_or(message.clone(), |key| format!("{key}: {message}")),
        ));
        read.first.get_or_insert(err);
        // A text TOML cannot read at all has no line to blank.
        let (Some(span), Some(_)) = (on_one_line, &document) else {
            break;
        };
        let start = current[..span.start].rfind('\n').map_or(0, |at| at + 1);
        let end = current[span.end..]
            .find('\n')
            .map_or(current.len(), |at| span.end + at);
        current.replace_range(start..end, &" ".repeat(end - start));
        if toml_edit::ImDocument::parse(current.as_str()).is_err() {
            break;
        }
    }
    read
}

/// The dotted key (`experiment.N` for the Nth `[[experiment]]`) whose key or
/// value holds `offset`, the innermost one.
fn key_at(table: &dyn toml_edit::TableLike, offset: usize, prefix: &str) -> Option<String> {
    let holds = |span: Option<std::ops::Range<usize>>| span.is_some_and(|s| s.contains(&offset));
    for (name, item) in table.iter() {
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        let inner: Vec<(String, &dyn toml_edit::TableLike)> = match item {
            toml_edit::Item::Table(inner) => vec![(path.clone(), inner)],
            toml_edit::Item::ArrayOfTables(array) => array
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{path}.{}", i + 1), t as &dyn toml_edit::TableLike))
                .collect(),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(inner)) => {
                vec![(path.clone(), inner)]
            }
            _ => Vec::new(),
        };
        for (path, inner) in inner {
            if let Some(found) = key_at(inner, offset, &path) {
                return Some(found);
            }
        }
        let key = table.get_key_value(name).and_then(|(key, _)| key.span());
        if holds(key) || holds(item.span()) {
            return Some(path);
        }
    }
    None
}

/// The line (from 1) of a dotted key in a config's text (`document` is
/// that text parsed with spans), or of the deepest part of it the text
/// has; `experiment.N` is the Nth `[[experiment]]`.
fn line_of(text: &str, document: &toml_edit::ImDocument<&str>, key: &str) -> Option<usize> {
    use toml_edit::TableLike;
    let mut table: &dyn TableLike = document.as_table();
    let mut span = None;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some((found, item)) = table.get_key_value(part) else {
            break;
        };
        span = found.span().or(span);
        let next = match item {
            toml_edit::Item::ArrayOfTables(array) => {
                let Some(index) = parts.next().and_then(|n| n.parse::<usize>().ok()) else {
                    break;
                };
                let Some(entry) = index.checked_sub(1).and_then(|i| array.get(i)) else {
                    break;
                };
                span = entry.span().or(span);
                Some(entry as &dyn TableLike)
            }
            toml_edit::Item::Table(inner) => Some(inner as &dyn TableLike),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(inner)) => {
                Some(inner as &dyn TableLike)
            }
            _ => None,
        };
        match next {
            Some(inner) => table = inner,
            None => break,
        }
    }
    let start = span?.start;
    Some(text.get(..start)?.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasmonkey.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    const MINIMAL: &str =
        "[backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n[plugins]\ndir = \"plugins\"\n";

    #[test]
    fn a_channel_is_a_topic_a_bus_or_a_webhook_only_one_of_them() {
        for (channel, wrong) in [
            (
                "topic = \"t\"\nwebhook_url_env = \"V\"",
                Some("give one of topic"),
            ),
            ("optional = true", Some("give one of topic")),
            (
                "topic = \"t\"\nformat = \"slack\"",
                Some("are for webhook_url_env"),
            ),
            ("topic = \"t\"", None),
            (
                "webhook_url_env = \"V\"\nrole_arn = \"r\"",
                Some("role_arn is for topic and event_bus channels"),
            ),
            (
                "topic = \"t\"\nevent_bus = \"b\"",
                Some("give one of topic"),
            ),
            (
                "event_bus = \"b\"\nsigning_secret_env = \"S\"",
                Some("are for webhook_url_env"),
            ),
            ("event_bus = \"b\"\nrole_arn = \"r\"\noptional = true", None),
            (
                "topic = \"t\"\nexternal_id = \"x\"",
                Some("external_id needs role_arn"),
            ),
            ("topic = \"t\"\nrole_arn = \"r\"\nexternal_id = \"x\"", None),
            (
                "webhook_url_env = \"V\"\nformat = \"slack\"\nsigning_secret_env = \"S\"",
                None,
            ),
        ] {
            let loaded = load(&format!("{MINIMAL}[channels.ops]\n{channel}\n"));
            match wrong {
                None => assert!(loaded.is_ok(), "{channel}: {loaded:?}"),
                Some(words) => {
                    let err = format!(
                        "{:#}",
                        loaded.err().unwrap_or_else(|| anyhow::anyhow!("loaded"))
                    );
                    assert!(
                        err.contains(words) && err.contains("channels.ops"),
                        "{channel}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.blast_radius.max_terminations, 1);
        assert_eq!(config.scope.groups, ["*"]);
        assert_eq!(
            config.scope.opt_out.as_ref().map(|s| s.key.as_str()),
            Some("chaos-opt-out")
        );
        assert!(config.experiments.is_empty());
        assert!(config.plugin_dir().ends_with("plugins"));
    }

    #[test]
    fn unknown_field_is_named_with_the_file() {
        let err = load(&format!("{MINIMAL}[blast_radius]\nmax_kills = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wasmonkey.toml") && err.contains("max_kills"),
            "{err}"
        );
    }

    #[test]
    fn targets_are_a_group_or_a_url() {
        let config = load(&format!(
            "{MINIMAL}[targets.web]\ngroup = \"web\"\nmin_healthy = 2\n[targets.api]\nurl = \"http://127.0.0.1:1/health\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.targets["web"].check(),
            Ok(TargetCheck::Group {
                group: "web",
                min_healthy: 2
            })
        );
        assert!(matches!(
            config.targets["api"].check(),
            Ok(TargetCheck::Http {
                expect_status: 200,
                ..
            })
        ));
        for bad in [
            "[targets.x]\ngroup = \"web\"\n",
            "[targets.x]\nurl = \"ftp://h\"\n",
            "[targets.x]\ngroup = \"w\"\nmin_healthy = 1\nurl = \"http://h\"\n",
        ] {
            let err = load(&format!("{MINIMAL}{bad}")).unwrap_err().to_string();
            assert!(err.contains("targets.x"), "{err}");
        }
    }

    #[test]
    fn the_aws_backend_takes_region_profile_and_endpoint() {
        let config = load(
            "[backend]\nkind = \"aws\"\nregion = \"eu-west-1\"\nprofile = \"chaos\"\nendpoint_url = \"http://127.0.0.1:5000\"\n[plugins]\ndir = \"p\"\n",
        )
        .unwrap();
        let BackendConfig::Aws(aws) = &config.backend else {
            panic!("not aws: {:?}", config.backend)
        };
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.profile.as_deref(), Some("chaos"));
        let err = load("[backend]\nkind = \"aws\"\nregoin = \"x\"\n[plugins]\ndir = \"p\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("regoin"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let err = load(&format!(
            "{MINIMAL}[blast_radius]\nmax_fraction_per_group = 1.5\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_fraction_per_group"), "{err}");
        let err = load(&format!("{MINIMAL}[recovery]\ntargets = [\"nope\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let err = load(&format!("{MINIMAL}[limits]\nmemory_mib = 4096\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory_mib"), "{err}");
        let err = load(&format!("{MINIMAL}[scope]\ngroups = [\"a[\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scope.groups"), "{err}");
        let err = load(&format!(
            "{MINIMAL}[[experiment]]\nplugin = \"x\"\ngrants = [\"sudo\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("sudo"), "{err}");
    }

    #[test]
    fn promql_checks_are_refused_whole_naming_each_key() {
        let err = load(&format!(
            "{MINIMAL}[stop_conditions.errors]\nkind = \"prometheus\"\nquery = \"up\"\ngrace_secs = -1\n\
             [steady_state.latency]\nkind = \"prometheus\"\nquery = \" \"\nbelow = inf\n\
             [steady_state.site]\nkind = \"target\"\ntarget = \"nope\"\n"
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "stop_conditions.errors: give `above`, `below` or both",
            "stop_conditions.errors: grace_secs must be 0 or more",
            "steady_state.latency: query is empty",
            "steady_state.latency: below must be a finite number",
            "steady_state.site: target \"nope\"",
            "needs [prometheus] url",
        ] {
            assert!(err.contains(expected), "{expected:?} missing in:\n{err}");
        }
        let err = load(&format!(
            "{MINIMAL}[prometheus]\nurl = \"file:///etc/passwd\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("prometheus.url"), "{err}");
        let ok = load(&format!(
            "{MINIMAL}[prometheus]\nurl = \"http://127.0.0.1:9090\"\n\
             [stop_conditions.errors]\nkind = \"prometheus\"\nquery = \"up\"\nbelow = 1\ngrace_secs = 30\n\
             [steady_state.errors]\nkind = \"prometheus\"\nquery = \"up\"\nabove = 0\n"
        ))
        .unwrap();
        assert_eq!(ok.steady_state.len(), 1);
    }
}
