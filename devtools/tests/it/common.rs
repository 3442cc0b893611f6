//! One isolated environment per test: its own table, queues and secret in the process's moto
//! server, its own Tencent and LLM emulators, and the router and worker wired to them.

use aws_config::SdkConfig;
use devtools::aws::{Stack, create_stack, local_config};
use devtools::llm_emu::LlmEmulator;
use devtools::tencent_emu::TencentEmulator;
use shared::bot::sink::StreamMode;
use shared::bot::worker::Worker;
use shared::config::{LlmDefaults, ModerateAnswers, OverflowPolicy, Settings, StreamSettings};
use shared::llm::OpenAiClient;
use shared::queue::SqsQueue;
use shared::router::Router;
use shared::secrets::AppSecrets;
use shared::store::DynamoStore;
use shared::tencent::RestClient;
use shared::tencent::client::RestOptions;
use shared::tencent::sinks::TencentOutbound;
use shared::webhook::{Ack, CallbackQuery};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const APP_ID: u64 = 1_400_000_001;
pub const KEY: &str = "test-secret-key-0123456789abcdef";
pub const TOKEN: &str = "test-webhook-token";
pub const LLM_KEY: &str = "sk-test-llm-key";
pub const BOT: &str = "@RBT#001";

pub fn secret_json() -> String {
    serde_json::json!({
        "SdkAppId": APP_ID, "SecretKey": KEY, "AdminIdentifier": "administrator",
        "WebhookToken": TOKEN, "LlmApiKey": LLM_KEY,
    })
    .to_string()
}

