//! Publishing a notification: journalled before it is sent, retried with
//! backoff, every attempt recorded. A failure is reported, never hidden, and
//! never costs the caller more than the attempts.

pub mod steps;
mod webhook;

use std::time::Duration;

use crate::cloud::messaging::arn_home;
pub use crate::cloud::messaging::{
    BusEvent, ChannelRole, Messaging, EVENTS_PER_CALL, EVENT_SOURCE,
};
use crate::cloud::{Cloud, CloudError};
use crate::config::ChannelConfig;
use crate::journal::Event;
use crate::names::named;

/// EventBridge's most bytes per PutEvents call (entries together).
pub(crate) const BYTES_PER_CALL: usize = 256 * 1024;
/// What a message's body keeps on a bus, to leave room for its detail's
/// other fields within [`BYTES_PER_CALL`].
pub(crate) const BUS_BODY_BYTES: usize = 200 * 1024;

named! {
    /// What the check of a channel before a run found.
    ChannelState {
        /// The topic or bus answered.
        Reachable = "reachable",
        /// A webhook, well formed; it is not contacted before the run.
        Configured = "configured",
        /// It cannot be reached (see the detail).
        Unreachable = "unreachable",
        /// A run that publishes nothing does not ask.
        Unchecked = "unchecked",
    }
}

/// Where a channel's messages go, its secrets read from the environment.
#[derive(Debug)]
pub(crate) enum Destination {
    /// An SNS topic (any name on the simulator), as `role` when it is
    /// another account's.
    Topic {
        /// The topic.
        topic: String,
        /// The role to assume for it.
        role: Option<ChannelRole>,
    },
    /// An EventBridge bus, by name (the backend's region) or ARN.
    Bus {
        /// The bus.
        bus: String,
        /// The role to assume for it.
        role: Option<ChannelRole>,
    },
    /// A webhook (its URL is a secret: only its host is shown).
    Webhook(webhook::Webhook),
}

/// What one delivery carries.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    /// A subject and a body (a topic, a webhook; one event on a bus).
    Text {
        /// The subject, bounded.
        subject: String,
        /// The body, bounded.
        body: String,
    },
    /// Events for a bus, at most [`EVENTS_PER_CALL`].
    Events(Vec<BusEvent>),
}

impl Destination {
    /// Where `channel` sends, or why it cannot (a variable not set, a URL
    /// that is not https); the words never carry a secret.
    pub(crate) fn of(channel: &ChannelConfig) -> Result<Destination, String> {
        let role = channel.role_arn.as_ref().map(|role_arn| ChannelRole {
            role_arn: role_arn.clone(),
            external_id: channel.external_id.clone(),
        });
        match (&channel.topic, &channel.event_bus, &channel.webhook_url_env) {
            (Some(topic), None, None) => Ok(Destination::Topic {
                topic: topic.clone(),
                role,
            }),
            (None, Some(bus), None) => Ok(Destination::Bus {
                bus: bus.clone(),
                role,
            }),
            (None, None, Some(var)) => webhook::Webhook::from_env(
                var,
                channel.format.unwrap_or_default(),
                channel.signing_secret_env.as_deref(),
            )
            .map(Destination::Webhook),
            _ => Err("give one of topic, event_bus and webhook_url_env".to_owned()),
        }
    }

    /// Where it goes, for the report: the topic or bus with its region,
    /// account and role, or `webhook to HOST`.
    pub(crate) fn described(&self) -> String {
        let (shown, home, role) = match self {
            Destination::Topic { topic, role } => (self.shown(), arn_home(topic, "sns"), role),
            Destination::Bus { bus, role } => (self.shown(), arn_home(bus, "events"), role),
            Destination::Webhook(_) => return self.shown(),
        };
        let mut described = shown;
        if let Some((region, account)) = home {
            described.push_str(&format!(" (region {region}, account {account}"));
            if let Some(role) = role {
                described.push_str(&format!(", as role {}", role.role_arn));
            }
            described.push(')');
        }
        described
    }

    /// For the operator: `topic T`, `event bus B`, or `webhook to HOST`.
    pub(crate) fn shown(&self) -> String {
        match self {
            Destination::Topic { topic, .. } => format!("topic {topic}"),
            Destination::Bus { bus, .. } => format!("event bus {bus}"),
            Destination::Webhook(hook) => format!("webhook to {}", hook.host()),
        }
    }

