//! A local OpenAI-compatible streaming server. It answers every chat completion with a
//! deterministic text derived from the prompt (so tests can predict it and a person can see the
//! conversation is remembered), token by token as server-sent events, and can be scripted to
//! misbehave: an HTTP error, a stall before the first token or mid-answer, a cut stream, a
//! malformed event, a huge error body, an endless line.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the next completion behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Script {
    /// Answer with HTTP `status` and an OpenAI-style error body.
    Status { status: u16 },
    /// Send headers, then nothing for `ms` before the first token.
    StallFirst { ms: u64 },
    /// Send `after` tokens, then nothing for `ms`.
    StallAfter { after: usize, ms: u64 },
    /// Send `after` tokens, then only reasoning deltas (`reasoning_content`), one every 500 ms,
    /// for `ms`, then the rest: a reasoning model thinking mid-answer.
    ReasonAfter { after: usize, ms: u64 },
    /// Send `after` tokens, then close the stream without `[DONE]`.
    CutAfter { after: usize },
    /// Send `after` tokens, then an event that is not JSON.
    MalformedAfter { after: usize },
    /// Answer with exactly this text.
    Answer { text: String },
    /// Answer with exactly these deltas, in this order (a word can be split across two).
    Deltas { deltas: Vec<String> },
    /// Send `deltas` reasoning deltas (`reasoning_content`) and no answer text, then `[DONE]`:
    /// a reasoning model that spent its whole `max_tokens` thinking.
    ReasoningOnly { deltas: usize },
    /// Answer with HTTP `status` and an OpenAI-style error body of about `bytes` bytes, sent
    /// without a length.
    HugeError { status: u16, bytes: usize },
    /// Send `after` tokens, then one `data` line of `bytes` bytes with no newline, then close.
    LongLine { after: usize, bytes: usize },
}

/// The server's shared state.
pub struct LlmState {
    script: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<Value>>,
    token_delay: Mutex<Duration>,
    first_token_delay: Mutex<Duration>,
    api_key: Option<String>,
    done_ms: Mutex<Vec<u64>>,
    token_instants: Mutex<Vec<(std::time::Instant, std::time::Instant)>>,
    /// Prompts marked `[[flaky]]` that have already failed once.
    flaked: Mutex<std::collections::HashSet<String>>,
}

