//! Local stand-ins for everything outside our code, shared by the tests and the local run:
//! a Tencent Chat REST emulator, an OpenAI-compatible streaming LLM server, a moto-server
//! harness with the stack's AWS resources, and a poller that plays the SQS event source
//! mapping. Everything listens on loopback only.

pub mod aws;
pub mod esm;
pub mod lambda_emu;
pub mod llm_emu;
pub mod moto;
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
