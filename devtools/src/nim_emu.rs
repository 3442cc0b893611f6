//! A local NetEase NIM REST emulator (nim-protocol.md §3): the v2 send and stream-message
//! endpoints check `AppKey` and the REST `CheckSum` as NIM does, record every call, every
//! message and every stream (deltas merged by index, finished or ended), enforce the stream
//! limits (30 s between chunks, 5000 characters; both settable so tests need not wait), and
//! refuse on demand. It also plays NIM's message copy: [`NimEmulator::post_copy`] signs a copy
//! body with real `MD5`/`CheckSum` headers and POSTs it to a URL, and, when a copy target is
//! set, every message the bot sends with routing on is copied there, as NIM would.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::nim::ConversationId;
use shared::nim::checksum::{body_md5, copy_checksum, verify_rest_checksum};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// NIM's code for bad parameters and bad checksums; also what this emulator answers to a
/// chunk of an ended stream (the real code is UNCONFIRMED: the doc does not list it).
pub const CODE_BAD_REQUEST: i64 = 414;
/// How long a REST `CurTime` stays valid (NIM: 5 minutes).
const CHECKSUM_WINDOW_SECS: u64 = 300;
/// The first `message_server_id` handed out.
const FIRST_SERVER_ID: u64 = 1_000_000_000_000;

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /im/v2/conversations/{id}/messages`.
    Send,
    /// `POST /im/v2/conversations/{id}/messages/actions/stream_message`.
    Stream,
}

/// A scripted failure, applied to the next call to the endpoint (any endpoint when `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer `{"code": code}` with HTTP 200, applying nothing.
    Code { endpoint: Option<Endpoint>, code: i64 },
    /// Answer with this HTTP status and no JSON, applying nothing.
    Status { endpoint: Option<Endpoint>, status: u16 },
    /// Apply the call, then answer after this long (longer than the client's timeout: a
    /// timeout after the message was stored).
    Delay { endpoint: Option<Endpoint>, ms: u64 },
}

impl Fault {
    fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Fault::Code { endpoint, .. } | Fault::Status { endpoint, .. } | Fault::Delay { endpoint, .. } => *endpoint,
        }
    }
}

/// The stream limits the emulator enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest wait between two chunks before NIM ends the stream.
    pub max_gap: Duration,
    /// The most characters (Unicode scalar values; NIM's unit is UNCONFIRMED) in one stream.
    pub max_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_gap: Duration::from_secs(30), max_chars: 5000 }
    }
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub endpoint: Endpoint,
    /// As decoded from the path: `sender|type|receiver`.
    pub conversation_id: String,
    pub body: Value,
    /// The code answered (200 on success), the HTTP status for a status fault.
    pub code: i64,
    pub at_ms: u64,
}

/// Why a stream stopped taking chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// A chunk with `finish: 1`.
    Finished,
    /// No chunk for longer than the maximum gap.
    Gap,
    /// A chunk would have taken it past the character limit.
    TooLong,
}

/// A streamed message as NIM holds it.
#[derive(Debug, Clone, Serialize)]
pub struct EmuStream {
    pub conversation_id: String,
    pub client_id: String,
    pub server_id: String,
    /// Deltas by index.
    pub chunks: BTreeMap<u32, String>,
    /// Chunks that came again with an index already held (the first is kept).
    pub duplicate_indexes: u32,
    pub finished: bool,
    pub ended: Option<StreamEnd>,
    pub extension: Option<String>,
    pub route_enabled: Option<bool>,
    pub forcepush_ids: Vec<String>,
    pub rag_info_list: Value,
    #[serde(skip)]
    last_at: Option<Instant>,
}

impl EmuStream {
    /// The merged text: the deltas in index order.
    pub fn text(&self) -> String {
        self.chunks.values().map(String::as_str).collect()
    }

    /// The indexes received, in order.
    pub fn indexes(&self) -> Vec<u32> {
        self.chunks.keys().copied().collect()
    }