impl LlmState {
    pub fn push(&self, s: Script) {
        self.script.lock().unwrap_or_else(|p| p.into_inner()).push_back(s);
    }
    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// When each completed answer sent its `[DONE]`, unix milliseconds.
    pub fn done_ms(&self) -> Vec<u64> {
        self.done_ms.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// For each completed answer, when its first and its last token were handed to the socket.
    pub fn token_instants(&self) -> Vec<(std::time::Instant, std::time::Instant)> {
        self.token_instants.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Every answer waits this long before its first token (a model thinking), unless its
    /// script says otherwise.
    pub fn set_first_token_delay(&self, d: Duration) {
        *self.first_token_delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    pub fn set_token_delay(&self, d: Duration) {
        *self.token_delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }
    pub fn reset(&self) {
        self.script.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A running LLM server.
pub struct LlmEmulator {
    pub addr: SocketAddr,
    pub state: Arc<LlmState>,
}

/// The answer the server gives to a prompt when not scripted otherwise.
pub fn default_answer(messages: &[Value]) -> String {
    let content = messages.iter().rev().find(|m| m["role"] == "user").map(|m| m["content"].clone()).unwrap_or_default();
    let last = match content.as_array() {
        // Text and images (a vision request): the text, and how many images came with it.
        Some(parts) => {
            let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            let images = parts.iter().filter(|p| p["type"] == "image_url").count();
            format!("{} + {images} image(s)", turn_text(&text))
        }
        None => turn_text(content.as_str().unwrap_or("")),
    };
    let earlier = messages.iter().filter(|m| m["role"] == "user").count().saturating_sub(1);
    format!(
        "You said: \"{last}\". I remember {earlier} earlier message{} of yours in this conversation. \
         This answer comes from the local LLM emulator, streamed word by word so that you can see \
         the chunks arrive.",
        if earlier == 1 { "" } else { "s" }
    )
}

/// What a user turn says, shown as `[sender] text` when it is a group turn
/// (`{"from": …, "text": …}`), else as it is.
pub fn turn_text(content: &str) -> String {
    match serde_json::from_str::<Value>(content) {
        Ok(v) if v["from"].is_string() && v["text"].is_string() => {
            format!("[{}] {}", v["from"].as_str().unwrap_or_default(), v["text"].as_str().unwrap_or_default())
        }
        _ => content.to_owned(),
    }
}

/// Splits text into tokens of a word and its trailing space.
pub fn tokens(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

impl LlmEmulator {
    /// Serves on `listener`; with `api_key`, requests must carry it as a Bearer token.
    pub fn serve(
        listener: tokio::net::TcpListener,
        api_key: Option<String>,
        token_delay: Duration,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(LlmState {
            script: Mutex::default(),
            requests: Mutex::default(),
            token_delay: Mutex::new(token_delay),
            first_token_delay: Mutex::new(Duration::ZERO),
            api_key,
            done_ms: Mutex::default(),
            token_instants: Mutex::default(),
            flaked: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/chat/completions", post(complete))
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(crate::nodelay(listener), app).await {
                tracing::error!(error = %e, "LLM emulator stopped");
            }
        });
        Ok(LlmEmulator { addr, state })
    }

    pub async fn start(api_key: Option<String>, token_delay: Duration) -> std::io::Result<Self> {
        Self::serve(crate::loopback_listener().await?, api_key, token_delay)
    }

    /// The base URL to configure (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn chunk(model: &str, text: &str) -> Bytes {
    sse(&json!({"id": "emu", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    .to_string())
}

async fn complete(State(s): State<Arc<LlmState>>, headers: HeaderMap, Json(req): Json<Value>) -> Response {
    if let Some(key) = &s.api_key {
        let expected = format!("Bearer {key}");
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "invalid api key"}}))).into_response();
        }
    }
    s.requests.lock().unwrap_or_else(|p| p.into_inner()).push(req.clone());
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let scripted = s.script.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    let script = scripted.or_else(|| marked_script(&s, &messages));
    let model = req["model"].as_str().unwrap_or("emulated").to_owned();
    let text = match &script {
        Some(Script::Answer { text }) => text.clone(),
        _ => default_answer(&messages),
    };
    if let Some(Script::Status { status }) = script {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, Json(json!({"error": {"message": format!("emulated HTTP {status}")}}))).into_response();
    }
    if let Some(Script::HugeError { status, bytes }) = script {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = crate::chunked_body(r#"{"error":{"message":""#, b'x', bytes, r#""}}"#);
        return (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let delay = *s.token_delay.lock().unwrap_or_else(|p| p.into_inner());
    let first_token_delay = *s.first_token_delay.lock().unwrap_or_else(|p| p.into_inner());
    let toks = match &script {
        Some(Script::Deltas { deltas }) => deltas.clone(),
        _ => tokens(&text),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    let state = s.clone();
    tokio::spawn(async move {
        match script {
            Some(Script::StallFirst { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
            _ => tokio::time::sleep(first_token_delay).await,
        }
        let _ = tx.send(Ok(sse(&json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string()))).await;
        if let Some(Script::ReasoningOnly { deltas }) = script {
            for _ in 0..deltas {
                let thought = json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm "}}]});
                let _ = tx.send(Ok(sse(&thought.to_string()))).await;
            }
            let _ = tx.send(Ok(sse("[DONE]"))).await;
            return;
        }
        let mut first_at = None;
        let mut last_at = std::time::Instant::now();
        for (i, t) in toks.iter().enumerate() {
            match script {
                Some(Script::StallAfter { after, ms }) if after == i => {
                    tokio::time::sleep(Duration::from_millis(ms)).await
                }
                Some(Script::ReasonAfter { after, ms }) if after == i => {
                    let until = std::time::Instant::now() + Duration::from_millis(ms);
                    while std::time::Instant::now() < until {
                        let thought = json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm "}}]});
                        let _ = tx.send(Ok(sse(&thought.to_string()))).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Some(Script::CutAfter { after }) if after == i => return,
                Some(Script::MalformedAfter { after }) if after == i => {
                    let _ = tx.send(Ok(sse("{not json"))).await;
                    return;
                }
                Some(Script::LongLine { after, bytes }) if after == i => {
                    let _ = tx.send(Ok(Bytes::from_static(b"data: "))).await;
                    for n in (0..bytes).step_by(16 * 1024) {
                        if tx.send(Ok(Bytes::from(vec![b'x'; (bytes - n).min(16 * 1024)]))).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                _ => {}
            }
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(chunk(&model, t))).await.is_err() {
                return;
            }
            last_at = std::time::Instant::now();
            first_at.get_or_insert(last_at);
        }
        let usage = json!({"choices": [], "usage": {"prompt_tokens": messages.len() * 10, "completion_tokens": toks.len(), "total_tokens": messages.len() * 10 + toks.len()}});
        let _ = tx.send(Ok(sse(&usage.to_string()))).await;
        let _ = tx.send(Ok(sse("[DONE]"))).await;
        state.done_ms.lock().unwrap_or_else(|p| p.into_inner()).push(shared::store::now_ms());
        if let Some(first) = first_at {
            state.token_instants.lock().unwrap_or_else(|p| p.into_inner()).push((first, last_at));
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Faults chosen by the prompt, for tests that run many conversations at once: a last user
/// message containing `[[empty]]` is answered with no text every time; one containing
/// `[[flaky]]` gets HTTP 503 the first time it is asked and its answer after.
fn marked_script(s: &LlmState, messages: &[Value]) -> Option<Script> {
    let last = messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str())?;
    if last.contains("[[empty]]") {
        return Some(Script::Answer { text: String::new() });
    }
    if last.contains("[[flaky]]") && s.flaked.lock().unwrap_or_else(|p| p.into_inner()).insert(last.to_owned()) {
        return Some(Script::Status { status: 503 });
    }
    None
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}
