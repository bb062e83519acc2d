//! Prometheus metrics: written after a run (`wasmonkey run --metrics
//! FILE`, for node_exporter's textfile collector) and served by the daemon
//! on `/metrics`.
//!
//! prometheus-client encodes OpenMetrics, which the daemon serves to
//! scrapers that ask for it. The textfile collector and `promtool check
//! metrics` read the older Prometheus text format, where a counter's
//! family is named with its `_total` and there is no `# UNIT` or `# EOF`:
//! [`to_prometheus_text`] turns one into the other.
//!
//! Everything is counted from reports, which are rendered from journals,
//! so the metrics say what the journal says. Label values come from
//! plugins and from the fleet: they are put on one line and escaped, so
//! that no name can close its label and write a metric of its own.

pub mod http;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cloud::{ApiCalls, Whereabouts};
use crate::report::{HostVerdict, Report, RunOutcome, VictimStatus};
use crate::text;

/// Longest label value kept, in bytes.
const MAX_LABEL_BYTES: usize = 128;

/// A label value from outside the host, escaped as OpenMetrics requires
/// (prometheus-client writes label values as they are).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LabelText(String);

impl LabelText {
    /// On one line, bounded, with `\` and `"` escaped.
    pub(crate) fn new(raw: &str) -> LabelText {
        let line = text::one_line(raw);
        let bounded = text::bounded(&line, MAX_LABEL_BYTES);
        let mut escaped = String::with_capacity(bounded.len());
        for c in bounded.chars() {
            match c {
                '\\' => escaped.push_str("\\\\"),
                '"' => escaped.push_str("\\\""),
                '\n' => escaped.push_str("\\n"),
                c => escaped.push(c),
            }
        }
        LabelText(escaped)
    }
}

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TerminationLabels {
    group: LabelText,
    zone: LabelText,
    plugin: LabelText,
    dry_run: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: LabelText,
    plugin: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    plugin: LabelText,
    limit: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    service: LabelText,
    action: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: LabelText,
}

/// Recovery buckets, seconds: from a fleet that replaces at once to one
/// that takes the better part of an hour.
fn recovery_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

/// The metrics of one run or of a daemon's lifetime.
pub struct Metrics {
    registry: Registry,
    terminations: Family<TerminationLabels, Counter>,
    recovery: Family<GroupLabels, Histogram, fn() -> Histogram>,
    not_recovered: Family<GroupLabels, Counter>,
    denials: Family<RuleLabels, Counter>,
    trips: Family<ConditionLabels, Counter>,
    breaches: Family<LimitLabels, Counter>,
    api_calls: Family<ApiLabels, Counter>,
    runs: Family<OutcomeLabels, Counter>,
    last_run: Gauge<f64, std::sync::atomic::AtomicU64>,
    next_slot: Gauge<f64, std::sync::atomic::AtomicU64>,
    paused: Gauge,
    build_info: Family<BuildLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, at zero.
    pub fn new() -> Metrics {
        Metrics::at(&Whereabouts::default())
    }

