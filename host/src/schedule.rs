//! When unattended runs happen: working days and hours in a time zone, and
//! per experiment either once per working day at a random time inside the
//! window (Chaos Monkey's way) or a cron expression clipped to the window.
//!
//! Everything here is pure arithmetic on instants (epoch ms) so that the
//! daemon, `simulate` and the spacing rule share one calendar, and tests can
//! use fixed dates. Slot times for a day come from the seed, the experiment
//! and the date alone, so a restarted daemon computes the same slots.

use std::collections::BTreeSet;
use std::str::FromStr as _;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rand::{Rng as _, SeedableRng as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Milliseconds since the Unix epoch.
pub type EpochMs = i64;

/// `[schedule]` in the run config.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA time zone the days, hours, holidays and cron expressions are
    /// read in (e.g. `Europe/Berlin`).
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Working days (default Monday to Friday).
    #[serde(default = "weekdays")]
    pub days: Vec<Day>,
    /// Working hours, `HH:MM-HH:MM` in the time zone (`24:00` ends at
    /// midnight). Runs start only inside them.
    #[serde(default = "default_hours")]
    pub hours: String,
    /// Dates (`YYYY-MM-DD`) with no runs.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// The mean time between kills of a group the operator aims for (e.g.
    /// `"5 workdays"`): `simulate` compares what it achieves against it.
    #[serde(default)]
    pub mean_time_between_kills: Option<KillGap>,
    /// What the daemon does with slots that passed while it could not run
    /// them (it was down, the machine slept, the clock jumped, a long run
    /// held it): `"latest"` runs the latest of each experiment once, if
    /// its working window is still open and the experiment's next slot is
    /// not closer than its own interval; `"none"` runs none. Either way
    /// the others are recorded as missed, and a first start runs no past
    /// slot.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// `[schedule] catch_up`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CatchUp {
    /// No slot that passed is run.
    None,
    /// The latest passed slot of each experiment is run once.
    #[default]
    Latest,
}

fn utc() -> String {
    "UTC".into()
}

fn weekdays() -> Vec<Day> {
    vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri]
}

fn default_hours() -> String {
    "09:00-15:00".into()
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// When an experiment runs unattended (`when` of an `[[experiment]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum When {
    /// Once per working day, at a random time inside the working hours.
    Daily,
    /// A cron expression (`min hour day month weekday`, optional seconds
    /// first) read in the schedule's time zone; occurrences outside the
    /// working days and hours, or on holidays, are skipped.
    Cron(String),
}

/// The working calendar: days, hours and holidays in a time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    days: [bool; 7],
    start: Time,
    /// `None`: midnight at the end of the day.
    end: Option<Time>,
    holidays: BTreeSet<Date>,
}

/// A working day's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The working day, in the calendar's zone.
    pub date: Date,
    /// When its working hours begin.
    pub start: EpochMs,
    /// When they end (exclusive).
    pub end: EpochMs,
}

fn ms(ts: Timestamp) -> EpochMs {
    ts.as_millisecond()
}

/// The date an instant falls on in a time zone.
pub(crate) fn date_in(at: EpochMs, tz: &TimeZone) -> Date {
    Timestamp::from_millisecond(at)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date()
}

/// Whether an instant is one the calendar can read: inside the date
/// library's range, with a day before and after it to spare.
pub(crate) fn is_readable(at: EpochMs) -> bool {
    const DAY_MS: EpochMs = 86_400_000;
    // The range is one interval: a day either side in it puts `at` in it.
    match (at.checked_sub(DAY_MS), at.checked_add(DAY_MS)) {
        (Some(before), Some(after)) => [before, after]
            .into_iter()
            .all(|t| Timestamp::from_millisecond(t).is_ok()),
        _ => false,
    }
}

/// An instant as the operator reads it: RFC 3339 in the calendar's zone.
pub(crate) fn show(at: EpochMs, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(at) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => format!("{at} ms"),
    }
}

