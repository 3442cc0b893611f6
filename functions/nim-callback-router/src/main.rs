//! `nim-callback-router`: NetEase NIM's message-copy URL (`POST /nim`), behind the HTTP API.
//! Wiring only; the logic is `shared::nim::router`.

use shared::boot::Boot;
use shared::lambda::{Error, serve_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let router = Boot::load().await?.nim_router()?;
    let router = &router;
    serve_http(|req| shared::nim::router::http_handler(router, req)).await
}
