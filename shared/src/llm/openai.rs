//! The OpenAI-compatible Chat Completions adapter with streaming.

use super::*;
use crate::bounded::{BodyError, LineError, limit_lines, read_body};
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use tokio::time::Instant;

/// The most of an error body read; a provider's error is a few hundred bytes.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The longest event line accepted. A chunk is a few hundred bytes; an endless line would
/// otherwise be buffered whole by the event parser.
const MAX_LINE_BYTES: usize = 256 * 1024;

/// The production [`Llm`]: one `reqwest` client shared by all requests.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
}

impl OpenAiClient {
    pub fn new(http: reqwest::Client) -> Self {
        OpenAiClient { http }
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<DeltaContent>,
}

#[derive(Deserialize)]
struct DeltaContent {
    #[serde(default)]
    content: Option<String>,
}

/// Parses one SSE `data` payload into the deltas it carries; `Ok(None)` at `[DONE]`.
pub fn parse_event(data: &str) -> Result<Option<Vec<Delta>>, LlmError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(None);
    }
    let chunk: Chunk =
        serde_json::from_str(data).map_err(|e| LlmError::Malformed(crate::redact::JsonError::from(e).to_string()))?;
    if let Some(err) = chunk.error {
        let msg = err.get("message").and_then(|m| m.as_str()).map(str::to_owned).unwrap_or_else(|| err.to_string());
        return Err(LlmError::Provider(msg));
    }
    let mut out: Vec<Delta> =
        chunk.choices.into_iter().filter_map(|c| c.delta?.content).filter(|t| !t.is_empty()).map(Delta::Text).collect();
    if let Some(u) = chunk.usage {
        out.push(Delta::Usage(u));
    }
    Ok(Some(out))
}

fn request_url(ep: &Endpoint) -> String {
    let base = ep.base_url.trim_end_matches('/');
    match ep.api_style.as_str() {
        "azure" => format!("{base}/chat/completions?api-version={}", ep.api_version.as_deref().unwrap_or("2024-10-21")),
        _ => format!("{base}/chat/completions"),
    }
}

#[async_trait]
impl Llm for OpenAiClient {
    async fn stream(&self, req: &ChatRequest, t: Timeouts) -> Result<DeltaStream, LlmError> {
        let started = Instant::now();
        let mut body = serde_json::json!({
            "model": req.model,
            "messages": req.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(temp) = req.temperature {
            body["temperature"] = serde_json::json!(temp);
        }
        if let Some(max) = req.max_tokens {
            body["max_tokens"] = serde_json::json!(max);
        }
        let mut rb = self.http.post(request_url(&req.endpoint)).json(&body);
        if let Some(key) = &req.endpoint.api_key {
            rb = match req.endpoint.api_style.as_str() {
                "azure" => rb.header("api-key", key.expose()),
                _ => rb.bearer_auth(key.expose()),
            };
        }
        let res = tokio::time::timeout(t.first_token, rb.send())
            .await
            .map_err(|_| LlmError::FirstTokenTimeout(t.first_token))?
            .map_err(|e| {
                let e = e.without_url();
                if e.is_connect() && e.is_timeout() {
                    LlmError::ConnectTimeout
                } else {
                    LlmError::Network(e.to_string())
                }
            })?;
        let status = res.status();
        if !status.is_success() {
            let text = match read_body(res, MAX_ERROR_BODY_BYTES).await {
                Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                Err(BodyError::TooLarge(cap)) => {
                    let message = format!("the error body exceeded {cap} bytes");
                    return Err(LlmError::Http { status: status.as_u16(), message });
                }
                Err(BodyError::Read(_)) => String::new(),
            };
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(LlmError::Http { status: status.as_u16(), message });
        }
        let events = limit_lines(res.bytes_stream(), MAX_LINE_BYTES).eventsource();
        let deadline = started + t.total;
        // State: the event stream, pending deltas, whether text has arrived, and done.
        let state = (Box::pin(events), std::collections::VecDeque::<Delta>::new(), false, false);
        let s = futures_util::stream::unfold(state, move |(mut events, mut pending, mut got_text, done)| async move {
            loop {
                if let Some(d) = pending.pop_front() {
                    if matches!(d, Delta::Text(_)) {
                        got_text = true;
                    }
                    return Some((Ok(d), (events, pending, got_text, done)));
                }
                if done {
                    return None;
                }
                let limit = if got_text { t.idle } else { t.first_token };
                let wait = limit.min(deadline.saturating_duration_since(Instant::now()));
                let next = match tokio::time::timeout(wait, events.next()).await {
                    Err(_) => {
                        // Before any text, running out of time is a first-token timeout (worth
                        // another attempt or delivery), whichever limit was shorter.
                        let e = if !got_text {
                            LlmError::FirstTokenTimeout(t.first_token)
                        } else if Instant::now() >= deadline {
                            LlmError::TotalTimeout(t.total)
                        } else {
                            LlmError::IdleTimeout(t.idle)
                        };
                        return Some((Err(e), (events, pending, got_text, true)));
                    }
                    Ok(n) => n,
                };
                match next {
                    // The provider closed the stream without `[DONE]`: the answer was cut.
                    None => {
                        return Some((
                            Err(LlmError::Network("stream ended before [DONE]".into())),
                            (events, pending, got_text, true),
                        ));
                    }
                    Some(Err(EventStreamError::Transport(LineError::TooLong(max)))) => {
                        let e = LlmError::Malformed(format!("an event line exceeded {max} bytes"));
                        return Some((Err(e), (events, pending, got_text, true)));
                    }
                    Some(Err(e)) => {
                        return Some((Err(LlmError::Network(e.to_string())), (events, pending, got_text, true)));
                    }
                    Some(Ok(ev)) => match parse_event(&ev.data) {
                        Ok(None) => return None,
                        Ok(Some(ds)) => pending.extend(ds),
                        Err(e) => return Some((Err(e), (events, pending, got_text, true))),
                    },
                }
            }
        });
        // Fused: a stream that has ended answers `None` for good instead of panicking when
        // polled again.
        Ok(Box::pin(s.fuse()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_usage_done_and_errors() {
        let d = parse_event(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#);
        assert_eq!(d, Ok(Some(vec![Delta::Text("Hel".into())])));
        let u = parse_event(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#);
        assert_eq!(u, Ok(Some(vec![Delta::Usage(Usage { prompt_tokens: 3, completion_tokens: 5 })])));
        assert_eq!(parse_event(" [DONE] "), Ok(None));
        assert!(matches!(parse_event("{oops"), Err(LlmError::Malformed(_))));
        // The error names what and where, never the provider's text (it may be answer text).
        let e = parse_event(r#"{"choices":"the secret answer"}"#).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("LLM sent an unreadable event") && !e.contains("secret"), "{e}");
        assert_eq!(parse_event(r#"{"error":{"message":"overloaded"}}"#), Err(LlmError::Provider("overloaded".into())));
        assert_eq!(parse_event(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#), Ok(Some(vec![])));
    }

    #[test]
    fn azure_url_carries_api_version() {
        let ep = Endpoint {
            base_url: "https://r.openai.azure.com/openai/deployments/gpt4o/".into(),
            api_style: "azure".into(),
            api_version: None,
            api_key: None,
        };
        assert_eq!(
            request_url(&ep),
            "https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
    }
}