    fn chars(&self) -> usize {
        self.chunks.values().map(|c| c.chars().count()).sum()
    }
}

/// A message sent whole.
#[derive(Debug, Clone, Serialize)]
pub struct EmuMessage {
    pub conversation_id: String,
    pub client_id: Option<String>,
    pub server_id: String,
    pub text: String,
    pub extension: Option<String>,
    pub route_enabled: Option<bool>,
    pub forcepush_ids: Vec<String>,
}

/// What the bot did, as it happened, for live display.
#[derive(Debug, Clone)]
pub enum Seen {
    Chunk { conversation_id: String, server_id: String, index: u32, delta: String, finish: bool },
    Message { conversation_id: String, server_id: String, text: String },
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    streams: Vec<EmuStream>,
    messages: Vec<EmuMessage>,
    next_id: u64,
    limits: Limits,
    copy_target: Option<String>,
}

/// The emulator's shared state.
pub struct EmuState {
    app_key: String,
    secret: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Seen>,
    http: reqwest::Client,
}

impl EmuState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a failure for the next matching call.
    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    /// Makes the next call to `endpoint` answer with NIM code `code` (416, 414, 500, …).
    pub fn refuse(&self, endpoint: Endpoint, code: i64) {
        self.push_fault(Fault::Code { endpoint: Some(endpoint), code });
    }

    /// Sets the stream limits (for tests: a short gap, few characters).
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    /// Where to copy the messages the bot sends with routing on (`route_enabled` absent or
    /// true), signed like a real message copy; `None` turns copying off.
    pub fn set_copy_target(&self, url: Option<String>) {
        self.lock().copy_target = url;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn calls_to(&self, endpoint: Endpoint) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.endpoint == endpoint).cloned().collect()
    }

    /// The streams, with those silent for longer than the gap marked as ended.
    pub fn streams(&self) -> Vec<EmuStream> {
        let mut g = self.lock();
        let gap = g.limits.max_gap;
        for s in g.streams.iter_mut() {
            if s.ended.is_none() && s.last_at.is_some_and(|t| t.elapsed() > gap) {
                s.ended = Some(StreamEnd::Gap);
            }
        }
        g.streams.clone()
    }

    pub fn messages(&self) -> Vec<EmuMessage> {
        self.lock().messages.clone()
    }

    /// Live events of what the bot sends.
    pub fn subscribe(&self) -> broadcast::Receiver<Seen> {
        self.events.subscribe()
    }

    /// Forgets every call, message, stream and fault; limits and copy target are kept.
    pub fn reset(&self) {
        let mut g = self.lock();
        let (limits, copy_target) = (g.limits, g.copy_target.take());
        *g = Inner { limits, copy_target, ..Inner::default() };
    }
}

/// A running emulator.
pub struct NimEmulator {
    pub addr: SocketAddr,
    pub state: Arc<EmuState>,
}

impl NimEmulator {
    /// Starts an emulator on `listener` that accepts calls signed for `app_key` with `secret`.
    pub fn serve(listener: tokio::net::TcpListener, app_key: &str, secret: &str) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(1024);
        let state = Arc::new(EmuState {
            app_key: app_key.to_owned(),
            secret: secret.to_owned(),
            inner: Mutex::default(),
            events,
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/im/v2/conversations/{conversation_id}/messages", post(send))
            .route("/im/v2/conversations/{conversation_id}/messages/actions/stream_message", post(stream))
            .route("/__emulator/calls", get(|State(s): State<Arc<EmuState>>| async move { Json(s.calls()) }))
            .route("/__emulator/streams", get(|State(s): State<Arc<EmuState>>| async move { Json(s.streams()) }))
            .route("/__emulator/messages", get(|State(s): State<Arc<EmuState>>| async move { Json(s.messages()) }))
            .route(
                "/__emulator/faults",
                post(|State(s): State<Arc<EmuState>>, Json(f): Json<Fault>| async move {
                    s.push_fault(f);
                    StatusCode::NO_CONTENT
                }),
            )
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(crate::nodelay(listener), app).await {
                tracing::error!(error = %e, "nim emulator stopped");
            }
        });
        Ok(NimEmulator { addr, state })
    }

    /// Starts an emulator on a free loopback port.
    pub async fn start(app_key: &str, secret: &str) -> std::io::Result<Self> {
        Self::serve(crate::loopback_listener().await?, app_key, secret)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs `body` to `url` as NIM's message copy does, signed with this app's key and
    /// secret at the current time.
    pub async fn post_copy(&self, url: &str, body: &str) -> Result<reqwest::Response, reqwest::Error> {
        let now = shared::store::now_ms();
        post_signed_copy(&self.state.http, url, &self.state.app_key, &self.state.secret, body, now).await
    }
}

