//! The report as one self-contained HTML file: no script, no network, no
//! external asset, so it opens anywhere and can be attached to a
//! postmortem. maud escapes every interpolated string (much of the text is
//! a plugin's, and the journal may have been edited); the charts are SVG
//! drawn by plotters, which escapes its text too, and the page's content
//! security policy forbids scripts should anything slip through.

use std::collections::BTreeMap;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;

use super::{
    BrakeSeen, CapacityPoint, ExperimentReport, Report, SteadyReading, SteadyStateReport,
    VictimReport, VictimStatus,
};
use crate::text;

/// Most group lanes drawn per experiment; the victims table lists all.
const MAX_LANES: usize = 12;
const CHART_WIDTH: u32 = 1200;
const LANE_HEIGHT: u32 = 150;

/// The colours of the chart, named once so the legend and the DOM tests
/// agree with the drawing.
pub mod colour {
    use plotters::style::RGBColor;
    /// In-service capacity.
    pub(crate) const IN_SERVICE: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
    /// Desired capacity.
    pub(crate) const DESIRED: RGBColor = RGBColor(0x7F, 0x7F, 0x7F);
    /// A termination marker (`polygon` with this fill).
    pub const TERMINATION: RGBColor = RGBColor(0xD6, 0x27, 0x28);
    /// A victim's recovery span.
    pub const RECOVERY: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
    /// A victim that did not recover (or is undecided).
    pub(crate) const UNRECOVERED: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
    /// A denial marker.
    pub(crate) const DENIAL: RGBColor = RGBColor(0x94, 0x67, 0xBD);
    /// The moment a stop condition tripped.
    pub(crate) const STOP: RGBColor = RGBColor(0x8C, 0x00, 0x00);
    /// A fault's span, from its call to its undo.
    pub const FAULT: RGBColor = RGBColor(0x8C, 0x56, 0x4B);

    /// `#RRGGBB`, as plotters writes it.
    pub fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }
}

/// Plugin or journal text, on one line, as the page shows it.
pub(crate) fn safe(text: &str) -> String {
    text::one_line(text).into_owned()
}

/// The whole page.
pub(crate) fn render(report: &Report) -> String {
    let title = format!(
        "wasmonkey run {}",
        safe(report.run_id.as_deref().unwrap_or("?"))
    );
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&title))
            body {
                h1 { (title) }
                (header(report))
                @if !report.steady_state.is_empty() {
                    (steady_state(report))
                }
                @if !report.notes.is_empty() {
                    section.notes {
                        h2 { "Notes" }
                        ul { @for note in &report.notes { li { (safe(note)) } } }
                    }
                }
                @for experiment in &report.experiments {
                    (experiment_section(report, experiment))
                }
                @if !report.notifications.is_empty() {
                    section {
                        h2 { "Run notifications" }
                        (notifications(&report.notifications))
                    }
                }
                footer {
                    "Rendered by wasmonkey " (env!("CARGO_PKG_VERSION"))
                    " from the journal " code { (safe(&report.journal)) }
                }
            }
        }
    };
    page.into_string()
}

/// The head of every page: its title, the style, and a content security
/// policy that allows no script and nothing from the network.
pub(crate) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta http-equiv="Content-Security-Policy"
                content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            style { (PreEscaped(STYLE)) }
        }
    }
}

