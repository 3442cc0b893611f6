//! The Tencent Chat REST client (tencent-chat-protocol.md §4).
//!
//! Every call is a POST of JSON to `{base}/v4/{service}/{command}?sdkappid=…&identifier=…&
//! usersig=…&random=…&contenttype=json`, with a fresh `random` each time. The admin UserSig is
//! cached and regenerated before it expires and when Tencent answers 70001. Transient and
//! rate-limit errors are retried with jittered exponential backoff; a call that is not safe to
//! repeat (a stream chunk) is retried only when Tencent certainly did not apply it.

use super::api::*;
use super::usersig;
use crate::bounded::{BodyError, read_body};
use crate::redact::JsonError;
use crate::secrets::SecretString;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A failed REST call. The text names the call and Tencent's code, never the URL (it holds the
/// UserSig).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RestError {
    #[error("{call}: Tencent error {code}: {info}")]
    Tencent { call: &'static str, code: i64, info: String },
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
}

/// Tencent error codes that mean "try again later" (§4.6).
const TRANSIENT_CODES: &[i64] =
    &[10002, 20004, 20005, 60008, 70169, 70500, 90992, 90994, 90995, 91000, 20028, 60004, 60005];
/// Tencent error codes that mean "too fast" (§4.6).
const RATE_LIMIT_CODES: &[i64] = &[60007, 60018, 60011, 60019, 10006, 10023, 90057];
/// The UserSig expired: regenerate it and try again.
const USERSIG_EXPIRED: i64 = 70001;
/// The most of a reply read. The largest replies, history pages, are a few hundred KB.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

impl RestError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RestError::Tencent { code, .. } => {
                TRANSIENT_CODES.contains(code) || RATE_LIMIT_CODES.contains(code) || *code == USERSIG_EXPIRED
            }
            RestError::Http { status, .. } => *status == 429 || *status >= 500,
            RestError::Timeout { .. } | RestError::Connect { .. } | RestError::Network { .. } => true,
            RestError::Decode { .. } => false,
        }
    }

    /// Whether Tencent certainly did not apply the call, so that repeating it cannot duplicate
    /// anything: it answered with an error code, or the connection never opened.
    pub fn certainly_not_applied(&self) -> bool {
        matches!(self, RestError::Tencent { .. } | RestError::Connect { .. })
    }

    /// Tencent's error code, when the error is one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RestError::Tencent { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Whether a call may be sent twice without a visible effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Idempotent (stable MsgSeq/MsgRandom, cumulative modify, reads, create_robot).
    Safe,
    /// Not idempotent (a stream chunk would show twice).
    Unsafe,
}

/// The chat operations the domain code needs. One production adapter ([`RestClient`]); tests
/// run it against a local HTTP server playing Tencent.
#[async_trait]
pub trait ChatApi: Send + Sync {
    async fn send_msg(&self, req: &SendMsg) -> Result<SendMsgReply, RestError>;
    async fn send_stream_msg(&self, req: &SendStreamMsg) -> Result<SendStreamMsgReply, RestError>;
    async fn send_group_msg(&self, req: &SendGroupMsg) -> Result<SendGroupMsgReply, RestError>;
    /// One call of a native `TIMStreamElem` C2C stream (`stream_msg/send_c2c_stream_msg`).
    async fn send_c2c_stream_msg(&self, req: &SendC2cStreamMsg) -> Result<StreamMsgReply, RestError>;
    /// One call of a native `TIMStreamElem` group stream (`stream_msg/send_group_stream_msg`).
    async fn send_group_stream_msg(&self, req: &SendGroupStreamMsg) -> Result<StreamMsgReply, RestError>;
    async fn modify_c2c_msg(&self, req: &ModifyC2cMsg) -> Result<(), RestError>;
    async fn modify_group_msg(&self, req: &ModifyGroupMsg) -> Result<(), RestError>;
    async fn create_topic(&self, req: &CreateTopic) -> Result<CreateTopicReply, RestError>;
    /// A group system notification (`group_open_http_svc/send_group_system_notification`).
    /// The default refuses as Tencent refuses an unknown command, so that test doubles written
    /// before this call existed need not implement it.
    async fn send_group_system_notification(&self, _req: &SendGroupSystemNotification) -> Result<(), RestError> {
        Err(RestError::Tencent {
            call: "group_open_http_svc/send_group_system_notification",
            code: 60003,
            info: "not supported by this chat API".into(),
        })
    }

    // Accounts (UserSigs for the app's users).

