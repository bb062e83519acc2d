//! A run's steps as EventBridge events, read from its journal: started,
//! each victim terminated (or its termination failed), recovered or not,
//! a stop condition or the kill switch tripped, finished with its outcome.
//! Each step has a key, so that a run that puts its steps as it goes puts
//! each one once. docs/config.md documents every detail type and field.

use serde_json::json;

use super::BusEvent;
use crate::report::{HostVerdict, Report, VictimReport, VictimStatus};

/// `detail-type` of the run's start.
pub const RUN_STARTED: &str = "wasmonkey Run Started";
/// `detail-type` of a victim terminated (or, in a dry run, chosen).
pub const INSTANCE_TERMINATED: &str = "wasmonkey Instance Terminated";
/// `detail-type` of a termination that failed or whose outcome is unknown.
pub const TERMINATION_FAILED: &str = "wasmonkey Termination Failed";
/// `detail-type` of a victim whose group was whole and healthy again.
pub const INSTANCE_RECOVERED: &str = "wasmonkey Instance Recovered";
/// `detail-type` of a victim whose group did not recover in time.
pub const INSTANCE_NOT_RECOVERED: &str = "wasmonkey Instance Not Recovered";
/// `detail-type` of a stop condition or the kill switch that stopped the run.
pub const RUN_STOPPED: &str = "wasmonkey Run Stopped";
/// `detail-type` of the run's end, with its outcome.
pub const RUN_FINISHED: &str = "wasmonkey Run Finished";
/// `detail-type` of a message a plugin (or the host) published to a bus.
pub const MESSAGE: &str = "wasmonkey Message";

/// The version of the details' schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One step of a run, as an event.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// What makes it this step and no other (`terminated/i-0abc`).
    pub key: String,
    /// The event.
    pub event: BusEvent,
}

/// The steps of the run `report` reads so far that have settled, in the
/// order they happened. A victim whose termination or recovery is still
/// pending has no step for it yet; `Run Finished` comes only from a
/// journal that ends the run.
pub(crate) fn of_run(report: &Report) -> Vec<Step> {
    let run_id = report.run_id.as_deref().unwrap_or("?");
    let dry_run = report.dry_run.unwrap_or(true);
    let origin = report.clock_origin_ms.unwrap_or(0);
    let at = |clock_ms: u64| origin.saturating_add(i64::try_from(clock_ms).unwrap_or(i64::MAX));
    let mut steps: Vec<(u64, Step)> = Vec::new();
    let mut step = |clock_ms: u64, key: String, detail_type: &str, detail: serde_json::Value| {
        let mut detail = detail;
        if let Some(fields) = detail.as_object_mut() {
            fields.insert("version".into(), json!(SCHEMA_VERSION));
            fields.insert("run_id".into(), json!(run_id));
            fields.insert("dry_run".into(), json!(dry_run));
        }
        steps.push((
            clock_ms,
            Step {
                key,
                event: BusEvent {
                    detail_type: detail_type.to_owned(),
                    detail: detail.to_string(),
                    time_ms: at(clock_ms),
                },
            },
        ));
    };
    if report.run_id.is_some() {
        step(
            0,
            "started".into(),
            RUN_STARTED,
            json!({
                "backend": report.backend.as_deref().unwrap_or("?"),
                "seed": report.seed,
            }),
        );
    }
    for victim in &report.victims {
        let settled = match victim.status {
            VictimStatus::Terminated | VictimStatus::DryRun => Some(INSTANCE_TERMINATED),
            VictimStatus::Failed | VictimStatus::Uncertain => Some(TERMINATION_FAILED),
            VictimStatus::Unknown => None,
        };
        if let Some(detail_type) = settled {
            step(
                victim.run_clock_ms,
                format!("terminated/{}", victim.instance_id),
                detail_type,
                victim_detail(victim, json!({ "status": victim.status.name() })),
            );
        }
        let recovered = match victim.host_verdict {
            HostVerdict::Recovered => Some(INSTANCE_RECOVERED),
            HostVerdict::NotRecovered => Some(INSTANCE_NOT_RECOVERED),
            HostVerdict::Unchecked | HostVerdict::Pending => None,
        };
        if let Some(detail_type) = recovered {
            let waited_ms = victim.recovery_seconds.map_or(0, |s| (s * 1000.0) as u64);
            step(
                victim.run_clock_ms.saturating_add(waited_ms),
                format!("recovery/{}", victim.instance_id),
                detail_type,
                victim_detail(
                    victim,
                    json!({
                        "verdict": victim.host_verdict.name(),
                        "recovery_seconds": victim.recovery_seconds,
                    }),
                ),
            );
        }
    }
    if let Some(stop) = &report.stopped {
        step(
            (stop.at_seconds * 1000.0) as u64,
            "stopped".into(),
            RUN_STOPPED,
            json!({
                "condition": crate::text::one_line(&stop.condition),
                "kill_switch": stop.paused,
                "saw": crate::text::one_line(&stop.saw),
            }),
        );
    }
    if report.complete {
        let recovered = report
            .victims
            .iter()
            .filter(|v| v.host_verdict == HostVerdict::Recovered)
            .count();
        step(
            report.last_clock_ms,
            "finished".into(),
            RUN_FINISHED,
            json!({
                "outcome": report.outcome.name(),
                "interrupted": report.interrupted,
                "victims": report.victims.len(),
                "recovered": recovered,
            }),
        );
    }
    // Stable: steps of one moment keep the journal's order.
    steps.sort_by_key(|(clock_ms, _)| *clock_ms);
    steps.into_iter().map(|(_, step)| step).collect()
}

/// A victim's fields, with `extra`.
fn victim_detail(victim: &VictimReport, extra: serde_json::Value) -> serde_json::Value {
    let mut detail = json!({
        "experiment": victim.experiment,
        "plugin": crate::text::one_line(&victim.plugin),
        "instance_id": crate::text::one_line(&victim.instance_id),
        "group": victim.group.as_deref().map(crate::text::one_line),
        "zone": crate::text::one_line(&victim.zone),
    });
    if let (Some(fields), serde_json::Value::Object(more)) = (detail.as_object_mut(), extra) {
        fields.extend(more);
    }
    detail
}

/// A message published to a bus channel, as one event.
pub(crate) fn message(channel: &str, subject: &str, body: &str) -> BusEvent {
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    BusEvent {
        detail_type: MESSAGE.to_owned(),
        detail: json!({
            "version": SCHEMA_VERSION,
            "channel": channel,
            "subject": subject,
            "body": crate::text::bounded(body, super::BUS_BODY_BYTES),
        })
        .to_string(),
        time_ms,
    }
}