    /// Every metric, at zero, each series labelled with the account and
    /// region it counts (those known): one Prometheus scraping the daemons
    /// of several accounts and regions tells them apart.
    pub fn at(whereabouts: &Whereabouts) -> Metrics {
        let labels = [
            ("account", &whereabouts.account),
            ("region", &whereabouts.region),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            let value = LabelText::new(value.as_deref()?).0;
            Some((
                std::borrow::Cow::Borrowed(name),
                std::borrow::Cow::Owned(value),
            ))
        });
        let mut metrics = Metrics {
            terminations: Family::default(),
            recovery: Family::new_with_constructor(recovery_histogram),
            not_recovered: Family::default(),
            denials: Family::default(),
            trips: Family::default(),
            breaches: Family::default(),
            api_calls: Family::default(),
            runs: Family::default(),
            last_run: Gauge::default(),
            next_slot: Gauge::default(),
            paused: Gauge::default(),
            build_info: Family::default(),
            registry: Registry::with_prefix_and_labels("wasmonkey", labels),
        };
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: LabelText::new(env!("CARGO_PKG_VERSION")),
            })
            .set(1);
        // Every outcome from the start: an alert on `increase(...)` sees
        // the first failed run, not a series born at 1.
        for outcome in RunOutcome::ALL {
            drop(metrics.runs.get_or_create(&OutcomeLabels {
                outcome: LabelText::new(outcome.name()),
            }));
        }
        drop(metrics.trips.get_or_create(&ConditionLabels {
            condition: LabelText::new(crate::guard::KILL_SWITCH),
        }));
        let registry = &mut metrics.registry;
        registry.register(
            "terminations",
            "Terminations the host carried out, or allowed in a dry run",
            metrics.terminations.clone(),
        );
        registry.register_with_unit(
            "recovery",
            "Termination to recovered group, as the host measured it",
            prometheus_client::registry::Unit::Seconds,
            metrics.recovery.clone(),
        );
        registry.register(
            "not_recovered",
            "Victims whose group did not recover within the recovery timeout",
            metrics.not_recovered.clone(),
        );
        registry.register(
            "denials",
            "Operations the host refused a plugin, by rule",
            metrics.denials.clone(),
        );
        registry.register(
            "stop_condition_trips",
            "Runs stopped by a stop condition or the kill switch",
            metrics.trips.clone(),
        );
        registry.register(
            "limit_breaches",
            "Plugin runs ended by a breached limit",
            metrics.breaches.clone(),
        );
        registry.register(
            "api_calls",
            "Cloud API calls sent (attempts), by service and action",
            metrics.api_calls.clone(),
        );
        registry.register("runs", "Runs, by outcome", metrics.runs.clone());
        registry.register_with_unit(
            "last_run_timestamp",
            "When the last run ended, Unix time",
            prometheus_client::registry::Unit::Seconds,
            metrics.last_run.clone(),
        );
        registry.register(
            "paused",
            "1 while the kill switch is set",
            metrics.paused.clone(),
        );
        registry.register_with_unit(
            "next_slot_timestamp",
            "When the daemon's next slot is due, Unix time (0 before it knows)",
            prometheus_client::registry::Unit::Seconds,
            metrics.next_slot.clone(),
        );
        registry.register(
            "build_info",
            "1, labelled with the host's version",
            metrics.build_info.clone(),
        );
        metrics
    }

    /// Every metric, with the series a config makes known at zero: each
    /// stop condition's trips (and the steady state's), and for each group
    /// the scope names literally (no glob), with each plugin of its
    /// experiments, its not-recovered count and recovery histogram.
    pub fn for_config(config: &crate::config::Config, whereabouts: &Whereabouts) -> Metrics {
        let metrics = Metrics::at(whereabouts);
        let conditions = config.stop_conditions.keys().map(String::as_str);
        let steady = (!config.steady_state.is_empty()).then_some(crate::guard::STEADY_STATE);
        for condition in conditions.chain(steady) {
            drop(metrics.trips.get_or_create(&ConditionLabels {
                condition: LabelText::new(condition),
            }));
        }
        let literal = |g: &&String| !g.contains(['*', '?', '[']);
        let plugins: std::collections::BTreeSet<&str> = config
            .experiments
            .iter()
            .map(|e| e.plugin.as_str())
            .collect();
        for group in config.scope.groups.iter().filter(literal) {
            for plugin in &plugins {
                let labels = GroupLabels {
                    group: LabelText::new(group),
                    plugin: LabelText::new(plugin),
                };
                drop(metrics.not_recovered.get_or_create(&labels));
                drop(metrics.recovery.get_or_create(&labels));
            }
        }
        metrics
    }

    /// When the daemon's next slot is due, Unix time.
    pub(crate) fn set_next_slot(&self, unix_secs: f64) {
        self.next_slot.set(unix_secs);
    }

    /// Count a run's report, ended at `ended_unix_secs`.
    pub(crate) fn record_run(&self, report: &Report, ended_unix_secs: f64) {
        for v in &report.victims {
            let group = LabelText::new(v.group.as_deref().unwrap_or(""));
            let plugin = LabelText::new(&v.plugin);
            if matches!(v.status, VictimStatus::Terminated | VictimStatus::DryRun) {
                self.terminations
                    .get_or_create(&TerminationLabels {
                        group: group.clone(),
                        zone: LabelText::new(&v.zone),
                        plugin: plugin.clone(),
                        dry_run: LabelText::new(if v.dry_run { "true" } else { "false" }),
                    })
                    .inc();
            }
            let labels = GroupLabels { group, plugin };
            if let Some(seconds) = v.recovery_seconds {
                self.recovery.get_or_create(&labels).observe(seconds);
            }
            if v.host_verdict == HostVerdict::NotRecovered {
                self.not_recovered.get_or_create(&labels).inc();
            }
        }
        for experiment in &report.experiments {
            for denial in &experiment.denials {
                self.denials
                    .get_or_create(&RuleLabels {
                        rule: LabelText::new(&denial.rule),
                    })
                    .inc();
            }
            if let Some(limit) = &experiment.limit_breached {
                self.breaches
                    .get_or_create(&LimitLabels {
                        plugin: LabelText::new(&experiment.plugin),
                        limit: LabelText::new(limit),
                    })
                    .inc();
            }
        }
        if let Some(stop) = &report.stopped {
            self.trips
                .get_or_create(&ConditionLabels {
                    condition: LabelText::new(&stop.condition),
                })
                .inc();
        }
        self.runs
            .get_or_create(&OutcomeLabels {
                outcome: LabelText::new(report.outcome.name()),
            })
            .inc();
        self.last_run.set(ended_unix_secs);
    }

    /// Add API calls made since the last count.
    pub(crate) fn record_api_calls(&self, calls: &ApiCalls) {
        for ((service, action), &n) in calls {
            self.api_calls
                .get_or_create(&ApiLabels {
                    service: LabelText::new(service),
                    action: LabelText::new(action),
                })
                .inc_by(n);
        }
    }

    /// Whether the kill switch is set.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub(crate) fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String does not fail; say so rather than panic.
            let _ = writeln!(out, "# encoding failed\n# EOF");
        }
        out
    }

    /// The Prometheus text format (version 0.0.4).
    pub(crate) fn encode_text(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }
}