pub fn now() -> i64 {
    shared::store::now_secs() as i64
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

pub async fn aws() -> SdkConfig {
    let moto = devtools::moto::moto().unwrap_or_else(|e| panic!("{e}"));
    local_config(&moto.endpoint).await
}

pub fn defaults(llm_base: &str) -> LlmDefaults {
    LlmDefaults {
        base_url: llm_base.to_owned(),
        model: "emu-model".into(),
        api_style: "openai".into(),
        system_prompt: "You are a test bot.".into(),
        max_turns: 20,
        max_age_secs: 3600,
        token_budget: 10_000,
        daily_quota: 0,
        language: shared::bot::texts::Language::En,
        connect_timeout: Duration::from_secs(2),
        first_token_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(1500),
        total_timeout: Duration::from_secs(30),
    }
}

pub fn rest_options(base: &str) -> RestOptions {
    RestOptions {
        base_url: base.to_owned(),
        timeout: Duration::from_millis(500),
        max_attempts: 4,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        usersig_ttl: Duration::from_secs(86_400),
    }
}

/// A router like `env.router` (signed, under the router's grants) whose other commands go where
/// `routes` says.
pub fn router_with(env: &Env, routes: shared::router::Routes) -> Router {
    Router::new(
        APP_ID,
        Some(shared::secrets::SecretString::new(TOKEN)),
        guarded("CallbackRouterFunction", &env.store),
        Arc::new(SqsQueue::new(env.sqs.clone())),
        env.stack.c2c_queue.clone(),
        env.stack.group_queue.clone(),
    )
    .with_routes(routes)
}

/// `store` as `function` may use it under `template.yaml`'s IAM grants: a key outside its
/// `dynamodb:LeadingKeys` fails as it would in AWS.
pub fn guarded(function: &str, store: &Arc<DynamoStore>) -> Arc<dyn shared::store::Store> {
    Arc::new(devtools::iam::GuardedStore::for_function(function, store.clone()).unwrap_or_else(|e| panic!("{e}")))
}

/// `store` under the union of several functions' grants, for a service that two functions
/// share (the community set-up and the welcome).
pub fn guarded_as(functions: &[&str], store: &Arc<DynamoStore>) -> Arc<dyn shared::store::Store> {
    let template = devtools::iam::template().unwrap_or_else(|e| panic!("{e}"));
    let prefixes =
        functions.iter().flat_map(|f| devtools::iam::leading_keys(&template, f).unwrap_or_default()).collect();
    Arc::new(devtools::iam::GuardedStore::new(&functions.join("+"), prefixes, store.clone()))
}

pub struct Env {
    pub stack: Stack,
    pub sqs: aws_sdk_sqs::Client,
    pub store: Arc<DynamoStore>,
    pub tencent: TencentEmulator,
    pub llm: LlmEmulator,
    pub router: Router,
    pub worker: Worker,
    /// The REST client the worker's outbound uses, for the other services under test.
    pub chat: Arc<RestClient>,
}

impl Env {
    pub async fn new() -> Env {
        Self::with(|_| {}).await
    }

    /// An environment whose worker is adjusted by `tweak` before use.
    pub async fn with(tweak: impl FnOnce(&mut Worker)) -> Env {
        let aws = aws().await;
        let stack = create_stack(&aws, &unique("t"), &secret_json()).await.unwrap_or_else(|e| panic!("stack: {e}"));
        let tencent = TencentEmulator::start(APP_ID, KEY).await.unwrap_or_else(|e| panic!("tencent: {e}"));
        let llm = LlmEmulator::start(Some(LLM_KEY.into()), Duration::from_millis(15))
            .await
            .unwrap_or_else(|e| panic!("llm: {e}"));
        let sm = aws_sdk_secretsmanager::Client::new(&aws);
        let secrets = Arc::new(AppSecrets::fetch(&sm, &stack.secret_id).await.unwrap_or_else(|e| panic!("{e}")));
        let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &stack.table));
        let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws)));
        let router = Router::new(
            APP_ID,
            secrets.webhook_token.clone(),
            guarded("CallbackRouterFunction", &store),
            queue.clone(),
            stack.c2c_queue.clone(),
            stack.group_queue.clone(),
        );
        let http = reqwest::Client::new();
        let chat = Arc::new(RestClient::new(
            http.clone(),
            rest_options(&tencent.base_url()),
            APP_ID,
            "administrator".into(),
            secrets.secret_key.clone(),
        ));
        let settings = Settings::from_lookup(|k| match k {
            "TCBOT_TABLE_NAME" => Some(stack.table.clone()),
            "TCBOT_SECRET_ID" => Some(stack.secret_id.clone()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let outbound = TencentOutbound::new(chat.clone(), 12_000, Duration::from_millis(100));
        let mut worker = Worker::new(
            guarded("BotC2cMessageFunction", &store),
            Arc::new(outbound),
            Arc::new(OpenAiClient::new(http)),
            queue,
            stack.c2c_dlq.clone(),
            secrets,
            &settings,
        );
        worker.defaults = defaults(&llm.base_url());
        worker.stream = StreamSettings {
            interval: Duration::from_millis(60),
            max_chunk_bytes: 40,
            max_message_bytes: 12_000,
            overflow: OverflowPolicy::Truncate,
            direct_mode: StreamMode::RobotStream,
            group_mode: StreamMode::Modify,
            group_modify_interval: Duration::from_millis(100),
            placeholder_after: Duration::from_secs(1),
        };
        worker.moderate_answers = ModerateAnswers::Auto;
        worker.history_ttl_secs = 3600;
        worker.max_receives = devtools::aws::MAX_RECEIVES;
        worker.retry_base = Duration::from_secs(1);
        worker.retry_max = Duration::from_secs(2);
        worker.finish_margin = Duration::from_secs(2);
        // Bursts are merged in `busy.rs`; elsewhere the window would only hold every answer.
        worker.busy.burst_window = Duration::ZERO;
        tweak(&mut worker);
        Env { sqs: aws_sdk_sqs::Client::new(&aws), stack, store, tencent, llm, router, worker, chat }
    }

    /// Delivers a signed webhook to the router handler.
    pub async fn webhook(&self, command: &str, body: &serde_json::Value) -> Ack {
        let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, now())));
        self.raw_webhook(&q, body.to_string().as_bytes()).await
    }

    pub async fn raw_webhook(&self, query: &str, body: &[u8]) -> Ack {
        let (ack, _) =
            self.router.handle(query, body, now(), "req-test").await.unwrap_or_else(|e| panic!("router: {e}"));
        ack
    }

    /// Runs the worker over both queues until they are empty, as the event source mapping
    /// would, waiting for messages that a failure made invisible for a while (at most a
    /// minute in all). Returns how many messages were handled.
    pub async fn drain(&self) -> usize {
        let started = std::time::Instant::now();
        let mut total = 0;
        // A failed message comes back after the worker's backoff (at most `retry_max`): until
        // then the queue is not taken as empty, whatever its approximate depth says (moto's,
        // under load, can miss a message whose visibility was just changed).
        let mut retry_due: Option<std::time::Instant> = None;
        loop {
            let mut n = 0;
            for q in [&self.stack.c2c_queue, &self.stack.group_queue] {
                // One message per invocation, as the template's BatchSize: 1 (moto may hand out a
                // FIFO group's retried messages out of order within a larger batch).
                let stats = devtools::esm::poll_once(&self.sqs, q, 1, 0, |ev| async {
                    Ok::<_, String>(self.worker.sqs_handler(ev, shared::store::now_ms() + 60_000).await)
                })
                .await
                .unwrap_or_else(|e| panic!("poll: {e}"));
                n += stats.received;
                if stats.failed > 0 {
                    retry_due = Some(std::time::Instant::now() + self.worker.retry_max + Duration::from_secs(1));
                }
            }
            total += n;
            if n > 0 {
                continue;
            }
            let waiting = self.depth(&self.stack.c2c_queue).await + self.depth(&self.stack.group_queue).await;
            let retry_pending = retry_due.is_some_and(|t| std::time::Instant::now() < t);
            if (waiting == 0 && !retry_pending) || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        total
    }

    /// Messages in a queue, visible plus in flight.
    pub async fn depth(&self, queue: &str) -> u64 {
        let (v, i) = devtools::esm::depth(&self.sqs, queue).await.unwrap_or_else(|e| panic!("{e}"));
        v + i
    }
}

pub fn c2c_body(from: &str, text: &str, seq: u64) -> serde_json::Value {
    serde_json::json!({
        "CallbackCommand": "Bot.OnC2CMessage", "From_Account": from, "To_Account": BOT,
        "MsgSeq": seq, "MsgRandom": 1000 + seq, "MsgTime": 1_700_000_000 + seq,
        "MsgKey": format!("{seq}_{}_{}", 1000 + seq, 1_700_000_000 + seq),
        "OnlineOnlyFlag": 0, "SendMsgResult": 0, "ErrorInfo": "send msg succeed",
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        "EventTime": "1700000000123"
    })
}

pub fn group_body(from: &str, text: &str, seq: u64) -> serde_json::Value {
    serde_json::json!({
        "CallbackCommand": "Bot.OnGroupMessage", "GroupId": "@TGS#grp1", "Type": "Public",
        "From_Account": from, "Operator_Account": from, "Random": 555 + seq, "MsgSeq": seq,
        "MsgTime": 1_700_000_000 + seq, "OnlineOnlyFlag": 0,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("@{BOT} {text}")}}],
        "AtRobots_Account": [BOT], "EventTime": 1_700_000_000_123u64
    })
}

/// The user and assistant turns of an LLM request, without the system prompt.
pub fn user_messages(req: &serde_json::Value) -> Vec<String> {
    req["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] != "system")
                .filter_map(|m| m["content"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
