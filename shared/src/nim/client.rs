//! The NIM REST client (nim-protocol.md §3): JSON POSTs to `{base}/im/v2/…` with the `AppKey`,
//! `Nonce`, `CurTime` (seconds) and `CheckSum` headers, a fresh nonce and time on every
//! attempt, and NIM's `{"code": 200, "data": …}` envelope.
//!
//! Retries follow the Tencent client's rule: a rate limit (416) is retried with jittered
//! exponential backoff; a server error or a timeout only where NIM certainly did not apply the
//! call. Neither a send nor a stream chunk is known to be deduplicated by NIM (UNCONFIRMED for
//! `message_client_id`), so both count as unsafe to repeat blindly.

use super::api::*;
use super::checksum::rest_checksum;
use crate::bounded::{BodyError, read_body};
use crate::redact::JsonError;
use crate::secrets::SecretString;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The host the official SDKs default to (`api-sg.yunxinapi.com` for Singapore).
pub const DEFAULT_BASE_URL: &str = "https://api-cn.yunxinapi.com";

/// NIM's success code.
const OK: i64 = 200;
/// Bad parameters or a bad checksum.
pub const CODE_BAD_REQUEST: i64 = 414;
/// Rate limited, with a temporary block: back off.
pub const CODE_RATE_LIMITED: i64 = 416;
/// The most of a reply read; replies are a few hundred bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The most of NIM's error description kept in an error.
const MAX_DESC_CHARS: usize = 200;
/// The most characters of one streamed message (nim-protocol.md §3: more ends the stream).
pub const STREAM_MAX_CHARS: usize = 5000;
/// The longest NIM waits between two chunks of a stream before it ends it.
pub const STREAM_MAX_GAP: Duration = Duration::from_secs(30);

