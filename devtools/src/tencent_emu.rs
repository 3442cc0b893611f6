//! A local Tencent Chat REST emulator: it checks each call's UserSig like Tencent does,
//! records every call, keeps robot streams, native (`TIMStreamElem`) streams, C2C and group
//! messages (with their modifications) and robots, and can be told to fail: once (an error code,
//! an HTTP status, a delay, a huge reply) for the next calls, or on every call to a path until
//! told to stop (a refused mode). Subscribers see what the bot sends as it is sent, which is how
//! the local run prints answers live.
//!
//! The native stream limits of tencent-chat-protocol.md §6 (15 s between calls, 5 continuations a
//! second, Markdown under 128 KB, nothing after the end) and a per-message modify rate are
//! enforced, and settable so that tests need not wait. Tencent's error codes for them are not
//! documented: the `EMU_*` codes below are this emulator's own.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::msg::{MsgElement, joined_text};
use shared::tencent::usersig;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

// Error codes of refusals whose real codes are not documented (protocol doc §6: "Error codes of
// the native stream APIs are UNCONFIRMED"). They are this emulator's own invention, UNCONFIRMED,
// chosen outside every range the protocol doc lists, and none is in the REST client's retry
// lists: a test that sees one knows which rule refused the call.

/// A native stream call came more than [`StreamLimits::max_gap`] after the stream's previous
/// call: the stream had ended by itself.
pub const EMU_STREAM_TIMED_OUT: i64 = 95001;
/// A chunk for a stream that was already finished (`IsLast: true`).
pub const EMU_STREAM_FINISHED: i64 = 95002;
/// More continuations of one stream than [`StreamLimits::continuations`] allows.
pub const EMU_STREAM_TOO_FAST: i64 = 95003;
/// The stream's Markdown would reach [`StreamLimits::max_markdown_bytes`].
pub const EMU_STREAM_TOO_LARGE: i64 = 95004;
/// A chunk `Index` that is not the next one (the first call must start at 1).
pub const EMU_STREAM_BAD_INDEX: i64 = 95005;
/// A `StreamMsgID` this emulator did not issue, or issued for another conversation.
pub const EMU_STREAM_UNKNOWN_ID: i64 = 95006;
/// More modifications of one message than the modify limit allows.
pub const EMU_MODIFY_TOO_FAST: i64 = 95007;
/// `modify_c2c_msg` names a `MsgKey` that was never sent between these accounts.
pub const EMU_NO_SUCH_C2C_MSG: i64 = 95008;
/// A malformed body (a missing or mistyped field): Tencent's documented "body format" code.
const BAD_BODY: i64 = 90001;
/// `MsgRandom` missing (documented, §4.6).
const NO_RANDOM: i64 = 90005;

/// At most `max` accepted calls in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

impl RateLimit {
    /// At most `max` calls a second.
    pub fn per_second(max: u32) -> Self {
        RateLimit { max, per: Duration::from_secs(1) }
    }

    /// Whether one more call at `now` is allowed, given the times of the accepted ones (which
    /// this trims to the window). The caller records `now` when it accepts the call.
    fn allows(&self, times: &mut VecDeque<Instant>, now: Instant) -> bool {
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.per) {
            times.pop_front();
        }
        times.len() < self.max as usize
    }
}

/// The limits of the native stream APIs (protocol doc §6). The defaults are Tencent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamLimits {
    /// A stream whose last accepted call is older than this has ended by itself (15 s).
    pub max_gap: Duration,
    /// Continuations (calls with a `StreamMsgID`) of one stream (5 a second).
    pub continuations: RateLimit,
    /// The stream's Markdown, all chunks together, must stay under this (128 KB).
    pub max_markdown_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_gap: Duration::from_secs(15),
            continuations: RateLimit::per_second(5),
            max_markdown_bytes: 128 * 1024,
        }
    }
}

/// The default cap on modifications of one message (`modify_c2c_msg`, `modify_group_msg`).
/// Tencent documents no per-message modify rate (timbot throttles itself to one a second): this
/// one only catches a runaway loop, and leaves room for the tests' 100 ms modify interval.
pub const DEFAULT_MODIFY_LIMIT: RateLimit = RateLimit { max: 20, per: Duration::from_secs(1) };

/// A scripted failure, applied to the next call whose path matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer `{"ActionStatus":"FAIL","ErrorCode":code}`.
    Code { path: Option<String>, code: i64 },
    /// Answer with this HTTP status and no JSON.
    Status { path: Option<String>, status: u16 },
    /// Wait this long, then answer normally (longer than the client's timeout: a timeout).
    Delay { path: Option<String>, ms: u64 },
    /// Answer OK with a reply padded to about `bytes` bytes, sent without a length.
    Huge { path: Option<String>, bytes: usize },
}

impl Fault {
    fn path(&self) -> Option<&str> {
        match self {
            Fault::Code { path, .. }
            | Fault::Status { path, .. }
            | Fault::Delay { path, .. }
            | Fault::Huge { path, .. } => path.as_deref(),
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// `service/command`.
    pub path: String,
    pub body: Value,
    /// What the emulator answered (`ErrorCode`, the HTTP status for a status fault, -1 for a
    /// call answered late by a delay fault).
    pub code: i64,
    pub at_ms: u64,
    /// When the call arrived, for measuring latency in process.
    #[serde(skip)]
    pub arrived: Option<std::time::Instant>,
}

/// A robot's streamed C2C message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stream {
    pub msg_key: String,
    pub from: String,
    pub to: String,
    pub chunks: Vec<String>,
    pub finished: bool,
}

impl Stream {
    pub fn text(&self) -> String {
        self.chunks.concat()
    }
}

/// Where a native stream goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamTarget {
    C2c { to: String },
    Group { group_id: String, topic_id: Option<String> },
}

