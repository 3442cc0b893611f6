//! The extension point: every after-event the router hands to a standard queue, and the events
//! this product makes, published to the stack's EventBridge bus in one documented, versioned
//! shape (README "EventBridge"), so that an app adds its own behaviour with a rule and a target.
//!
//! Publishing happens in the queue consumers, never on the webhook's ack path: the consumer
//! handles its batch, then publishes the events of the records it handled in `PutEvents` calls
//! of at most 10 entries, retries the entries EventBridge refused, and reports the records whose
//! entries still fail as batch item failures, so that SQS delivers them again (the handlers are
//! idempotent) and, past `maxReceiveCount`, keeps them in the dead-letter queue. An event is
//! therefore published at least once; its `detail.id` is the same in every copy.
//!
//! The chatbot workers' events (answer delivered, answer dead-lettered) are not published on
//! the answer's path either: once the answer is finished, the worker queues them on the outbox
//! queue, whose consumer publishes them like any other record ([`OUTBOX_COMMAND`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The version of the event shape, `detail.v`. A change that removes or renames a field
/// raises it; new fields may appear within a version.
pub const SHAPE_VERSION: u32 = 1;

/// `source` of the Tencent callbacks forwarded as they came (`detail-type` = `CallbackCommand`).
pub const SOURCE_CALLBACK: &str = "tcbot.tencent";
/// `source` of the events this product makes.
pub const SOURCE_PRODUCT: &str = "tcbot";

/// `detail-type` of the product events.
pub const TEAM_READY: &str = "Team Ready";
pub const ANSWER_DELIVERED: &str = "Answer Delivered";
pub const ANSWER_DEAD_LETTERED: &str = "Answer Dead-Lettered";
pub const DRAW_CLOSED: &str = "Draw Closed";

/// The envelope command of an outbox record: its body is a [`BusEvent`] to publish as it is.
pub const OUTBOX_COMMAND: &str = "TcBot.Publish";

/// `PutEvents` takes at most 10 entries.
pub const MAX_ENTRIES: usize = 10;

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Always an object with `v` (the shape's version) and `id` (the same in every copy).
    pub detail: serde_json::Value,
}

/// A stable id: the first 32 hex digits of SHA-256 over `parts` joined by newlines.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

impl BusEvent {
    /// A product event: `fields` (an object) with `v`, `id` and `time` (unix ms) added.
    pub fn product(detail_type: &str, id: String, time_ms: u64, fields: serde_json::Value) -> Self {
        let mut detail = serde_json::json!({ "v": SHAPE_VERSION, "id": id, "time": time_ms });
        if let (Some(d), serde_json::Value::Object(f)) = (detail.as_object_mut(), fields) {
            for (k, v) in f {
                d.entry(k).or_insert(v);
            }
        }
        BusEvent { source: SOURCE_PRODUCT.into(), detail_type: detail_type.into(), detail }
    }

    /// A Tencent callback as the router received it. Its id hashes the command and the body, so
    /// a callback Tencent delivers twice has one id.
    pub fn callback(command: &str, request_id: &str, body: &serde_json::Value) -> Self {
        let id = stable_id(&[command, &body.to_string()]);
        let detail = serde_json::json!({
            "v": SHAPE_VERSION,
            "id": id,
            "command": command,
            "request_id": request_id,
            "callback": body,
        });
        BusEvent { source: SOURCE_CALLBACK.into(), detail_type: command.into(), detail }
    }