fn parse_hours(hours: &str) -> Result<(Time, Option<Time>), String> {
    let bad = || format!("hours = {hours:?} is not HH:MM-HH:MM (e.g. \"09:00-15:00\")");
    let (from, to) = hours.split_once('-').ok_or_else(bad)?;
    let time = |text: &str| -> Result<Option<Time>, String> {
        let text = text.trim();
        if text == "24:00" {
            return Ok(None);
        }
        Time::strptime("%H:%M", text).map(Some).map_err(|_| bad())
    };
    let start = time(from)?.ok_or_else(bad)?;
    let end = time(to)?;
    if end.is_some_and(|end| end <= start) {
        return Err(format!(
            "hours = {hours:?} ends before it starts (a window may not cross midnight)"
        ));
    }
    Ok((start, end))
}

impl Calendar {
    /// Compile `[schedule]`; errors name the field.
    pub fn new(config: &ScheduleConfig) -> Result<Calendar, String> {
        let tz = TimeZone::get(&config.time_zone).map_err(|err| {
            format!(
                "time_zone = {:?} is not an IANA time zone: {err}",
                config.time_zone
            )
        })?;
        if config.days.is_empty() {
            return Err("days is empty: no day would ever run".into());
        }
        let mut days = [false; 7];
        for day in &config.days {
            days[usize::from(day.weekday().to_monday_zero_offset().unsigned_abs())] = true;
        }
        let (start, end) = parse_hours(&config.hours)?;
        let holidays = config
            .holidays
            .iter()
            .map(|text| {
                Date::from_str(text)
                    .map_err(|_| format!("holidays: {text:?} is not a date (YYYY-MM-DD)"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Calendar {
            tz,
            days,
            start,
            end,
            holidays,
        })
    }

    /// The time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The date an instant falls on, in the calendar's zone.
    pub fn date_of(&self, at: EpochMs) -> Date {
        date_in(at, &self.tz)
    }

    /// Whether a date is on a working weekday (holidays aside).
    pub(crate) fn is_work_weekday(&self, date: Date) -> bool {
        self.days[usize::from(date.weekday().to_monday_zero_offset().unsigned_abs())]
    }

    /// Whether a date is a holiday.
    pub(crate) fn is_holiday(&self, date: Date) -> bool {
        self.holidays.contains(&date)
    }

    /// Whether runs may happen on a date.
    pub(crate) fn is_working_day(&self, date: Date) -> bool {
        self.is_work_weekday(date) && !self.is_holiday(date)
    }

    /// The window of a date, working day or not. A wall time that a DST
    /// change skips is read as the later instant, as cron daemons do.
    pub(crate) fn window_of(&self, date: Date) -> Window {
        let instant = |time: Time| -> EpochMs {
            date.to_datetime(time)
                .to_zoned(self.tz.clone())
                .map(|z| ms(z.timestamp()))
                .unwrap_or(0)
        };
        let start = instant(self.start);
        let end = match self.end {
            Some(end) => instant(end),
            None => date
                .tomorrow()
                .ok()
                .and_then(|d| d.to_zoned(self.tz.clone()).ok())
                .map_or(start, |z| ms(z.timestamp())),
        };
        Window { date, start, end }
    }

    /// Whether an instant lies inside a working day's window.
    pub fn in_window(&self, at: EpochMs) -> bool {
        let date = self.date_of(at);
        let window = self.window_of(date);
        self.is_working_day(date) && window.start <= at && at < window.end
    }

    /// The start of the window of the `n`-th working day after the date of
    /// `at` (n ≥ 1).
    pub(crate) fn workdays_after(&self, at: EpochMs, n: u32) -> EpochMs {
        let mut date = self.date_of(at);
        let mut left = n.max(1);
        // Ten years of days without a working day is a calendar error the
        // config check already refuses (no days); the bound keeps it finite.
        for _ in 0..3660 {
            let Ok(next) = date.tomorrow() else { break };
            date = next;
            if self.is_working_day(date) {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        self.window_of(date).start
    }

    /// Working days strictly after the date of `from` up to and including
    /// the date of `to`.
    pub fn workdays_between(&self, from: EpochMs, to: EpochMs) -> u32 {
        let (mut date, last) = (self.date_of(from), self.date_of(to));
        let mut count = 0;
        while date < last {
            let Ok(next) = date.tomorrow() else { break };
            date = next;
            count += u32::from(self.is_working_day(date));
        }
        count
    }
}

/// A minimum or mean time between kills: a number of working days or a
/// duration. Written as text in the config (`"1 workday"`, `"36h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum KillGap {
    /// `N workday(s)`: the next kill from the start of the N-th working day
    /// after the last one's.
    Workdays(u32),
    /// A duration (`"36h"`, `"2 days"` as 48 h, `"90m"`).
    Duration(jiff::SignedDuration),
}

impl KillGap {
    /// Parse `"2 workdays"`, `"1 workday"`, `"36h"`, `"2 days"`.
    pub fn parse(text: &str) -> Result<KillGap, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if let Some(n) = lower
            .strip_suffix("workdays")
            .or_else(|| lower.strip_suffix("workday"))
        {
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: the number of workdays must be a whole number"))?;
            if n == 0 {
                return Err(format!("{text:?}: at least 1 workday"));
            }
            return Ok(KillGap::Workdays(n));
        }
        let duration = jiff::SignedDuration::from_str(trimmed)
            .ok()
            .or_else(|| {
                let span = jiff::Span::from_str(trimmed).ok()?;
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .ok_or_else(|| {
                format!(
                    "{text:?} is neither N workdays nor a duration such as \"36h\" or \"2 days\""
                )
            })?;
        if duration.is_negative() || duration.is_zero() {
            return Err(format!("{text:?}: must be above zero"));
        }
        Ok(KillGap::Duration(duration))
    }

    /// When a group last killed at `last` may be killed again.
    pub(crate) fn next_allowed(self, last: EpochMs, calendar: Option<&Calendar>) -> EpochMs {
        match (self, calendar) {
            (KillGap::Workdays(n), Some(calendar)) => calendar.workdays_after(last, n),
            // The config check refuses workdays without a calendar; read
            // them as whole days if one ever gets here.
            (KillGap::Workdays(n), None) => {
                last.saturating_add(i64::from(n).saturating_mul(86_400_000))
            }
            (KillGap::Duration(d), _) => {
                last.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
        }
    }
}

impl TryFrom<String> for KillGap {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        KillGap::parse(&text)
    }
}

impl From<KillGap> for String {
    fn from(gap: KillGap) -> String {
        gap.to_string()
    }
}

impl JsonSchema for KillGap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KillGap".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`N workday(s)` or a duration such as `36h` or `2 days`",
            "examples": ["1 workday", "36h"]
        })
    }
}

impl std::fmt::Display for KillGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillGap::Workdays(1) => f.write_str("1 workday"),
            KillGap::Workdays(n) => write!(f, "{n} workdays"),
            KillGap::Duration(d) => write!(f, "{d:#}"),
        }
    }
}

