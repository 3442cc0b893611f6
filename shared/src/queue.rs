//! The queue port: hands chatbot work from the router to the workers (SQS FIFO in AWS).

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use sha2::{Digest, Sha256};
use std::time::Duration;

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
    /// Makes a received message (by its receipt handle) visible again after `delay`, so that a
    /// failed message is retried soon instead of after the queue's whole visibility timeout.
    async fn retry_after(&self, queue_url: &str, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;
    /// Sends `msg` to a standard queue, to be delivered no sooner than `delay` from now (SQS:
    /// whole seconds, at most 15 minutes). A queue that cannot delay says so.
    async fn send_later(&self, queue_url: &str, msg: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        let _ = (msg, delay);
        Err(QueueError { queue: queue_url.to_owned(), reason: "this queue cannot delay a message".into() })
    }
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

    async fn send_later(&self, queue_url: &str, msg: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        // Whole seconds, rounded up, at most SQS's 900.
        let secs = delay.as_secs_f64().ceil().min(900.0) as i32;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(&msg.body)
            .delay_seconds(secs)
            .send()
            .await
            .map_err(|e| QueueError { queue: queue_url.to_owned(), reason: DisplayErrorContext(e).to_string() })?;
        Ok(())
    }

    async fn retry_after(&self, queue_url: &str, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS takes whole seconds: rounded up, so a sub-second backoff is not no backoff.
        let secs = i32::try_from(delay.as_secs_f64().ceil().min(43_200.0) as u64).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| QueueError { queue: queue_url.to_owned(), reason: DisplayErrorContext(e).to_string() })?;
        Ok(())
    }
}

/// The URL of the queue named by an SQS ARN (`arn:aws:sqs:<region>:<account>:<name>`), as
/// SQS and the local emulator both identify a queue by the account and name in its URL path.
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if region.is_empty() || account.is_empty() || name.is_empty() {
        return None;
    }
    let domain = if partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

/// An id SQS accepts as a FIFO group or deduplication id (≤128 chars from a fixed alphabet)
/// for any string, such as user IDs with characters SQS does not allow.
pub fn fifo_id(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_come_from_arns() {
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:ap-southeast-1:123456789012:bot-c2c.fifo").as_deref(),
            Some("https://sqs.ap-southeast-1.amazonaws.com/123456789012/bot-c2c.fifo")
        );
        assert_eq!(
            queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
        );
        assert_eq!(queue_url_from_arn("arn:aws:sns:us-east-1:1:topic"), None);
        assert_eq!(queue_url_from_arn("arn:aws:sqs:us-east-1:1"), None);
        assert_eq!(queue_url_from_arn("arn:aws:sqs:us-east-1:1:q:extra"), None);
    }
}
