//! EventBridge buses: events put in calls of at most ten, source
//! `wasmonkey`; the bus checked with DescribeEventBus before a run that
//! would put events. A call that EventBridge answers with some entries
//! failed names those, so that only they are tried again.

use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::aws::{classify_channel, AwsMessaging};
use super::{BusEvent, ChannelRole, EVENT_SOURCE};
use crate::cloud::CloudError;

/// Put `events` on `bus`; the positions of those it did not take.
pub(super) async fn put(
    aws: &AwsMessaging,
    bus: &str,
    role: Option<&ChannelRole>,
    events: &[BusEvent],
) -> Result<Vec<(usize, String)>, CloudError> {
    let entries = events
        .iter()
        .map(|event| {
            PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(EVENT_SOURCE)
                .detail_type(&event.detail_type)
                .detail(&event.detail)
                .time(DateTime::from_millis(event.time_ms))
                .build()
        })
        .collect::<Vec<_>>();
    let answer = aws
        .events_for(bus, role)
        .await
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|err| classify_channel("events:PutEvents", err))?;
    if answer.failed_entry_count() == 0 {
        return Ok(Vec::new());
    }
    let failed = answer
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.error_code().is_some() || entry.event_id().is_none())
        .map(|(index, entry)| {
            let why = format!(
                "{}: {}",
                entry.error_code().unwrap_or("no event id"),
                crate::text::shown(entry.error_message().unwrap_or_default(), 256)
            );
            (index, why)
        })
        .collect::<Vec<_>>();
    if failed.is_empty() {
        // A count without the entries that make it: take none as put.
        return Ok((0..events.len())
            .map(|index| {
                (
                    index,
                    "EventBridge counted failed entries it did not name".to_owned(),
                )
            })
            .collect());
    }
    Ok(failed)
}

/// Whether `bus` exists where its name (or ARN) says and may be read.
pub(super) async fn check(
    aws: &AwsMessaging,
    bus: &str,
    role: Option<&ChannelRole>,
) -> Result<(), CloudError> {
    aws.events_for(bus, role)
        .await
        .describe_event_bus()
        .name(bus)
        .send()
        .await
        .map(drop)
        .map_err(|err| classify_channel("events:DescribeEventBus", err))
}
