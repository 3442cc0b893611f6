//! `threads-api`: `GET /threads?server=…[&channel=…]` for callers whose JWT API Gateway has
//! checked. Wiring only; the logic is `shared::threads::api`.
//!
//! Its own function rather than a route of `usersig`: it reads the table and nothing else, so
//! it holds no secret at all (the UserSig function holds the Tencent key), and it needs no
//! secret read at cold start.

use shared::lambda::{Error, serve_http};
use shared::store::DynamoStore;
use shared::threads::api::ThreadsApi;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::observe::init_tracing();
    let table = std::env::var("TCBOT_TABLE_NAME")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or("TCBOT_TABLE_NAME is not set: the table that holds the threads")?;
    let claim = std::env::var("TCBOT_APP_USERSIG_CLAIM")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or(shared::config::DEFAULT_USERSIG_CLAIM.into());
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let service = ThreadsApi { store: Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)), claim };
    let service = &service;
    serve_http(|req| shared::threads::api::http_handler(service, req)).await
}
