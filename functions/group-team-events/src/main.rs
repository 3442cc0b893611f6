//! `group-team-events`: triggered by its SQS queue. Wiring only; the logic is `shared::teams` and
//! `shared::threads` (members leaving servers and voice channels).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let boot = Boot::load().await?;
    let service =
        shared::threads::WithThreads { inner: boot.teams()?, threads: shared::threads::Threads::from_boot(&boot)? };
    let bus = boot.bus();
    let bus = bus.as_ref();
    let service = &service;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(shared::event_worker::publishing_sqs_handler(service, bus, ev.payload).await)
    }))
    .await
}
