//! Plays the Lambda SQS event source mapping locally: receives a batch, hands it to a handler
//! as an `SqsEvent` (with the queue's ARN, as Lambda sends it), deletes what succeeded and
//! leaves the reported failures alone, exactly as `ReportBatchItemFailures` does in AWS: a
//! failure becomes visible again when its visibility timeout ends, or earlier if the handler
//! changed it (SQS then counts the receive and, past `maxReceiveCount`, moves the message to
//! the DLQ).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use std::collections::HashMap;
use std::future::Future;

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    pub received: usize,
    pub failed: usize,
}

/// Receives up to `batch` messages (waiting up to `wait_secs`), calls `handler`, and settles
/// the batch. A handler error fails the whole batch.
pub async fn poll_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: i32,
    wait_secs: i32,
    handler: F,
) -> Result<PollStats, String>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = Result<SqsBatchResponse, String>>,
{
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let msgs = out.messages.unwrap_or_default();
    if msgs.is_empty() {
        return Ok(PollStats::default());
    }
    let arn = queue_arn(sqs, queue_url).await?;
    let mut handles = HashMap::new();
    let mut event = SqsEvent::default();
    for m in &msgs {
        let mut rec = SqsMessage::default();
        rec.message_id = m.message_id.clone();
        rec.receipt_handle = m.receipt_handle.clone();
        rec.body = m.body.clone();
        rec.event_source = Some("aws:sqs".into());
        rec.event_source_arn = Some(arn.clone());
        rec.attributes = m
            .attributes
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect())
            .unwrap_or_default();
        handles.insert(m.message_id.clone().unwrap_or_default(), m.receipt_handle.clone().unwrap_or_default());
        event.records.push(rec);
    }
    let failed: Vec<String> = match handler(event).await {
        Ok(resp) => resp.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "handler failed the whole batch");
            handles.keys().cloned().collect()
        }
    };
    for (id, handle) in handles.iter().filter(|(id, _)| !failed.contains(id)) {
        let req = sqs.delete_message().queue_url(queue_url).receipt_handle(handle);
        req.send().await.map_err(|e| format!("delete {id}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    }
    Ok(PollStats { received: msgs.len(), failed: failed.len() })
}

/// The ARN of a queue, as Lambda puts it in every record's `eventSourceARN`.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    out.attributes.and_then(|a| a.get(&A::QueueArn).cloned()).ok_or_else(|| format!("{queue_url} has no ARN"))
}

/// Messages waiting in a queue (approximate, as SQS reports it), visible and in flight.
pub async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<(u64, u64), String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let a = out.attributes.unwrap_or_default();
    let get = |k: &A| a.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((get(&A::ApproximateNumberOfMessages), get(&A::ApproximateNumberOfMessagesNotVisible)))
}
