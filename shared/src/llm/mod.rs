//! The LLM port and its OpenAI-compatible adapter.
//!
//! One wire format covers OpenAI, Azure OpenAI (its URL shape and `api-key` header), DeepSeek,
//! MiniMax, Tencent Hunyuan, Ollama and vLLM: `POST …/chat/completions` with `"stream": true`,
//! answered with server-sent events whose `data` is a JSON chunk and `[DONE]` at the end.

pub mod openai;

use async_trait::async_trait;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

pub use openai::OpenAiClient;

/// One message of the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Content,
}

/// A message's content: text, or (for vision models) text and images, in the Chat Completions
/// shapes (`"content": "…"` or `"content": [{"type": "text", …}, {"type": "image_url", …}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message with images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage { role: role.to_owned(), content: Content::Text(content.into()) }
    }

    /// A message of `text` (left out when empty) and images at `urls`.
    pub fn with_images(role: &str, text: &str, urls: &[String]) -> Self {
        let text = (!text.is_empty()).then(|| ContentPart::Text { text: text.to_owned() });
        let images = urls.iter().map(|u| ContentPart::ImageUrl { image_url: ImageUrl { url: u.clone() } });
        ChatMessage { role: role.to_owned(), content: Content::Parts(text.into_iter().chain(images).collect()) }
    }
}

/// Where a request goes and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub base_url: String,
    /// `openai` (Bearer key, `{base}/chat/completions`) or `azure` (`api-key` header,
    /// `{base}/chat/completions?api-version=…`, the base being the deployment URL).
    pub api_style: String,
    pub api_version: Option<String>,
    pub api_key: Option<crate::secrets::SecretString>,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// Token usage, when the provider reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    Text(String),
    Usage(Usage),
}

/// Why a completion failed. The text holds the provider's status and error message, never the
/// key or the prompt.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmError {
    #[error("LLM answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("LLM did not connect in time")]
    ConnectTimeout,
    #[error("LLM sent no token within {0:?}")]
    FirstTokenTimeout(Duration),
    #[error("LLM stalled for {0:?} mid-answer")]
    IdleTimeout(Duration),
    #[error("LLM answer exceeded the total time limit {0:?}")]
    TotalTimeout(Duration),
    #[error("LLM network error: {0}")]
    Network(String),
    #[error("LLM sent an unreadable event: {0}")]
    Malformed(String),
    #[error("LLM reported an error: {0}")]
    Provider(String),
    #[error("LLM endpoint is misconfigured: {0}")]
    Config(String),
    /// The stream ended without any answer text: a reasoning model that spent `max_tokens` on
    /// reasoning, a provider's content filter, or only a role delta and `[DONE]`.
    #[error("LLM ended its answer without any text")]
    Empty,
    /// No time is left for another attempt before the function's deadline.
    #[error("no time left before the deadline for another LLM attempt")]
    Deadline,
}

impl LlmError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            LlmError::ConnectTimeout
            | LlmError::FirstTokenTimeout(_)
            | LlmError::IdleTimeout(_)
            | LlmError::Network(_)
            | LlmError::Empty
            // Another delivery has a deadline of its own.
            | LlmError::Deadline => true,
            LlmError::TotalTimeout(_) | LlmError::Malformed(_) | LlmError::Provider(_) | LlmError::Config(_) => false,
        }
    }
}

/// A streamed answer.
pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<Delta, LlmError>> + Send>>;

/// Time limits of one completion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
}

/// The LLM port.
#[async_trait]
pub trait Llm: Send + Sync {
    /// Starts a completion; the stream yields text deltas as they arrive, with the time limits
    /// applied.
    async fn stream(&self, req: &ChatRequest, timeouts: Timeouts) -> Result<DeltaStream, LlmError>;
}

/// Starts a completion and waits for its first text, retrying and falling back to the next
/// model only while no text has arrived: once the user could have seen something, the answer
/// is never started again. A stream that ends without text counts as a failure of that attempt.
/// Every attempt, and the stream it starts, ends by `deadline`; no attempt starts with less
/// than [`MIN_ATTEMPT`] left.
pub async fn start_with_fallback(
    llm: &dyn Llm,
    req: &ChatRequest,
    fallback_models: &[String],
    attempts_per_model: u32,
    timeouts: Timeouts,
    deadline: Instant,
) -> Result<(String, DeltaStream, String), LlmError> {
    use futures_util::StreamExt;
    let mut last = LlmError::Config("no model configured".into());
    let models = std::iter::once(&req.model).chain(fallback_models.iter());
    for model in models {
        let mut r = req.clone();
        r.model = model.clone();
        for attempt in 1..=attempts_per_model.max(1) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_ATTEMPT {
                tracing::warn!(model = %model, attempt, error = %last, "no time left for another LLM attempt");
                return Err(if last.is_retryable() { LlmError::Deadline } else { last });
            }
            let t = timeouts.within(left);
            let outcome = async {
                let mut s = llm.stream(&r, t).await?;
                loop {
                    match s.next().await {
                        Some(Ok(Delta::Text(t))) if !t.is_empty() => return Ok((t, s)),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e),
                        None => return Err(LlmError::Empty),
                    }
                }
            }
            .await;
            match outcome {
                Ok((first, s)) => return Ok((first, s, model.clone())),
                Err(e) => {
                    tracing::warn!(model = %model, attempt, error = %e, "LLM failed before its first token");
                    let retry = e.is_retryable();
                    last = e;
                    if !retry {
                        break;
                    }
                    let pause = Duration::from_millis(200 * u64::from(attempt));
                    tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
                }
            }
        }
    }
    Err(last)
}

/// The least time worth starting an LLM attempt with.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);

impl Timeouts {
    /// These limits, none longer than `left`.
    pub fn within(self, left: Duration) -> Timeouts {
        Timeouts { first_token: self.first_token.min(left), idle: self.idle.min(left), total: self.total.min(left) }
    }
}
