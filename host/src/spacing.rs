//! The blast radius in time: `min_time_between_kills`, and for a scheduled
//! run the end of its working window.
//!
//! The last kill of each group comes from the kill history when a run
//! starts and from the run's own terminations after that, so a group is
//! never killed twice within the gap, whichever run or experiment asks. A
//! run the daemon started inside working hours terminates nothing once they
//! are over, however long its strategy goes on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cloud::Millis;
use crate::history::{History, LedgerKill};
use crate::policy::Denial;
use crate::schedule::{self, Calendar, EpochMs, KillGap};

/// The rules and what they know of past kills.
#[derive(Debug)]
pub(crate) struct KillSpacing {
    gap: Option<KillGap>,
    /// No termination at or after this (epoch ms).
    deadline: Option<EpochMs>,
    calendar: Option<Calendar>,
    /// Epoch ms of the run clock's 0.
    origin_ms: EpochMs,
    last: Mutex<BTreeMap<String, EpochMs>>,
    /// Where an executed run's kills are checked and recorded in one step,
    /// across processes.
    ledger: Option<Ledger>,
}

/// The kill history a run's executed kills are reserved in, and the run.
struct Ledger {
    history: Arc<Mutex<dyn History>>,
    run_id: String,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl KillSpacing {
    /// A gap (if any) over the given last kills (group → epoch ms).
    pub(crate) fn new(
        gap: Option<KillGap>,
        calendar: Option<Calendar>,
        origin_ms: EpochMs,
        last: BTreeMap<String, EpochMs>,
    ) -> KillSpacing {
        KillSpacing {
            gap,
            deadline: None,
            calendar,
            origin_ms,
            last: Mutex::new(last),
            ledger: None,
        }
    }

    /// Reserve each executed kill in `history`'s ledger, for `run_id`: the
    /// gap is checked again against every process's kills and the kill is
    /// recorded, in one write transaction, before the terminate call.
    pub(crate) fn with_ledger(
        mut self,
        history: Arc<Mutex<dyn History>>,
        run_id: &str,
    ) -> KillSpacing {
        self.ledger = Some(Ledger {
            history,
            run_id: run_id.to_owned(),
        });
        self
    }

    /// Before an executed kill of an instance of `group`: the gap checked
    /// against the ledger (what every process has killed, up to now) and
    /// the kill written to it, atomically. A ledger that cannot be written
    /// denies (no kill happens unrecorded). Without a ledger or a gap, the
    /// run's own [`KillSpacing::check`] stands.
    pub(crate) fn reserve(
        &self,
        group: Option<&str>,
        instance: &str,
        clock_ms: Millis,
    ) -> Result<(), Denial> {
        let (Some(ledger), Some(group), Some(gap)) = (&self.ledger, group, self.gap) else {
            return Ok(());
        };
        let now = self.at(clock_ms);
        let kill = LedgerKill {
            run_id: &ledger.run_id,
            instance,
            group,
            at: now,
        };
        let mut denied = None;
        let mut allowed = |last: Option<EpochMs>| {
            denied = last.and_then(|last| self.allowed_after(group, last, now, gap).err());
            denied.is_none()
        };
        let mut history = ledger
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let reserved = history.reserve_kill(&kill, &mut allowed);
        drop(history);
        match reserved {
            Ok(true) => Ok(()),
            Ok(false) => Err(denied.unwrap_or_else(|| Denial::Ledger {
                why: "the ledger refused the kill without saying why".into(),
            })),
            Err(err) => Err(Denial::Ledger {
                why: format!("{err:#}"),
            }),
        }
    }

    /// A reserved kill that certainly did not happen leaves the ledger.
    pub(crate) fn release(&self, instance: &str) {
        let Some(ledger) = &self.ledger else { return };
        let mut history = ledger
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = history.release_kill(&ledger.run_id, instance) {
            // It stays counted as a kill: the safe side.
            tracing::warn!("the kill ledger keeps {instance}, whose terminate failed: {err:#}");
        }
    }

    /// Terminate nothing at or after `end` (epoch ms).
    pub(crate) fn until(mut self, end: EpochMs) -> KillSpacing {
        self.deadline = Some(end);
        self
    }

    fn at(&self, clock_ms: Millis) -> EpochMs {
        self.origin_ms
            .saturating_add(i64::try_from(clock_ms).unwrap_or(i64::MAX))
    }

    fn show(&self, at: EpochMs) -> String {
        let tz = self
            .calendar
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |c| c.time_zone().clone());
        schedule::show(at, &tz)
    }

    /// Whether an instance of the group (or a standalone one) may be
    /// killed at this point of the run's clock.
    pub(crate) fn check(&self, group: Option<&str>, clock_ms: Millis) -> Result<(), Denial> {
        let now = self.at(clock_ms);
        if let Some(end) = self.deadline.filter(|&end| now >= end) {
            return Err(Denial::OutsideHours {
                end: self.show(end),
            });
        }
        let (Some(gap), Some(group)) = (self.gap, group) else {
            return Ok(());
        };
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(group)
            .copied();
        let Some(last) = last else { return Ok(()) };
        self.allowed_after(group, last, now, gap)
    }

