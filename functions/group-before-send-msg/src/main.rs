//! `group-before-send-msg`: invoked synchronously by the router with the before-send webhook body; answers the
//! ack carrying the verdict. Wiring only; the logic is `shared::moderation`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let moderator = Boot::load().await?.moderator()?;
    let moderator = &moderator;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(moderator.handle(&ev.payload).await)
    }))
    .await
}
