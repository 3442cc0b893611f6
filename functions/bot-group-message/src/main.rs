//! `bot-group-message`: triggered by its SQS FIFO queue, answers with a streamed LLM reply. Wiring only;
//! the logic is `shared::bot::worker`.

use shared::boot::Boot;
use shared::lambda::{Error, serve_sqs};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let worker = Boot::load().await?.worker()?;
    let worker = &worker;
    serve_sqs(|ev, deadline| worker.sqs_handler(ev, deadline)).await
}