/// A native `TIMStreamElem` stream (`stream_msg/send_c2c_stream_msg` or
/// `stream_msg/send_group_stream_msg`), as the accepted calls built it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NativeStream {
    /// The `StreamMsgID` the first reply carried.
    pub stream_msg_id: String,
    pub from: String,
    pub target: StreamTarget,
    /// Every accepted chunk's `Markdown`, in order.
    pub markdown: String,
    /// The latest `CompatibleText` sent.
    pub compatible_text: String,
    /// Accepted chunks (the last `Index`).
    pub chunks: u32,
    /// Accepted calls.
    pub calls: u32,
    /// A chunk with `IsLast: true` was accepted.
    pub finished: bool,
    /// The stream ended by itself: no call came within [`StreamLimits::max_gap`].
    pub ended_by_timeout: bool,
}

/// A native stream and what its limits need.
struct LiveStream {
    rec: NativeStream,
    last_call: Instant,
    continuations: VecDeque<Instant>,
}

/// A C2C message sent with `sendmsg`, as last modified with `modify_c2c_msg`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct C2cMessage {
    pub msg_key: String,
    pub from: String,
    pub to: String,
    /// The text elements of the body, joined.
    pub text: String,
    /// The `MsgBody` as sent or last modified (custom elements are kept here).
    pub body: Value,
    pub cloud_custom_data: Option<String>,
    pub modifications: u32,
}

/// Every call to a path that starts with `path` is answered with `code` until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub path: String,
    /// `None` in a request to `/__emulator/refusals` clears the refusal of `path`.
    pub code: Option<i64>,
}

/// A message in a group, as last modified.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMessage {
    pub group_id: String,
    pub msg_seq: u64,
    pub from: Option<String>,
    pub text: String,
    pub at_accounts: Vec<String>,
    pub topic_id: Option<String>,
    pub modifications: u32,
    /// The `CloudCustomData` last set with `modify_group_msg`.
    pub cloud_custom_data: Option<String>,
}

/// A group system notification sent with `send_group_system_notification`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemNotification {
    pub group_id: String,
    pub content: String,
    /// The recipients; empty: every member.
    pub to_members: Vec<String>,
    pub topic_id: Option<String>,
}

/// What the bot did, as it happened, for live display. A native stream's chunks are reported
/// as [`Seen::StreamChunk`] too, with its `StreamMsgID` as `msg_key` and, for a group, the group
/// ID as `to`.
#[derive(Debug, Clone)]
pub enum Seen {
    StreamChunk { msg_key: String, from: String, to: String, chunk: String, finish: bool },
    C2cMessage { from: String, to: String, text: String },
    GroupMessage { group_id: String, msg_seq: u64, text: String, modified: bool },
}

struct Inner {
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    refusals: Vec<(String, i64)>,
    streams: Vec<Stream>,
    native: Vec<LiveStream>,
    stream_limits: StreamLimits,
    modify_limit: Option<RateLimit>,
    modify_times: HashMap<String, VecDeque<Instant>>,
    groups: Vec<GroupMessage>,
    c2c: Vec<C2cMessage>,
    robots: BTreeSet<String>,
    group_seq: HashMap<String, u64>,
    topics: BTreeSet<String>,
    notifications: Vec<SystemNotification>,
    /// Accounts imported with `account_import`.
    accounts: BTreeSet<String>,
    seen_randoms: HashMap<(String, u64), u64>,
    rosters: Rosters,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            calls: Vec::new(),
            faults: VecDeque::new(),
            refusals: Vec::new(),
            streams: Vec::new(),
            native: Vec::new(),
            stream_limits: StreamLimits::default(),
            modify_limit: Some(DEFAULT_MODIFY_LIMIT),
            modify_times: HashMap::new(),
            groups: Vec::new(),
            c2c: Vec::new(),
            robots: BTreeSet::new(),
            group_seq: HashMap::new(),
            topics: BTreeSet::new(),
            notifications: Vec::new(),
            accounts: BTreeSet::new(),
            seen_randoms: HashMap::new(),
            rosters: Rosters::default(),
        }
    }
}

impl Inner {
    /// Marks the native streams that have waited too long as ended by themselves.
    fn expire_streams(&mut self, now: Instant) {
        let gap = self.stream_limits.max_gap;
        for st in self.native.iter_mut().filter(|st| !st.rec.finished && !st.rec.ended_by_timeout) {
            if now.duration_since(st.last_call) > gap {
                st.rec.ended_by_timeout = true;
            }
        }
    }

    /// The standing refusal that applies to `path`, if any (the most recently set first).
    fn refusal(&self, path: &str) -> Option<i64> {
        self.refusals.iter().rev().find(|(prefix, _)| path.starts_with(prefix.as_str())).map(|(_, code)| *code)
    }
}

/// The emulator's shared state.
pub struct EmuState {
    sdk_app_id: u64,
    key: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Seen>,
}