/// The headers of a message copy of `body` signed at `cur_time_ms`: `AppKey`, `CurTime`,
/// `MD5` of the raw body, `CheckSum` = sha1(secret ‖ MD5 ‖ CurTime), and the content type.
pub fn copy_headers(app_key: &str, secret: &str, body: &[u8], cur_time_ms: u64) -> Vec<(&'static str, String)> {
    let md5 = body_md5(body);
    let cur_time = cur_time_ms.to_string();
    let checksum = copy_checksum(secret, &md5, &cur_time);
    vec![
        ("AppKey", app_key.to_owned()),
        ("CurTime", cur_time),
        ("MD5", md5),
        ("CheckSum", checksum),
        ("Content-Type", "application/json".to_owned()),
    ]
}

/// POSTs a message copy of `body` to `url`, signed at `cur_time_ms` (a past or future time
/// makes a stale copy).
pub async fn post_signed_copy(
    http: &reqwest::Client,
    url: &str,
    app_key: &str,
    secret: &str,
    body: &str,
    cur_time_ms: u64,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = http.post(url).body(body.to_owned());
    for (k, v) in copy_headers(app_key, secret, body.as_bytes(), cur_time_ms) {
        req = req.header(k, v);
    }
    req.send().await
}

/// A message-copy body of a text message, as NIM sends it (field table of nim-protocol.md §1).
#[derive(Debug, Clone, Default)]
pub struct CopyMessage {
    pub conv_type: &'static str,
    pub from: String,
    pub to: String,
    pub client_type: &'static str,
    pub text: String,
    pub msgid_server: String,
    /// `(accid, "@Name")` mentions put in `ext.yxAitMsg`, positioned where `"@Name"` first
    /// occurs in the text.
    pub mentions: Vec<(String, String)>,
}

impl CopyMessage {
    /// A one-to-one text from `from` to `to`.
    pub fn person(from: &str, to: &str, text: &str, msgid_server: &str) -> Self {
        CopyMessage {
            conv_type: "PERSON",
            from: from.into(),
            to: to.into(),
            client_type: "IOS",
            text: text.into(),
            msgid_server: msgid_server.into(),
            mentions: vec![],
        }
    }

    /// A text from `from` in team `team_id`.
    pub fn team(from: &str, team_id: &str, text: &str, msgid_server: &str) -> Self {
        CopyMessage { conv_type: "TEAM", ..Self::person(from, team_id, text, msgid_server) }
    }

    /// Adds a UIKit mention of `accid`, shown as `shown` (e.g. `@MyBot`) in the text.
    pub fn mention(mut self, accid: &str, shown: &str) -> Self {
        self.mentions.push((accid.into(), shown.into()));
        self
    }

