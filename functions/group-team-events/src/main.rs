//! `group-team-events`: triggered by its SQS queue. Wiring only; the logic is `shared::teams` and
//! `shared::threads` (members leaving servers and voice channels).

use shared::boot::Boot;
use shared::lambda::{Error, serve_sqs};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let boot = Boot::load().await?;
    let service =
        shared::threads::WithThreads { inner: boot.teams()?, threads: shared::threads::Threads::from_boot(&boot)? };
    let bus = boot.bus();
    let bus = bus.as_ref();
    let service = &service;
    serve_sqs(|ev, _| shared::event_worker::publishing_sqs_handler(service, bus, ev)).await
}