/// One time an experiment is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Index of the experiment in the config.
    pub experiment: usize,
    /// When, epoch ms.
    pub at: EpochMs,
    /// Stable name of the slot, for the history: `E@DATE` for a daily
    /// slot, `E@RFC3339` for a cron one.
    pub key: String,
}

/// Why a due time did not become a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// A cron occurrence outside the working days or hours.
    OutsideHours,
    /// A holiday.
    Holiday,
}

/// The schedule: the calendar, and when each experiment runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The time zone, working days, hours and holidays.
    pub calendar: Calendar,
    /// (experiment index, when).
    plans: Vec<(usize, Plan)>,
    seed: u64,
}

#[derive(Debug, Clone)]
enum Plan {
    Daily,
    Cron(Box<croner::Cron>),
}

/// Most cron occurrences looked at in one call: a per-second cron over a
/// year stays bounded.
const MAX_OCCURRENCES: usize = 1_000_000;

/// The shortest interval a cron `when` may fire at: a chaos experiment
/// more often than this is a typo (a seconds field), and each slot is a
/// whole run.
pub const MIN_CRON_INTERVAL_SECS: i64 = 10;

/// Occurrences of a cron looked at to find its shortest interval.
const INTERVAL_SAMPLE: usize = 400;

/// The shortest interval between two firings of `cron` over its first
/// [`INTERVAL_SAMPLE`] firings from a fixed instant (UTC), in seconds.
fn shortest_interval_secs(cron: &croner::Cron) -> Option<i64> {
    let from = Timestamp::from_second(1_796_947_200)
        .ok()?
        .to_zoned(TimeZone::UTC);
    let times: Vec<i64> = cron
        .iter_from(from, croner::Direction::Forward)
        .take(INTERVAL_SAMPLE)
        .map(|at| at.timestamp().as_second())
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).min()
}

