//! `group-before-send-msg`: invoked synchronously by the router with the before-send webhook body; answers the
//! ack carrying the verdict. Wiring only; the logic is `shared::moderation`.

use shared::boot::Boot;
use shared::lambda::{Error, serve_invoke};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let moderator = Boot::load().await?.moderator()?;
    let moderator = &moderator;
    serve_invoke(|payload| async move { moderator.handle(&payload).await }).await
}