    /// The JSON body, with the numbers as strings as in the doc's example.
    pub fn body(&self) -> String {
        let mut v = json!({
            "eventType": "1", "convType": self.conv_type, "to": self.to, "fromAccount": self.from,
            "fromClientType": self.client_type, "fromNick": self.from, "fromDeviceId": "emu-device",
            "msgTimestamp": shared::store::now_ms().to_string(), "msgType": "TEXT", "body": self.text,
            "msgidClient": format!("c-{}", self.msgid_server), "msgidServer": self.msgid_server, "resendFlag": "0",
        });
        if !self.mentions.is_empty() {
            let mut ait = serde_json::Map::new();
            for (accid, shown) in &self.mentions {
                let start = self.text.find(shown.as_str()).map(|b| self.text[..b].encode_utf16().count()).unwrap_or(0);
                let end = start + shown.encode_utf16().count().saturating_sub(1);
                ait.insert(
                    accid.clone(),
                    json!({"text": shown, "segments": [{"start": start, "end": end, "broken": false}]}),
                );
            }
            v["ext"] = Value::String(json!({ "yxAitMsg": ait }).to_string());
        }
        v.to_string()
    }
}

fn reply(code: i64, msg: &str) -> Value {
    json!({"code": code, "msg": msg})
}

fn now_ms() -> u64 {
    shared::store::now_ms()
}

/// NIM's header checks: `AppKey` this app's, `Nonce` present and at most 128 characters,
/// `CurTime` within 5 minutes, `CheckSum` right.
fn check_auth(s: &EmuState, headers: &HeaderMap) -> Option<Value> {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let (Some(key), Some(nonce), Some(time), Some(sum)) = (h("appkey"), h("nonce"), h("curtime"), h("checksum")) else {
        return Some(reply(CODE_BAD_REQUEST, "missing AppKey, Nonce, CurTime or CheckSum"));
    };
    if key != s.app_key {
        return Some(reply(CODE_BAD_REQUEST, "unknown AppKey"));
    }
    if nonce.is_empty() || nonce.chars().count() > 128 {
        return Some(reply(CODE_BAD_REQUEST, "bad Nonce"));
    }
    let Ok(t) = time.parse::<u64>() else {
        return Some(reply(CODE_BAD_REQUEST, "CurTime is not Unix seconds"));
    };
    if shared::store::now_secs().abs_diff(t) > CHECKSUM_WINDOW_SECS {
        return Some(reply(CODE_BAD_REQUEST, "CurTime expired"));
    }
    if !verify_rest_checksum(&s.secret, nonce, time, sum) {
        return Some(reply(CODE_BAD_REQUEST, "checksum error"));
    }
    None
}

async fn send(
    State(s): State<Arc<EmuState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(s, Endpoint::Send, conversation_id, headers, body).await
}

async fn stream(
    State(s): State<Arc<EmuState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(s, Endpoint::Stream, conversation_id, headers, body).await
}