impl Schedule {
    /// Build from the calendar and each experiment's `when`; errors name
    /// the experiment.
    pub fn new(
        calendar: Calendar,
        whens: &[(usize, &When)],
        seed: u64,
    ) -> Result<Schedule, String> {
        let plans = whens
            .iter()
            .map(|(index, when)| {
                let plan = match when {
                    When::Daily => Plan::Daily,
                    When::Cron(expr) => {
                        let cron = croner::Cron::from_str(expr).map_err(|err| {
                            format!("experiment {}: when.cron = {expr:?}: {err}", index + 1)
                        })?;
                        if let Some(secs) = shortest_interval_secs(&cron) {
                            if secs < MIN_CRON_INTERVAL_SECS {
                                return Err(format!(
                                    "experiment {}: when.cron = {expr:?} fires every {secs} s; the shortest interval allowed is {MIN_CRON_INTERVAL_SECS} s",
                                    index + 1
                                ));
                            }
                        }
                        Plan::Cron(Box::new(cron))
                    }
                };
                Ok((*index, plan))
            })
            .collect::<Result<_, String>>()?;
        Ok(Schedule {
            calendar,
            plans,
            seed,
        })
    }

    /// Whether any experiment is scheduled.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// About how many slots `days` days from `from` hold: a week's count,
    /// scaled (for refusing a simulation too large before it starts).
    pub fn estimate_slots(&self, from: EpochMs, days: u32) -> u64 {
        const WEEK_MS: EpochMs = 7 * 86_400_000;
        let week = self.between(from, from.saturating_add(WEEK_MS)).0.len() as u64;
        week.saturating_mul(u64::from(days)).div_ceil(7)
    }

