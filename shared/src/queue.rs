//! The queue port: hands chatbot work from the router to the workers (SQS FIFO in AWS).

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use sha2::{Digest, Sha256};

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub body: String,
    /// FIFO message group: messages of one group are delivered in order, one at a time.
    pub group_id: Option<String>,
    /// FIFO deduplication id: SQS drops a second message with the same id within 5 minutes.
    pub dedup_id: Option<String>,
}

/// A failure to enqueue.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("enqueue to {queue} failed: {reason}")]
pub struct QueueError {
    pub queue: String,
    pub reason: String,
}

/// The queue port.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue_url: &str, msg: &QueueMessage) -> Result<(), QueueError>;
}

/// The SQS adapter.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue_url: &str, msg: &QueueMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(&msg.body)
            .set_message_group_id(msg.group_id.clone())
            .set_message_deduplication_id(msg.dedup_id.clone())
            .send()
            .await
            .map_err(|e| QueueError { queue: queue_url.to_owned(), reason: DisplayErrorContext(e).to_string() })?;
        Ok(())
    }
}

/// An id SQS accepts as a FIFO group or deduplication id (≤128 chars from a fixed alphabet)
/// for any string, such as user IDs with characters SQS does not allow.
pub fn fifo_id(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..20])
}
