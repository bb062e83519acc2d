//! A kill history as one self-contained HTML page (`history --html`,
//! `simulate --html`): per-group statistics, kills per day and each group's
//! recovery times. Same rules as the run report: maud escapes the text,
//! plotters draws and escapes the SVG, the page allows no script.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;

use super::{GroupStats, KillPoint};
use crate::report::html::{colour, head, safe};
use crate::schedule;

/// Most days a kills-per-day chart draws (the latest ones).
const MAX_DAYS: usize = 366;
/// Most groups the recovery chart draws (those with most kills).
const MAX_GROUPS: usize = 20;

/// A day bar (`rect` with this fill).
pub const KILLS: RGBColor = RGBColor(0xD6, 0x27, 0x28);

/// What the page is of.
pub(crate) struct KillsPage<'a> {
    /// The page's title and heading.
    pub title: String,
    /// Label and value rows of its header.
    pub facts: Vec<(&'static str, String)>,
    /// Per-group statistics, one table row each.
    pub stats: &'a [GroupStats],
    /// Every kill, in time order: the charts' points.
    pub kills: &'a [KillPoint],
    /// The zone days are counted in.
    pub time_zone: &'a TimeZone,
    /// The days to chart, first and last; default the kills' own.
    pub days: Option<(Date, Date)>,
}

/// The whole page.
pub(crate) fn render(page: &KillsPage) -> String {
    let per_day = kills_per_day(page);
    let title = safe(&page.title);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&title))
            body {
                h1 { (title) }
                table.header {
                    @for (label, value) in &page.facts {
                        tr { th { (label) } td { (safe(value)) } }
                    }
                    tr { th { "Kills" } td { (page.kills.len()) } }
                }
                h2 { "Per group" }
                (stats_table(page.stats))
                h2 { "Kills per day" }
                (chart(draw_per_day(&per_day)))
                details.per-day {
                    summary { "Kills per day, as a table" }
                    table.per-day {
                        thead { tr { th { "Day" } th { "Kills" } } }
                        tbody {
                            @for (day, n) in per_day.iter().filter(|(_, n)| *n > 0) {
                                tr.day { td { (day.to_string()) } td.num { (n) } }
                            }
                        }
                    }
                }
                h2 { "Recovery times per group" }
                (chart(draw_recoveries(page)))
                footer { "Rendered by wasmonkey " (env!("CARGO_PKG_VERSION")) }
            }
        }
    };
    markup.into_string()
}

fn chart(svg: Result<String, String>) -> Markup {
    match svg {
        Ok(svg) => html! { figure.chart { (PreEscaped(svg)) } },
        Err(err) => html! { p.error { "The chart could not be drawn: " (err) } },
    }
}

fn stats_table(stats: &[GroupStats]) -> Markup {
    let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    html! {
        table.stats {
            thead { tr {
                th { "Group" } th { "Kills" } th { "Mean gap (h)" } th { "Mean gap (workdays)" }
                th { "Shortest gap (h)" } th { "Recovery p50 (s)" } th { "p95 (s)" }
                th { "max (s)" } th { "Not recovered" }
            } }
            tbody {
                @for s in stats {
                    tr.group {
                        td { (safe(&s.group)) } td.num { (s.kills) }
                        td.num { (num(s.mean_gap_hours)) } td.num { (num(s.mean_gap_workdays)) }
                        td.num { (num(s.shortest_gap_hours)) } td.num { (num(s.recovery_p50_seconds)) }
                        td.num { (num(s.recovery_p95_seconds)) } td.num { (num(s.recovery_max_seconds)) }
                        td.num { (s.not_recovered) }
                    }
                }
            }
        }
    }
}

/// Every day of the range with its kills, the latest [`MAX_DAYS`].
fn kills_per_day(page: &KillsPage) -> Vec<(Date, u32)> {
    let mut counts: BTreeMap<Date, u32> = BTreeMap::new();
    for kill in page.kills {
        *counts
            .entry(schedule::date_in(kill.killed_ms, page.time_zone))
            .or_default() += 1;
    }
    let Some((first, last)) = page
        .days
        .or_else(|| Some((*counts.keys().next()?, *counts.keys().next_back()?)))
    else {
        return Vec::new();
    };
    let mut days = Vec::new();
    let mut day = first;
    while day <= last {
        days.push((day, counts.get(&day).copied().unwrap_or(0)));
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    let skip = days.len().saturating_sub(MAX_DAYS);
    days.split_off(skip)
}

fn draw_per_day(days: &[(Date, u32)]) -> Result<String, String> {
    let most = days.iter().map(|&(_, n)| n).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let label = |x: &f64| {
            days.get(x.max(0.0) as usize)
                .map_or(String::new(), |(d, _)| d.to_string())
        };
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..(days.len().max(1) as f64), 0.0..f64::from(most) + 1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("day")
            .y_desc("kills")
            .x_labels(8)
            .x_label_formatter(&label)
            .y_labels(most as usize + 2)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(days.iter().enumerate().filter(|(_, (_, n))| *n > 0).map(
                |(i, &(_, n))| {
                    let x = i as f64;
                    Rectangle::new([(x + 0.1, 0.0), (x + 0.9, f64::from(n))], KILLS.filled())
                },
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One row per group (most kills first): a dot per recovery, in seconds.
fn draw_recoveries(page: &KillsPage) -> Result<String, String> {
    let mut groups: Vec<&GroupStats> = page.stats.iter().collect();
    groups.sort_by(|a, b| b.kills.cmp(&a.kills).then(a.group.cmp(&b.group)));
    groups.truncate(MAX_GROUPS);
    let row: BTreeMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.group.as_str(), i))
        .collect();
    let names: Vec<String> = groups.iter().map(|g| safe(&g.group)).collect();
    let points: Vec<(f64, f64)> = page
        .kills
        .iter()
        .filter_map(|k| {
            let y = *row.get(k.group.as_deref()?)?;
            Some((k.recovery_ms? as f64 / 1000.0, y as f64))
        })
        .collect();
    let longest = points.iter().map(|&(x, _)| x).fold(1.0_f64, f64::max) * 1.05;
    let height = 80 + 28 * u32::try_from(groups.len().max(1)).unwrap_or(u32::MAX);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let label = |y: &f64| {
            let i = y.round();
            if (y - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            names.get(i as usize).cloned().unwrap_or_default()
        };
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(160)
            .build_cartesian_2d(0.0..longest, -0.5..(groups.len().max(1) as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("recovery, seconds")
            .y_labels(groups.len().max(1) * 2 + 1)
            .y_label_formatter(&label)
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 4, colour::RECOVERY.mix(0.6).filled())),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_day_of_the_range_is_counted_once() {
        let tz = TimeZone::UTC;
        let day = 86_400_000;
        let kills: Vec<KillPoint> = [0, 10, day + 5, 3 * day]
            .into_iter()
            .map(|at| KillPoint {
                group: Some("web".into()),
                killed_ms: at,
                recovery_ms: Some(1000),
                host_verdict: crate::report::HostVerdict::Recovered,
            })
            .collect();
        let page = KillsPage {
            title: "t".into(),
            facts: Vec::new(),
            stats: &[],
            kills: &kills,
            time_zone: &tz,
            days: None,
        };
        let counts: Vec<u32> = kills_per_day(&page).into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, vec![2, 1, 0, 1]);
    }
}