fn header(report: &Report) -> Markup {
    let mode = match report.dry_run {
        Some(true) => "dry run (nothing was changed)",
        Some(false) => "executed",
        None => "unknown",
    };
    html! {
        table.header {
            tr { th { "Outcome" } td.outcome data-outcome=(report.outcome.name()) {
                (report.outcome.name()) " (exit status " (report.outcome.exit_code()) ")"
            } }
            tr { th { "Started" } td.started { (report.started_at.as_deref().unwrap_or("?")) } }
            tr { th { "Ended" } td.ended {
                (report.ended_at.as_deref().unwrap_or("?"))
                @if let Some(s) = report.wall_seconds { " (" (duration(s)) ")" }
            } }
            tr { th { "Run by" } td.operator { (safe(report.operator.as_deref().unwrap_or("?"))) } }
            tr { th { "Backend" } td.target {
                (safe(report.target.as_deref().or(report.backend.as_deref()).unwrap_or("?")))
            } }
            tr { th { "Account" } td.account { (safe(report.account.as_deref().unwrap_or("?"))) } }
            tr { th { "Region" } td.region { (safe(report.region.as_deref().unwrap_or("?"))) } }
            tr { th { "Config" } td { code { (safe(report.config.as_deref().unwrap_or("?"))) } } }
            tr { th { "Host" } td { "wasmonkey " (safe(report.host_version.as_deref().unwrap_or("?"))) } }
            tr { th { "Seed" } td { (report.seed.map_or("?".to_owned(), |s| s.to_string())) } }
            tr { th { "Mode" } td { (mode) } }
            @if let Some(rules) = &report.in_force {
                tr { th { "Scope" } td.scope { (safe(&rules.scope)) } }
                tr { th { "In scope at the start" } td.in-scope { (safe(&rules.in_scope)) } }
                tr { th { "Blast radius" } td.blast-radius { (safe(&rules.blast_radius)) } }
                tr { th { "Channels" } td.channels {
                    @if rules.channels.is_empty() { "none" }
                    @for c in &rules.channels {
                        div.channel data-state=(safe(&c.state)) {
                            (safe(&c.name)) ": " (safe(&c.to)) " — " (safe(&c.state))
                            @if !c.detail.is_empty() { ": " (safe(&c.detail)) }
                            @if c.optional { " (optional)" }
                        }
                    }
                } }
            }
            tr { th { "Preflight" } td.preflight { (preflight(report)) } }
            @if !report.brakes.is_empty() {
                tr { th { "Brakes" } td {
                    table.brakes {
                        tr { th { "brake" } th { "rule" } th { "at the start" } th { "at the end" } }
                        @for brake in &report.brakes {
                            tr.brake data-name=(safe(&brake.name))
                                data-before=(brake.before.as_ref().map_or("not-read", |s| s.state.name()))
                                data-after=(brake.after.as_ref().map_or("not-read", |s| s.state.name())) {
                                td { (safe(&brake.name)) }
                                td { (safe(&brake.rule)) }
                                td { (BrakeSeen::shown(brake.before.as_ref())) }
                                td { (BrakeSeen::shown(brake.after.as_ref())) }
                            }
                        }
                    }
                } }
            }
            tr { th { "Journal" } td {
                @if report.complete { "complete" } @else { "cut short: the run did not finish" }
                @if report.interrupted { " (interrupted)" }
            } }
            tr { th { "Stop conditions" } td {
                @match &report.stopped {
                    Some(stop) => {
                        span.stopped { "stopped by " (safe(&stop.condition)) }
                        " at " (format!("{:.1}", stop.at_seconds)) " s: " (safe(&stop.saw))
                    }
                    None => "none tripped",
                }
            } }
        }
    }
}

/// What the cloud was asked before the run's terminations, in a line.
fn preflight(report: &Report) -> String {
    let asked: Vec<_> = report
        .experiments
        .iter()
        .flat_map(|e| &e.preflight)
        .collect();
    let refused = asked.iter().filter(|p| !p.permitted).count();
    match (
        report.dry_run,
        report.in_force.as_ref().map(|r| r.preflight),
    ) {
        (Some(true), Some(true)) | (Some(true), None) if !asked.is_empty() => format!(
            "each termination asked of the cloud first: {} permitted, {refused} refused",
            asked.len() - refused
        ),
        (Some(true), Some(true)) => "asked, with no termination to ask about".to_owned(),
        (Some(true), _) => {
            "terminations not asked of the cloud (a dry run without --preflight)".to_owned()
        }
        (Some(false), _) => "not asked: the run executed".to_owned(),
        (None, _) => "?".to_owned(),
    }
}

/// Each steady-state check's readings before and after the run.
fn steady_state(report: &Report) -> Markup {
    let reading = |r: Option<&SteadyReading>| {
        let verdict = SteadyStateReport::verdict(r);
        html! {
            td.steady data-verdict=(verdict) {
                span class=(if verdict == "held" { "held" } else { "stopped" }) { (verdict) }
                @if let Some(r) = r {
                    " at " (format!("{:.1}", r.at_seconds)) " s: " (safe(&r.saw))
                }
            }
        }
    };
    html! {
        section.steady-state {
            h2 { "Steady state" }
            table {
                tr { th { "check" } th { "before the run" } th { "after the run" } }
                @for check in &report.steady_state {
                    tr.steady-check data-name=(safe(&check.name)) {
                        td { (safe(&check.name)) }
                        (reading(check.before.as_ref()))
                        (reading(check.after.as_ref()))
                    }
                }
            }
        }
    }
}