    /// The daily slot of an experiment on a date: uniform in the window,
    /// from the seed, the experiment and the date alone.
    fn daily_at(&self, experiment: usize, window: &Window) -> EpochMs {
        let mut hash = sha2::Sha256::new();
        hash.update(self.seed.to_le_bytes());
        hash.update((experiment as u64).to_le_bytes());
        hash.update(window.date.to_string().as_bytes());
        let digest = hash.finalize();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&digest);
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(seed);
        if window.end <= window.start {
            window.start
        } else {
            rng.random_range(window.start..window.end)
        }
    }

    /// Slots with `from <= at < to`, in time order (ties by experiment),
    /// and the due times skipped on the way.
    pub fn between(&self, from: EpochMs, to: EpochMs) -> (Vec<Slot>, Vec<(Slot, Skip)>) {
        let mut slots = Vec::new();
        let mut skipped = Vec::new();
        if to <= from {
            return (slots, skipped);
        }
        for (experiment, plan) in &self.plans {
            match plan {
                Plan::Daily => {
                    let mut date = self.calendar.date_of(from);
                    let last = self.calendar.date_of(to);
                    while date <= last {
                        if self.calendar.is_work_weekday(date) {
                            let window = self.calendar.window_of(date);
                            let slot = Slot {
                                experiment: *experiment,
                                at: self.daily_at(*experiment, &window),
                                key: format!("{}@{date}", experiment + 1),
                            };
                            if from <= slot.at && slot.at < to {
                                if self.calendar.is_holiday(date) {
                                    skipped.push((slot, Skip::Holiday));
                                } else {
                                    slots.push(slot);
                                }
                            }
                        }
                        let Ok(next) = date.tomorrow() else { break };
                        date = next;
                    }
                }
                Plan::Cron(cron) => {
                    let Ok(start) = Timestamp::from_millisecond(from) else {
                        continue;
                    };
                    let start = start.to_zoned(self.calendar.tz.clone());
                    for at in cron
                        .iter_from(start, croner::Direction::Forward)
                        .take(MAX_OCCURRENCES)
                    {
                        let at_ms = ms(at.timestamp());
                        if at_ms >= to {
                            break;
                        }
                        // Cron counts whole seconds: `from` inside a second
                        // that matches must not give that second again.
                        if at_ms < from {
                            continue;
                        }
                        let slot = Slot {
                            experiment: *experiment,
                            at: at_ms,
                            key: format!("{}@{}", experiment + 1, show(at_ms, &self.calendar.tz)),
                        };
                        let date = at.date();
                        if self.calendar.is_holiday(date) {
                            skipped.push((slot, Skip::Holiday));
                        } else if self.calendar.in_window(at_ms) {
                            slots.push(slot);
                        } else {
                            skipped.push((slot, Skip::OutsideHours));
                        }
                    }
                }
            }
        }
        slots.sort_by_key(|s| (s.at, s.experiment));
        skipped.sort_by_key(|(s, _)| (s.at, s.experiment));
        (slots, skipped)
    }

    /// The next two slots of `experiment` at or after `from`, within a
    /// year: how soon it comes again, and its own interval after that.
    pub(crate) fn next_of(&self, experiment: usize, from: EpochMs) -> Vec<Slot> {
        let Some((index, plan)) = self.plans.iter().find(|(i, _)| *i == experiment) else {
            return Vec::new();
        };
        let alone = Schedule {
            calendar: self.calendar.clone(),
            plans: vec![(*index, plan.clone())],
            seed: self.seed,
        };
        alone.next(from, 2)
    }

    /// Whether an experiment runs daily (at most once a working day).
    pub(crate) fn is_daily(&self, experiment: usize) -> bool {
        self.plans
            .iter()
            .any(|(i, plan)| *i == experiment && matches!(plan, Plan::Daily))
    }

    /// The next `n` slots at or after `from`, looking up to a year ahead.
    pub fn next(&self, from: EpochMs, n: usize) -> Vec<Slot> {
        const HOUR_MS: EpochMs = 3_600_000;
        const YEAR_MS: EpochMs = 366 * 24 * HOUR_MS;
        let mut found = Vec::new();
        let mut start = from;
        // An hour ahead first, then twice as far each time: a cron firing
        // every second is not expanded for a week to find its next second,
        // and a daily slot is found in a few steps.
        let mut span = HOUR_MS;
        while found.len() < n && start < from.saturating_add(YEAR_MS) {
            let end = start.saturating_add(span);
            found.extend(self.between(start, end).0);
            start = end;
            span = span.saturating_mul(2).min(7 * 24 * HOUR_MS);
        }
        found.truncate(n);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tz: &str, hours: &str, holidays: &[&str]) -> ScheduleConfig {
        ScheduleConfig {
            time_zone: tz.into(),
            days: weekdays(),
            hours: hours.into(),
            holidays: holidays.iter().map(|h| h.to_string()).collect(),
            mean_time_between_kills: None,
            catch_up: CatchUp::default(),
        }
    }

    fn at(text: &str) -> EpochMs {
        text.parse::<jiff::Zoned>()
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn berlin() -> Calendar {
        Calendar::new(&config("Europe/Berlin", "09:00-15:00", &["2026-12-25"])).unwrap()
    }

    #[test]
    fn a_window_is_read_in_the_zone_across_dst_changes() {
        let cal = berlin();
        // Winter: 09:00 in Berlin is 08:00 UTC; summer: 07:00 UTC.
        let winter = cal.window_of(Date::constant(2026, 3, 27));
        assert_eq!(winter.start, at("2026-03-27T08:00:00+00:00[UTC]"));
        assert_eq!(winter.end, at("2026-03-27T14:00:00+00:00[UTC]"));
        let summer = cal.window_of(Date::constant(2026, 3, 30));
        assert_eq!(summer.start, at("2026-03-30T07:00:00+00:00[UTC]"));
        // The Sunday of the change is 23 hours long; a window over 02:30,
        // which does not exist that day, starts at the later instant.
        let night = Calendar::new(&config("Europe/Berlin", "02:30-04:00", &[])).unwrap();
        let change = night.window_of(Date::constant(2026, 3, 29));
        assert_eq!(change.start, at("2026-03-29T03:30:00+02:00[Europe/Berlin]"));
        assert_eq!(change.end - change.start, 30 * 60 * 1000);
    }

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        let cal = berlin();
        assert!(cal.is_working_day(Date::constant(2026, 12, 24)));
        assert!(!cal.is_working_day(Date::constant(2026, 12, 25)), "holiday");
        assert!(
            !cal.is_working_day(Date::constant(2026, 12, 26)),
            "saturday"
        );
        // Thursday 24th → the next working day is Monday 28th (Friday is a
        // holiday), at 09:00 Berlin.
        let thursday = at("2026-12-24T14:00:00+01:00[Europe/Berlin]");
        assert_eq!(
            cal.workdays_after(thursday, 1),
            at("2026-12-28T09:00:00+01:00[Europe/Berlin]")
        );
        assert_eq!(
            cal.workdays_after(thursday, 2),
            at("2026-12-29T09:00:00+01:00[Europe/Berlin]")
        );
        assert_eq!(
            cal.workdays_between(thursday, at("2026-12-29T10:00:00+01:00[Europe/Berlin]")),
            2
        );
    }

    #[test]
    fn daily_slots_fall_inside_the_window_once_per_working_day_and_repeat_for_a_seed() {
        let cal = berlin();
        let schedule = Schedule::new(cal.clone(), &[(0, &When::Daily)], 7).unwrap();
        let from = at("2026-12-21T00:00:00+01:00[Europe/Berlin]");
        let to = at("2027-01-04T00:00:00+01:00[Europe/Berlin]");
        let (slots, skipped) = schedule.between(from, to);
        // Two weeks: 10 weekdays, one of them a holiday.
        assert_eq!(slots.len(), 9, "{slots:#?}");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].1, Skip::Holiday);
        assert!(skipped[0].0.key.ends_with("2026-12-25"));
        let mut dates = BTreeSet::new();
        for slot in &slots {
            assert!(cal.in_window(slot.at), "{slot:?}");
            assert!(dates.insert(cal.date_of(slot.at)), "two slots one day");
        }
        let again = Schedule::new(cal.clone(), &[(0, &When::Daily)], 7).unwrap();
        assert_eq!(again.between(from, to).0, slots);
        let other = Schedule::new(cal, &[(0, &When::Daily)], 8).unwrap();
        assert_ne!(
            other.between(from, to).0,
            slots,
            "another seed, other times"
        );
        // A window that starts mid-day sees only the slots after it.
        let noon = at("2026-12-21T12:00:00+01:00[Europe/Berlin]");
        let (later, _) = schedule.between(noon, to);
        assert!(later.iter().all(|s| s.at >= noon));
    }

    #[test]
    fn cron_occurrences_are_clipped_to_the_window() {
        let cal = berlin();
        let hourly = When::Cron("0 * * * *".into());
        let schedule = Schedule::new(cal.clone(), &[(2, &hourly)], 1).unwrap();
        let from = at("2026-12-24T00:00:00+01:00[Europe/Berlin]");
        let to = at("2026-12-26T00:00:00+01:00[Europe/Berlin]");
        let (slots, skipped) = schedule.between(from, to);
        // 09:00 to 14:00 on the 24th: six; the 25th is a holiday.
        let hours: Vec<String> = slots.iter().map(|s| show(s.at, cal.time_zone())).collect();
        assert_eq!(
            hours,
            [
                "2026-12-24T09:00:00+01:00",
                "2026-12-24T10:00:00+01:00",
                "2026-12-24T11:00:00+01:00",
                "2026-12-24T12:00:00+01:00",
                "2026-12-24T13:00:00+01:00",
                "2026-12-24T14:00:00+01:00"
            ]
        );
        assert_eq!(slots[0].key, "3@2026-12-24T09:00:00+01:00");
        // A millisecond after a slot, the next one comes (the daemon moves on
        // that way).
        let (after, _) = schedule.between(slots[0].at + 1, to);
        assert_eq!(after[0].at, slots[1].at);
        let count = |why| skipped.iter().filter(|(_, s)| *s == why).count();
        assert_eq!(count(Skip::OutsideHours), 18);
        assert_eq!(count(Skip::Holiday), 24);
        // Read in the zone: 10:00 Berlin in summer is 08:00 UTC.
        let ten = When::Cron("0 10 * * *".into());
        let schedule = Schedule::new(cal, &[(0, &ten)], 1).unwrap();
        let next = schedule.next(at("2026-07-01T00:00:00+00:00[UTC]"), 1);
        assert_eq!(next[0].at, at("2026-07-01T08:00:00+00:00[UTC]"));
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let err = |c: ScheduleConfig| Calendar::new(&c).unwrap_err();
        assert!(err(config("Mars/Olympus", "09:00-15:00", &[])).contains("time_zone"));
        assert!(err(config("UTC", "15:00-09:00", &[])).contains("hours"));
        assert!(err(config("UTC", "nine to five", &[])).contains("hours"));
        assert!(err(config("UTC", "09:00-15:00", &["25/12"])).contains("holidays"));
        let cal = Calendar::new(&config("UTC", "00:00-24:00", &[])).unwrap();
        let window = cal.window_of(Date::constant(2026, 12, 2));
        assert_eq!(window.end - window.start, 86_400_000);
        let bad = When::Cron("every tuesday".into());
        let err = Schedule::new(cal, &[(4, &bad)], 0).unwrap_err();
        assert!(
            err.contains("experiment 5") && err.contains("when.cron"),
            "{err}"
        );
    }

    #[test]
    fn gaps_are_workdays_or_durations() {
        assert_eq!(KillGap::parse("1 workday"), Ok(KillGap::Workdays(1)));
        assert_eq!(KillGap::parse("3 Workdays"), Ok(KillGap::Workdays(3)));
        let hours = |h: i64| Ok(KillGap::Duration(jiff::SignedDuration::from_hours(h)));
        assert_eq!(KillGap::parse("36h"), hours(36));
        assert_eq!(KillGap::parse("2 days"), hours(48));
        for bad in ["0 workdays", "soon", "-2h", "1.5 workdays"] {
            assert!(KillGap::parse(bad).is_err(), "{bad}");
        }
        let cal = berlin();
        let friday = at("2026-12-18T10:00:00+01:00[Europe/Berlin]");
        assert_eq!(
            KillGap::Workdays(1).next_allowed(friday, Some(&cal)),
            at("2026-12-21T09:00:00+01:00[Europe/Berlin]")
        );
        assert_eq!(
            KillGap::parse("36h")
                .unwrap()
                .next_allowed(friday, Some(&cal)),
            friday + 36 * 3_600_000
        );
    }
}

