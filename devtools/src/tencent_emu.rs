//! A local Tencent Chat REST emulator: it checks each call's UserSig like Tencent does,
//! records every call, keeps robot streams, group messages and robots, and can be told to fail
//! (an error code, an HTTP status, a delay, a huge reply) for the next calls. Subscribers see what the bot
//! sends as it is sent, which is how the local run prints answers live.

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
use std::time::Duration;
use tokio::sync::broadcast;

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
}

/// What the bot did, as it happened, for live display.
#[derive(Debug, Clone)]
pub enum Seen {
    StreamChunk { msg_key: String, from: String, to: String, chunk: String, finish: bool },
    C2cMessage { from: String, to: String, text: String },
    GroupMessage { group_id: String, msg_seq: u64, text: String, modified: bool },
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    streams: Vec<Stream>,
    groups: Vec<GroupMessage>,
    c2c: Vec<(String, String, String)>,
    robots: BTreeSet<String>,
    group_seq: HashMap<String, u64>,
    topics: BTreeSet<String>,
    seen_randoms: HashMap<(String, u64), u64>,
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

    /// C2C messages sent with `sendmsg`: (from, to, text).
    pub fn c2c_messages(&self) -> Vec<(String, String, String)> {
        self.lock().c2c.clone()
    }

    pub fn robots(&self) -> Vec<String> {
        self.lock().robots.iter().cloned().collect()
    }

    pub fn topics(&self) -> Vec<String> {
        self.lock().topics.iter().cloned().collect()
    }

    /// Live events of what the bot sends.
    pub fn subscribe(&self) -> broadcast::Receiver<Seen> {
        self.events.subscribe()
    }

    /// Forgets every call and message (faults too).
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
            g.c2c.push((from.clone(), to.into(), text.clone()));
            let _ = s.events.send(Seen::C2cMessage { from, to: to.into(), text });
            ok(json!({ "MsgTime": now_ms() / 1000, "MsgKey": format!("{}_{}_{}", g.c2c.len(), 1, now_ms() / 1000) }))
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
            });
            let _ = s.events.send(Seen::GroupMessage { group_id: group.into(), msg_seq: seq, text, modified: false });
            ok(json!({ "MsgTime": now_ms() / 1000, "MsgSeq": seq }))
        }
        "openim/modify_group_msg" => {
            let (Some(group), Some(seq)) = (str_field(b, "GroupId"), b.get("MsgSeq").and_then(Value::as_u64)) else {
                return fail(10004, "GroupId and MsgSeq are required");
            };
            let text = text_of(b);
            let Some(m) = g.groups.iter_mut().find(|m| m.group_id == group && m.msg_seq == seq) else {
                return fail(10010, "no such message");
            };
            m.text = text.clone();
            m.modifications += 1;
            let _ = s.events.send(Seen::GroupMessage { group_id: group.into(), msg_seq: seq, text, modified: true });
            ok(json!({}))
        }
        "openim/modify_c2c_msg" => ok(json!({})),
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
        _ => fail(60003, "unknown command in this emulator"),
    }
}
