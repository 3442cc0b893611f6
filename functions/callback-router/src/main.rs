//! `callback-router`: the only public function, behind the HTTP API. Wiring only; the logic is
//! `shared::router`.

use shared::boot::Boot;
use shared::lambda::{Error, serve_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let router = Boot::load().await?.router()?;
    let router = &router;
    serve_http(|req| shared::router::http_handler(router, req)).await
}