    /// Whether a kill of `group` at `now` keeps `gap` after its `last`.
    fn allowed_after(
        &self,
        group: &str,
        last: EpochMs,
        now: EpochMs,
        gap: KillGap,
    ) -> Result<(), Denial> {
        // A kill time the calendar cannot read (forged, or out of its
        // range) is a kill just now, never one in 1970; and a next time
        // that came out before the last one is arithmetic that gave up.
        let (last, readable) = if schedule::is_readable(last) {
            (last, true)
        } else {
            (now, false)
        };
        let next = gap.next_allowed(last, self.calendar.as_ref());
        if readable && next > last && now >= next {
            return Ok(());
        }
        Err(Denial::TooSoon {
            group: group.to_owned(),
            last: if readable {
                self.show(last)
            } else {
                "at a time the history cannot read (counted as just now)".to_owned()
            },
            next: if next > last {
                self.show(next)
            } else {
                "not before the history is repaired".to_owned()
            },
            gap,
        })
    }

    /// A kill of the group at this point of the run's clock (recorded
    /// before the call, as the budgets are).
    pub(crate) fn record(&self, group: &str, clock_ms: Millis) {
        let at = self.at(clock_ms);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = last.entry(group.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleConfig;

    fn at(text: &str) -> EpochMs {
        text.parse::<jiff::Zoned>()
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn calendar() -> Calendar {
        let config: ScheduleConfig = toml::from_str("time_zone = \"Europe/Berlin\"").unwrap();
        Calendar::new(&config).unwrap()
    }

    #[test]
    fn a_group_killed_today_waits_for_the_next_working_day() {
        let monday = at("2026-12-07T10:00:00+01:00[Europe/Berlin]");
        let last = BTreeMap::from([("web".to_owned(), monday)]);
        // The run's clock starts at Monday 14:00.
        let origin = at("2026-12-07T14:00:00+01:00[Europe/Berlin]");
        let rule = KillSpacing::new(Some(KillGap::Workdays(1)), Some(calendar()), origin, last);
        let denial = rule.check(Some("web"), 0).unwrap_err();
        assert_eq!(denial.rule(), "min-time-between-kills");
        let text = denial.to_string();
        assert!(
            text.contains("2026-12-07T10:00:00+01:00")
                && text.contains("2026-12-08T09:00:00+01:00"),
            "{text}"
        );
        assert_eq!(rule.check(Some("api"), 0), Ok(()), "never killed");
        assert_eq!(rule.check(None, 0), Ok(()), "standalone");
        // Tuesday 09:00 is 19 hours after the clock's 0.
        assert!(rule.check(Some("web"), 19 * 3_600_000 - 1).is_err());
        assert_eq!(rule.check(Some("web"), 19 * 3_600_000), Ok(()));
    }

    #[test]
    fn a_kill_in_this_run_counts_at_once() {
        let origin = at("2026-12-07T10:00:00+01:00[Europe/Berlin]");
        let rule = KillSpacing::new(
            Some(KillGap::parse("2h").unwrap()),
            None,
            origin,
            BTreeMap::new(),
        );
        assert_eq!(rule.check(Some("web"), 5_000), Ok(()));
        rule.record("web", 5_000);
        assert!(rule.check(Some("web"), 6_000).is_err());
        assert_eq!(rule.check(Some("web"), 5_000 + 7_200_000), Ok(()));
        // An older kill never moves the last one back.
        rule.record("web", 1_000);
        assert!(rule.check(Some("web"), 6_000).is_err());
    }

    #[test]
    fn a_scheduled_run_terminates_nothing_after_its_window() {
        let origin = at("2026-12-07T14:59:00+01:00[Europe/Berlin]");
        let end = at("2026-12-07T15:00:00+01:00[Europe/Berlin]");
        let rule = KillSpacing::new(None, Some(calendar()), origin, BTreeMap::new()).until(end);
        assert_eq!(rule.check(Some("web"), 59_999), Ok(()));
        let denial = rule.check(None, 60_000).unwrap_err();
        assert_eq!(denial.rule(), "outside-hours");
        assert!(
            denial.to_string().contains("2026-12-07T15:00:00+01:00"),
            "{denial}"
        );
    }

    #[test]
    fn two_runs_that_both_read_no_kill_cannot_both_kill_the_group() {
        use crate::history::SqliteHistory;
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<Mutex<dyn History>> {
            Arc::new(Mutex::new(SqliteHistory::in_state_dir(dir.path()).unwrap()))
        };
        let origin = at("2026-12-07T10:00:00+01:00[Europe/Berlin]");
        let gap = Some(KillGap::parse("1h").unwrap());
        // Two processes, each with its own connection, started before
        // either killed: both read no last kill.
        let (a, b) = (open(), open());
        let first = KillSpacing::new(gap, None, origin, BTreeMap::new()).with_ledger(a, "run-a");
        let second = KillSpacing::new(gap, None, origin, BTreeMap::new()).with_ledger(b, "run-b");
        assert_eq!(first.check(Some("web"), 0), Ok(()));
        assert_eq!(second.check(Some("web"), 1_000), Ok(()));
        // The first to reserve kills; the other is denied by the ledger.
        assert_eq!(first.reserve(Some("web"), "i-a", 0), Ok(()));
        let denial = second.reserve(Some("web"), "i-b", 1_000).unwrap_err();
        assert_eq!(denial.rule(), "min-time-between-kills");
        // A kill that certainly failed leaves the ledger: the group is free.
        first.release("i-a");
        assert_eq!(second.reserve(Some("web"), "i-b", 2_000), Ok(()));
        // And a third run, started later, reads it as a kill.
        let third_history = open();
        let last = third_history.lock().unwrap().last_kills(false).unwrap();
        assert_eq!(last.get("web"), Some(&(origin + 2_000)));
    }
}
