//! The host's brakes: the run's stop conditions and the kill switch,
//! checked before the run starts, before every termination and on every
//! poll while the run goes on.
//!
//! Once one trips, it stays tripped for the rest of the run: every later
//! terminate is denied with its name, the plugin's run ends after a short
//! grace, no later experiment starts, and victims already terminated are
//! still watched. A condition whose state cannot be read does not trip the
//! run, but no termination is allowed while it is unknown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cloud::view::FleetView;
use crate::cloud::{AlarmState, Millis};
use crate::config::{PrometheusConfig, SteadyState, StopCondition, TargetConfig};
use crate::journal::{BrakeReading, BrakeReadingState};
use crate::kill_switch::Switches;

/// How long a plugin may go on, on the run's clock, once the run is
/// stopped: enough to log and return what it did.
pub(crate) const GRACE_MS: Millis = 5_000;

/// The name a trip of the kill switch goes by.
pub(crate) const KILL_SWITCH: &str = "kill-switch";

/// The name a trip of the steady state, read before the run, goes by.
pub(crate) const STEADY_STATE: &str = "steady-state";

/// What stopped the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trip {
    /// The stop condition's name, or [`KILL_SWITCH`].
    pub condition: String,
    /// Whether it was the kill switch.
    pub paused: bool,
    /// What the host saw.
    pub saw: String,
    /// When, on the backend's clock.
    pub at_ms: Millis,
}

