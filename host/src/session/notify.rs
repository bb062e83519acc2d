//! `notify.*`: publishing to the operator's channels, bounded and
//! journalled.

use super::{
    Fatal, PluginError, Session, BODY_BYTES, MAX_NAME_BYTES, NOTIFICATIONS_PER_RUN, SUBJECT_BYTES,
};
use crate::policy::{Denial, Grant};
use crate::text;

impl Session {
    /// `notify.channels`.
    pub fn channels(&self) -> Vec<String> {
        if self.setup.policy.require(Grant::Notify).is_err() {
            return Vec::new();
        }
        self.setup.channels.keys().cloned().collect()
    }

    /// `notify.publish`: journalled, retried, never silent; the subject and
    /// body cut to SNS's limits, and at most [`NOTIFICATIONS_PER_RUN`].
    pub async fn publish(
        &mut self,
        channel: &str,
        subject: &str,
        body: &str,
    ) -> Result<Result<(), PluginError>, Fatal> {
        if let Some(stopped) = self.stop_answer() {
            return Ok(Err(stopped));
        }
        if let Err(denial) = self.setup.policy.require(Grant::Notify) {
            return self.deny("publish", channel, &denial).map(Err);
        }
        let Some(settings) = self.setup.channels.get(channel).cloned() else {
            return Ok(Err(PluginError::NotFound(format!(
                "no channel named {}",
                text::bounded(channel, MAX_NAME_BYTES)
            ))));
        };
        if self.notifications >= NOTIFICATIONS_PER_RUN {
            let denial = Denial::NotifyBudget {
                max: NOTIFICATIONS_PER_RUN,
            };
            return self.deny("publish", channel, &denial).map(Err);
        }
        self.notifications += 1;
        let timeout = self.setup.limits.host_call_timeout();
        let cloud = std::sync::Arc::clone(&self.setup.cloud);
        let rehearsal =
            crate::notify::Rehearsal::of(self.setup.policy.dry_run, self.setup.notify_dry_runs);
        let sent = crate::notify::publish(
            cloud.as_ref(),
            timeout,
            rehearsal,
            channel,
            &settings,
            &text::bounded(subject, SUBJECT_BYTES),
            &text::bounded(body, BODY_BYTES),
            |event| self.journal(event),
        )
        .await?;
        Ok(sent.map_err(PluginError::from))
    }
}
