//! `usersig`: a UserSig for the caller of `POST /usersig`, whose JWT API Gateway has checked.
//! Wiring only; the logic is `shared::usersigs`.

use lambda_http::{Error, service_fn};
use shared::boot::Boot;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let service = Boot::load().await?.usersigs()?;
    let service = &service;
    lambda_http::run(service_fn(move |req| shared::usersigs::http_handler(service, req))).await
}
