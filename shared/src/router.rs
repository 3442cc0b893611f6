//! The callback router: the one public function. It authenticates a webhook, parses it, hands
//! chatbot work to the queues, sets stop flags, and acks within Tencent's 2 s. Every request
//! ends in exactly one logged [`Outcome`].
//!
//! Chatbot messages are not claimed in the store before they are queued. A claim written before
//! the send could outlive a send that failed late (or a function that timed out): Tencent's
//! retry would then be acked as a duplicate and the message never queued. Instead the FIFO
//! deduplication id (the job's key) drops copies sent within SQS's 5-minute window, and the
//! worker's reply record drops any later copy. That is also one network call on the ack path
//! instead of two (`benches/RESULTS.md`, router ack latency).

use crate::bot::arrivals::Arrivals;
use crate::bot::job::{Job, Platform};
use crate::bot::profile::GroupScope;
use crate::invoke::Invoker;
use crate::keys;
use crate::msg::stop_request;
use crate::queue::{Queue, QueueMessage, fifo_id};
use crate::secrets::SecretString;
use crate::store::{Store, now_ms};
use crate::tencent::intake;
use crate::webhook::events::{Command, WebhookEvent};
use crate::webhook::sign::verify_sign;
use crate::webhook::{Ack, CallbackQuery};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The prefix of every chatbot account's UserID.
pub const ROBOT_PREFIX: &str = "@RBT#";

/// How one webhook ended. `received = queued + rejected + ignored + stop + judged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to a worker queue (`jobs` messages, one per robot addressed). A copy of a message
    /// already queued is queued again and dropped by the queue or the worker.
    Queued { jobs: usize },
    /// Refused: bad signature, wrong app, malformed body, too large.
    Rejected(String),
    /// Accepted but nothing to do (a bot's own message, a command with no handler).
    Ignored(String),
    /// A "stop generating" request was recorded.
    StopRequested,
    /// A before-send command was judged by its function (or by the fallback verdict when the
    /// function failed or was late); the text is the verdict's ErrorCode.
    Judged { error_code: i64, fallback: bool },
}

impl Outcome {
    /// The outcome's kind, as logged and counted.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Queued { .. } => "queued",
            Outcome::Rejected(_) => "rejected",
            Outcome::Ignored(_) => "ignored",
            Outcome::StopRequested => "stop",
            Outcome::Judged { .. } => "judged",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Rejected(r) | Outcome::Ignored(r) => r,
            _ => "",
        }
    }
}

/// Our own infrastructure failed (store or queue): the webhook is answered with an error so
/// that Tencent's retry, when enabled, can deliver it again.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// Where the commands other than the chatbot's go. Empty by default: such a command is acked
/// `OK` and logged as ignored, which for before-send means "deliver".
#[derive(Default)]
pub struct Routes {
    /// Before-send commands: command name → function to invoke synchronously.
    pub sync_functions: HashMap<String, String>,
    pub invoker: Option<Arc<dyn Invoker>>,
    /// How long a before-send function may take; Tencent allows 2 s in all.
    pub sync_deadline: Duration,
    /// The reply when the function fails or is late (fail-open by default).
    pub sync_fallback: Option<Ack>,
    /// After-event commands: command name → standard SQS queue of their function.
    pub event_queues: HashMap<String, String>,
}

/// Everything the router needs, built once per cold start.
pub struct Router {
    pub sdk_app_id: u64,
    /// The console's webhook token; `None` only when unsigned webhooks are allowed.
    pub token: Option<SecretString>,
    pub sign_window_secs: i64,
    pub max_body_bytes: usize,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub c2c_queue_url: String,
    pub group_queue_url: String,
    pub stop_ttl_secs: u64,
    pub routes: Routes,
    /// Busy checks and inbox notes beside each queued chatbot message (none by default).
    pub arrivals: Arrivals,
    /// Robots' group scopes, read from their profiles and kept a minute: a robot whose group
    /// conversations are per member answers each member's mentions in a FIFO group of their own.
    scopes: moka::future::Cache<String, GroupScope>,
}

/// How long the router trusts a robot's group scope before reading its profile again.
const SCOPE_TTL: Duration = Duration::from_secs(60);

impl Router {
    /// A router for the app `sdk_app_id` with the deployment's default limits (a 60 s signature
    /// window, 64 KiB bodies, stop flags kept 10 minutes) and no other commands routed; the
    /// fields are public for callers that set them from [`crate::config::Settings`].
    pub fn new(
        sdk_app_id: u64,
        token: Option<SecretString>,
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        c2c_queue_url: String,
        group_queue_url: String,
    ) -> Self {
        Router {
            sdk_app_id,
            token,
            sign_window_secs: 60,
            max_body_bytes: 64 * 1024,
            store,
            queue,
            c2c_queue_url,
            group_queue_url,
            stop_ttl_secs: 600,
            routes: Routes::default(),
            arrivals: Arrivals::default(),
            scopes: moka::future::Cache::builder().time_to_live(SCOPE_TTL).max_capacity(10_000).build(),
        }
    }

