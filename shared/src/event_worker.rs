//! The SQS consumer of the after-event commands (statistics, presence, community set-up):
//! records `{"command", "request_id", "body"}` from a standard queue, handled one by one, the
//! failed ones reported back so that SQS redelivers them and, past `maxReceiveCount`, moves them
//! to the dead-letter queue. Handlers must therefore be idempotent.
//!
//! With a bus ([`crate::bus`]), each handled record's callback and the product events its
//! handler made are published after the batch is handled; a record whose events could not be
//! published is reported failed too, so that it comes back and is published then. Outbox
//! records ([`crate::bus::OUTBOX_COMMAND`]) carry an event to publish as it is.

use crate::bus::{Bus, BusEvent, OUTBOX_COMMAND};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::Deserialize;
use tracing::Instrument;

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is malformed: {0}")]
    Malformed(String),
    #[error("too many concurrent updates of {0}")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Rest(#[from] crate::tencent::RestError),
}

/// What an event function does with one event.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// Handles one event; returns a short outcome for the log (`counted`, `duplicate`, …).
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError>;

    /// Handles one event and adds the events it made for the bus (team ready, …) to `made`.
    /// They are added on every successful delivery, the first and the repeated ones alike, so
    /// that a record that comes back because publishing failed publishes them then.
    async fn handle_and_tell(
        &self,
        command: &str,
        body: &serde_json::Value,
        made: &mut Vec<BusEvent>,
    ) -> Result<&'static str, EventError> {
        let _ = made;
        self.handle(command, body).await
    }
}

/// The handler of a queue that carries outbox records only: anything else is refused.
pub struct OutboxOnly;

#[async_trait]
impl EventHandler for OutboxOnly {
    async fn handle(&self, command: &str, _body: &serde_json::Value) -> Result<&'static str, EventError> {
        Err(EventError::Malformed(format!("the outbox queue got {command}")))
    }
}

#[derive(Deserialize)]
struct Envelope {
    command: String,
    #[serde(default)]
    request_id: String,
    body: serde_json::Value,
}

/// The Lambda adapter shared by every event function, publishing nothing.
pub async fn sqs_handler(handler: &dyn EventHandler, event: SqsEvent) -> SqsBatchResponse {
    publishing_sqs_handler(handler, None, event).await
}

/// The Lambda adapter shared by every event function: handles the batch, then publishes each
/// handled record's events to `bus` (when the stack has one).
pub async fn publishing_sqs_handler(
    handler: &dyn EventHandler,
    bus: Option<&Bus>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut failures: Vec<String> = Vec::new();
    let mut to_publish: Vec<(String, BusEvent)> = Vec::new();
    for rec in event.records {
        let id = rec.message_id.clone().unwrap_or_default();
        let env: Envelope = match serde_json::from_str(rec.body.as_deref().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                // Redelivery cannot fix it: SQS moves it to the DLQ after maxReceiveCount.
                let error = crate::redact::JsonError::from(e);
                tracing::error!(message_id = %id, outcome = "failed", %error, "unreadable event record");
                failures.push(id);
                continue;
            }
        };
        let span = tracing::info_span!("event", request_id = %env.request_id, command = %env.command);
        let mut made = Vec::new();
        let result = if env.command == OUTBOX_COMMAND {
            match (parse::<BusEvent>(&env.body), bus) {
                (Ok(ev), Some(_)) => {
                    made.push(ev);
                    Ok("forwarded")
                }
                (Ok(_), None) => Err(EventError::Malformed("an outbox record, but no bus is configured".into())),
                (Err(e), _) => Err(e),
            }
        } else {
            let r = handler.handle_and_tell(&env.command, &env.body, &mut made).instrument(span.clone()).await;
            // Our own scheduled work (a thread digest's delayed edit) is not a Tencent callback.
            if r.is_ok() && env.command != crate::threads::FLUSH_COMMAND {
                made.insert(0, BusEvent::callback(&env.command, &env.request_id, &env.body));
            }
            r
        };
        let _g = span.enter();
        match result {
            Ok(outcome) => {
                tracing::info!(outcome, "event handled");
                to_publish.extend(made.into_iter().map(|e| (id.clone(), e)));
            }
            Err(e) => {
                tracing::warn!(outcome = "failed", error = %e, "event will be delivered again");
                failures.push(id);
            }
        }
    }
    if let Some(bus) = bus
        && !to_publish.is_empty()
    {
        let n = to_publish.len();
        let failed = bus.publish_all(to_publish).await;
        tracing::info!(events = n, failed_records = failed.len(), "published to the bus");
        failures.extend(failed);
    }
    crate::lambda::batch_response(failures)
}

/// Parses a body as the type its command promises.
pub fn parse<T: serde::de::DeserializeOwned>(body: &serde_json::Value) -> Result<T, EventError> {
    serde_json::from_value(body.clone())
        .map_err(|e| EventError::Malformed(crate::redact::JsonError::from(e).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::events::StateChange;

    #[test]
    fn when_event_body_has_wrong_type_should_not_echo_the_value() {
        let body = serde_json::json!({"Info": {"To_Account": "a", "Action": "Login"},
                                      "KickedDevice": "my password is hunter2"});
        let text = parse::<StateChange>(&body).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("the event is malformed: ") && !text.contains("hunter2"), "{text}");
    }
}
