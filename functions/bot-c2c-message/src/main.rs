//! `bot-c2c-message`: triggered by its SQS FIFO queue, answers with a streamed LLM reply. Wiring only;
//! the logic is `shared::bot::worker`. It also drains the bus outbox queue, when the stack has
//! an event bus (`shared::bus`): a batch from that queue is published, not answered.

use shared::boot::Boot;
use shared::lambda::{Error, serve_sqs};

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
    serve_sqs(|ev, deadline| async move {
        if shared::bus::from_queue(&ev, outbox) {
            return shared::event_worker::publishing_sqs_handler(&shared::event_worker::OutboxOnly, bus, ev).await;
        }
        worker.sqs_handler(ev, deadline).await
    })
    .await
}