async fn handle(
    s: Arc<EmuState>,
    endpoint: Endpoint,
    conversation_id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut g = s.lock();
        let i = g.faults.iter().position(|f| f.endpoint().is_none_or(|e| e == endpoint));
        i.and_then(|i| g.faults.remove(i))
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |code: i64, body: Value| {
        let call = Call { endpoint, conversation_id: conversation_id.clone(), body, code, at_ms: now_ms() };
        s.lock().calls.push(call);
    };
    let delay = match fault {
        Some(Fault::Status { status, .. }) => {
            record(i64::from(status), parsed);
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (code, "emulated failure").into_response();
        }
        Some(Fault::Code { code, .. }) => {
            record(code, parsed);
            return Json(reply(code, "emulated error")).into_response();
        }
        Some(Fault::Delay { ms, .. }) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let answer = check_auth(&s, &headers).unwrap_or_else(|| match endpoint {
        Endpoint::Send => apply_send(&s, &conversation_id, &parsed),
        Endpoint::Stream => apply_stream(&s, &conversation_id, &parsed),
    });
    let code = answer.get("code").and_then(Value::as_i64).unwrap_or(0);
    record(code, parsed);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    Json(answer).into_response()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn forcepush_ids(b: &Value) -> Vec<String> {
    b.get("push_config")
        .and_then(|p| p.get("push_forcepush_ids"))
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn route_enabled(b: &Value) -> Option<bool> {
    b.get("route_config").and_then(|r| r.get("route_enabled")).and_then(Value::as_bool)
}

fn ok_data(conv: &ConversationId, server_id: &str, client_id: Option<&str>) -> Value {
    json!({"code": 200, "data": {
        "message_server_id": server_id.parse::<u64>().ok(),
        "message_client_id": client_id,
        "sender_id": conv.sender,
        "receiver_id": conv.receiver,
        "conversation_type": conv.kind.code(),
        "create_time": now_ms(),
        "message_type": 0,
    }})
}

fn apply_send(s: &EmuState, conversation_id: &str, b: &Value) -> Value {
    let Some(conv) = ConversationId::parse(conversation_id) else {
        return reply(CODE_BAD_REQUEST, "bad conversation_id");
    };
    if b.get("message").and_then(|m| m.get("message_type")).and_then(Value::as_i64) != Some(0) {
        return reply(CODE_BAD_REQUEST, "only text messages (message_type 0) are emulated");
    }
    let Some(text) = str_at(b, &["message", "text"]).filter(|t| !t.is_empty()) else {
        return reply(CODE_BAD_REQUEST, "message.text is required");
    };
    if text.chars().count() > s.lock().limits.max_chars {
        return reply(CODE_BAD_REQUEST, "message.text is too long");
    }
    let client_id = str_at(b, &["message", "message_client_id"]).map(str::to_owned);
    let message = {
        let mut g = s.lock();
        let server_id = (FIRST_SERVER_ID + g.next_id).to_string();
        g.next_id += 1;
        let m = EmuMessage {
            conversation_id: conversation_id.to_owned(),
            client_id,
            server_id,
            text: text.to_owned(),
            extension: b.get("extension").and_then(Value::as_str).map(str::to_owned),
            route_enabled: route_enabled(b),
            forcepush_ids: forcepush_ids(b),
        };
        g.messages.push(m.clone());
        m
    };
    let _ = s.events.send(Seen::Message {
        conversation_id: conversation_id.to_owned(),
        server_id: message.server_id.clone(),
        text: message.text.clone(),
    });
    copy_out(s, &conv, message.route_enabled, &message.server_id, &message.text, message.extension.as_deref());
    ok_data(&conv, &message.server_id, message.client_id.as_deref())
}

fn apply_stream(s: &EmuState, conversation_id: &str, b: &Value) -> Value {
    let Some(conv) = ConversationId::parse(conversation_id) else {
        return reply(CODE_BAD_REQUEST, "bad conversation_id");
    };
    let message = b.get("message").unwrap_or(&Value::Null);
    let attachment = message.get("attachment").unwrap_or(&Value::Null);
    let (Some(delta), Some(index)) = (
        attachment.get("text").and_then(Value::as_str),
        attachment.get("index").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()),
    ) else {
        return reply(CODE_BAD_REQUEST, "message.attachment.text and index are required");
    };
    let finish = match attachment.get("finish").and_then(Value::as_i64) {
        None | Some(0) => false,
        Some(1) => true,
        Some(_) => return reply(CODE_BAD_REQUEST, "finish must be 0 or 1"),
    };
    let client_id = message.get("message_client_id").and_then(Value::as_str);
    let server_id = message.get("message_server_id").and_then(|v| match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    });
    if client_id.is_none() && server_id.is_none() {
        return reply(CODE_BAD_REQUEST, "message_client_id or message_server_id is required");
    }
    let mut g = s.lock();
    let limits = g.limits;
    // Later chunks name the stream by server id (the doc) or by client id alone (the Go SDK).
    let found = match &server_id {
        Some(id) => match g.streams.iter().position(|st| &st.server_id == id) {
            Some(i) => Some(i),
            None => return reply(CODE_BAD_REQUEST, "unknown message_server_id"),
        },
        None => g
            .streams
            .iter()
            .position(|st| st.conversation_id == conversation_id && Some(st.client_id.as_str()) == client_id),
    };
    let i = match found {
        Some(i) => i,
        None => {
            let server_id = (FIRST_SERVER_ID + g.next_id).to_string();
            g.next_id += 1;
            g.streams.push(EmuStream {
                conversation_id: conversation_id.to_owned(),
                client_id: client_id.unwrap_or_default().to_owned(),
                server_id,
                chunks: BTreeMap::new(),
                duplicate_indexes: 0,
                finished: false,
                ended: None,
                extension: b.get("extension").and_then(Value::as_str).map(str::to_owned),
                route_enabled: route_enabled(b),
                forcepush_ids: forcepush_ids(b),
                rag_info_list: Value::Null,
                last_at: None,
            });
            g.streams.len() - 1
        }
    };
    let st = &mut g.streams[i];
    if st.ended.is_none() && st.last_at.is_some_and(|t| t.elapsed() > limits.max_gap) {
        st.ended = Some(StreamEnd::Gap);
    }
    if st.ended.is_some() {
        return reply(CODE_BAD_REQUEST, "the stream has ended");
    }
    if st.chars() + delta.chars().count() > limits.max_chars {
        st.ended = Some(StreamEnd::TooLong);
        return reply(CODE_BAD_REQUEST, "the stream exceeds its character limit and has ended");
    }
    match st.chunks.entry(index) {
        std::collections::btree_map::Entry::Occupied(_) => st.duplicate_indexes += 1,
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(delta.to_owned());
        }
    }
    st.last_at = Some(Instant::now());
    if let Some(list) = b.get("rag_info_list") {
        st.rag_info_list = list.clone();
    }
    if finish {
        st.finished = true;
        st.ended = Some(StreamEnd::Finished);
    }
    let st = st.clone();
    drop(g);
    let _ = s.events.send(Seen::Chunk {
        conversation_id: conversation_id.to_owned(),
        server_id: st.server_id.clone(),
        index,
        delta: delta.to_owned(),
        finish,
    });
    if finish {
        copy_out(s, &conv, st.route_enabled, &st.server_id, &st.text(), st.extension.as_deref());
    }
    ok_data(&conv, &st.server_id, Some(st.client_id.as_str()).filter(|c| !c.is_empty()))
}

