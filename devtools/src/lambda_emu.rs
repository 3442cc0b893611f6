//! A local server speaking Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`),
//! so that the router's synchronous invocations go through the real `aws-sdk-lambda` in tests.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The function body: (function name, payload) to the result payload.
pub type Handler = Arc<dyn Fn(String, Bytes) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// Serves `handler` on a free loopback port; returns its address.
pub async fn serve(handler: Handler) -> std::io::Result<SocketAddr> {
    let listener = crate::loopback_listener().await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(|State(h): State<Handler>, Path(name): Path<String>, body: Bytes| async move { h(name, body).await }),
        )
        .with_state(handler);
    tokio::spawn(async move { axum::serve(crate::nodelay(listener), app).await });
    Ok(addr)
}
