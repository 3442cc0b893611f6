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
