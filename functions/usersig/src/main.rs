//! `usersig`: a UserSig for the caller of `POST /usersig`, whose JWT API Gateway has checked.
//! Wiring only; the logic is `shared::usersigs`.

use shared::boot::Boot;
use shared::lambda::{Error, serve_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let service = Boot::load().await?.usersigs()?;
    let service = &service;
    serve_http(|req| shared::usersigs::http_handler(service, req)).await
}
