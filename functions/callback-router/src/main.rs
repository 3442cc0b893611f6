//! `callback-router`: the only public function, behind the HTTP API. Wiring only; the logic is
//! `shared::router`.

use lambda_http::{Error, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let router = Boot::load().await?.router()?;
    let router = &router;
    lambda_http::run(service_fn(move |req| shared::router::http_handler(router, req))).await
}
