//! `nim-callback-router`: NetEase NIM's message-copy URL (`POST /nim`), behind the HTTP API.
//! Wiring only; the logic is `shared::nim::router`.

use lambda_http::{Error, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let router = Boot::load().await?.nim_router()?;
    let router = &router;
    lambda_http::run(service_fn(move |req| shared::nim::router::http_handler(router, req))).await
}