    /// Imports an account (`im_open_login_svc/account_import`); importing one that exists
    /// succeeds. The default refuses, as for notifications.
    async fn account_import(&self, _user_id: &str) -> Result<(), RestError> {
        Err(RestError::Tencent {
            call: "im_open_login_svc/account_import",
            code: 60003,
            info: "not supported by this chat API".into(),
        })
    }
}

/// How the client reaches Tencent and how hard it tries.
#[derive(Debug, Clone)]
pub struct RestOptions {
    pub base_url: String,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub usersig_ttl: Duration,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions {
            base_url: "https://adminapisgp.im.qcloud.com".into(),
            timeout: Duration::from_secs(3),
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            usersig_ttl: Duration::from_secs(86_400),
        }
    }
}

/// The REST client, built once per cold start and shared.
pub struct RestClient {
    http: reqwest::Client,
    opts: RestOptions,
    sdk_app_id: u64,
    admin: String,
    key: SecretString,
    usersig: Mutex<Option<(String, u64)>>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base_url", &self.opts.base_url)
            .field("sdk_app_id", &self.sdk_app_id)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl RestClient {
    pub fn new(http: reqwest::Client, opts: RestOptions, sdk_app_id: u64, admin: String, key: SecretString) -> Self {
        RestClient { http, opts, sdk_app_id, admin, key, usersig: Mutex::new(None) }
    }

    /// The cached admin UserSig, regenerated when a tenth of its life is left or when forced.
    fn usersig(&self, force: bool) -> String {
        let now = unix_now();
        let ttl = self.opts.usersig_ttl.as_secs().max(60);
        let mut cache = self.usersig.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((sig, renew_at)) if !force && now < *renew_at => sig.clone(),
            _ => {
                let sig = usersig::generate(self.sdk_app_id, self.key.expose().as_bytes(), &self.admin, ttl, now);
                *cache = Some((sig.clone(), now + ttl - ttl / 10));
                sig
            }
        }
    }

    /// The full URL of a call, with a fresh `random`.
    pub fn url(&self, path: &str, usersig: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sdkappid", &self.sdk_app_id.to_string())
            .append_pair("identifier", &self.admin)
            .append_pair("usersig", usersig)
            .append_pair("random", &fastrand::u32(..).to_string())
            .append_pair("contenttype", "json");
        format!("{}/v4/{}?{}", self.opts.base_url, path, q.finish())
    }

    /// Makes one call with retries. `path` is `service/command`.
    pub async fn call<Req: Serialize + Sync, Resp: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Req,
        repeat: Repeat,
    ) -> Result<Resp, RestError> {
        let mut attempt = 0;
        let mut force_sig = false;
        loop {
            attempt += 1;
            let result = self.call_once(path, body, force_sig).await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            force_sig = err.code() == Some(USERSIG_EXPIRED);
            let may_repeat = repeat == Repeat::Safe || err.certainly_not_applied();
            if attempt >= self.opts.max_attempts || !err.is_retryable() || !may_repeat {
                tracing::warn!(call = path, attempt, error = %err, "tencent call failed");
                return Err(err);
            }
            let delay = if force_sig { Duration::ZERO } else { self.backoff(attempt) };
            tracing::info!(call = path, attempt, error = %err, delay_ms = delay.as_millis() as u64, "retrying tencent call");
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.opts.backoff_base.saturating_mul(1 << (attempt - 1).min(10));
        let capped = exp.min(self.opts.backoff_max);
        // Full jitter keeps a burst of retries from arriving together.
        capped.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Req,
        force_sig: bool,
    ) -> Result<Resp, RestError> {
        let url = self.url(path, &self.usersig(force_sig));
        let res =
            self.http.post(url).timeout(self.opts.timeout).json(body).send().await.map_err(|e| classify(path, e))?;
        let status = res.status();
        if !status.is_success() {
            return Err(RestError::Http { call: path, status: status.as_u16() });
        }
        let bytes = read_body(res, MAX_REPLY_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge(cap) => {
                RestError::Decode { call: path, reason: format!("the reply exceeded {cap} bytes") }
            }
            BodyError::Read(e) => classify(path, e),
        })?;
        let decode = |e| RestError::Decode { call: path, reason: JsonError::from(e).to_string() };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(decode)?;
        let code = value.get("ErrorCode").and_then(|c| c.as_i64()).unwrap_or(0);
        let status_ok = value.get("ActionStatus").and_then(|s| s.as_str()).is_none_or(|s| s == "OK");
        if code != 0 || !status_ok {
            let info = value.get("ErrorInfo").and_then(|s| s.as_str()).unwrap_or("").to_owned();
            return Err(RestError::Tencent { call: path, code, info });
        }
        serde_json::from_value(value).map_err(decode)
    }

    /// `openim_robot_http_svc/create_robot`.
    pub async fn create_robot(&self, req: &CreateRobot) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("openim_robot_http_svc/create_robot", req, Repeat::Safe).await.map(drop)
    }

    /// `openim_robot_http_svc/delete_robot`.
    pub async fn delete_robot(&self, req: &DeleteRobot) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("openim_robot_http_svc/delete_robot", req, Repeat::Safe).await.map(drop)
    }

    /// `openim_robot_http_svc/get_all_robots`.
    pub async fn get_all_robots(&self) -> Result<AllRobots, RestError> {
        self.call("openim_robot_http_svc/get_all_robots", &serde_json::json!({}), Repeat::Safe).await
    }

    /// `openim/admin_getroammsg`: one page of C2C history.
    pub async fn admin_getroammsg(&self, req: &AdminGetRoamMsg) -> Result<RoamMsgPage, RestError> {
        self.call("openim/admin_getroammsg", req, Repeat::Safe).await
    }

    /// `group_open_http_svc/group_msg_get_simple`: one page of group history.
    pub async fn group_msg_get_simple(&self, req: &GroupMsgGetSimple) -> Result<GroupMsgPage, RestError> {
        self.call("group_open_http_svc/group_msg_get_simple", req, Repeat::Safe).await
    }
}