#[cfg(test)]
mod extremes {
    use super::*;
    use proptest::prelude::*;

    fn calendar(tz: &str) -> Calendar {
        let config: ScheduleConfig = toml::from_str(&format!(
            "time_zone = \"{tz}\"\nholidays = [\"2026-12-24\"]"
        ))
        .unwrap();
        Calendar::new(&config).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// No date arithmetic panics, however far out the instant or
        /// however long the gap: the extremes come back as instants, or
        /// as "unreadable", never as a panic.
        #[test]
        fn date_arithmetic_never_panics(
            at in prop_oneof![
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                -377_705_116_800_000_i64..253_402_300_800_000_i64,
            ],
            days in any::<u32>(),
            secs in any::<i64>(),
            tz in prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("Pacific/Kiritimati")],
        ) {
            let calendar = calendar(tz);
            let date = calendar.date_of(at);
            let _ = calendar.window_of(date);
            let _ = calendar.in_window(at);
            let _ = calendar.workdays_after(at, days.min(10_000));
            let _ = calendar.workdays_between(at, at.saturating_add(86_400_000 * 3));
            let _ = show(at, calendar.time_zone());
            let _ = is_readable(at);
            for gap in [KillGap::Workdays(days), KillGap::Duration(jiff::SignedDuration::from_secs(secs))] {
                let _ = gap.next_allowed(at, Some(&calendar));
                let _ = gap.next_allowed(at, None);
            }
            let when = [(0, &When::Daily)];
            let schedule = Schedule::new(calendar, &when, 1).unwrap();
            let _ = schedule.between(at, at.saturating_add(3 * 86_400_000));
            let _ = schedule.estimate_slots(at, days.min(4000));
        }
    }
}
