//! Publishing a notification: journalled before it is sent, retried with
//! backoff, every attempt recorded. A failure is reported, never hidden, and
//! never costs the caller more than the attempts.

use std::time::Duration;

use crate::cloud::{Cloud, CloudError};
use crate::journal::Event;

/// Attempts at publishing one notification.
pub(crate) const ATTEMPTS: u32 = 3;

/// Publish `subject`/`body` to `topic` (the channel alias `channel`),
/// recording intent and every attempt through `journal` first.
pub(crate) async fn publish<E>(
    cloud: &dyn Cloud,
    call_timeout: Duration,
    channel: &str,
    topic: &str,
    subject: &str,
    body: &str,
    mut journal: impl FnMut(Event) -> Result<(), E>,
) -> Result<Result<(), CloudError>, E> {
    journal(Event::NotifyIntent {
        channel: channel.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
    })?;
    let mut last = CloudError::Backend("not attempted".into());
    for attempt in 1..=ATTEMPTS {
        let sent =
            match tokio::time::timeout(call_timeout, cloud.publish(topic, subject, body)).await {
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
                last = err;
                if attempt < ATTEMPTS {
                    cloud.sleep_ms(500 << attempt).await;
                }
            }
        }
    }
    Ok(Err(last))
}