/// Copies a message the bot sent to the copy target, as NIM's message copy would, unless the
/// send turned routing off.
fn copy_out(
    s: &EmuState,
    conv: &ConversationId,
    route_enabled: Option<bool>,
    server_id: &str,
    text: &str,
    ext: Option<&str>,
) {
    let Some(url) = s.lock().copy_target.clone().filter(|_| route_enabled != Some(false)) else {
        return;
    };
    let conv_type = match conv.kind {
        shared::nim::ConversationKind::OneToOne => "PERSON",
        shared::nim::ConversationKind::Team => "TEAM",
        shared::nim::ConversationKind::SuperTeam => "SUPER_TEAM",
    };
    let mut body = json!({
        "eventType": "1", "convType": conv_type, "to": conv.receiver, "fromAccount": conv.sender,
        "fromClientType": "REST", "msgTimestamp": now_ms().to_string(), "msgType": "TEXT", "body": text,
        "msgidServer": server_id, "resendFlag": "0",
    });
    if let Some(ext) = ext {
        body["ext"] = Value::String(ext.to_owned());
    }
    let (http, key, secret) = (s.http.clone(), s.app_key.clone(), s.secret.clone());
    tokio::spawn(async move {
        if let Err(e) = post_signed_copy(&http, &url, &key, &secret, &body.to_string(), now_ms()).await {
            tracing::warn!(error = %e, "nim emulator could not deliver a message copy");
        }
    });
}
