//! The dead-letter record: what a chatbot worker writes to its FIFO dead-letter queue when it
//! gives up on a job, and how a message of that queue is read back (by the admin CLI's
//! `dlq list` and `dlq redrive`). The format has this one owner.
//!
//! A DLQ message is either the worker's record `{"reason", "job", "at_ms"}`, whose `job` is the
//! queued body as text, or, when SQS moved it there after the queue's maxReceiveCount, the
//! job itself.

use super::job::{DecodeError, Job};
use crate::queue::{QueueMessage, fifo_id};
use crate::redact::JsonError;
use serde::{Deserialize, Serialize};

/// The worker's record, as the JSON body of a DLQ message.
#[derive(Serialize, Deserialize)]
struct Record {
    reason: String,
    /// The queued body as text, kept as it came even when it is not a job.
    job: String,
    #[serde(default)]
    at_ms: Option<u64>,
}

/// A readable dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub job: Job,
    /// Why the worker gave up; `None` when SQS moved the job after too many receives.
    pub reason: Option<String>,
    /// When the worker gave up, unix milliseconds.
    pub at_ms: Option<u64>,
}

/// A DLQ message that holds no job to send back. The text names what is wrong, never the
/// input (it may be a user's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("neither a dead-letter record nor a job: {0}")]
    Body(JsonError),
    #[error("a dead-letter record ({reason}) whose job is unreadable: {error}")]
    Job { reason: String, error: DecodeError },
}

impl DeadLetter {
    /// Reads the body of a DLQ message.
    pub fn parse(body: &str) -> Result<DeadLetter, Unreadable> {
        match serde_json::from_str::<Record>(body) {
            Ok(r) => match Job::decode(&r.job) {
                Ok(job) => Ok(DeadLetter { job, reason: Some(r.reason), at_ms: r.at_ms }),
                Err(error) => Err(Unreadable::Job { reason: r.reason, error }),
            },
            Err(_) => match Job::decode(body) {
                Ok(job) => Ok(DeadLetter { job, reason: None, at_ms: None }),
                Err(DecodeError::Malformed(e)) => Err(Unreadable::Body(e)),
                Err(e @ DecodeError::Version(_)) => Err(Unreadable::Job { reason: "moved by SQS".into(), error: e }),
            },
        }
    }

    /// The DLQ message that dead-letters `job_body` (a queued body, a job or not) for `reason`.
    /// It goes to the FIFO group of the job's conversation, as the router queued the job, so
    /// that dead letters of different conversations never wait for each other; a body that is
    /// not a job gets a group of its own. The deduplication id is made of the group, the job's
    /// `key` and the reason, so a repeated send of one dead letter is dropped, and two
    /// different bodies that are not jobs are not.
    pub fn message(job_body: &str, key: &str, reason: &str, at_ms: u64) -> QueueMessage {
        let group = match Job::decode(job_body) {
            Ok(job) => fifo_id(&job.ordering_key()),
            Err(_) => fifo_id(&format!("unreadable#{job_body}")),
        };
        let record = Record { reason: reason.to_owned(), job: job_body.to_owned(), at_ms: Some(at_ms) };
        QueueMessage {
            // A struct of strings and a number always serializes.
            body: serde_json::to_string(&record).unwrap_or_default(),
            dedup_id: Some(fifo_id(&format!("{group}#{key}#{reason}"))),
            group_id: Some(group),
        }
    }