    /// The `detail.id`, for logs.
    pub fn id(&self) -> &str {
        self.detail.get("id").and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// Why a `PutEvents` call failed as a whole.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("PutEvents failed: {0}")]
pub struct BusError(pub String);

/// The bus port: one `PutEvents` call.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Puts up to [`MAX_ENTRIES`] events; per event, `None` when it was accepted, or the error
    /// EventBridge gave for it.
    async fn put(&self, events: &[BusEvent]) -> Result<Vec<Option<String>>, BusError>;
}

/// The EventBridge adapter.
#[derive(Clone, Debug)]
pub struct EventBridge {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridge {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        EventBridge { client, bus_name: bus_name.into() }
    }
}

#[async_trait]
impl Publisher for EventBridge {
    async fn put(&self, events: &[BusEvent]) -> Result<Vec<Option<String>>, BusError> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entries: Vec<PutEventsRequestEntry> = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(e.detail.to_string())
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| BusError(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
        let results = out.entries();
        // EventBridge answers one result per entry, in order; a missing one counts as failed.
        Ok((0..events.len())
            .map(|i| match results.get(i) {
                Some(r) if r.error_code().is_none() && r.event_id().is_some() => None,
                Some(r) => Some(format!(
                    "{}: {}",
                    r.error_code().unwrap_or("no event id"),
                    r.error_message().unwrap_or_default()
                )),
                None => Some("no result for this entry".into()),
            })
            .collect())
    }
}

/// The bus as the consumers use it: the port and how hard to try.
#[derive(Clone)]
pub struct Bus {
    pub publisher: Arc<dyn Publisher>,
    /// Attempts per entry (the first included).
    pub attempts: u32,
    /// The pause before the second attempt, doubled for each next one.
    pub backoff: Duration,
}

impl Bus {
    /// A bus that tries each entry 3 times, 200 ms then 400 ms apart.
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Bus { publisher, attempts: 3, backoff: Duration::from_millis(200) }
    }

