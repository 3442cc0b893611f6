//! `bot-c2c-message`: triggered by its SQS FIFO queue, answers with a streamed LLM reply. Wiring only;
//! the logic is `shared::bot::worker`.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let worker = Boot::load().await?.worker()?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(worker.sqs_handler(ev.payload, ev.context.deadline).await)
    }))
    .await
}
