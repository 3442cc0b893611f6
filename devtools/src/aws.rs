//! The stack's AWS resources, created in a local emulator: the table, the FIFO queues with
//! their dead-letter queues, and the app secret. Mirrors `template.yaml`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

/// An SDK configuration for a local emulator at `endpoint`, with dummy credentials.
pub async fn local_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "local"))
        .load()
        .await
}

/// The names of a local stack's resources.
#[derive(Debug, Clone)]
pub struct Stack {
    pub table: String,
    pub c2c_queue: String,
    pub c2c_dlq: String,
    pub group_queue: String,
    pub group_dlq: String,
    pub secret_id: String,
    /// Standard queues of the after-event functions, each with its DLQ: (queue, dlq).
    pub stats: (String, String),
    pub presence: (String, String),
    pub group_created: (String, String),
    pub member_joined: (String, String),
}

/// How often a message is received before SQS moves it to the dead-letter queue (as in
/// `template.yaml`).
pub const MAX_RECEIVES: u32 = 5;

/// The chatbot queues' visibility timeout, as in `template.yaml`: a failure that the worker
/// does not retry early waits this long, in tests as in production.
pub const BOT_VISIBILITY_SECS: u32 = 1080;

/// Creates a FIFO queue with a FIFO dead-letter queue; returns (queue URL, DLQ URL).
pub async fn fifo_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: u32,
) -> Result<(String, String), String> {
    queue_with_dlq(sqs, name, visibility_secs, true).await
}

/// Creates a queue with a dead-letter queue, FIFO or standard; returns (queue URL, DLQ URL).
pub async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: u32,
    fifo_queue: bool,
) -> Result<(String, String), String> {
    let e = |e: aws_sdk_sqs::error::SdkError<_, _>| aws_sdk_sqs::error::DisplayErrorContext(e).to_string();
    let (fifo, suffix) = if fifo_queue {
        (HashMap::from([(QueueAttributeName::FifoQueue, "true".to_owned())]), ".fifo")
    } else {
        (HashMap::new(), "")
    };
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq{suffix}"))
        .set_attributes(Some(fifo.clone()))
        .send()
        .await
        .map_err(e)?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|x| aws_sdk_sqs::error::DisplayErrorContext(x).to_string())?;
    let arn = attrs.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).unwrap_or_default();
    let mut main = fifo;
    main.insert(
        QueueAttributeName::RedrivePolicy,
        serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES.to_string()}).to_string(),
    );
    main.insert(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string());
    if fifo_queue {
        // As in template.yaml: high-throughput FIFO, deduplication per message group.
        main.insert(QueueAttributeName::DeduplicationScope, "messageGroup".to_owned());
        main.insert(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId".to_owned());
    }
    let q = sqs
        .create_queue()
        .queue_name(format!("{name}{suffix}"))
        .set_attributes(Some(main))
        .send()
        .await
        .map_err(|x| aws_sdk_sqs::error::DisplayErrorContext(x).to_string())?;
    Ok((q.queue_url.unwrap_or_default(), dlq_url))
}

/// Creates the table, queues and secret under `prefix`. `secret_json` is the secret's value.
pub async fn create_stack(cfg: &SdkConfig, prefix: &str, secret_json: &str) -> Result<Stack, String> {
    let ddb = aws_sdk_dynamodb::Client::new(cfg);
    let table = format!("{prefix}-table");
    shared::store::dynamo::ensure_table(&ddb, &table).await.map_err(|e| e.to_string())?;
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let (c2c_queue, c2c_dlq) = fifo_with_dlq(&sqs, &format!("{prefix}-bot-c2c"), BOT_VISIBILITY_SECS).await?;
    let (group_queue, group_dlq) = fifo_with_dlq(&sqs, &format!("{prefix}-bot-group"), BOT_VISIBILITY_SECS).await?;
    let sm = aws_sdk_secretsmanager::Client::new(cfg);
    let secret_id = format!("{prefix}/app");
    let created = sm.create_secret().name(&secret_id).secret_string(secret_json).send().await;
    if let Err(e) = created {
        if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) {
            sm.put_secret_value()
                .secret_id(&secret_id)
                .secret_string(secret_json)
                .send()
                .await
                .map_err(|x| aws_sdk_secretsmanager::error::DisplayErrorContext(x).to_string())?;
        } else {
            return Err(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string());
        }
    }
    Ok(Stack {
        table,
        c2c_queue,
        c2c_dlq,
        group_queue,
        group_dlq,
        secret_id,
        stats: queue_with_dlq(&sqs, &format!("{prefix}-stats"), 30, false).await?,
        presence: queue_with_dlq(&sqs, &format!("{prefix}-presence"), 30, false).await?,
        group_created: queue_with_dlq(&sqs, &format!("{prefix}-group-created"), 30, false).await?,
        member_joined: queue_with_dlq(&sqs, &format!("{prefix}-member-joined"), 30, false).await?,
    })
}