impl EmuState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a failure for the next matching call.
    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls to `path` (`service/command`).
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.path == path).cloned().collect()
    }

    pub fn streams(&self) -> Vec<Stream> {
        self.lock().streams.clone()
    }

    pub fn group_messages(&self) -> Vec<GroupMessage> {
        self.lock().groups.clone()
    }

    /// C2C messages sent with `sendmsg`: (from, to, text as last modified).
    pub fn c2c_messages(&self) -> Vec<(String, String, String)> {
        self.lock().c2c.iter().map(|m| (m.from.clone(), m.to.clone(), m.text.clone())).collect()
    }

    /// C2C messages sent with `sendmsg`, with their `MsgKey`, body and modifications.
    pub fn c2c_records(&self) -> Vec<C2cMessage> {
        self.lock().c2c.clone()
    }

    /// Native `TIMStreamElem` streams, C2C and group, in the order they were opened. A stream
    /// that has waited longer than the gap limit shows as ended by timeout.
    pub fn native_streams(&self) -> Vec<NativeStream> {
        let mut g = self.lock();
        g.expire_streams(Instant::now());
        g.native.iter().map(|st| st.rec.clone()).collect()
    }

    /// Sets the native stream limits (the defaults are Tencent's; tests shorten the gap).
    pub fn set_stream_limits(&self, limits: StreamLimits) {
        self.lock().stream_limits = limits;
    }

    pub fn stream_limits(&self) -> StreamLimits {
        self.lock().stream_limits
    }

    /// Sets the cap on modifications of one message, or lifts it with `None`.
    /// The default is [`DEFAULT_MODIFY_LIMIT`].
    pub fn set_modify_limit(&self, limit: Option<RateLimit>) {
        self.lock().modify_limit = limit;
    }

    /// Refuses every call whose path (`service/command`) starts with `path` with `code`, until
    /// [`EmuState::stop_refusing`]: a whole mode refused, e.g. `"stream_msg/"` for both native
    /// stream APIs. One-shot faults queued with [`EmuState::push_fault`] come first.
    pub fn refuse(&self, path: &str, code: i64) {
        let mut g = self.lock();
        g.refusals.retain(|(p, _)| p != path);
        g.refusals.push((path.to_owned(), code));
    }

    /// Ends the refusal set for exactly this `path`.
    pub fn stop_refusing(&self, path: &str) {
        self.lock().refusals.retain(|(p, _)| p != path);
    }

    /// The standing refusals, as (path prefix, code).
    pub fn refusals(&self) -> Vec<(String, i64)> {
        self.lock().refusals.clone()
    }

    pub fn robots(&self) -> Vec<String> {
        self.lock().robots.iter().cloned().collect()
    }

    pub fn topics(&self) -> Vec<String> {
        self.lock().topics.iter().cloned().collect()
    }

    /// Group system notifications, in the order they were sent.
    pub fn system_notifications(&self) -> Vec<SystemNotification> {
        self.lock().notifications.clone()
    }

    /// Live events of what the bot sends.
    /// The accounts imported with `account_import`.
    pub fn accounts(&self) -> Vec<String> {
        self.lock().accounts.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Seen> {
        self.events.subscribe()
    }

    /// Creates `group` (or replaces its members) with `members`, in order, for the membership
    /// calls; groups not created this way do not exist for them (10010).
    pub fn seed_group(&self, group: &str, members: &[String]) {
        self.lock().rosters.members.insert(group.to_owned(), members.to_vec());
    }

    /// The members of `group`, in the order they joined.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.lock().rosters.members.get(group).cloned().unwrap_or_default()
    }

    /// The most members a group may have (Tencent's depends on the edition and group type);
    /// adding past it answers 10014.
    pub fn set_group_capacity(&self, max: usize) {
        self.lock().rosters.capacity = max;
    }

    /// Forgets every call and message, faults and refusals too, and restores the default limits.
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }
}

/// A running emulator.
pub struct TencentEmulator {
    pub addr: SocketAddr,
    pub state: Arc<EmuState>,
}

