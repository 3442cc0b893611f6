//! The OpenAI-compatible adapter against the local LLM server: what it reads from a server
//! that sends too much is bounded.

use devtools::llm_emu::{LlmEmulator, Script};
use futures_util::StreamExt;
use shared::llm::{ChatMessage, ChatRequest, Delta, Endpoint, Llm, LlmError, OpenAiClient, Timeouts};
use std::time::Duration;

async fn setup() -> (LlmEmulator, OpenAiClient, ChatRequest) {
    let emu = LlmEmulator::start(None, Duration::ZERO).await.unwrap_or_else(|e| panic!("{e}"));
    let req = ChatRequest {
        endpoint: Endpoint { base_url: emu.base_url(), api_style: "openai".into(), api_version: None, api_key: None },
        model: "emu-model".into(),
        messages: vec![ChatMessage::new("user", "hello")],
        temperature: None,
        max_tokens: None,
    };
    (emu, OpenAiClient::new(reqwest::Client::new()), req)
}

const TIMEOUTS: Timeouts =
    Timeouts { first_token: Duration::from_secs(5), idle: Duration::from_secs(5), total: Duration::from_secs(20) };

#[tokio::test]
async fn when_an_error_body_exceeds_the_cap_should_not_read_it_all() {
    let (emu, llm, req) = setup().await;
    emu.state.push(Script::HugeError { status: 503, bytes: 4 << 20 });
    let r = llm.stream(&req, TIMEOUTS).await.err();
    assert_eq!(r, Some(LlmError::Http { status: 503, message: "the error body exceeded 65536 bytes".into() }));
}

#[tokio::test]
async fn when_an_event_line_exceeds_the_limit_should_end_with_malformed() {
    let (emu, llm, req) = setup().await;
    emu.state.push(Script::LongLine { after: 2, bytes: 1 << 20 });
    let s = llm.stream(&req, TIMEOUTS).await.unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<Result<Delta, LlmError>> = s.collect().await;
    let (last, first) = items.split_last().unwrap_or_else(|| panic!("no items"));
    assert_eq!(first.len(), 2, "the tokens before the line: {first:?}");
    assert_eq!(last, &Err(LlmError::Malformed("an event line exceeded 262144 bytes".into())));
}