/// `1 h 2 min 3 s`, `4.5 s`: a wall-clock span a person reads.
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h} h {m} min {s} s")
    } else {
        format!("{m} min {s} s")
    }
}

fn experiment_section(report: &Report, experiment: &ExperimentReport) -> Markup {
    let victims: Vec<&VictimReport> = report
        .victims
        .iter()
        .filter(|v| v.experiment == experiment.index)
        .collect();
    let start = experiment.started_clock_ms.unwrap_or(0);
    html! {
        section.experiment data-experiment=(experiment.index + 1) {
            h2 {
                "Experiment " (experiment.index + 1) ": "
                (safe(&experiment.plugin)) "@" (safe(&experiment.version))
            }
            table.plugin {
                tr { th { "Component sha256" } td { code.sha256 { (safe(&experiment.sha256)) } } }
                tr { th { "Grants" } td.grants {
                    @if experiment.grants.is_empty() { "none" }
                    @else { (safe(&experiment.grants.join(", "))) }
                } }
                tr { th { "Parameters" } td.params {
                    @if experiment.params.is_empty() { "none" }
                    @for (name, value) in &experiment.params {
                        code.param { (safe(name)) " = " (text::shown(&value.to_string(), 512)) } " "
                    }
                } }
            }
            @if let Some(summary) = &experiment.summary {
                p.summary { "Plugin's summary: " (safe(summary)) }
            }
            @if let Some(error) = &experiment.error {
                p.error { "Error: " (safe(error)) }
            }
            (timeline(report, experiment, &victims))
            h3 { "Victims" }
            @if victims.is_empty() {
                p { "No victims." }
            } @else {
                table.victims {
                    thead { tr {
                        th { "Instance" } th { "Group" } th { "Zone" } th { "At (s)" }
                        th { "Status" } th { "Recovery (s)" } th { "Host verdict" }
                        th { "Plugin verdict" } th { "Plugin's recovery (s)" } th { "Reason" }
                    } }
                    tbody {
                        @for v in &victims {
                            tr.victim {
                                td { code { (safe(&v.instance_id)) } }
                                td { (safe(v.group.as_deref().unwrap_or("-"))) }
                                td.zone {
                                    span { (safe(&v.zone)) }
                                    // The id under the name: the column stays narrow.
                                    @if let Some(id) = &v.zone_id {
                                        br;
                                        small { (safe(id)) }
                                    }
                                }
                                td.num { (seconds_since(v.run_clock_ms, start)) }
                                td.status { (v.status) }
                                td.num { (v.recovery_seconds.map_or("-".to_owned(), |s| format!("{s:.1}"))) }
                                td.verdict data-verdict=(v.host_verdict) { (v.host_verdict) }
                                td { (safe(v.plugin_verdict.as_deref().unwrap_or("-"))) }
                                td.num { (v.plugin_recovery_seconds.map_or("-".to_owned(), |s| format!("{s:.1}"))) }
                                td { (safe(&v.reason)) }
                            }
                        }
                    }
                }
            }
            @let faults: Vec<&super::FaultReport> = report
                .faults
                .iter()
                .filter(|f| f.experiment == experiment.index)
                .collect();
            @if !faults.is_empty() {
                h3 { "Faults (" (faults.len()) ")" }
                table.faults {
                    thead { tr {
                        th { "Fault" } th { "Kind" } th { "Target" } th { "At (s)" }
                        th { "Undone at (s)" } th { "Status" } th { "What was done" }
                        th { "Recovery (s)" }
                    } }
                    tbody {
                        @for f in &faults {
                            tr.fault data-status=(f.status) {
                                td { code { (safe(&f.fault_id)) } }
                                td { (safe(&f.kind)) }
                                td { code { (safe(&f.target)) } }
                                td.num { (seconds_since(f.run_clock_ms, start)) }
                                td.num { (f.undone_clock_ms.map_or("-".to_owned(), |c| seconds_since(c, start))) }
                                td { (f.status) }
                                td {
                                    (safe(f.detail.as_deref().unwrap_or("-")))
                                    @if let Some(manual) = &f.manual {
                                        @if f.status != "dry-run" {
                                            br; "NOT undone; by hand: " code { (safe(manual)) }
                                        }
                                    }
                                }
                                td.num.verdict data-verdict=(fault_verdict(f)) {
                                    @for g in &f.groups {
                                        (safe(&g.group)) ": "
                                        (g.recovery_seconds.map_or_else(|| g.verdict.to_string(), |s| format!("{s:.1}")))
                                        br;
                                    }
                                    @if f.groups.is_empty() { "-" }
                                }
                            }
                        }
                    }
                }
            }
            @if !experiment.denials.is_empty() {
                h3 { "Denials (" (experiment.denials.len()) ")" }
                table.denials {
                    thead { tr { th { "At (s)" } th { "Operation" } th { "Target" } th { "Rule" } th { "Message" } } }
                    tbody {
                        @for d in &experiment.denials {
                            tr.denial {
                                td.num { (seconds_since(d.clock_ms, start)) }
                                td { (safe(&d.operation)) }
                                td { code { (safe(&d.target)) } }
                                td { (safe(&d.rule)) }
                                td { (safe(&d.message)) }
                            }
                        }
                    }
                }
            }
            @if !experiment.notifications.is_empty() {
                h3 { "Notifications" }
                (notifications(&experiment.notifications))
            }
            @if let Some(limits) = &experiment.limits {
                details.limits {
                    summary {
                        "Limits"
                        @if let Some(limit) = &experiment.limit_breached {
                            " — " span.breached { (safe(limit)) " breached" }
                        }
                    }
                    table {
                        tr { th { "fuel" } td { (text::thousands(limits.fuel)) } }
                        tr { th { "memory" } td { (limits.memory_mib) " MiB" } }
                        tr { th { "stack" } td { (limits.stack_kib) " KiB" } }
                        tr { th { "timeout" } td { (limits.timeout_secs) " s" } }
                        tr { th { "host calls" } td { (limits.host_calls) } }
                        tr { th { "bytes per host call" } td { (limits.host_call_kib) " KiB" } }
                    }
                }
            }
            @if !experiment.logs.is_empty() {
                details.logs {
                    summary { "Plugin log (" (experiment.logs.len()) " lines)" }
                    pre {
                        @for line in &experiment.logs {
                            (seconds_since(line.clock_ms, start)) " s " (safe(&line.level)) " " (safe(&line.message)) "\n"
                        }
                    }
                }
            }
        }
    }
}

