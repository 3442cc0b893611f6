//! What a router notes about a chatbot message beside queueing it, for the two things a FIFO
//! queue cannot tell the worker: that messages are waiting behind an answer in progress, and
//! which messages came right after the one being answered.
//!
//! - **Busy notes.** The worker marks a conversation busy ([`keys::busy`]) while it answers one
//!   of its messages. A message that arrives meanwhile gets a *busy check*: a delayed message
//!   on a standard queue. When it comes due, the worker tells the user "I'll answer this next"
//!   unless the message's answer has started by then ([`super::worker::Worker`] handles it).
//! - **Bursts.** Every message is noted in its ordering key's inbox ([`keys::inbox`]), so the
//!   worker answering one can find the messages the same sender sent within the burst window
//!   after it and answer them as one turn.
//!
//! Both are conveniences beside a message that is already queued: a note that cannot be made
//! is logged and the webhook is acknowledged all the same.

use super::job::Job;
use crate::keys;
use crate::queue::{Queue, QueueMessage};
use crate::store::{Role, Store, Turn, now_ms};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an inbox note is kept: far longer than a burst, short enough to cost nothing.
pub const INBOX_TTL_SECS: u64 = 3600;

/// The most time the notes may take beside the queue send: the ack must not wait on them.
pub const NOTE_BUDGET: Duration = Duration::from_millis(300);

/// How long a busy mark is trusted: no answer streams longer than a Lambda runs (15 minutes).
pub const BUSY_MARK_TTL_SECS: u64 = 900;

/// A conversation's answer in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusyMark {
    /// The key ([`Job::key`]) of the message being answered.
    pub msg: String,
    pub since_ms: u64,
}

/// The body of a busy check on the busy queue: the waiting message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusyCheck {
    pub busy_check: Job,
}

impl BusyCheck {
    /// The check in `body`, or `None` when `body` is not one (a chatbot job).
    pub fn decode(body: &str) -> Option<Job> {
        if !body.trim_start().starts_with("{\"busy_check\"") {
            return None;
        }
        serde_json::from_str::<BusyCheck>(body).ok().map(|c| c.busy_check)
    }
}

/// The router's side of busy notes and bursts; `Default` notes nothing.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    /// The standard queue of busy checks; `None`: no busy notes.
    pub busy_queue_url: Option<String>,
    /// How long a message waits behind an answer before it is told it is next.
    pub note_after: Duration,
    /// Whether messages are noted in their inbox (the deployment's burst window is not 0).
    pub inbox: bool,
}

impl Arrivals {
    /// Notes a queued `job`: in its inbox, and with a busy check when its conversation has an
    /// answer to another message in progress. Never fails (see the module's note).
    pub async fn note(&self, store: &dyn Store, queue: &dyn Queue, job: &Job) {
        let ordering = keys::ordering(job);
        let inbox = async {
            if !self.inbox {
                return;
            }
            let turn = Turn {
                at_ms: job.received_ms,
                role: Role::User,
                speaker: None,
                text: serde_json::to_string(job).unwrap_or_default(),
            };
            if let Err(e) = store.append_turn(&keys::inbox(&ordering), &turn, INBOX_TTL_SECS).await {
                tracing::warn!(error = %e, "could not note the message in its inbox; it is answered on its own");
            }
        };
        let busy = async {
            let Some(url) = &self.busy_queue_url else {
                return;
            };
            let mark = match store.get_doc(&keys::busy(&ordering)).await {
                Ok(Some(doc)) => serde_json::from_str::<BusyMark>(&doc).ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read whether the conversation is busy; no busy note");
                    None
                }
            };
            let key = job.key();
            let fresh = |m: &BusyMark| now_ms().saturating_sub(m.since_ms) < BUSY_MARK_TTL_SECS * 1000;
            if !mark.is_some_and(|m| m.msg != key && fresh(&m)) {
                return;
            }
            let body = serde_json::to_string(&BusyCheck { busy_check: job.clone() }).unwrap_or_default();
            let msg = QueueMessage { body, group_id: None, dedup_id: None };
            match queue.send_later(url, &msg, self.note_after).await {
                Ok(()) => tracing::info!(after_ms = self.note_after.as_millis() as u64, "busy check scheduled"),
                Err(e) => tracing::warn!(error = %e, "could not schedule the busy check; no busy note"),
            }
        };
        if tokio::time::timeout(NOTE_BUDGET, async { tokio::join!(inbox, busy) }).await.is_err() {
            tracing::warn!(budget_ms = NOTE_BUDGET.as_millis() as u64, "the arrival notes were late; left unmade");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::testing::job;

    #[test]
    fn a_busy_check_is_told_from_a_job() {
        let j = job("@RBT#a", "ann", None, "1", "hi");
        let body = serde_json::to_string(&BusyCheck { busy_check: j.clone() }).unwrap_or_default();
        assert_eq!(BusyCheck::decode(&body).map(|c| c.key()), Some(j.key()));
        assert!(BusyCheck::decode(&serde_json::to_string(&j).unwrap_or_default()).is_none());
        assert!(BusyCheck::decode("{\"busy_check\": 3}").is_none(), "malformed: not a check");
    }
}
