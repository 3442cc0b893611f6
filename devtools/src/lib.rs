//! Local stand-ins for everything outside our code, shared by the tests and the local run:
//! a Tencent Chat REST emulator, an OpenAI-compatible streaming LLM server, a moto-server
//! harness with the stack's AWS resources, and a poller that plays the SQS event source
//! mapping. Everything listens on loopback only.

pub mod aws;
pub mod esm;
pub mod iam;
pub mod lambda_emu;
pub mod llm_emu;
pub mod moto;
pub mod nim_emu;
pub mod tencent_emu;

/// Binds an ephemeral loopback port.
pub async fn loopback_listener() -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", 0)).await
}

/// A listener whose connections send small writes at once (no Nagle delay), as a streaming
/// server should: without it, each SSE event after the first waits for the client's delayed ACK.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

/// A body of `head`, then `filler` repeated to `bytes` bytes, then `tail`, sent in 16 KiB
/// chunks without a length, the way a runaway server would send it.
pub fn chunked_body(head: &str, filler: u8, bytes: usize, tail: &str) -> axum::body::Body {
    const CHUNK: usize = 16 * 1024;
    let fill = (0..bytes.div_ceil(CHUNK)).map(move |i| vec![filler; CHUNK.min(bytes - i * CHUNK)]);
    let parts = std::iter::once(head.as_bytes().to_vec()).chain(fill).chain(std::iter::once(tail.as_bytes().to_vec()));
    axum::body::Body::from_stream(futures_util::stream::iter(
        parts.map(|p| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(p))),
    ))
}

/// A queue that accepts and drops every message: for driving the router in process where
/// what is queued does not matter (hostile-input tests, corpus replay).
pub struct DiscardQueue;

#[async_trait::async_trait]
impl shared::queue::Queue for DiscardQueue {
    async fn send(&self, _: &str, _: &shared::queue::QueueMessage) -> Result<(), shared::queue::QueueError> {
        Ok(())
    }
    async fn retry_after(&self, _: &str, _: &str, _: std::time::Duration) -> Result<(), shared::queue::QueueError> {
        Ok(())
    }
}

/// A router for app 1400000000 with the sample events' token (`local-dev-token`), the
/// in-memory store and a [`DiscardQueue`].
pub fn memory_router() -> shared::router::Router {
    shared::router::Router::new(
        1_400_000_000,
        Some(shared::secrets::SecretString::new("local-dev-token")),
        std::sync::Arc::new(shared::store::MemoryStore::new()),
        std::sync::Arc::new(DiscardQueue),
        "q".into(),
        "g".into(),
    )
}