fn notifications(list: &[super::NotificationReport]) -> Markup {
    html! {
        table.notifications {
            thead { tr { th { "Channel" } th { "To" } th { "Subject" } th { "Status" } th { "Attempts" } } }
            tbody {
                @for n in list {
                    tr {
                        td { (safe(&n.channel)) }
                        td { (safe(n.to.as_deref().unwrap_or("—"))) }
                        td { (safe(&n.subject)) }
                        td { (n.status) }
                        td.num { (n.attempts) }
                    }
                }
            }
        }
    }
}

/// A fault's groups' recovery in one word: the worst of them.
fn fault_verdict(fault: &super::FaultReport) -> &'static str {
    use super::HostVerdict;
    let any = |v: HostVerdict| fault.groups.iter().any(|g| g.verdict == v);
    if any(HostVerdict::NotRecovered) {
        "not-recovered"
    } else if any(HostVerdict::Pending) {
        "pending"
    } else if any(HostVerdict::Recovered) {
        "recovered"
    } else {
        "unchecked"
    }
}

fn seconds_since(clock_ms: u64, start: u64) -> String {
    format!("{:.1}", clock_ms.saturating_sub(start) as f64 / 1000.0)
}

/// One group's lane: its capacity readings, its victims and the faults
/// that reached it.
struct Lane<'a> {
    group: &'a str,
    capacity: Vec<&'a CapacityPoint>,
    victims: Vec<&'a VictimReport>,
    faults: Vec<(&'a super::FaultReport, &'a super::FaultGroup)>,
}