impl Trip {
    /// The journal entry that records it.
    pub(crate) fn into_event(self) -> crate::journal::Event {
        crate::journal::Event::StopTripped {
            condition: self.condition,
            paused: self.paused,
            saw: self.saw,
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrakeState {
    /// Every condition holds.
    Clear,
    /// The run is stopped.
    Tripped(Trip),
    /// A condition's state could not be read: no termination until it is.
    Unknown(String),
}

#[derive(Debug, Default)]
struct State {
    tripped: Option<Trip>,
    /// When it tripped, on the wall clock.
    tripped_wall: Option<std::time::Instant>,
    /// Whether the trip has been handed out to be journalled.
    journalled: bool,
    /// Since when each target condition saw its target unhealthy.
    unhealthy_since: BTreeMap<String, Millis>,
}

/// The run's brakes.
pub(crate) struct Guard {
    conditions: BTreeMap<String, StopCondition>,
    targets: Arc<BTreeMap<String, TargetConfig>>,
    switches: Switches,
    call_timeout: Duration,
    /// Where `prometheus` conditions ask.
    prometheus: Option<PrometheusConfig>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("conditions", &self.conditions.keys().collect::<Vec<_>>())
            .field("switches", &self.switches)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The brakes of a run: its conditions, the health targets they may
    /// name, and the kill switches; backend calls bounded by `call_timeout`.
    pub(crate) fn new(
        conditions: BTreeMap<String, StopCondition>,
        targets: Arc<BTreeMap<String, TargetConfig>>,
        switches: Switches,
        call_timeout: Duration,
    ) -> Guard {
        Guard {
            conditions,
            targets,
            switches,
            call_timeout,
            prometheus: None,
            state: Mutex::default(),
        }
    }

    /// The same brakes, asking `server` for `prometheus` conditions.
    pub(crate) fn with_prometheus(mut self, server: Option<PrometheusConfig>) -> Guard {
        self.prometheus = server;
        self
    }

    /// The brakes a run config sets: its stop conditions and targets, and
    /// `switches` (for a run, every one in force: [`Config::switches`]).
    ///
    /// [`Config::switches`]: crate::config::Config::switches
    pub(crate) fn for_config(config: &crate::config::Config, switches: Switches) -> Guard {
        Guard::new(
            config.stop_conditions.clone(),
            Arc::new(config.targets.clone()),
            switches,
            config.default_limits().host_call_timeout(),
        )
        .with_prometheus(config.prometheus.clone())
    }

    /// Why a stopped plugin's run was ended, once its grace is over.
    pub(crate) fn past_grace(trip: &Trip) -> String {
        format!(
            "the run was stopped by {} ({}) and the plugin did not return within {} s",
            trip.condition,
            crate::text::one_line(&trip.saw),
            GRACE_MS / 1000
        )
    }

    /// The pause in force, if a kill switch is set.
    pub(crate) async fn paused(&self) -> Option<crate::kill_switch::Pause> {
        self.switches.paused(true).await
    }

    /// No condition and no switch.
    pub(crate) fn none() -> Guard {
        Guard::new(
            BTreeMap::new(),
            Arc::default(),
            Switches::none(),
            Duration::from_secs(10),
        )
    }

    /// Trip the run if a kill switch is set, reading the remote ones only
    /// when `remote`: the watch over a plugin that computes without calling
    /// the host.
    pub(crate) async fn check_switches(&self, now: Millis, remote: bool) {
        if self.tripped().is_some() {
            return;
        }
        if let Some(pause) = self.switches.paused(remote).await {
            self.trip(KILL_SWITCH, true, pause.to_string(), now);
        }
    }

    /// How long ago, on the wall clock, the run was stopped: a plugin's
    /// grace runs on it too, so one that computes (or sleeps on a virtual
    /// clock that does not move) is still ended.
    pub(crate) fn stopped_for(&self) -> Option<Duration> {
        self.state().tripped_wall.map(|at| at.elapsed())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trip, once the run is stopped.
    pub(crate) fn tripped(&self) -> Option<Trip> {
        self.state().tripped.clone()
    }

    /// The trip, the first time it is asked for after it happened: whoever
    /// gets it journals it.
    pub(crate) fn unjournalled(&self) -> Option<Trip> {
        let mut state = self.state();
        if state.journalled {
            return None;
        }
        let trip = state.tripped.clone()?;
        state.journalled = true;
        Some(trip)
    }

    /// Stop the run for a reason found outside a check.
    pub(crate) fn stop(&self, condition: &str, saw: String, at_ms: Millis) {
        self.trip(condition, false, saw, at_ms);
    }

    fn trip(&self, condition: &str, paused: bool, saw: String, at_ms: Millis) -> BrakeState {
        let mut state = self.state();
        state
            .tripped_wall
            .get_or_insert_with(std::time::Instant::now);
        let trip = state
            .tripped
            .get_or_insert_with(|| Trip {
                condition: condition.to_owned(),
                paused,
                saw,
                at_ms,
            })
            .clone();
        BrakeState::Tripped(trip)
    }

    /// Look at the kill switch and every condition now. `pending` are the
    /// victims not yet recovered, with when they were terminated.
    pub(crate) async fn check(&self, view: &FleetView, pending: &[(String, Millis)]) -> BrakeState {
        if let Some(trip) = self.tripped() {
            return BrakeState::Tripped(trip);
        }
        let now = view.cloud().now_ms();
        if let Some(pause) = self.switches.paused(true).await {
            return self.trip(KILL_SWITCH, true, pause.to_string(), now);
        }
        let mut unknown = Vec::new();
        for (name, condition) in &self.conditions {
            match self.look(name, condition, view, pending, now).await {
                Ok(None) => {}
                Ok(Some(saw)) => return self.trip(name, false, saw, now),
                Err(why) => unknown.push(format!("stop condition {name}: {why}")),
            }
        }
        if unknown.is_empty() {
            BrakeState::Clear
        } else {
            BrakeState::Unknown(unknown.join("; "))
        }
    }

    /// Each condition's state now, tripping nothing: for `wasmonkey plan`,
    /// and for the journal at the run's start and end.
    pub(crate) async fn survey(&self, view: &FleetView) -> Vec<BrakeReading> {
        let now = view.cloud().now_ms();
        let mut out = Vec::new();
        for (name, condition) in &self.conditions {
            let (state, saw) = match self.look(name, condition, view, &[], now).await {
                Ok(None) => (BrakeReadingState::Clear, String::new()),
                Ok(Some(saw)) => (BrakeReadingState::Tripped, saw),
                Err(why) => (BrakeReadingState::Unknown, why),
            };
            out.push(BrakeReading {
                name: name.clone(),
                rule: condition.to_string(),
                state,
                saw,
            });
        }
        out
    }

    /// Every brake now, for the journal: each kill switch, then each
    /// condition (left unread when a switch is set: a paused run reads no
    /// more). Trips nothing; [`Guard::trip_on`] acts on what it found.
    pub(crate) async fn readings(&self, view: &FleetView) -> Vec<BrakeReading> {
        let mut readings: Vec<BrakeReading> = self
            .switches
            .states(true)
            .await
            .into_iter()
            .map(|state| BrakeReading {
                name: KILL_SWITCH.to_owned(),
                rule: format!("{} switch at {}", state.scope, state.location),
                state: if state.pause.is_some() {
                    BrakeReadingState::Tripped
                } else {
                    BrakeReadingState::Clear
                },
                saw: state
                    .labelled_pause()
                    .map_or(String::new(), |p| p.to_string()),
            })
            .collect();
        if readings
            .iter()
            .any(|r| r.state == BrakeReadingState::Tripped)
        {
            readings.extend(
                self.conditions
                    .iter()
                    .map(|(name, condition)| BrakeReading {
                        name: name.clone(),
                        rule: condition.to_string(),
                        state: BrakeReadingState::NotRead,
                        saw: "a kill switch is set".to_owned(),
                    }),
            );
        } else {
            readings.extend(self.survey(view).await);
        }
        readings
    }

    /// Stop the run as [`Guard::check`] would have on these readings: at
    /// the first switch set or condition broken, or, when one could not be
    /// read, because the run cannot tell whether it may act.
    pub(crate) fn trip_on(&self, readings: &[BrakeReading], now: Millis) {
        if let Some(first) = readings
            .iter()
            .find(|r| r.state == BrakeReadingState::Tripped)
        {
            let paused = first.name == KILL_SWITCH;
            self.trip(&first.name, paused, first.saw.clone(), now);
            return;
        }
        let unknown: Vec<String> = readings
            .iter()
            .filter(|r| r.state == BrakeReadingState::Unknown)
            .map(|r| format!("stop condition {}: {}", r.name, r.saw))
            .collect();
        if !unknown.is_empty() {
            self.stop(
                "stop-conditions",
                format!(
                    "cannot tell whether the run may start: {}",
                    unknown.join("; ")
                ),
                now,
            );
        }
    }

    /// How long condition `name` has been broken, once that is
    /// `grace_secs` or more: it counts from the first look that found it
    /// broken, and starts again when a look finds it whole.
    fn broken_for(&self, name: &str, broken: bool, now: Millis, grace_secs: f64) -> Option<f64> {
        let mut state = self.state();
        if !broken {
            state.unhealthy_since.remove(name);
            return None;
        }
        let since = *state.unhealthy_since.entry(name.to_owned()).or_insert(now);
        let broken_ms = now.saturating_sub(since);
        (broken_ms >= (grace_secs * 1000.0) as Millis).then(|| broken_ms as f64 / 1000.0)
    }

    async fn ask_prometheus(
        &self,
        query: &crate::config::PromQuery,
    ) -> Result<crate::promql::Reading, String> {
        let Some(server) = &self.prometheus else {
            return Err("no [prometheus] url to ask".into());
        };
        crate::promql::read(server, query, self.call_timeout).await
    }

    /// Whether `check` holds now, and what was seen: `Err` when it cannot be
    /// told. Trips nothing.
    pub(crate) async fn steady_state(
        &self,
        name: &str,
        check: &SteadyState,
        view: &FleetView,
    ) -> Result<(bool, String), String> {
        if let SteadyState::Prometheus(query) = check {
            let reading = self.ask_prometheus(query).await?;
            return Ok((reading.breach.is_none(), reading.saw));
        }
        let now = view.cloud().now_ms();
        // The checker's own key: a stop condition of the same name keeps
        // its grace.
        let key = format!("\u{0}steady-state {name}");
        Ok(
            match self
                .look(&key, &check.as_condition(), view, &[], now)
                .await?
            {
                None => (true, "holds".to_owned()),
                Some(saw) => (false, saw),
            },
        )
    }

    /// What trips `condition` now, if anything; an error when its state
    /// cannot be read.
    async fn look(
        &self,
        name: &str,
        condition: &StopCondition,
        view: &FleetView,
        pending: &[(String, Millis)],
        now: Millis,
    ) -> Result<Option<String>, String> {
        match condition {
            StopCondition::Alarm { alarms } => {
                let found = tokio::time::timeout(self.call_timeout, view.cloud().alarms(alarms))
                    .await
                    .map_err(|_| {
                        format!(
                            "reading the alarms timed out after {} s",
                            self.call_timeout.as_secs()
                        )
                    })?
                    .map_err(|err| format!("reading the alarms failed: {err}"))?;
                for wanted in alarms {
                    match found.iter().find(|a| &a.name == wanted) {
                        None => {
                            return Ok(Some(format!(
                                "alarm {wanted} does not exist (a missing alarm cannot say the service is fine)"
                            )))
                        }
                        Some(alarm) if alarm.state == AlarmState::Alarm => {
                            return Ok(Some(format!(
                                "alarm {wanted} is in ALARM: {}",
                                alarm.reason
                            )))
                        }
                        Some(_) => {}
                    }
                }
                Ok(None)
            }
            StopCondition::Target { target, grace_secs } => {
                let Some(spec) = self.targets.get(target) else {
                    return Err(format!("no target named {target}"));
                };
                let health = crate::probe::check(view, spec, self.call_timeout)
                    .await
                    .map_err(|err| format!("checking target {target} failed: {err}"))?;
                let broken = self.broken_for(name, !health.healthy, now, *grace_secs);
                Ok(broken.map(|seconds| {
                    format!(
                        "target {target} unhealthy for {seconds:.1} s (grace {grace_secs} s): {}",
                        health.detail
                    )
                }))
            }
            StopCondition::Prometheus { query, grace_secs } => {
                let reading = self.ask_prometheus(query).await?;
                let broken = self.broken_for(name, reading.breach.is_some(), now, *grace_secs);
                Ok(broken.map(|seconds| {
                    format!(
                        "{query} broken for {seconds:.1} s (grace {grace_secs} s): {}",
                        reading.breach.as_deref().unwrap_or("?")
                    )
                }))
            }
            StopCondition::Recovery { within_secs } => {
                let budget_ms = (within_secs * 1000.0) as Millis;
                Ok(pending.iter().find_map(|(id, terminated_at)| {
                    let waited = now.saturating_sub(*terminated_at);
                    (waited > budget_ms).then(|| {
                        format!(
                            "{id} not recovered within {within_secs} s (waited {:.1} s)",
                            waited as f64 / 1000.0
                        )
                    })
                }))
            }
        }
    }
}
