//! `runtime.*`: log lines, the clock, seeded randomness and sleeps, during
//! which the host watches its victims' recovery.

use rand::RngCore as _;

use super::{
    CheckResult, Fatal, Session, LOG_BYTES_PER_RUN, LOG_LINES_PER_RUN, MAX_LOG_LINE_BYTES,
};
use crate::cloud::Millis;
use crate::journal::Event;
use crate::limits::{Limit, LimitBreach};
use crate::text;

impl Session {
    /// `runtime.log`: each line cut to [`MAX_LOG_LINE_BYTES`], and at most
    /// [`LOG_BYTES_PER_RUN`] and [`LOG_LINES_PER_RUN`] per run, to the journal and the host log alike.
    /// Never synced on its own.
    pub fn log(&mut self, level: tracing::Level, message: &str) -> Result<(), Fatal> {
        let message = text::bounded(message, MAX_LOG_LINE_BYTES);
        if self.log_bytes.saturating_add(message.len()) > LOG_BYTES_PER_RUN
            || self.log_lines >= LOG_LINES_PER_RUN
        {
            self.suppressed_log_lines += 1;
            self.suppressed_log_bytes += message.len() as u64;
            return Ok(());
        }
        // An empty line still costs a journal line.
        self.log_bytes += message.len().max(1);
        self.log_lines += 1;
        let plugin = &self.setup.plugin;
        let shown = text::one_line(&message);
        match level {
            tracing::Level::ERROR => tracing::error!(%plugin, "{shown}"),
            tracing::Level::WARN => tracing::warn!(%plugin, "{shown}"),
            tracing::Level::INFO => tracing::info!(%plugin, "{shown}"),
            tracing::Level::DEBUG => tracing::debug!(%plugin, "{shown}"),
            tracing::Level::TRACE => tracing::trace!(%plugin, "{shown}"),
        }
        self.journal(Event::PluginLog {
            level: level.as_str().to_ascii_lowercase(),
            message: message.into_owned(),
        })
    }

    /// `runtime.now-ms`: the run's clock as the plugin sees it.
    pub fn now_ms(&self) -> Millis {
        self.setup.cloud.now_ms() - self.started_ms
    }

    /// `runtime.random-u64`.
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// `runtime.sleep-ms`: waits on the run's clock, watching recovery on the
    /// way. Sleeping past the run's deadline ends the run.
    pub async fn sleep_ms(&mut self, ms: Millis) -> Result<(), Fatal> {
        let deadline = self.started_ms + self.setup.limits.timeout_secs.saturating_mul(1000);
        let now = self.setup.cloud.now_ms();
        let wake = now.saturating_add(ms);
        if wake > deadline {
            self.pass_time(deadline.saturating_sub(now)).await?;
            return Err(LimitBreach::new(
                Limit::Timeout,
                format!(
                    "sleeping {ms} ms would pass the run's deadline of {} s on the run clock",
                    self.setup.limits.timeout_secs
                ),
            )
            .into());
        }
        self.pass_time(ms).await
    }

    /// Let `ms` pass on the backend's clock, looking at pending victims every
    /// poll interval. A stop wakes the plugin at once, so it hears the
    /// brake; once stopped, a sleep lasts at most what is left of its grace.
    pub(crate) async fn pass_time(&mut self, ms: Millis) -> Result<(), Fatal> {
        // New victims are looked at before the clock moves on: a fleet that
        // recovers at once is seen to.
        if self.watch.has_unseen() {
            self.observe().await?;
        }
        let stopped_before = self.setup.guard.tripped();
        let mut left = match &stopped_before {
            Some(trip) => ms.min(self.grace_left_ms(trip)),
            None => ms,
        };
        while left > 0 {
            // Every poll interval: the victims, the stop conditions and the
            // kill switch; and a fault's undo when it is due, not later.
            let mut step = left.min(self.setup.poll_ms);
            if let Some(due) = self.next_undo_ms() {
                step = step.min(due.saturating_sub(self.setup.cloud.now_ms()).max(1));
            }
            self.setup.cloud.sleep_ms(step).await;
            left -= step;
            self.observe().await?;
            self.undo_due_faults().await?;
            // A fault that ended now is looked at now: a group that is
            // already whole has recovered in 0 s, not in a poll.
            if self.watch_ended_faults() {
                self.watch_recovery().await?;
            }
            self.stopped_past_grace()?;
            if stopped_before.is_none() && self.setup.guard.tripped().is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Look at every pending victim once, and at the stop conditions.
    pub(crate) async fn observe(&mut self) -> Result<(), Fatal> {
        self.check_guard().await?;
        self.watch_ended_faults();
        self.watch_recovery().await
    }

    /// Watch the groups of this experiment's faults that ended (undone by
    /// the host, whichever task did it); whether there were any.
    fn watch_ended_faults(&mut self) -> bool {
        let Some(ledger) = &self.setup.faults else {
            return false;
        };
        let ended = ledger.take_ended(self.setup.experiment);
        for fault in &ended {
            for group in &fault.groups {
                self.watch.add_fault(&fault.fault_id, group, fault.at_ms);
            }
        }
        !ended.is_empty()
    }

    /// Look at every pending victim and fault's group once.
    async fn watch_recovery(&mut self) -> Result<(), Fatal> {
        if self.watch.is_empty() {
            return Ok(());
        }
        let mut targets_ok = true;
        for target in self.setup.recovery_targets.clone() {
            targets_ok &= matches!(
                self.check_target(&target).await,
                Ok(CheckResult { healthy: true, .. })
            );
        }
        let (events, capacity) = self
            .watch
            .observe(&self.setup.view, self.setup.recovery_timeout_ms, targets_ok)
            .await;
        self.setup.progress.waiting(self.now_ms(), &capacity);
        for (group, capacity) in &capacity {
            self.journal_capacity(group, *capacity)?;
        }
        for event in events {
            self.journal(event)?;
        }
        Ok(())
    }

    /// After the plugin returned: keep watching until every victim recovered
    /// or timed out.
    pub(crate) async fn finish_watching(&mut self) -> Result<(), Fatal> {
        self.observe().await?;
        while !self.watch.is_empty() {
            self.setup.cloud.sleep_ms(self.setup.poll_ms).await;
            self.observe().await?;
        }
        self.setup.progress.finish();
        Ok(())
    }
}