impl<'a> Lane<'a> {
    fn new(group: &'a str) -> Lane<'a> {
        Lane {
            group,
            capacity: Vec::new(),
            victims: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Nothing happened to it: it is drawn after those something did.
    fn quiet(&self) -> bool {
        self.victims.is_empty() && self.faults.is_empty()
    }
}

fn timeline(report: &Report, experiment: &ExperimentReport, victims: &[&VictimReport]) -> Markup {
    let mut lanes: BTreeMap<&str, Lane> = BTreeMap::new();
    for point in report
        .capacity
        .iter()
        .filter(|p| p.experiment == experiment.index)
    {
        lanes
            .entry(&point.group)
            .or_insert_with(|| Lane::new(&point.group))
            .capacity
            .push(point);
    }
    for victim in victims {
        if let Some(group) = &victim.group {
            lanes
                .entry(group)
                .or_insert_with(|| Lane::new(group))
                .victims
                .push(victim);
        }
    }
    for fault in report
        .faults
        .iter()
        .filter(|f| f.experiment == experiment.index && f.status != super::FaultStatus::DryRun)
    {
        for reached in &fault.groups {
            lanes
                .entry(&reached.group)
                .or_insert_with(|| Lane::new(&reached.group))
                .faults
                .push((fault, reached));
        }
    }
    if lanes.is_empty() {
        return html! { p.timeline-empty { "No group was observed: nothing to chart." } };
    }
    // Groups with victims or faults first, then the rest, each by name.
    let mut ordered: Vec<Lane> = lanes.into_values().collect();
    ordered.sort_by_key(|lane| (lane.quiet(), lane.group));
    let hidden = ordered.len().saturating_sub(MAX_LANES);
    ordered.truncate(MAX_LANES);
    let start = experiment.started_clock_ms.unwrap_or(0);
    let end = experiment
        .finished_clock_ms
        .unwrap_or(report.last_clock_ms)
        .max(start + 1000);
    let trips: Vec<u64> = report
        .stopped
        .iter()
        .map(|stop| (stop.at_seconds * 1000.0) as u64)
        .filter(|&at| at >= start && at <= end)
        .collect();
    let denials: Vec<u64> = experiment.denials.iter().map(|d| d.clock_ms).collect();
    let svg = match draw(&ordered, start, end, &denials, &trips) {
        Ok(svg) => PreEscaped(svg),
        Err(err) => {
            return html! { p.error { "The timeline could not be drawn: " (err) } };
        }
    };
    html! {
        figure.timeline data-lanes=(ordered.len()) {
            (svg)
            figcaption {
                (legend(colour::IN_SERVICE, "in service")) (legend(colour::DESIRED, "desired"))
                (legend(colour::TERMINATION, "termination")) (legend(colour::RECOVERY, "recovery"))
                (legend(colour::UNRECOVERED, "not recovered")) (legend(colour::DENIAL, "denial"))
                (legend(colour::STOP, "stop condition tripped"))
                @if ordered.iter().any(|lane| !lane.faults.is_empty()) {
                    (legend(colour::FAULT, "fault"))
                }
                @if hidden > 0 {
                    " — " (hidden) " more group(s) not drawn; the victims table lists every victim."
                }
            }
        }
    }
}

fn legend(c: RGBColor, what: &str) -> Markup {
    html! {
        span.legend { span.swatch style={ "background:" (colour::hex(c)) } {} (what) }
    }
}

/// Step points of a capacity series from its readings: each value holds
/// until the next reading, and the last one to `end`.
fn steps(readings: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(readings.len() * 2 + 1);
    for (i, &(x, y)) in readings.iter().enumerate() {
        if i > 0 {
            points.push((x, readings[i - 1].1));
        }
        points.push((x, y));
    }
    if let Some(&(_, y)) = readings.last() {
        points.push((end, y));
    }
    points
}

/// The lanes as one SVG, in seconds since the experiment started.
fn draw(
    lanes: &[Lane],
    start: u64,
    end: u64,
    denials: &[u64],
    trips: &[u64],
) -> Result<String, String> {
    let secs = |ms: u64| ms.saturating_sub(start) as f64 / 1000.0;
    let span = secs(end);
    let lane_count = u32::try_from(lanes.len()).unwrap_or(u32::MAX);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, LANE_HEIGHT * lane_count))
            .into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((lanes.len(), 1));
        for (lane, area) in lanes.iter().zip(areas) {
            let readings = |f: fn(&CapacityPoint) -> u32| -> Vec<(f64, f64)> {
                lane.capacity
                    .iter()
                    .map(|p| (secs(p.clock_ms), f64::from(f(p))))
                    .collect()
            };
            let in_service = readings(|p| p.in_service);
            let desired = readings(|p| p.desired);
            let top = in_service
                .iter()
                .chain(&desired)
                .map(|&(_, y)| y)
                .fold(1.0_f64, f64::max)
                + 1.0;
            let mut chart = ChartBuilder::on(&area)
                .caption(safe(lane.group), ("sans-serif", 14))
                .margin(6)
                // Room for the last tick's label, centred on the right edge.
                .margin_right(28)
                .x_label_area_size(28)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..span.max(1.0), 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("seconds since the experiment started")
                .y_desc("instances")
                // Whole instances only.
                .y_labels(top as usize + 1)
                .y_label_formatter(&|y| format!("{y:.0}"))
                .light_line_style(WHITE)
                .draw()
                .map_err(|e| e.to_string())?;
            for v in &lane.victims {
                let at = secs(v.run_clock_ms);
                let (until, c) = match v.recovery_seconds {
                    Some(r) => (at + r, colour::RECOVERY),
                    None if v.status == VictimStatus::Terminated => (span, colour::UNRECOVERED),
                    None => continue,
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(at, 0.0), (until.max(at), top)],
                        c.mix(0.18).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            // A fault spans its call to its undo (to the end while owed;
            // a reboot, a moment), then its group's recovery from there.
            for (fault, reached) in &lane.faults {
                let at = secs(fault.run_clock_ms);
                let ended = match (fault.undone_clock_ms, fault.status) {
                    (Some(undone), _) => secs(undone),
                    (None, super::FaultStatus::Applied) => at,
                    (None, _) => span,
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(at, top - 0.5), (ended.max(at + span / 200.0), top)],
                        colour::FAULT.mix(0.6).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
                let (until, c) = match (reached.recovery_seconds, reached.verdict) {
                    (Some(r), _) => (ended + r, colour::RECOVERY),
                    (None, super::HostVerdict::Unchecked) => continue,
                    (None, _) => (span, colour::UNRECOVERED),
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(ended, 0.0), (until.max(ended), top)],
                        c.mix(0.18).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(LineSeries::new(
                    steps(&desired, span),
                    colour::DESIRED.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(
                    steps(&in_service, span),
                    colour::IN_SERVICE.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            for &at in trips {
                chart
                    .draw_series(LineSeries::new(
                        [(secs(at), 0.0), (secs(at), top)],
                        colour::STOP.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(
                    denials
                        .iter()
                        .map(|&at| Cross::new((secs(at), 0.3), 4, colour::DENIAL.stroke_width(2))),
                )
                .map_err(|e| e.to_string())?;
            // A termination marker sits on the in-service line as it was
            // when the host decided: the last reading before it, or the
            // one it took just before terminating.
            let level_at = |t: f64| {
                in_service
                    .iter()
                    .take_while(|&&(x, _)| x < t)
                    .last()
                    .or_else(|| in_service.iter().find(|&&(x, _)| x >= t))
                    .map_or(top - 1.0, |&(_, y)| y)
            };
            // Victims of one instant (a plugin that terminates several at
            // once) are stacked, each visible, instead of drawn over each
            // other.
            let near = span / 150.0;
            let mut placed: Vec<(f64, f64)> = Vec::new();
            let markers: Vec<(f64, f64)> = lane
                .victims
                .iter()
                .map(|v| {
                    let at = secs(v.run_clock_ms);
                    let below = placed.iter().filter(|(x, _)| (x - at).abs() < near).count();
                    let level = level_at(at) + below as f64 * (top / 8.0);
                    placed.push((at, level));
                    (at, level)
                })
                .collect();
            chart
                .draw_series(
                    markers
                        .into_iter()
                        .map(|at| TriangleMarker::new(at, 7, colour::TERMINATION.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 1500px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
table.victims, table.faults, table.denials, table.notifications, section.steady-state table { width: 100%; }
td code, td.num, td.zone, td.verdict, td.status { white-space: nowrap; overflow-wrap: normal; }
th { overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.header th { background: #f5f5f5; }
td.outcome[data-outcome=succeeded] { color: #1a7f37; font-weight: bold; }
td.outcome:not([data-outcome=succeeded]) { color: #b00020; font-weight: bold; }
td.verdict[data-verdict=not-recovered] { color: #b00020; }
.stopped, .breached, .error { color: #b00020; font-weight: bold; }
.held { color: #1b5e20; font-weight: bold; }
.notes { background: #fff8e1; padding: 0.5rem 1rem; border-left: 4px solid #f0b400; }
figure.timeline { margin: 1rem 0; } figure.timeline svg { width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
.legend { margin-right: 1rem; white-space: nowrap; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.3rem; vertical-align: middle; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
footer { margin-top: 3rem; font-size: 0.8rem; color: #777; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_each_reading_until_the_next() {
        let points = steps(&[(0.0, 3.0), (2.0, 2.0), (5.0, 3.0)], 9.0);
        assert_eq!(
            points,
            vec![
                (0.0, 3.0),
                (2.0, 3.0),
                (2.0, 2.0),
                (5.0, 2.0),
                (5.0, 3.0),
                (9.0, 3.0)
            ]
        );
        assert!(steps(&[], 9.0).is_empty());
    }
}
