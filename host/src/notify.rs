//! Publishing a notification: journalled before it is sent, retried with
//! backoff, every attempt recorded. A failure is reported, never hidden, and
//! never costs the caller more than the attempts.

mod webhook;

use std::time::Duration;

use crate::cloud::{Cloud, CloudError, TopicRole};
use crate::config::ChannelConfig;
use crate::journal::Event;

/// Where a channel's messages go, its secrets read from the environment.
#[derive(Debug)]
pub(crate) enum Destination {
    /// An SNS topic (any name on the simulator), through the cloud backend,
    /// as `role` when it is another account's.
    Topic {
        /// The topic.
        topic: String,
        /// The role to assume for it.
        role: Option<TopicRole>,
    },
    /// A webhook (its URL is a secret: only its host is shown).
    Webhook(webhook::Webhook),
}

impl Destination {
    /// Where `channel` sends, or why it cannot (a variable not set, a URL
    /// that is not https); the words never carry a secret.
    pub(crate) fn of(channel: &ChannelConfig) -> Result<Destination, String> {
        match (&channel.topic, &channel.webhook_url_env) {
            (Some(topic), None) => Ok(Destination::Topic {
                topic: topic.clone(),
                role: channel.role_arn.as_ref().map(|role_arn| TopicRole {
                    role_arn: role_arn.clone(),
                    external_id: channel.external_id.clone(),
                }),
            }),
            (None, Some(var)) => webhook::Webhook::from_env(
                var,
                channel.format.unwrap_or_default(),
                channel.signing_secret_env.as_deref(),
            )
            .map(Destination::Webhook),
            _ => Err("give one of topic and webhook_url_env".to_owned()),
        }
    }

    /// Where it goes, for the report: the topic with its region, account
    /// and role, or `webhook to HOST`.
    pub(crate) fn described(&self) -> String {
        match self {
            Destination::Topic { topic, role } => {
                let mut described = format!("topic {topic}");
                if let Some((region, account)) = crate::cloud::topic_home(topic) {
                    described.push_str(&format!(" (region {region}, account {account}"));
                    if let Some(role) = role {
                        described.push_str(&format!(", as role {}", role.role_arn));
                    }
                    described.push(')');
                }
                described
            }
            Destination::Webhook(_) => self.shown(),
        }
    }

    /// For the operator: the topic, or `webhook to HOST`.
    pub(crate) fn shown(&self) -> String {
        match self {
            Destination::Topic { topic, .. } => topic.clone(),
            Destination::Webhook(hook) => format!("webhook to {}", hook.host()),
        }
    }

    /// One attempt at sending.
    async fn send(
        &self,
        cloud: &dyn Cloud,
        channel: &str,
        subject: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(), CloudError> {
        match self {
            Destination::Topic { topic, role } => {
                cloud.publish_as(topic, role.as_ref(), subject, body).await
            }
            Destination::Webhook(hook) => hook.post(channel, subject, body, timeout).await,
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
/// rehearsal, as `rehearsal` says.
#[allow(clippy::too_many_arguments, reason = "each is one fact of the message")]
pub(crate) async fn publish<E>(
    cloud: &dyn Cloud,
    call_timeout: Duration,
    rehearsal: Rehearsal,
    channel: &str,
    settings: &ChannelConfig,
    subject: &str,
    body: &str,
    mut journal: impl FnMut(Event) -> Result<(), E>,
) -> Result<Result<(), CloudError>, E> {
    let subject = match rehearsal {
        Rehearsal::Announce => std::borrow::Cow::Owned(
            crate::text::bounded(&format!("{DRY_RUN_SUBJECT}{subject}"), SUBJECT_BYTES)
                .into_owned(),
        ),
        _ => std::borrow::Cow::Borrowed(subject),
    };
    let subject = subject.as_ref();
    let destination = Destination::of(settings);
    journal(Event::NotifyIntent {
        channel: channel.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
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
    let mut last = CloudError::Backend("not attempted".into());
    for attempt in 1..=ATTEMPTS {
        let sending = destination.send(cloud, channel, subject, body, call_timeout);
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