    /// The router with the other commands going where `routes` says.
    pub fn with_routes(mut self, routes: Routes) -> Self {
        self.routes = routes;
        self
    }

    /// A robot's group scope, from its profile (cached); a profile that cannot be read counts
    /// as the default scope, so the ack never waits on it twice.
    async fn group_scope(&self, bot: &str) -> GroupScope {
        let store = self.store.clone();
        let key = keys::profile(Platform::Tencent, bot);
        self.scopes
            .get_with(bot.to_owned(), async move {
                #[derive(serde::Deserialize)]
                struct Scope {
                    #[serde(default)]
                    group_scope: Option<GroupScope>,
                }
                match store.get_doc(&key).await {
                    Ok(Some(doc)) => serde_json::from_str::<Scope>(&doc).ok().and_then(|s| s.group_scope).unwrap_or_default(),
                    Ok(None) => GroupScope::default(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the robot's profile; its group scope is the default");
                        GroupScope::default()
                    }
                }
            })
            .await
    }

    /// Handles one webhook. `now` is unix seconds.
    pub async fn handle(
        &self,
        raw_query: &str,
        body: &[u8],
        now: i64,
        request_id: &str,
    ) -> Result<(Ack, Outcome), RouterError> {
        let query = CallbackQuery::parse(raw_query);
        let command = query.command.clone().unwrap_or_default();
        let result = self.route(&query, body, now, request_id).await;
        match &result {
            Ok((_, outcome)) => tracing::info!(
                request_id,
                command = %command,
                outcome = outcome.kind(),
                reason = outcome.reason(),
                "webhook handled"
            ),
            Err(e) => {
                tracing::error!(request_id, command = %command, outcome = "error", error = %e, "webhook failed")
            }
        }
        result
    }

    async fn route(
        &self,
        query: &CallbackQuery,
        body: &[u8],
        now: i64,
        request_id: &str,
    ) -> Result<(Ack, Outcome), RouterError> {
        let reject = |why: String| Ok((Ack::fail(why.clone()), Outcome::Rejected(why)));
        if body.len() > self.max_body_bytes {
            return reject(format!("body of {} bytes exceeds the {} byte limit", body.len(), self.max_body_bytes));
        }
        match query.sdk_app_id.as_deref().map(str::parse::<u64>) {
            Some(Ok(id)) if id == self.sdk_app_id => {}
            Some(_) => return reject("SdkAppid does not match this app".into()),
            None => return reject("SdkAppid is missing".into()),
        }
        if let Some(token) = &self.token
            && let Err(e) = verify_sign(
                token.expose(),
                query.sign.as_deref(),
                query.request_time.as_deref(),
                now,
                self.sign_window_secs,
            )
        {
            return reject(format!("signature refused: {e}"));
        }
        let Some(name) = query.command.as_deref() else {
            return reject("CallbackCommand is missing".into());
        };
        let command = Command::parse(name);
        let event = match WebhookEvent::parse(&command, body) {
            Ok(ev) => ev,
            Err(e) => return reject(e.to_string()),
        };
        match event {
            WebhookEvent::BotC2cMessage(m) => {
                if m.from_account.starts_with(ROBOT_PREFIX) {
                    return Ok((Ack::ok(), Outcome::Ignored("sender is a robot".into())));
                }
                if let Some(stop) = stop_request(&m.msg_body) {
                    let scope = keys::direct_scope(Platform::Tencent, &m.to_account, &m.from_account);
                    let key = keys::stop(&scope, stop.msg_key.as_deref());
                    self.set_stop(&key).await?;
                    return Ok((Ack::ok(), Outcome::StopRequested));
                }
                let job = intake::c2c_job(request_id, now_ms(), &m);
                self.enqueue(vec![job], &self.c2c_queue_url).await
            }
            WebhookEvent::BotGroupMessage(m) => {
                if m.from_account.starts_with(ROBOT_PREFIX) {
                    return Ok((Ack::ok(), Outcome::Ignored("sender is a robot".into())));
                }
                let robots: Vec<String> = {
                    let mut r: Vec<String> =
                        m.at_robots_account.iter().filter(|a| a.starts_with(ROBOT_PREFIX)).cloned().collect();
                    r.dedup();
                    r
                };
                if robots.is_empty() {
                    return Ok((Ack::ok(), Outcome::Ignored("no robot is mentioned".into())));
                }
                if stop_request(&m.msg_body).is_some() {
                    // TUIKit sends its interrupt without an @-mention, so it cannot arrive here
                    // (protocol doc §6); one that does comes from a custom client, and group
                    // answers cannot be stopped.
                    return Ok((Ack::ok(), Outcome::Ignored("stop requests are not supported in groups".into())));
                }
                let received = now_ms();
                let mut jobs = Vec::with_capacity(robots.len());
                for bot in &robots {
                    let mut job = intake::group_job(request_id, received, &m, bot);
                    job.per_member = self.group_scope(bot).await == GroupScope::Member;
                    jobs.push(job);
                }
                self.enqueue(jobs, &self.group_queue_url).await
            }
            WebhookEvent::Unknown { command, .. } => {
                // OK/0 to a signal message means "forward RspData"; 1 ignores it (protocol doc §6).
                let ack = if command == "Chatbot.OnC2CSignalMessage" { Ack::verdict(1, "") } else { Ack::ok() };
                Ok((ack, Outcome::Ignored(format!("unknown command {command}"))))
            }
            WebhookEvent::GroupBeforeSendMsg(_) | WebhookEvent::C2cBeforeSendMsg(_) => Ok(self.judge(name, body).await),
            _ => {
                let name = command.name();
                match self.routes.event_queues.get(name) {
                    Some(queue) => {
                        // A standard queue: the function deduplicates what it counts.
                        let doc = serde_json::json!({
                            "command": name,
                            "request_id": request_id,
                            "body": serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default(),
                        });
                        let msg = QueueMessage { body: doc.to_string(), group_id: None, dedup_id: None };
                        self.queue.send(queue, &msg).await?;
                        Ok((Ack::ok(), Outcome::Queued { jobs: 1 }))
                    }
                    None => Ok((Ack::ok(), Outcome::Ignored(format!("no handler deployed for {name}")))),
                }
            }
        }
    }