impl TencentEmulator {
    /// Starts an emulator on `listener` that accepts UserSigs made with `key` for `sdk_app_id`.
    pub fn serve(listener: tokio::net::TcpListener, sdk_app_id: u64, key: &str) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(1024);
        let state = Arc::new(EmuState { sdk_app_id, key: key.to_owned(), inner: Mutex::default(), events });
        let app = Router::new()
            .route("/v4/{service}/{command}", post(handle))
            .route("/__emulator/calls", get(|State(s): State<Arc<EmuState>>| async move { Json(s.calls()) }))
            .route("/__emulator/streams", get(|State(s): State<Arc<EmuState>>| async move { Json(s.streams()) }))
            .route(
                "/__emulator/native_streams",
                get(|State(s): State<Arc<EmuState>>| async move { Json(s.native_streams()) }),
            )
            .route(
                "/__emulator/refusals",
                post(|State(s): State<Arc<EmuState>>, Json(r): Json<Refusal>| async move {
                    match r.code {
                        Some(code) => s.refuse(&r.path, code),
                        None => s.stop_refusing(&r.path),
                    }
                    StatusCode::NO_CONTENT
                }),
            )
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
                tracing::error!(error = %e, "tencent emulator stopped");
            }
        });
        Ok(TencentEmulator { addr, state })
    }

    /// Starts an emulator on a free loopback port.
    pub async fn start(sdk_app_id: u64, key: &str) -> std::io::Result<Self> {
        Self::serve(crate::loopback_listener().await?, sdk_app_id, key)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn fail(code: i64, info: &str) -> Value {
    json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
}

fn ok(mut extra: Value) -> Value {
    extra["ActionStatus"] = json!("OK");
    extra["ErrorCode"] = json!(0);
    extra["ErrorInfo"] = json!("");
    extra
}

fn now_ms() -> u64 {
    shared::store::now_ms()
}

async fn handle(
    State(s): State<Arc<EmuState>>,
    Path((service, command)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let arrived = std::time::Instant::now();
    let path = format!("{service}/{command}");
    let fault = {
        let mut g = s.lock();
        let i = g.faults.iter().position(|f| f.path().is_none_or(|p| p == path));
        i.and_then(|i| g.faults.remove(i))
    };
    let record = |code: i64, body: Value| {
        s.lock().calls.push(Call { path: path.clone(), body, code, at_ms: now_ms(), arrived: Some(arrived) });
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match fault {
        Some(Fault::Status { status, .. }) => {
            record(i64::from(status), parsed);
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (code, "emulated failure").into_response();
        }
        Some(Fault::Code { code, .. }) => {
            record(code, parsed);
            return Json(fail(code, "emulated error")).into_response();
        }
        Some(Fault::Delay { ms, .. }) => {
            // Recorded on arrival: the client has usually given up before the answer.
            record(-1, parsed.clone());
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Json(check_auth(&s, &q).unwrap_or_else(|| apply(&s, &path, &parsed))).into_response();
        }
        Some(Fault::Huge { bytes, .. }) => {
            record(0, parsed);
            let head = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Padding":""#;
            return crate::chunked_body(head, b'x', bytes, r#""}"#).into_response();
        }
        None => {}
    }
    let refused = s.lock().refusal(&path);
    if let Some(code) = refused {
        record(code, parsed);
        return Json(fail(code, "refused by the emulator on demand")).into_response();
    }
    let reply = check_auth(&s, &q).unwrap_or_else(|| apply(&s, &path, &parsed));
    let code = reply.get("ErrorCode").and_then(Value::as_i64).unwrap_or(0);
    record(code, parsed);
    Json(reply).into_response()
}

/// Tencent's URL checks: parameters present, UserSig valid for this app and identifier.
fn check_auth(s: &EmuState, q: &HashMap<String, String>) -> Option<Value> {
    let (Some(app), Some(id), Some(sig), Some(random)) =
        (q.get("sdkappid"), q.get("identifier"), q.get("usersig"), q.get("random"))
    else {
        return Some(fail(60002, "missing URL parameter"));
    };
    if random.parse::<u32>().is_err() || q.get("contenttype").map(String::as_str) != Some("json") {
        return Some(fail(60025, "bad URL parameter"));
    }
    if app.parse::<u64>().ok() != Some(s.sdk_app_id) {
        return Some(fail(70014, "SDKAppID mismatch"));
    }
    match usersig::verify(s.sdk_app_id, s.key.as_bytes(), id, sig, shared::store::now_secs()) {
        Ok(_) => None,
        Err(usersig::UserSigError::Expired) => Some(fail(70001, "UserSig expired")),
        Err(_) => Some(fail(70009, "UserSig verification failed")),
    }
}

fn text_of(body: &Value) -> String {
    let elems: Vec<MsgElement> =
        serde_json::from_value(body.get("MsgBody").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    joined_text(&elems).unwrap_or_default()
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn apply(s: &EmuState, path: &str, b: &Value) -> Value {
    let mut g = s.lock();
    if let Some(reply) = apply_membership(&mut g, path, b) {
        return reply;
    }
    match path {
        "openim_robot_http_svc/send_stream_msg" => {
            let (Some(from), Some(to), Some(chunk)) =
                (str_field(b, "From_Account"), str_field(b, "To_Account"), str_field(b, "Chunk"))
            else {
                return fail(90001, "From_Account, To_Account and Chunk are required");
            };
            let finish = b.get("Finish").and_then(Value::as_i64) == Some(1);
            let key = match str_field(b, "MsgKey") {
                None => {
                    let key = format!("{}_{}_{}", g.streams.len() + 1, 1000 + g.calls.len(), now_ms() / 1000);
                    g.streams.push(Stream {
                        msg_key: key.clone(),
                        from: from.into(),
                        to: to.into(),
                        ..Stream::default()
                    });
                    key
                }
                Some(k) => k.to_owned(),
            };
            let Some(stream) = g.streams.iter_mut().find(|st| st.msg_key == key) else {
                return fail(90001, "unknown MsgKey");
            };
            if stream.finished {
                return fail(10004, "the stream has ended");
            }
            stream.chunks.push(chunk.to_owned());
            stream.finished = finish;
            let _ = s.events.send(Seen::StreamChunk {
                msg_key: key.clone(),
                from: from.into(),
                to: to.into(),
                chunk: chunk.into(),
                finish,
            });
            ok(json!({ "MsgKey": key }))
        }
        "openim/sendmsg" => {
            let (Some(to), Some(_)) = (str_field(b, "To_Account"), b.get("MsgRandom")) else {
                return fail(90005, "To_Account and MsgRandom are required");
            };
            let from = str_field(b, "From_Account").unwrap_or("administrator").to_owned();
            let text = text_of(b);
            // Tencent's MsgKey is `{MsgSeq}_{MsgRandom}_{MsgTime}`; a counter stands in for the
            // seq so that tests repeating a body still get distinct keys.
            let msg_key = format!("{}_{}_{}", g.c2c.len() + 1, 1, now_ms() / 1000);
            g.c2c.push(C2cMessage {
                msg_key: msg_key.clone(),
                from: from.clone(),
                to: to.into(),
                text: text.clone(),
                body: b.get("MsgBody").cloned().unwrap_or(Value::Null),
                cloud_custom_data: str_field(b, "CloudCustomData").map(str::to_owned),
                modifications: 0,
            });
            let _ = s.events.send(Seen::C2cMessage { from, to: to.into(), text });
            ok(json!({ "MsgTime": now_ms() / 1000, "MsgKey": msg_key }))
        }
        "group_open_http_svc/send_group_msg" => {
            let (Some(group), Some(random)) = (str_field(b, "GroupId"), b.get("Random").and_then(Value::as_u64)) else {
                return fail(10004, "GroupId and Random are required");
            };
            // Tencent drops the same Random (and content) within 5 minutes as a duplicate.
            if let Some(seq) = g.seen_randoms.get(&(group.to_owned(), random)) {
                return ok(json!({ "MsgTime": now_ms() / 1000, "MsgSeq": seq }));
            }
            let seq = {
                let n = g.group_seq.entry(group.to_owned()).or_insert(100);
                *n += 1;
                *n
            };
            g.seen_randoms.insert((group.to_owned(), random), seq);
            let at_accounts = b
                .get("GroupAtInfo")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| str_field(x, "GroupAt_Account").map(str::to_owned)).collect())
                .unwrap_or_default();
            let text = text_of(b);
            g.groups.push(GroupMessage {
                group_id: group.into(),
                msg_seq: seq,
                from: str_field(b, "From_Account").map(str::to_owned),
                text: text.clone(),
                at_accounts,
                topic_id: str_field(b, "TopicId").map(str::to_owned),
                modifications: 0,
                cloud_custom_data: None,
            });
            let _ = s.events.send(Seen::GroupMessage { group_id: group.into(), msg_seq: seq, text, modified: false });
            ok(json!({ "MsgTime": now_ms() / 1000, "MsgSeq": seq }))
        }
        "openim/modify_group_msg" => {
            let (Some(group), Some(seq)) = (str_field(b, "GroupId"), b.get("MsgSeq").and_then(Value::as_u64)) else {
                return fail(10004, "GroupId and MsgSeq are required");
            };
            let text = text_of(b);
            if !g.groups.iter().any(|m| m.group_id == group && m.msg_seq == seq) {
                return fail(10010, "no such message");
            }
            if !modify_allowed(&mut g, format!("group:{group}:{seq}")) {
                return fail(EMU_MODIFY_TOO_FAST, "this message is modified too often");
            }
            let Some(m) = g.groups.iter_mut().find(|m| m.group_id == group && m.msg_seq == seq) else {
                return fail(10010, "no such message");
            };
            m.text = text.clone();
            m.modifications += 1;
            let _ = s.events.send(Seen::GroupMessage { group_id: group.into(), msg_seq: seq, text, modified: true });
            ok(json!({}))
        }
        "openim/modify_c2c_msg" => {
            let (Some(from), Some(to), Some(key)) =
                (str_field(b, "From_Account"), str_field(b, "To_Account"), str_field(b, "MsgKey"))
            else {
                return fail(BAD_BODY, "From_Account, To_Account and MsgKey are required");
            };
            // Either or both of MsgBody and CloudCustomData are replaced.
            let body = b.get("MsgBody").filter(|v| v.is_array()).cloned();
            let custom = str_field(b, "CloudCustomData").map(str::to_owned);
            if body.is_none() && custom.is_none() {
                return fail(BAD_BODY, "MsgBody or CloudCustomData is required");
            }
            if !g.c2c.iter().any(|m| m.msg_key == key && m.from == from && m.to == to) {
                return fail(EMU_NO_SUCH_C2C_MSG, "no such message between these accounts");
            }
            if !modify_allowed(&mut g, format!("c2c:{key}")) {
                return fail(EMU_MODIFY_TOO_FAST, "this message is modified too often");
            }
            let Some(m) = g.c2c.iter_mut().find(|m| m.msg_key == key) else {
                return fail(EMU_NO_SUCH_C2C_MSG, "no such message between these accounts");
            };
            if let Some(body) = body {
                m.text = text_of(&json!({ "MsgBody": body }));
                m.body = body;
            }
            if custom.is_some() {
                m.cloud_custom_data = custom;
            }
            m.modifications += 1;
            ok(json!({}))
        }
        "stream_msg/send_c2c_stream_msg" => native_stream(&mut g, &s.events, b, false).unwrap_or_else(|e| e),
        "stream_msg/send_group_stream_msg" => native_stream(&mut g, &s.events, b, true).unwrap_or_else(|e| e),
        "openim_robot_http_svc/create_robot" => match str_field(b, "UserID") {
            Some(id) if id.starts_with("@RBT#") && id.len() <= 32 => {
                if g.robots.len() >= 20 && !g.robots.contains(id) {
                    return fail(10008, "robot limit reached");
                }
                g.robots.insert(id.to_owned());
                ok(json!({}))
            }
            _ => fail(10004, "UserID must start with @RBT# and be at most 32 bytes"),
        },
        "openim_robot_http_svc/delete_robot" => match str_field(b, "Robot_Account") {
            Some(id) if g.robots.remove(id) => ok(json!({})),
            _ => fail(10004, "no such robot"),
        },
        "openim_robot_http_svc/get_all_robots" => ok(json!({ "Robot_Account": g.robots.iter().collect::<Vec<_>>() })),
        "million_group_open_http_svc/create_topic" => {
            let (Some(group), Some(name)) = (str_field(b, "GroupId"), str_field(b, "TopicName")) else {
                return fail(10004, "GroupId and TopicName are required");
            };
            // Only topic-enabled communities (`@TGS#_…`) take topics. The code is UNCONFIRMED.
            if !group.starts_with("@TGS#_") {
                return fail(10007, "the group does not support topics");
            }
            let id = str_field(b, "TopicId").map(str::to_owned).unwrap_or_else(|| format!("{group}@TOPIC#_{name}"));
            if !g.topics.insert(id.clone()) {
                return fail(10021, "topic already exists");
            }
            ok(json!({ "TopicId": id }))
        }
        "group_open_http_svc/send_group_system_notification" => {
            let (Some(group), Some(content)) = (str_field(b, "GroupId"), str_field(b, "Content")) else {
                return fail(10004, "GroupId and Content are required");
            };
            let to_members: Vec<String> = match b.get("ToMembers_Account") {
                None => vec![],
                Some(Value::Array(a)) if a.len() <= 500 && a.iter().all(Value::is_string) => {
                    a.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                }
                Some(_) => return fail(10004, "ToMembers_Account must list at most 500 UserIDs"),
            };
            g.notifications.push(SystemNotification {
                group_id: group.into(),
                content: content.into(),
                to_members,
                topic_id: str_field(b, "TopicId").map(str::to_owned),
            });
            ok(json!({}))
        }
        "openim/admin_getroammsg" => ok(json!({ "Complete": 1, "MsgCnt": 0, "MsgList": [] })),
        "group_open_http_svc/group_msg_get_simple" => {
            let group = str_field(b, "GroupId").unwrap_or_default();
            let list: Vec<Value> = g
                .groups
                .iter()
                .filter(|m| m.group_id == group)
                .map(|m| json!({"From_Account": m.from, "MsgSeq": m.msg_seq, "MsgBody": [{"MsgType":"TIMTextElem","MsgContent":{"Text": m.text}}]}))
                .collect();
            ok(json!({ "IsFinished": 1, "RspMsgList": list }))
        }
        // Accounts (UserSigs for the app's users).
        "im_open_login_svc/account_import" => match str_field(b, "UserID") {
            // Tencent: a UserID of at most 32 bytes; importing an existing one succeeds.
            Some(id) if !id.is_empty() && id.len() <= 32 => {
                g.accounts.insert(id.to_owned());
                ok(json!({}))
            }
            _ => fail(7000, "UserID is missing or longer than 32 bytes"),
        },
        // --- Accounts (for `tcbot doctor`) ---
        // `account_check`: an account exists when it is one of the robots or the app admin
        // `administrator`, which Tencent creates with every app, or one `account_import` added.
        "im_open_login_svc/account_check" => {
            let Some(items) = b.get("CheckItem").and_then(Value::as_array) else {
                return fail(90001, "CheckItem is required");
            };
            let result: Vec<Value> = items
                .iter()
                .map(|i| {
                    let id = str_field(i, "UserID").unwrap_or_default();
                    let imported = id == "administrator" || g.robots.contains(id) || g.accounts.contains(id);
                    let status = if imported { "Imported" } else { "NotImported" };
                    json!({"UserID": id, "ResultCode": 0, "ResultInfo": "", "AccountStatus": status})
                })
                .collect();
            ok(json!({ "ResultItem": result }))
        }
        _ => fail(60003, "unknown command in this emulator"),
    }
}

/// Whether one more modification of the message `key` is within the modify limit; if so it
/// is counted.
fn modify_allowed(g: &mut Inner, key: String) -> bool {
    let Some(limit) = g.modify_limit else {
        return true;
    };
    let now = Instant::now();
    let times = g.modify_times.entry(key).or_default();
    if !limit.allows(times, now) {
        return false;
    }
    times.push_back(now);
    true
}

/// A chunk of a native stream call, checked for shape.
struct ChunkIn {
    index: u64,
    markdown: String,
    is_last: bool,
}

/// Where a native stream call goes, with the required fields checked: `To_Account` and
/// `MsgRandom` for C2C (as `sendmsg`); `GroupId` and `MsgRandom` (the official sample) or
/// `Random` (timbot's spelling) for a group.
fn stream_target(b: &Value, group: bool) -> Result<StreamTarget, Value> {
    let random_ok = |v: Option<&Value>| v.and_then(Value::as_u64).is_some_and(|r| r <= u64::from(u32::MAX));
    if group {
        let Some(group_id) = str_field(b, "GroupId") else {
            return Err(fail(10004, "GroupId is required"));
        };
        if !random_ok(b.get("MsgRandom").or_else(|| b.get("Random"))) {
            return Err(fail(NO_RANDOM, "MsgRandom (or Random) must be a u32"));
        }
        Ok(StreamTarget::Group { group_id: group_id.to_owned(), topic_id: str_field(b, "TopicId").map(str::to_owned) })
    } else {
        let Some(to) = str_field(b, "To_Account") else {
            return Err(fail(BAD_BODY, "To_Account is required"));
        };
        if !random_ok(b.get("MsgRandom")) {
            return Err(fail(NO_RANDOM, "MsgRandom must be a u32"));
        }
        if b.get("SyncOtherMachine").is_some_and(|v| !matches!(v.as_u64(), Some(1 | 2))) {
            return Err(fail(BAD_BODY, "SyncOtherMachine must be 1 or 2"));
        }
        if b.get("MsgSeq").is_some_and(|v| v.as_u64().is_none_or(|n| n > u64::from(u32::MAX))) {
            return Err(fail(BAD_BODY, "MsgSeq must be a u32"));
        }
        Ok(StreamTarget::C2c { to: to.to_owned() })
    }
}

/// The `MsgContent` of the one `TIMStreamElem` a native stream call's body must hold.
fn stream_content(b: &Value) -> Result<&Value, Value> {
    match b.get("MsgBody").and_then(Value::as_array).map(Vec::as_slice) {
        Some([elem]) if str_field(elem, "MsgType") == Some("TIMStreamElem") => {
            elem.get("MsgContent").filter(|c| c.is_object()).ok_or_else(|| fail(BAD_BODY, "MsgContent is required"))
        }
        _ => Err(fail(BAD_BODY, "MsgBody must hold exactly one TIMStreamElem")),
    }
}

fn stream_chunks(content: &Value) -> Result<Vec<ChunkIn>, Value> {
    let Some(arr) = content.get("Chunks").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Err(fail(BAD_BODY, "Chunks must be a non-empty array"));
    };
    arr.iter()
        .enumerate()
        .map(|(i, c)| {
            let (Some("data"), Some(index), Some(markdown), Some(is_last)) = (
                str_field(c, "EventType"),
                c.get("Index").and_then(Value::as_u64),
                str_field(c, "Markdown"),
                c.get("IsLast").and_then(Value::as_bool),
            ) else {
                return Err(fail(BAD_BODY, "a chunk needs EventType \"data\", Index, Markdown and IsLast"));
            };
            if is_last && i + 1 < arr.len() {
                return Err(fail(BAD_BODY, "only the last chunk may have IsLast"));
            }
            Ok(ChunkIn { index, markdown: markdown.to_owned(), is_last })
        })
        .collect()
}

/// Whether the chunks' indexes are `first`, `first + 1`, ….
fn indexes_follow(chunks: &[ChunkIn], first: u64) -> bool {
    chunks.iter().zip(first..).all(|(c, want)| c.index == want)
}

/// Whether a continuation speaks in the conversation its stream was opened in (the topic is
/// the first call's).
fn same_conversation(a: &StreamTarget, b: &StreamTarget) -> bool {
    match (a, b) {
        (StreamTarget::C2c { to: x }, StreamTarget::C2c { to: y }) => x == y,
        (StreamTarget::Group { group_id: x, .. }, StreamTarget::Group { group_id: y, .. }) => x == y,
        _ => false,
    }
}

/// `stream_msg/send_c2c_stream_msg` and `stream_msg/send_group_stream_msg` (protocol doc §6).
/// The first call (no `StreamMsgID`) opens a stream and its reply carries the new ID; every
/// later call must send that ID back and continue the `Index` count. The limits are checked
/// before anything is applied, so a refused call changes nothing.
fn native_stream(g: &mut Inner, events: &broadcast::Sender<Seen>, b: &Value, group: bool) -> Result<Value, Value> {
    let now = Instant::now();
    let target = stream_target(b, group)?;
    let from = str_field(b, "From_Account").unwrap_or("administrator").to_owned();
    let content = stream_content(b)?;
    let chunks = stream_chunks(content)?;
    let compatible = match content.get("CompatibleText") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(fail(BAD_BODY, "CompatibleText must be a string")),
    };
    let added: usize = chunks.iter().map(|c| c.markdown.len()).sum();
    let limits = g.stream_limits;
    g.expire_streams(now);
    let i = match content.get("StreamMsgID") {
        None => {
            let Some(compatible_text) = compatible.clone() else {
                return Err(fail(BAD_BODY, "CompatibleText is required on a stream's first call"));
            };
            if !indexes_follow(&chunks, 1) {
                return Err(fail(EMU_STREAM_BAD_INDEX, "a stream's first Index is 1, then one more each chunk"));
            }
            if added >= limits.max_markdown_bytes {
                return Err(fail(EMU_STREAM_TOO_LARGE, "the stream message is too large"));
            }
            let stream_msg_id = format!("emu-stream-{}-{}", g.native.len() + 1, now_ms());
            g.native.push(LiveStream {
                rec: NativeStream {
                    stream_msg_id,
                    from: from.clone(),
                    target,
                    markdown: String::new(),
                    compatible_text,
                    chunks: 0,
                    calls: 0,
                    finished: false,
                    ended_by_timeout: false,
                },
                last_call: now,
                continuations: VecDeque::new(),
            });
            g.native.len() - 1
        }
        Some(id) => {
            let id = id.as_str().ok_or_else(|| fail(BAD_BODY, "StreamMsgID must be a string"))?;
            let unknown = || fail(EMU_STREAM_UNKNOWN_ID, "unknown StreamMsgID for this conversation");
            let i = g.native.iter().position(|st| st.rec.stream_msg_id == id).ok_or_else(unknown)?;
            let st = &mut g.native[i];
            if st.rec.from != from || !same_conversation(&st.rec.target, &target) {
                return Err(unknown());
            }
            if st.rec.finished {
                return Err(fail(EMU_STREAM_FINISHED, "the stream has finished"));
            }
            if st.rec.ended_by_timeout {
                return Err(fail(EMU_STREAM_TIMED_OUT, "the stream ended: too long since its last chunk"));
            }
            if !limits.continuations.allows(&mut st.continuations, now) {
                return Err(fail(EMU_STREAM_TOO_FAST, "too many stream chunks a second"));
            }
            if !indexes_follow(&chunks, u64::from(st.rec.chunks) + 1) {
                return Err(fail(EMU_STREAM_BAD_INDEX, "Index must be one more than the previous chunk's"));
            }
            if st.rec.markdown.len() + added >= limits.max_markdown_bytes {
                return Err(fail(EMU_STREAM_TOO_LARGE, "the stream message is too large"));
            }
            st.continuations.push_back(now);
            i
        }
    };
    let st = &mut g.native[i];
    st.last_call = now;
    st.rec.calls += 1;
    let mut piece = String::new();
    for c in &chunks {
        piece.push_str(&c.markdown);
        st.rec.chunks = u32::try_from(c.index).unwrap_or(u32::MAX);
        st.rec.finished |= c.is_last;
    }
    st.rec.markdown.push_str(&piece);
    if let Some(t) = compatible {
        st.rec.compatible_text = t;
    }
    let to = match &st.rec.target {
        StreamTarget::C2c { to } => to.clone(),
        StreamTarget::Group { group_id, .. } => group_id.clone(),
    };
    let _ = events.send(Seen::StreamChunk {
        msg_key: st.rec.stream_msg_id.clone(),
        from,
        to,
        chunk: piece,
        finish: st.rec.finished,
    });
    Ok(ok(json!({ "StreamMsgID": st.rec.stream_msg_id })))
}

// ---------------------------------------------------------------------------------------------
// Group membership and message data (threads, voice channels): `get_group_member_info`,
// `add_group_member`, `delete_group_member`, and `modify_group_msg` with `CloudCustomData` only.
// Limits from Tencent's pages (shared::tencent::groups): member pages of at most 200, `Next`
// paging in Community groups (`@TGS#_…`) and `Offset` elsewhere, 300 adds and 100 deletions a
// call (10004 beyond), 10010 for a group that does not exist, 10014 for a full group.
// ---------------------------------------------------------------------------------------------

/// Groups and their members, for the membership calls.
struct Rosters {
    members: HashMap<String, Vec<String>>,
    capacity: usize,
}

impl Default for Rosters {
    fn default() -> Self {
        // The Ultimate edition's cap for most group types; settable.
        Rosters { members: HashMap::new(), capacity: 6000 }
    }
}

/// Group does not exist or was disbanded.
const NO_SUCH_GROUP: i64 = 10010;
/// Invalid parameter (too many members in one call, a bad `Limit`).
const BAD_PARAMETER: i64 = 10004;
/// The group is full.
const GROUP_FULL: i64 = 10014;

fn string_list(v: Option<&Value>, field: Option<&str>) -> Option<Vec<String>> {
    v?.as_array()?
        .iter()
        .map(|x| match field {
            Some(f) => str_field(x, f).map(str::to_owned),
            None => x.as_str().map(str::to_owned),
        })
        .collect()
}

/// The membership calls; `None` for every other call (and a `modify_group_msg` with a body).
fn apply_membership(g: &mut Inner, path: &str, b: &Value) -> Option<Value> {
    let reply = match path {
        "group_open_http_svc/get_group_member_info" => {
            let Some(group) = str_field(b, "GroupId") else {
                return Some(fail(BAD_PARAMETER, "GroupId is required"));
            };
            let limit = b.get("Limit").and_then(Value::as_u64).unwrap_or(6000);
            if limit == 0 || limit > 200 {
                return Some(fail(BAD_PARAMETER, "Limit must be from 1 to 200"));
            }
            let Some(all) = g.rosters.members.get(group) else {
                return Some(fail(NO_SUCH_GROUP, "the group does not exist"));
            };
            let community = group.starts_with("@TGS#_");
            let start = if community {
                match str_field(b, "Next") {
                    None | Some("") => 0,
                    Some(n) => match n.strip_prefix("n:").and_then(|i| i.parse::<usize>().ok()) {
                        Some(i) => i,
                        None => return Some(fail(BAD_PARAMETER, "Next is not a cursor this group gave")),
                    },
                }
            } else {
                b.get("Offset").and_then(Value::as_u64).unwrap_or(0) as usize
            };
            let start = start.min(all.len());
            let end = (start + limit as usize).min(all.len());
            let list: Vec<Value> =
                all[start..end].iter().map(|m| json!({"Member_Account": m, "Role": "Member"})).collect();
            let mut extra = json!({ "MemberNum": all.len(), "MemberList": list });
            if community {
                extra["Next"] = json!(if end < all.len() { format!("n:{end}") } else { String::new() });
            }
            ok(extra)
        }
        "group_open_http_svc/add_group_member" => {
            let (Some(group), Some(list)) =
                (str_field(b, "GroupId"), string_list(b.get("MemberList"), Some("Member_Account")))
            else {
                return Some(fail(BAD_PARAMETER, "GroupId and MemberList of Member_Account are required"));
            };
            if list.is_empty() || list.len() > 300 {
                return Some(fail(BAD_PARAMETER, "MemberList must list 1 to 300 members"));
            }
            let capacity = g.rosters.capacity;
            let Some(members) = g.rosters.members.get_mut(group) else {
                return Some(fail(NO_SUCH_GROUP, "the group does not exist"));
            };
            let new = list.iter().filter(|m| !members.contains(m)).collect::<BTreeSet<_>>().len();
            if members.len() + new > capacity {
                return Some(fail(GROUP_FULL, "the group is full"));
            }
            let mut results = Vec::new();
            for m in list {
                let had = members.contains(&m);
                if !had {
                    members.push(m.clone());
                }
                results.push(json!({"Member_Account": m, "Result": if had { 2 } else { 1 }}));
            }
            ok(json!({ "MemberList": results }))
        }
        "group_open_http_svc/delete_group_member" => {
            let (Some(group), Some(list)) = (str_field(b, "GroupId"), string_list(b.get("MemberToDel_Account"), None))
            else {
                return Some(fail(BAD_PARAMETER, "GroupId and MemberToDel_Account are required"));
            };
            if list.is_empty() || list.len() > 100 {
                return Some(fail(BAD_PARAMETER, "MemberToDel_Account must list 1 to 100 members"));
            }
            let Some(members) = g.rosters.members.get_mut(group) else {
                return Some(fail(NO_SUCH_GROUP, "the group does not exist"));
            };
            members.retain(|m| !list.contains(m));
            ok(json!({}))
        }
        "openim/modify_group_msg" if b.get("MsgBody").is_none() => {
            let (Some(group), Some(seq), Some(data)) =
                (str_field(b, "GroupId"), b.get("MsgSeq").and_then(Value::as_u64), str_field(b, "CloudCustomData"))
            else {
                return Some(fail(BAD_PARAMETER, "GroupId, MsgSeq and MsgBody or CloudCustomData are required"));
            };
            if !g.groups.iter().any(|m| m.group_id == group && m.msg_seq == seq) {
                return Some(fail(NO_SUCH_GROUP, "no such message"));
            }
            if !modify_allowed(g, format!("group:{group}:{seq}")) {
                return Some(fail(EMU_MODIFY_TOO_FAST, "this message is modified too often"));
            }
            let m = g.groups.iter_mut().find(|m| m.group_id == group && m.msg_seq == seq)?;
            m.cloud_custom_data = Some(data.to_owned());
            m.modifications += 1;
            ok(json!({}))
        }
        _ => return None,
    };
    Some(reply)
}