/// A failed call. The text names the call and NIM's code, never a header or the secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NimError {
    #[error("{call}: NIM error {code}: {desc}")]
    Nim { call: &'static str, code: i64, desc: String },
    #[error("{call}: HTTP status {status}")]
    Http { call: &'static str, status: u16 },
    #[error("{call}: timed out")]
    Timeout { call: &'static str },
    #[error("{call}: could not connect: {reason}")]
    Connect { call: &'static str, reason: String },
    #[error("{call}: network error: {reason}")]
    Network { call: &'static str, reason: String },
    #[error("{call}: unreadable reply: {reason}")]
    Decode { call: &'static str, reason: String },
    /// Refused here, before any call: the stream has finished or would exceed its limit.
    #[error("{call}: {reason}")]
    Local { call: &'static str, reason: &'static str },
}

impl NimError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            // 5xx codes in the envelope: NIM's own server trouble.
            NimError::Nim { code, .. } => *code == CODE_RATE_LIMITED || (500..600).contains(code),
            NimError::Http { status, .. } => *status == 429 || *status >= 500,
            NimError::Timeout { .. } | NimError::Connect { .. } | NimError::Network { .. } => true,
            NimError::Decode { .. } | NimError::Local { .. } => false,
        }
    }

    /// Whether NIM certainly did not apply the call, so that repeating it cannot duplicate
    /// anything: it refused it with a 4xx code in its envelope (a rate limit, bad
    /// parameters), or the connection never opened. A 5xx, a timeout or a broken connection
    /// may have come after the message was stored.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            NimError::Nim { code, .. } => (400..500).contains(code),
            NimError::Connect { .. } | NimError::Local { .. } => true,
            _ => false,
        }
    }

    /// Whether NIM said "too fast" (416).
    pub fn is_rate_limited(&self) -> bool {
        self.code() == Some(CODE_RATE_LIMITED)
    }

    /// NIM's code, when the error is one.
    pub fn code(&self) -> Option<i64> {
        match self {
            NimError::Nim { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The NIM operations the bot needs. One production adapter ([`NimClient`]); tests run it
/// against the emulator in `devtools`, or put a double in its place.
#[async_trait]
pub trait NimApi: Send + Sync {
    /// Sends a whole text message.
    async fn send_text(&self, msg: &OutgoingText) -> Result<SentMessage, NimError>;
    /// Sends one delta of a streamed message. [`StreamWriter`] keeps the index and ids.
    async fn stream_chunk(&self, chunk: &StreamChunk) -> Result<SentMessage, NimError>;
}

/// How the client reaches NIM and how hard it tries.
#[derive(Debug, Clone)]
pub struct NimOptions {
    /// `https://api-cn.yunxinapi.com`, `https://api-sg.yunxinapi.com`,
    /// `https://open.yunxinapi.com`, or an emulator; no trailing slash needed.
    pub base_url: String,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for NimOptions {
    fn default() -> Self {
        NimOptions {
            base_url: DEFAULT_BASE_URL.into(),
            timeout: Duration::from_secs(3),
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// The REST client, built once per cold start and shared.
pub struct NimClient {
    http: reqwest::Client,
    opts: NimOptions,
    app_key: String,
    secret: SecretString,
}

impl std::fmt::Debug for NimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NimClient")
            .field("base_url", &self.opts.base_url)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh nonce: 32 hex characters. It needs to be unique, not unpredictable (the checksum's
/// secret is the AppSecret), so a fast non-cryptographic generator is enough.
fn nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The call names used in errors and logs.
const SEND: &str = "send_message";
const STREAM: &str = "stream_message";

impl NimClient {
    pub fn new(http: reqwest::Client, opts: NimOptions, app_key: String, secret: SecretString) -> Self {
        NimClient { http, opts, app_key, secret }
    }

    /// Makes one call with retries: rate limits always (NIM refused, nothing was applied);
    /// other retryable failures only when certainly not applied.
    async fn call<Req: Serialize + Sync>(&self, call: &'static str, path: &str, body: &Req) -> Result<Value, NimError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.call_once(call, path, body).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt >= self.opts.max_attempts || !err.is_retryable() || !err.certainly_not_applied() {
                tracing::warn!(call, attempt, error = %err, "nim call failed");
                return Err(err);
            }
            let delay = self.backoff(attempt, err.is_rate_limited());
            tracing::info!(call, attempt, error = %err, delay_ms = delay.as_millis() as u64, "retrying nim call");
            tokio::time::sleep(delay).await;
        }
    }

    /// Full-jitter exponential backoff. A rate limit starts one step higher: NIM blocks a
    /// caller that keeps going.
    fn backoff(&self, attempt: u32, rate_limited: bool) -> Duration {
        let step = (attempt - 1 + u32::from(rate_limited)).min(10);
        let capped = self.opts.backoff_base.saturating_mul(1 << step).min(self.opts.backoff_max);
        capped.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    async fn call_once<Req: Serialize>(&self, call: &'static str, path: &str, body: &Req) -> Result<Value, NimError> {
        let url = format!("{}{}", self.opts.base_url.trim_end_matches('/'), path);
        let (nonce, cur_time) = (nonce(), unix_secs().to_string());
        let checksum = rest_checksum(self.secret.expose(), &nonce, &cur_time);
        let res = self
            .http
            .post(url)
            .timeout(self.opts.timeout)
            .header("AppKey", &self.app_key)
            .header("Nonce", nonce)
            .header("CurTime", cur_time)
            .header("CheckSum", checksum)
            .json(body)
            .send()
            .await
            .map_err(|e| classify(call, e))?;
        let status = res.status();
        let bytes = read_body(res, MAX_REPLY_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge(cap) => NimError::Decode { call, reason: format!("the reply exceeded {cap} bytes") },
            BodyError::Read(e) => classify(call, e),
        })?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        // NIM may put its envelope on an error status too: its code says more than the status.
        let code = parsed.as_ref().ok().and_then(|v| v.get("code")).and_then(lenient_i64);
        let value = match (status.is_success(), parsed, code) {
            (_, Ok(v), Some(code)) if code != OK => {
                let desc = ["msg", "desc", "message"].iter().find_map(|k| v.get(*k).and_then(Value::as_str));
                let desc = desc.unwrap_or("").chars().take(MAX_DESC_CHARS).collect();
                return Err(NimError::Nim { call, code, desc });
            }
            (false, _, _) => return Err(NimError::Http { call, status: status.as_u16() }),
            (true, Ok(v), Some(_)) => v,
            (true, Ok(_), None) => return Err(NimError::Decode { call, reason: "no code in the reply".into() }),
            (true, Err(e), _) => return Err(NimError::Decode { call, reason: JsonError::from(e).to_string() }),
        };
        Ok(value)
    }
}

fn lenient_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Reads `data.message_server_id` (a number, or a string) and `data.message_client_id`.
fn sent_message(v: &Value) -> SentMessage {
    let data = v.get("data");
    let field = |k: &str| {
        data.and_then(|d| d.get(k)).and_then(|x| match x {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    SentMessage { server_id: field("message_server_id"), client_id: field("message_client_id") }
}

#[async_trait]
impl NimApi for NimClient {
    async fn send_text(&self, msg: &OutgoingText) -> Result<SentMessage, NimError> {
        let path = format!("/im/v2/conversations/{}/messages", msg.conversation.path_segment());
        self.call(SEND, &path, &msg.body()).await.map(|v| sent_message(&v))
    }

    async fn stream_chunk(&self, chunk: &StreamChunk) -> Result<SentMessage, NimError> {
        let path =
            format!("/im/v2/conversations/{}/messages/actions/stream_message", chunk.conversation.path_segment());
        self.call(STREAM, &path, &chunk.body()).await.map(|v| sent_message(&v))
    }
}

fn classify(call: &'static str, e: reqwest::Error) -> NimError {
    let e = e.without_url();
    if e.is_timeout() {
        NimError::Timeout { call }
    } else if e.is_connect() {
        NimError::Connect { call, reason: e.to_string() }
    } else {
        NimError::Network { call, reason: e.to_string() }
    }
}

/// One streamed answer: numbers the deltas from 0, sends `message_server_id` once NIM has
/// given it, finishes once, and refuses locally what NIM would refuse (a chunk after the end,
/// more than [`STREAM_MAX_CHARS`] in all). Keeping under [`STREAM_MAX_GAP`] between chunks is
/// the caller's pacing.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    conversation: ConversationId,
    client_id: String,
    mention: Option<AskerMention>,
    route: bool,
    server_id: Option<String>,
    next_index: u32,
    /// Characters sent so far, counted in UTF-16 units: NIM's counting is UNCONFIRMED, and
    /// UTF-16 never counts fewer than Unicode characters, so this errs on the safe side.
    sent_units: usize,
    max_units: usize,
    finished: bool,
}

impl StreamWriter {
    /// A stream as `conversation.sender`, identified by `client_id` (derive it from the job).
    pub fn new(conversation: ConversationId, client_id: String, mention: Option<AskerMention>, route: bool) -> Self {
        StreamWriter {
            conversation,
            client_id,
            mention,
            route,
            server_id: None,
            next_index: 0,
            sent_units: 0,
            max_units: STREAM_MAX_CHARS,
            finished: false,
        }
    }

    /// Lowers the character limit (tests, or a stricter app setting).
    pub fn with_max_chars(mut self, max: usize) -> Self {
        self.max_units = max;
        self
    }

    /// Our id of the message (`message_client_id`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// NIM's id of the message, once the first chunk has been answered.
    pub fn server_id(&self) -> Option<&str> {
        self.server_id.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// How many more characters (UTF-16 units) fit, the mention prefix included.
    pub fn remaining_chars(&self) -> usize {
        self.max_units.saturating_sub(self.sent_units)
    }

    /// Sends one delta.
    pub async fn push(&mut self, api: &dyn NimApi, delta: &str) -> Result<SentMessage, NimError> {
        self.send(api, delta, false, Vec::new()).await
    }

    /// Sends the last delta (may be empty) with the sources to show, and ends the stream.
    pub async fn finish(
        &mut self,
        api: &dyn NimApi,
        delta: &str,
        sources: Vec<RagInfo>,
    ) -> Result<SentMessage, NimError> {
        self.send(api, delta, true, sources).await
    }

    async fn send(
        &mut self,
        api: &dyn NimApi,
        delta: &str,
        finish: bool,
        sources: Vec<RagInfo>,
    ) -> Result<SentMessage, NimError> {
        if self.finished {
            return Err(NimError::Local { call: STREAM, reason: "the stream has already finished" });
        }
        let prefix = match &self.mention {
            Some(m) if self.next_index == 0 => m.prefix().encode_utf16().count(),
            _ => 0,
        };
        let units = self.sent_units + prefix + delta.encode_utf16().count();
        if units > self.max_units {
            return Err(NimError::Local { call: STREAM, reason: "the stream would exceed its character limit" });
        }
        let chunk = StreamChunk {
            conversation: self.conversation.clone(),
            client_id: self.client_id.clone(),
            server_id: self.server_id.clone(),
            index: self.next_index,
            delta: delta.to_owned(),
            finish,
            mention: self.mention.clone(),
            route: self.route,
            sources,
        };
        let sent = api.stream_chunk(&chunk).await?;
        if self.server_id.is_none() {
            self.server_id = sent.server_id.clone();
        }
        self.next_index += 1;
        self.sent_units = units;
        self.finished = finish;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn errors_are_classified_as_the_protocol_says() {
        let nim = |code| NimError::Nim { call: SEND, code, desc: String::new() };
        assert!(nim(416).is_retryable() && nim(416).certainly_not_applied() && nim(416).is_rate_limited());
        assert!(!nim(414).is_retryable() && nim(414).certainly_not_applied());
        for code in [403, 7101, 302] {
            assert!(!nim(code).is_retryable(), "{code}");
        }
        assert!(nim(500).is_retryable() && !nim(500).certainly_not_applied());
        let http = NimError::Http { call: SEND, status: 502 };
        assert!(http.is_retryable() && !http.certainly_not_applied());
        let timeout = NimError::Timeout { call: SEND };
        assert!(timeout.is_retryable() && !timeout.certainly_not_applied());
        let connect = NimError::Connect { call: SEND, reason: "refused".into() };
        assert!(connect.is_retryable() && connect.certainly_not_applied());
    }

    #[test]
    fn replies_give_server_id_as_number_or_string() {
        let v = serde_json::json!({"code": 200, "data": {"message_server_id": 123456789012345u64, "message_client_id": "c"}});
        assert_eq!(
            sent_message(&v),
            SentMessage { server_id: Some("123456789012345".into()), client_id: Some("c".into()) }
        );
        let v = serde_json::json!({"code": 200, "data": {"message_server_id": "77"}});
        assert_eq!(sent_message(&v).server_id.as_deref(), Some("77"));
        assert_eq!(sent_message(&serde_json::json!({"code": 200})), SentMessage::default());
    }

    /// Records chunks and answers with a server id.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<StreamChunk>>);

    #[async_trait]
    impl NimApi for Recorder {
        async fn send_text(&self, _: &OutgoingText) -> Result<SentMessage, NimError> {
            Ok(SentMessage::default())
        }
        async fn stream_chunk(&self, chunk: &StreamChunk) -> Result<SentMessage, NimError> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(chunk.clone());
            Ok(SentMessage { server_id: Some("900".into()), client_id: Some(chunk.client_id.clone()) })
        }
    }

    fn writer() -> StreamWriter {
        let conv = ConversationId { sender: "bot".into(), kind: ConversationKind::OneToOne, receiver: "alice".into() };
        StreamWriter::new(conv, "job-1".into(), None, false)
    }

    #[tokio::test]
    async fn stream_writer_numbers_chunks_passes_the_server_id_and_finishes_once() {
        let api = Recorder::default();
        let mut w = writer();
        assert!(w.push(&api, "Hel").await.is_ok());
        assert!(w.push(&api, "lo").await.is_ok());
        assert!(w.finish(&api, "!", vec![]).await.is_ok());
        let again = w.finish(&api, "", vec![]).await;
        assert_eq!(again.err(), Some(NimError::Local { call: STREAM, reason: "the stream has already finished" }));
        let chunks = api.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let seen: Vec<_> = chunks.iter().map(|c| (c.index, c.server_id.clone(), c.finish)).collect();
        assert_eq!(seen, [(0, None, false), (1, Some("900".into()), false), (2, Some("900".into()), true)]);
        assert_eq!(w.server_id(), Some("900"));
    }

    #[tokio::test]
    async fn stream_writer_refuses_what_would_exceed_the_limit_and_keeps_the_stream_open() {
        let api = Recorder::default();
        let mut w = writer().with_max_chars(5);
        assert!(w.push(&api, "abc").await.is_ok());
        // "😀😀" is 4 UTF-16 units: 3 + 4 > 5.
        assert!(matches!(w.push(&api, "😀😀").await, Err(NimError::Local { .. })));
        assert_eq!(w.remaining_chars(), 2);
        assert!(w.finish(&api, "de", vec![]).await.is_ok());
        assert!(w.is_finished());
    }
}