    /// The message that sends this job back to its work queue: in its conversation's group, as
    /// the router sent it. The deduplication id names the DLQ message (`dlq_message_id`), so a
    /// job is not sent back twice for one dead letter within SQS's 5-minute window (should a
    /// redrive be repeated after the send, before the delete), yet is sent back again when it
    /// is dead-lettered again later.
    pub fn redrive_message(&self, dlq_message_id: &str) -> QueueMessage {
        QueueMessage {
            body: serde_json::to_string(&self.job).unwrap_or_default(),
            group_id: Some(fifo_id(&self.job.ordering_key())),
            dedup_id: Some(fifo_id(&format!("{}#redrive#{dlq_message_id}", self.job.key()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(user: &str, seq: u64) -> Job {
        crate::bot::job::testing::job("@RBT#001", user, None, &format!("{seq}_2_3"), "")
    }

    #[test]
    fn a_dead_letter_of_a_job_queued_before_versions_reads_as_that_job() {
        let legacy = serde_json::json!({"request_id": "r", "received_ms": 1, "bot": "@RBT#001",
            "msg": {"kind": "c2c", "event": {"From_Account": "alice", "To_Account": "@RBT#001",
            "MsgSeq": 1, "MsgRandom": 2, "MsgTime": 3, "MsgBody": []}}});
        let msg = DeadLetter::message(&legacy.to_string(), "k", "LLM down", 7);
        assert_eq!(msg.group_id, Some(fifo_id(&job("alice", 1).ordering_key())));
        let read = DeadLetter::parse(&msg.body).map(|d| d.job.key());
        assert_eq!(read, Ok(job("alice", 1).key()));
    }

    fn dead_letter(job: &Job, reason: &str) -> QueueMessage {
        DeadLetter::message(&serde_json::to_string(job).unwrap_or_default(), &job.key(), reason, 7)
    }

    #[test]
    fn when_two_conversations_dead_letter_should_use_their_own_fifo_groups() {
        let (alice, bob) = (job("alice", 1), job("bob", 1));
        let (a, b) = (dead_letter(&alice, "LLM down"), dead_letter(&bob, "LLM down"));
        assert_ne!(a.group_id, b.group_id);
        // The router's group for each conversation.
        assert_eq!(a.group_id, Some(fifo_id(&alice.ordering_key())));
        assert_eq!(b.group_id, Some(fifo_id(&bob.ordering_key())));
        assert_eq!(dead_letter(&job("alice", 2), "LLM down").group_id, a.group_id, "one conversation, one group");
    }

    #[test]
    fn a_dead_letter_reads_back_as_written() {
        let j = job("alice", 1);
        let msg = dead_letter(&j, "LLM down");
        assert_eq!(
            DeadLetter::parse(&msg.body),
            Ok(DeadLetter { job: j, reason: Some("LLM down".into()), at_ms: Some(7) })
        );
    }

    #[test]
    fn a_job_moved_by_sqs_reads_without_a_reason() {
        let j = job("alice", 1);
        let body = serde_json::to_string(&j).unwrap_or_default();
        assert_eq!(DeadLetter::parse(&body), Ok(DeadLetter { job: j, reason: None, at_ms: None }));
    }

    #[test]
    fn when_a_body_is_not_a_job_should_get_a_group_of_its_own_and_read_as_unreadable() {
        let (x, y) =
            (DeadLetter::message("{secret", "malformed", "r", 7), DeadLetter::message("[secret", "malformed", "r", 7));
        assert_ne!(x.group_id, y.group_id);
        assert_ne!(x.dedup_id, y.dedup_id, "two different bodies are both kept");
        let err = DeadLetter::parse(&x.body).err();
        assert!(matches!(&err, Some(Unreadable::Job { reason, .. }) if reason == "r"), "{err:?}");
        let err = DeadLetter::parse("secret, not JSON").err();
        assert!(matches!(err, Some(Unreadable::Body(_))), "{err:?}");
        assert!(!err.map(|e| e.to_string()).unwrap_or_default().contains("secret"), "the text carries no input");
    }

    #[test]
    fn a_redriven_job_goes_back_to_its_conversation_group() {
        let j = job("alice", 1);
        let d = DeadLetter { job: j.clone(), reason: None, at_ms: None };
        let msg = d.redrive_message("m1");
        assert_eq!(msg.group_id, Some(fifo_id(&j.ordering_key())));
        assert_eq!(serde_json::from_str::<Job>(&msg.body).ok(), Some(j));
        assert_eq!(msg.dedup_id, d.redrive_message("m1").dedup_id, "one dead letter, one send");
        assert_ne!(msg.dedup_id, d.redrive_message("m2").dedup_id, "dead-lettered again, sent again");
    }
}