#[async_trait]
impl ChatApi for RestClient {
    async fn send_msg(&self, req: &SendMsg) -> Result<SendMsgReply, RestError> {
        self.call("openim/sendmsg", req, Repeat::Safe).await
    }
    async fn send_stream_msg(&self, req: &SendStreamMsg) -> Result<SendStreamMsgReply, RestError> {
        self.call("openim_robot_http_svc/send_stream_msg", req, Repeat::Unsafe).await
    }
    async fn send_group_msg(&self, req: &SendGroupMsg) -> Result<SendGroupMsgReply, RestError> {
        self.call("group_open_http_svc/send_group_msg", req, Repeat::Safe).await
    }
    // A stream chunk is not idempotent: like the robot stream, it is repeated only when
    // Tencent certainly did not apply it.
    async fn send_c2c_stream_msg(&self, req: &SendC2cStreamMsg) -> Result<StreamMsgReply, RestError> {
        self.call("stream_msg/send_c2c_stream_msg", req, Repeat::Unsafe).await
    }
    async fn send_group_stream_msg(&self, req: &SendGroupStreamMsg) -> Result<StreamMsgReply, RestError> {
        self.call("stream_msg/send_group_stream_msg", req, Repeat::Unsafe).await
    }
    async fn modify_c2c_msg(&self, req: &ModifyC2cMsg) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("openim/modify_c2c_msg", req, Repeat::Safe).await.map(drop)
    }
    async fn modify_group_msg(&self, req: &ModifyGroupMsg) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("openim/modify_group_msg", req, Repeat::Safe).await.map(drop)
    }
    async fn create_topic(&self, req: &CreateTopic) -> Result<CreateTopicReply, RestError> {
        self.call("million_group_open_http_svc/create_topic", req, Repeat::Safe).await
    }
    // No Random dedups it: a notification is repeated only when Tencent certainly did not
    // apply it, or a timeout would show it twice.
    async fn send_group_system_notification(&self, req: &SendGroupSystemNotification) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("group_open_http_svc/send_group_system_notification", req, Repeat::Unsafe)
            .await
            .map(drop)
    }

    // Importing an account twice is harmless: safe to repeat.
    async fn account_import(&self, user_id: &str) -> Result<(), RestError> {
        let req = serde_json::json!({ "UserID": user_id });
        self.call::<_, serde_json::Value>("im_open_login_svc/account_import", &req, Repeat::Safe).await.map(drop)
    }
}

fn classify(call: &'static str, e: reqwest::Error) -> RestError {
    // reqwest's error text can include the URL, which carries the UserSig: keep only the kind.
    let e = e.without_url();
    if e.is_timeout() {
        RestError::Timeout { call }
    } else if e.is_connect() {
        RestError::Connect { call, reason: e.to_string() }
    } else {
        RestError::Network { call, reason: e.to_string() }
    }
}
