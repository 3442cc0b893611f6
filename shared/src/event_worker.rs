//! The SQS consumer of the after-event commands (statistics, presence, community set-up):
//! records `{"command", "request_id", "body"}` from a standard queue, handled one by one, the
//! failed ones reported back so that SQS redelivers them and, past `maxReceiveCount`, moves them
//! to the dead-letter queue. Handlers must therefore be idempotent.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
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
}

#[derive(Deserialize)]
struct Envelope {
    command: String,
    #[serde(default)]
    request_id: String,
    body: serde_json::Value,
}

/// The Lambda adapter shared by every event function.
pub async fn sqs_handler(handler: &dyn EventHandler, event: SqsEvent) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    for rec in event.records {
        let id = rec.message_id.clone().unwrap_or_default();
        let env: Envelope = match serde_json::from_str(rec.body.as_deref().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                // Redelivery cannot fix it: SQS moves it to the DLQ after maxReceiveCount.
                let error = crate::redact::JsonError::from(e);
                tracing::error!(message_id = %id, outcome = "failed", %error, "unreadable event record");
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                resp.batch_item_failures.push(f);
                continue;
            }
        };
        let span = tracing::info_span!("event", request_id = %env.request_id, command = %env.command);
        let result = handler.handle(&env.command, &env.body).instrument(span.clone()).await;
        let _g = span.enter();
        match result {
            Ok(outcome) => tracing::info!(outcome, "event handled"),
            Err(e) => {
                tracing::warn!(outcome = "failed", error = %e, "event will be delivered again");
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                resp.batch_item_failures.push(f);
            }
        }
    }
    resp
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