    /// Asks the before-send function for its verdict within the deadline; on failure or delay
    /// the configured fallback verdict answers.
    async fn judge(&self, name: &str, body: &[u8]) -> (Ack, Outcome) {
        let (Some(function), Some(invoker)) = (self.routes.sync_functions.get(name), &self.routes.invoker) else {
            return (Ack::ok(), Outcome::Ignored(format!("no handler deployed for {name}")));
        };
        let fallback = |why: &str| {
            tracing::warn!(function = %function, reason = why, "before-send function gave no verdict; fallback verdict");
            let ack = self.routes.sync_fallback.clone().unwrap_or_else(Ack::ok);
            let code = ack.error_code;
            (ack, Outcome::Judged { error_code: code, fallback: true })
        };
        match tokio::time::timeout(self.routes.sync_deadline, invoker.invoke(function, body)).await {
            Ok(Ok(bytes)) => match serde_json::from_slice::<Ack>(&bytes) {
                Ok(ack) if ack.action_status == "OK" => {
                    let code = ack.error_code;
                    (ack, Outcome::Judged { error_code: code, fallback: false })
                }
                Ok(ack) => fallback(&ack.error_info),
                Err(e) => fallback(&format!("not an ack: {}", crate::redact::JsonError::from(e))),
            },
            Ok(Err(e)) => fallback(&e.to_string()),
            Err(_) => fallback("late"),
        }
    }

    async fn set_stop(&self, key: &str) -> Result<(), RouterError> {
        let doc = serde_json::json!({ "at_ms": now_ms() }).to_string();
        self.store.put_doc(key, &doc, Some(self.stop_ttl_secs)).await?;
        Ok(())
    }

    /// Queues one job per robot. The FIFO deduplication id is the job's key, so a webhook that
    /// Tencent delivers again is dropped by SQS within 5 minutes and by the worker after.
    async fn enqueue(&self, jobs: Vec<Job>, queue_url: &str) -> Result<(Ack, Outcome), RouterError> {
        let n = jobs.len();
        let send = async {
            for job in &jobs {
                let msg = QueueMessage {
                    body: serde_json::to_string(job).unwrap_or_default(),
                    group_id: Some(fifo_id(&job.ordering_key())),
                    dedup_id: Some(fifo_id(&job.key())),
                };
                self.queue.send(queue_url, &msg).await?;
            }
            Ok::<_, RouterError>(())
        };
        // Beside the sends, not after them: the ack waits for the slower, not for both.
        let notes = futures_util::future::join_all(
            jobs.iter().map(|job| self.arrivals.note(self.store.as_ref(), self.queue.as_ref(), job)),
        );
        let (sent, _) = tokio::join!(send, notes);
        sent?;
        Ok((Ack::ok(), Outcome::Queued { jobs: n }))
    }
}

/// The Lambda adapter: API Gateway HTTP API request in, HTTP 200 with the ack out.
pub async fn http_handler(
    router: &Router,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    let request_id = crate::lambda::request_id(&req);
    let query = req.uri().query().unwrap_or("").to_owned();
    let body: &[u8] = req.body().as_ref();
    let now = crate::store::now_secs() as i64;
    let started = std::time::Instant::now();
    let (ack, outcome) = router.handle(&query, body, now, &request_id).await?;
    crate::observe::Metrics::new("router")
        .dim("Outcome", outcome.kind())
        .value("AckMs", started.elapsed().as_secs_f64() * 1000.0, "Milliseconds")
        .value("Webhooks", 1.0, "Count")
        .emit();
    crate::lambda::json_response(200, ack.to_json())
}
