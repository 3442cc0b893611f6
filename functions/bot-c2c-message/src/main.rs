//! `bot-c2c-message`: triggered by its SQS FIFO queue, answers with a streamed LLM reply. Wiring only;
//! the logic is `shared::bot::worker`. It also drains the bus outbox queue, when the stack has
//! an event bus (`shared::bus`): a batch from that queue is published, not answered.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let boot = Boot::load().await?;
    let worker = boot.worker()?;
    let worker = &worker;
    let bus = boot.bus();
    let bus = bus.as_ref();
    let outbox = shared::bus::outbox_url_from_env();
    let outbox = outbox.as_deref();
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        if shared::bus::from_queue(&ev.payload, outbox) {
            let outbox_only = shared::event_worker::OutboxOnly;
            return Ok::<_, Error>(shared::event_worker::publishing_sqs_handler(&outbox_only, bus, ev.payload).await);
        }
        Ok::<_, Error>(worker.sqs_handler(ev.payload, ev.context.deadline).await)
    }))
    .await
}