    /// One attempt at sending; for events, `message` keeps only those the
    /// bus did not take, to be tried again.
    async fn send(
        &self,
        messaging: &dyn Messaging,
        channel: &str,
        message: &mut Message,
        timeout: Duration,
    ) -> Result<(), CloudError> {
        match (self, &mut *message) {
            (Destination::Topic { topic, role }, Message::Text { subject, body }) => {
                messaging.publish(topic, role.as_ref(), subject, body).await
            }
            (Destination::Webhook(hook), Message::Text { subject, body }) => {
                hook.post(channel, subject, body, timeout).await
            }
            (Destination::Bus { bus, role }, Message::Text { subject, body }) => {
                let event = steps::message(channel, subject, body);
                let failed = messaging.put_events(bus, role.as_ref(), &[event]).await?;
                match failed.first() {
                    None => Ok(()),
                    Some((_, why)) => {
                        Err(CloudError::Backend(format!("the event was not put: {why}")))
                    }
                }
            }
            (Destination::Bus { bus, role }, Message::Events(events)) => {
                let failed = messaging.put_events(bus, role.as_ref(), events).await?;
                if failed.is_empty() {
                    return Ok(());
                }
                let why = failed
                    .iter()
                    .map(|(_, why)| why.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join("; ");
                let of = events.len();
                let keep: std::collections::BTreeSet<usize> =
                    failed.iter().map(|(index, _)| *index).collect();
                let mut index = 0;
                events.retain(|_| {
                    let kept = keep.contains(&index);
                    index += 1;
                    kept
                });
                Err(CloudError::Backend(format!(
                    "{} of {of} events were not put: {why}",
                    keep.len()
                )))
            }
            (_, Message::Events(_)) => Err(CloudError::Refused(
                "events go only to an event_bus channel".to_owned(),
            )),
        }
    }
}

/// SNS's own limits: a subject of at most 100 characters (the host keeps
/// 100 bytes) and a message of at most 256 KiB.
pub(crate) const SUBJECT_BYTES: usize = 100;
/// See [`SUBJECT_BYTES`].
pub(crate) const BODY_BYTES: usize = 256 * 1024;

/// Attempts at publishing one notification.
pub(crate) const ATTEMPTS: u32 = 3;

/// What a run that changes nothing does with its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rehearsal {
    /// A real run: send.
    No,
    /// A dry run: journal it as "would publish", send nothing.
    Withhold,
    /// A dry run whose operator asked for its notifications
    /// (`notify_dry_runs`): send, the subject saying it is a dry run.
    Announce,
}

impl Rehearsal {
    /// For a run that is `dry_run`, under the config's `notify_dry_runs`.
    pub(crate) fn of(dry_run: bool, notify_dry_runs: bool) -> Rehearsal {
        match (dry_run, notify_dry_runs) {
            (false, _) => Rehearsal::No,
            (true, false) => Rehearsal::Withhold,
            (true, true) => Rehearsal::Announce,
        }
    }
}

/// How an announced dry run's subject begins.
pub(crate) const DRY_RUN_SUBJECT: &str = "[dry run] ";

/// Publish `subject`/`body` to the channel `channel` (its `settings`),
/// recording intent and every attempt through `journal` first; in a
/// rehearsal, as `rehearsal` says. On a bus it is one event.
#[allow(clippy::too_many_arguments, reason = "each is one fact of the message")]
pub(crate) async fn publish<E>(
    cloud: &dyn Cloud,
    call_timeout: Duration,
    rehearsal: Rehearsal,
    channel: &str,
    settings: &ChannelConfig,
    subject: &str,
    body: &str,
    journal: impl FnMut(Event) -> Result<(), E>,
) -> Result<Result<(), CloudError>, E> {
    let subject = match rehearsal {
        Rehearsal::Announce => {
            crate::text::bounded(&format!("{DRY_RUN_SUBJECT}{subject}"), SUBJECT_BYTES).into_owned()
        }
        _ => subject.to_owned(),
    };
    let message = Message::Text {
        subject,
        body: body.to_owned(),
    };
    deliver(
        cloud,
        call_timeout,
        rehearsal,
        channel,
        Destination::of(settings),
        message,
        journal,
    )
    .await
}

/// Put `events` on the bus of the channel `channel`, in order, in calls of
/// at most [`EVENTS_PER_CALL`] events and [`BYTES_PER_CALL`] bytes, each
/// call journalled as one notification. A call that fails does not stop
/// the next (each event carries its time, so a reader can order them); the
/// first failure is what comes back.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one fact of the delivery"
)]
pub(crate) async fn put_events<E>(
    cloud: &dyn Cloud,
    call_timeout: Duration,
    rehearsal: Rehearsal,
    channel: &str,
    settings: &ChannelConfig,
    events: Vec<BusEvent>,
    mut journal: impl FnMut(Event) -> Result<(), E>,
) -> Result<Result<(), CloudError>, E> {
    let mut first_failure = Ok(());
    for batch in batches(events) {
        let sent = deliver(
            cloud,
            call_timeout,
            rehearsal,
            channel,
            Destination::of(settings),
            Message::Events(batch),
            &mut journal,
        )
        .await?;
        if first_failure.is_ok() {
            first_failure = sent;
        }
    }
    Ok(first_failure)
}