/// OpenMetrics text as the Prometheus text format: counter families take
/// their samples' `_total` name, `unknown` is `untyped`, and the `# UNIT`
/// and `# EOF` lines go.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let tail = if *prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let suffix = if counters.contains(name) {
                "_total"
            } else {
                ""
            };
            Some(format!("{prefix}{name}{suffix} {tail}"))
        });
        match rewritten {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// API calls in `now` beyond those in `before` (both running totals).
pub(crate) fn calls_since(before: &ApiCalls, now: &ApiCalls) -> ApiCalls {
    now.iter()
        .map(|(key, &n)| {
            (
                key.clone(),
                n.saturating_sub(before.get(key).copied().unwrap_or(0)),
            )
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_cannot_close_itself_and_forge_a_metric() {
        let metrics = Metrics::new();
        let mut calls = ApiCalls::new();
        calls.insert(
            ("ec2".into(), "x\"} 1\nwasmonkey_forged_total 1\n#".into()),
            2,
        );
        calls.insert(("sns".into(), "back\\slash".into()), 1);
        metrics.record_api_calls(&calls);
        for text in [metrics.encode_openmetrics(), metrics.encode_text()] {
            assert!(
                !text.lines().any(|l| l.starts_with("wasmonkey_forged")),
                "{text}"
            );
            assert!(text.contains(r#"action="x\"} 1"#), "{text}");
            assert!(text.contains(r#"action="back\\slash""#), "{text}");
        }
        assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn counters_are_named_with_their_total_in_the_prometheus_text_format() {
        let metrics = Metrics::new();
        metrics.record_api_calls(&ApiCalls::from([(
            ("ec2".into(), "DescribeInstances".into()),
            4,
        )]));
        metrics.set_paused(true);
        let text = metrics.encode_text();
        assert!(
            text.contains("# TYPE wasmonkey_api_calls_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP wasmonkey_api_calls_total "), "{text}");
        assert!(text.contains("# TYPE wasmonkey_paused gauge\n"), "{text}");
        assert!(text.contains("wasmonkey_paused 1\n"), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }

    #[test]
    fn calls_since_subtracts_what_was_counted() {
        let key = ("ec2".to_owned(), "DescribeInstances".to_owned());
        let before = ApiCalls::from([(key.clone(), 3)]);
        let now = ApiCalls::from([(key.clone(), 5), (("sns".into(), "Publish".into()), 1)]);
        let since = calls_since(&before, &now);
        assert_eq!(since.get(&key), Some(&2));
        assert_eq!(since.len(), 2);
        assert!(calls_since(&now, &now).is_empty());
    }
}