    /// Publishes `events` (each tagged with its owner, e.g. an SQS message id) in calls of at
    /// most 10 entries, retrying refused entries and failed calls; returns the owners of the
    /// events that still failed (each once, in order of first failure).
    pub async fn publish_all<K: Clone + PartialEq>(&self, events: Vec<(K, BusEvent)>) -> Vec<K> {
        let mut pending = events;
        let mut failed_owners: Vec<K> = Vec::new();
        let mut delay = self.backoff;
        for attempt in 1..=self.attempts.max(1) {
            if pending.is_empty() {
                break;
            }
            if attempt > 1 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            let last = attempt == self.attempts.max(1);
            let mut again = Vec::new();
            for chunk in pending.chunks(MAX_ENTRIES) {
                let events: Vec<BusEvent> = chunk.iter().map(|(_, e)| e.clone()).collect();
                match self.publisher.put(&events).await {
                    Ok(results) => {
                        for ((owner, event), result) in chunk.iter().zip(results) {
                            if let Some(error) = result {
                                tracing::warn!(event_id = event.id(), detail_type = %event.detail_type, attempt, %error, "event refused by the bus");
                                again.push((owner.clone(), event.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(attempt, entries = chunk.len(), error = %e, "could not publish to the bus");
                        again.extend(chunk.iter().cloned());
                    }
                }
            }
            if last {
                for (owner, event) in &again {
                    tracing::error!(event_id = event.id(), detail_type = %event.detail_type, "event not published; its record will be delivered again");
                    if !failed_owners.contains(owner) {
                        failed_owners.push(owner.clone());
                    }
                }
            }
            pending = again;
        }
        failed_owners
    }
}

/// The deployment's bus, from `TCBOT_EVENT_BUS_NAME` (empty or absent: no bus).
pub fn bus_name_from_env() -> Option<String> {
    std::env::var("TCBOT_EVENT_BUS_NAME").ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The outbox queue's URL, from `TCBOT_BUS_OUTBOX_QUEUE_URL` (empty or absent: none).
pub fn outbox_url_from_env() -> Option<String> {
    std::env::var("TCBOT_BUS_OUTBOX_QUEUE_URL").ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Whether an SQS batch comes from the queue at `queue_url` (compared by queue name: the ARN's
/// last part against the URL's last path segment).
pub fn from_queue(event: &aws_lambda_events::event::sqs::SqsEvent, queue_url: Option<&str>) -> bool {
    let Some(name) = queue_url.and_then(|u| u.trim_end_matches('/').rsplit('/').next()).filter(|n| !n.is_empty())
    else {
        return false;
    };
    event.records.first().and_then(|r| r.event_source_arn.as_deref()).and_then(|a| a.rsplit(':').next()) == Some(name)
}

/// Where the chatbot workers queue their events for the bus.
#[derive(Clone)]
pub struct Outbox {
    pub queue: Arc<dyn crate::queue::Queue>,
    pub url: String,
}

/// After a chatbot message is finished: queues its events (answer delivered or dead-lettered)
/// on the outbox, when the stack has one. Called once the answer is over, so the user waits
/// for none of it.
pub async fn after_answer(outbox: Option<&Outbox>, job_body: &str, outcome: &crate::bot::worker::WorkOutcome) {
    let Some(outbox) = outbox else { return };
    let events = answer_events(job_body, outcome, crate::store::now_ms());
    if !events.is_empty() {
        send_to_outbox(outbox.queue.as_ref(), &outbox.url, &events, 3).await;
    }
}

/// The outbox record of a product event made outside the event consumers (the chatbot
/// workers): the standard event envelope with [`OUTBOX_COMMAND`].
pub fn outbox_record(event: &BusEvent) -> String {
    serde_json::json!({ "command": OUTBOX_COMMAND, "request_id": event.id(), "body": event }).to_string()
}

/// Queues `events` on the outbox queue, each tried `attempts` times; returns how many could not
/// be queued (logged with their ids). Used after the answer is finished, so it adds no time
/// to the answer the user sees.
pub async fn send_to_outbox(
    queue: &dyn crate::queue::Queue,
    outbox_url: &str,
    events: &[BusEvent],
    attempts: u32,
) -> usize {
    let mut lost = 0;
    for event in events {
        let msg = crate::queue::QueueMessage { body: outbox_record(event), group_id: None, dedup_id: None };
        let mut sent = false;
        for attempt in 1..=attempts.max(1) {
            match queue.send(outbox_url, &msg).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(event_id = event.id(), attempt, error = %e, "could not queue the event for the bus");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        if !sent {
            tracing::error!(event_id = event.id(), detail_type = %event.detail_type, "event for the bus lost: the outbox queue refused it");
            lost += 1;
        }
    }
    lost
}

/// The chatbot worker's events about one finished message: `Answer Delivered` when the
/// robot answered it with the LLM, `Answer Dead-Lettered` when it gave up; nothing for fixed
/// replies and duplicates. The id is the message's key, so a repeat has the same id.
pub fn answer_events(job_body: &str, outcome: &crate::bot::worker::WorkOutcome, now_ms: u64) -> Vec<BusEvent> {
    use crate::bot::worker::WorkOutcome;
    let job = crate::bot::job::Job::decode(job_body).ok();
    let (detail_type, extra) = match outcome {
        WorkOutcome::Answered(end) => {
            use crate::bot::pump::End;
            let end = match end {
                End::Completed => "completed",
                End::Stopped => "stopped",
                End::Truncated => "truncated",
                End::LlmFailed(_) => "llm_failed",
                End::Unfinished(_) => "unfinished",
            };
            (ANSWER_DELIVERED, serde_json::json!({ "end": end }))
        }
        WorkOutcome::DeadLettered(reason) => (ANSWER_DEAD_LETTERED, serde_json::json!({ "reason": reason })),
        WorkOutcome::Replied(_) | WorkOutcome::Duplicate | WorkOutcome::Merged | WorkOutcome::BusyNote { .. } => {
            return vec![];
        }
    };
    let mut fields = serde_json::json!({
        "platform": job.as_ref().map(|j| j.platform.name()),
        "bot": job.as_ref().map(|j| j.bot.clone()),
        "user": job.as_ref().map(|j| j.sender.clone()),
        "group_id": job.as_ref().and_then(|j| j.place.group().map(str::to_owned)),
        "message_key": job.as_ref().map(|j| j.key()),
        "request_id": job.as_ref().map(|j| j.request_id.clone()),
    });
    if let (Some(f), serde_json::Value::Object(x)) = (fields.as_object_mut(), extra) {
        f.extend(x);
    }
    let key = job.as_ref().map(|j| j.key()).unwrap_or_else(|| stable_id(&[job_body]));
    vec![BusEvent::product(detail_type, stable_id(&[detail_type, &key]), now_ms, fields)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A bus that refuses each event (by `detail.id`) as often as `refusals` says, then takes it;
    /// `down` calls fail as a whole first.
    #[derive(Default)]
    struct Flaky {
        refusals: Mutex<HashMap<String, u32>>,
        down: Mutex<u32>,
        calls: Mutex<Vec<usize>>,
        accepted: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Publisher for Flaky {
        async fn put(&self, events: &[BusEvent]) -> Result<Vec<Option<String>>, BusError> {
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(events.len());
            {
                let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
                if *down > 0 {
                    *down -= 1;
                    return Err(BusError("throttled".into()));
                }
            }
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            Ok(events
                .iter()
                .map(|e| match refusals.get_mut(e.id()) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        Some("InternalFailure: try again".into())
                    }
                    _ => {
                        self.accepted.lock().unwrap_or_else(|p| p.into_inner()).push(e.id().to_owned());
                        None
                    }
                })
                .collect())
        }
    }

    fn ev(i: usize) -> (usize, BusEvent) {
        (i, BusEvent::product(TEAM_READY, format!("e{i}"), 1, serde_json::json!({})))
    }

    fn bus(p: Arc<Flaky>, attempts: u32) -> Bus {
        Bus { publisher: p, attempts, backoff: Duration::from_millis(1) }
    }

    #[tokio::test]
    async fn events_go_in_calls_of_at_most_ten() {
        let p = Arc::new(Flaky::default());
        let failed = bus(p.clone(), 3).publish_all((0..23).map(ev).collect()).await;
        assert!(failed.is_empty());
        assert_eq!(*p.calls.lock().unwrap_or_else(|x| x.into_inner()), [10, 10, 3]);
        assert_eq!(p.accepted.lock().unwrap_or_else(|x| x.into_inner()).len(), 23);
    }

    #[tokio::test]
    async fn a_refused_entry_is_retried_alone_and_published() {
        let p = Arc::new(Flaky::default());
        p.refusals.lock().unwrap_or_else(|x| x.into_inner()).insert("e1".into(), 2);
        let failed = bus(p.clone(), 3).publish_all((0..3).map(ev).collect()).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(*p.calls.lock().unwrap_or_else(|x| x.into_inner()), [3, 1, 1]);
        assert_eq!(*p.accepted.lock().unwrap_or_else(|x| x.into_inner()), ["e0", "e2", "e1"]);
    }

    #[tokio::test]
    async fn an_entry_refused_every_time_names_its_owner_once() {
        let p = Arc::new(Flaky::default());
        p.refusals.lock().unwrap_or_else(|x| x.into_inner()).insert("e2".into(), 99);
        // Two events of one owner (a record with a callback and a product event), one failing.
        let mut events: Vec<(usize, BusEvent)> = (0..3).map(ev).collect();
        events.push((2, BusEvent::product(TEAM_READY, "e2b".into(), 1, serde_json::json!({}))));
        let failed = bus(p.clone(), 3).publish_all(events).await;
        assert_eq!(failed, [2]);
    }

    #[tokio::test]
    async fn a_failed_call_is_retried_and_fails_every_owner_when_it_stays_down() {
        let p = Arc::new(Flaky::default());
        *p.down.lock().unwrap_or_else(|x| x.into_inner()) = 1;
        assert!(bus(p.clone(), 2).publish_all((0..2).map(ev).collect()).await.is_empty());
        let p = Arc::new(Flaky::default());
        *p.down.lock().unwrap_or_else(|x| x.into_inner()) = 5;
        assert_eq!(bus(p.clone(), 2).publish_all((0..2).map(ev).collect()).await, [0, 1]);
    }

    #[test]
    fn a_callback_delivered_twice_has_one_id_and_the_documented_shape() {
        let body = serde_json::json!({"CallbackCommand": "State.StateChange", "Info": {"To_Account": "a"}});
        let a = BusEvent::callback("State.StateChange", "r1", &body);
        let b = BusEvent::callback("State.StateChange", "r2", &body);
        assert_eq!(a.id(), b.id());
        assert_eq!((a.source.as_str(), a.detail_type.as_str()), (SOURCE_CALLBACK, "State.StateChange"));
        assert_eq!(a.detail["v"], 1);
        assert_eq!(a.detail["callback"], body);
        let other = serde_json::json!({"CallbackCommand": "State.StateChange", "Info": {"To_Account": "b"}});
        assert_ne!(a.id(), BusEvent::callback("State.StateChange", "r1", &other).id());
    }

    #[test]
    fn product_fields_never_replace_the_envelope() {
        let e = BusEvent::product(TEAM_READY, "x".into(), 5, serde_json::json!({"v": 9, "group_id": "g"}));
        assert_eq!((e.detail["v"].as_u64(), e.detail["group_id"].as_str()), (Some(1), Some("g")));
        assert_eq!(e.detail["time"], 5);
    }
}