/// `events` in order, cut into PutEvents calls.
fn batches(events: Vec<BusEvent>) -> Vec<Vec<BusEvent>> {
    let mut batches: Vec<Vec<BusEvent>> = Vec::new();
    let mut bytes = 0;
    for event in events {
        // What EventBridge counts of an entry: its detail, detail type
        // and source, and 14 bytes for its time.
        let size = event.detail.len() + event.detail_type.len() + EVENT_SOURCE.len() + 14;
        match batches.last_mut() {
            Some(batch) if batch.len() < EVENTS_PER_CALL && bytes + size <= BYTES_PER_CALL => {
                bytes += size;
                batch.push(event);
            }
            _ => {
                bytes = size;
                batches.push(vec![event]);
            }
        }
    }
    batches
}

/// One message to one destination: its intent journalled before anything
/// is sent, then each attempt; what can heal retried with backoff, what
/// cannot tried once.
async fn deliver<E>(
    cloud: &dyn Cloud,
    call_timeout: Duration,
    rehearsal: Rehearsal,
    channel: &str,
    destination: Result<Destination, String>,
    mut message: Message,
    mut journal: impl FnMut(Event) -> Result<(), E>,
) -> Result<Result<(), CloudError>, E> {
    let (subject, body) = journalled(&message);
    journal(Event::NotifyIntent {
        channel: channel.to_owned(),
        subject,
        body,
        to: destination.as_ref().ok().map(Destination::described),
    })?;
    if rehearsal == Rehearsal::Withhold {
        journal(Event::NotifyWithheld {
            channel: channel.to_owned(),
        })?;
        return Ok(Ok(()));
    }
    let destination = match destination {
        Ok(destination) => destination,
        Err(why) => {
            journal(Event::NotifyFailed {
                channel: channel.to_owned(),
                attempt: 1,
                error: why.clone(),
            })?;
            return Ok(Err(CloudError::Refused(why)));
        }
    };
    let messaging = cloud.messaging();
    let mut last = CloudError::Backend("not attempted".into());
    for attempt in 1..=ATTEMPTS {
        let sending = destination.send(messaging, channel, &mut message, call_timeout);
        let sent = match tokio::time::timeout(call_timeout, sending).await {
            Ok(result) => result,
            Err(_) => Err(CloudError::Backend(format!(
                "publishing timed out after {} s",
                call_timeout.as_secs()
            ))),
        };
        match sent {
            Ok(()) => {
                journal(Event::NotifyDone {
                    channel: channel.to_owned(),
                    attempt,
                })?;
                return Ok(Ok(()));
            }
            Err(err) => {
                journal(Event::NotifyFailed {
                    channel: channel.to_owned(),
                    attempt,
                    error: err.to_string(),
                })?;
                // What the backend refused it will refuse again.
                let refused = matches!(err, CloudError::Refused(_));
                last = err;
                if refused {
                    break;
                }
                if attempt < ATTEMPTS {
                    cloud.sleep_ms(500 << attempt).await;
                }
            }
        }
    }
    Ok(Err(last))
}

/// A message as the journal keeps it: for events, their types as the
/// subject and one `TYPE DETAIL` line each as the body.
fn journalled(message: &Message) -> (String, String) {
    match message {
        Message::Text { subject, body } => (subject.clone(), body.clone()),
        Message::Events(events) => {
            let types: Vec<&str> = events.iter().map(|e| e.detail_type.as_str()).collect();
            let subject = crate::text::bounded(
                &format!("{} event(s): {}", events.len(), types.join(", ")),
                SUBJECT_BYTES,
            )
            .into_owned();
            let body: String = events
                .iter()
                .map(|event| format!("{} {}\n", event.detail_type, event.detail))
                .collect();
            (
                subject,
                crate::text::bounded(&body, BODY_BYTES).into_owned(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_ten_per_call_and_at_the_bytes_of_a_call() {
        let event = |n: usize, bytes: usize| BusEvent {
            detail_type: format!("t{n}"),
            detail: "x".repeat(bytes),
            time_ms: 0,
        };
        let sizes = |events: Vec<BusEvent>| -> Vec<usize> {
            batches(events).iter().map(Vec::len).collect()
        };
        assert_eq!(sizes((0..25).map(|n| event(n, 10)).collect()), [10, 10, 5]);
        assert_eq!(
            sizes((0..4).map(|n| event(n, 100 * 1024)).collect()),
            [2, 2]
        );
        assert!(sizes(Vec::new()).is_empty());
        // Order is kept across calls.
        let order: Vec<String> = batches((0..12).map(|n| event(n, 1)).collect())
            .into_iter()
            .flatten()
            .map(|e| e.detail_type)
            .collect();
        assert_eq!(order, (0..12).map(|n| format!("t{n}")).collect::<Vec<_>>());
    }
}
