//! `tcbot doctor` against moto server, the Tencent and LLM emulators and the router behind a
//! local HTTP server: a healthy deployment passes every check, and each check has a test that
//! breaks what it checks and sees it fail (exit code 1) with its reason.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use devtools::aws::{Stack, create_stack, local_config};
use devtools::llm_emu::{LlmEmulator, Script};
use devtools::tencent_emu::TencentEmulator;
use shared::queue::SqsQueue;
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::{DynamoStore, Store};
use std::sync::Arc;
use std::time::Duration;

const APP: u64 = 1_400_000_078;
const KEY: &str = "doctor-test-key";
const TOKEN: &str = "doctor-test-token";
const LLM_KEY: &str = "doctor-llm-key";
const BOT: &str = "@RBT#001";

struct Deployment {
    stack: Stack,
    tencent: TencentEmulator,
    llm: LlmEmulator,
    moto: String,
    dir: std::path::PathBuf,
    secret_file: String,
    webhook_url: String,
    store: DynamoStore,
    sqs: aws_sdk_sqs::Client,
}

fn secret(fields: serde_json::Value) -> serde_json::Value {
    let mut s = serde_json::json!({"SdkAppId": APP, "SecretKey": KEY, "WebhookToken": TOKEN, "LlmApiKey": LLM_KEY});
    if let (Some(s), Some(f)) = (s.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            if v.is_null() {
                s.remove(k);
            } else {
                s.insert(k.clone(), v.clone());
            }
        }
    }
    s
}

async fn route(State(r): State<Arc<Router>>, RawQuery(q): RawQuery, body: Bytes) -> String {
    match r.handle(&q.unwrap_or_default(), &body, shared::store::now_secs() as i64, "doctor").await {
        Ok((ack, _)) => ack.to_json(),
        Err(e) => e.to_string(),
    }
}

/// Serves the router with webhook token `token` (none: unsigned webhooks accepted); its URL.
async fn serve_router(moto: &str, stack: &Stack, token: Option<&str>) -> String {
    let cfg = local_config(moto).await;
    let router = Arc::new(Router::new(
        APP,
        token.map(SecretString::new),
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&cfg), &stack.table)),
        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&cfg))),
        stack.c2c_queue.clone(),
        stack.group_queue.clone(),
    ));
    let app = axum::Router::new().route("/webhook", axum::routing::post(route)).with_state(router);
    let listener = devtools::loopback_listener().await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/webhook", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A healthy deployment: the stack, a robot with a profile that exists in Tencent, an LLM that
/// wants the secret's key, the router checking the secret's token.
async fn deployment(name: &str) -> Deployment {
    let moto = devtools::moto::moto().unwrap_or_else(|e| panic!("{e}")).endpoint.clone();
    let cfg = local_config(&moto).await;
    let prefix = format!("doc{}{name}", std::process::id());
    let secret_json = secret(serde_json::json!({})).to_string();
    let stack = create_stack(&cfg, &prefix, &secret_json).await.unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let secret_file = dir.join("secret.json");
    std::fs::write(&secret_file, &secret_json).unwrap_or_else(|e| panic!("{e}"));
    let tencent = TencentEmulator::start(APP, KEY).await.unwrap_or_else(|e| panic!("{e}"));
    let llm = LlmEmulator::start(Some(LLM_KEY.into()), Duration::ZERO).await.unwrap_or_else(|e| panic!("{e}"));
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&cfg), &stack.table);
    let webhook_url = serve_router(&moto, &stack, Some(TOKEN)).await;
    let d = Deployment {
        stack,
        tencent,
        llm,
        moto,
        secret_file: secret_file.to_string_lossy().into_owned(),
        dir,
        webhook_url,
        store,
        sqs: aws_sdk_sqs::Client::new(&cfg),
    };
    let (code, out, err) = d.tcbot(&[], &["robot", "create", BOT]).await;
    assert_eq!(code, 0, "{out}{err}");
    let profile = shared::keys::profile(shared::bot::job::Platform::Tencent, BOT);
    d.store.put_doc(&profile, r#"{"system_prompt":"Be brief."}"#, None).await.unwrap_or_else(|e| panic!("{e}"));
    d
}

impl Deployment {
    /// Runs `tcbot` with the deployment's settings in the environment, `vars` over them.
    async fn tcbot(&self, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcbot"))
            .args(args)
            .env("TCBOT_LOCAL_SECRET_FILE", &self.secret_file)
            .env("TCBOT_TABLE_NAME", &self.stack.table)
            .env("TCBOT_TENCENT_BASE_URL", self.tencent.base_url())
            .env("TCBOT_LLM_BASE_URL", self.llm.base_url())
            .env("TCBOT_LLM_MODEL", "doctor-model")
            .env("TCBOT_WEBHOOK_URL", &self.webhook_url)
            .env("TCBOT_C2C_QUEUE_URL", &self.stack.c2c_queue)
            .env("TCBOT_GROUP_QUEUE_URL", &self.stack.group_queue)
            .env("TCBOT_STATS_QUEUE_URL", &self.stack.stats.0)
            .env("TCBOT_DLQ_URLS", format!("{},{}", self.stack.c2c_dlq, self.stack.group_dlq))
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .envs(vars.iter().copied())
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// `tcbot doctor --json`: the exit code and each check's (status, reason) by name.
    async fn doctor(&self, vars: &[(&str, &str)], args: &[&str]) -> (i32, Vec<(String, String, String)>) {
        let (code, out, err) = self.tcbot(vars, &[&["doctor", "--json"][..], args].concat()).await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let checks = v["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{out}"))
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (s("name"), s("status"), s("reason"))
            })
            .collect::<Vec<_>>();
        assert_eq!(v["ok"].as_bool(), Some(code == 0), "ok matches the exit code: {out}");
        (code, checks)
    }

    /// A secret file with `fields` changed (null removes one).
    fn secret_file_with(&self, name: &str, fields: serde_json::Value) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, secret(fields).to_string()).unwrap_or_else(|e| panic!("{e}"));
        path.to_string_lossy().into_owned()
    }
}

/// The status and reason of check `name`.
fn check<'a>(checks: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    checks
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

const ALL: [&str; 9] = ["secret", "tencent", "admin", "robots", "llm", "table", "queues", "webhook", "dlqs"];

#[tokio::test]
async fn a_healthy_deployment_passes_every_check() {
    let d = deployment("ok").await;
    let (code, checks) = d.doctor(&[], &[]).await;
    assert_eq!(code, 0, "{checks:?}");
    let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ALL);
    assert!(checks.iter().all(|c| c.1 == "PASS"), "{checks:?}");
    assert!(check(&checks, "robots").1.contains("all 1 robot"), "{checks:?}");
    // The LLM was asked for one token of the configured model.
    let req = d.llm.state.requests().pop().unwrap_or_default();
    assert_eq!((req["model"].as_str(), req["max_tokens"].as_u64()), (Some("doctor-model"), Some(1)), "{req}");
    // The test webhooks queued nothing.
    assert_eq!(devtools::esm::depth(&d.sqs, &d.stack.c2c_queue).await, Ok((0, 0)));
    // Plain words for people, no secret anywhere.
    let (code, out, _) = d.tcbot(&[], &["doctor"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("PASS  ")).count(), ALL.len(), "{out}");
    for secret in [KEY, TOKEN, LLM_KEY] {
        assert!(!out.contains(secret), "{out}");
    }
}

#[tokio::test]
async fn doctor_fails_the_secret_check_when_fields_are_missing() {
    let d = deployment("secret").await;
    let file = d.secret_file_with("no-llm.json", serde_json::json!({"LlmApiKey": null, "WebhookToken": null}));
    let (code, checks) = d.doctor(&[("TCBOT_LOCAL_SECRET_FILE", &file)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "secret");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("LlmApiKey") && reason.contains("WebhookToken"), "{reason}");
    // The router's own secret, as the stack keeps it, with no token in it.
    let cfg = local_config(&d.moto).await;
    let id = format!("{}-webhook", d.stack.table);
    let no_token = serde_json::json!({"SdkAppId": APP}).to_string();
    let sm = aws_sdk_secretsmanager::Client::new(&cfg);
    sm.create_secret().name(&id).secret_string(no_token).send().await.unwrap_or_else(|e| panic!("{e}"));
    let (code, checks) = d.doctor(&[("TCBOT_WEBHOOK_SECRET_ID", &id)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "secret");
    assert_eq!(status, "FAIL");
    assert!(reason.contains(&format!("no WebhookToken in {id}")) && !reason.contains("LlmApiKey"), "{reason}");
    let (code, checks) = d.doctor(&[("TCBOT_LOCAL_SECRET_FILE", "/nonexistent/secret.json")], &[]).await;
    assert_eq!(code, 1);
    assert_eq!(check(&checks, "secret").0, "FAIL");
    assert_eq!(check(&checks, "tencent").0, "SKIP", "{checks:?}");
}

#[tokio::test]
async fn doctor_fails_the_tencent_check_when_the_key_is_wrong() {
    let d = deployment("tencent").await;
    let file = d.secret_file_with("wrong-key.json", serde_json::json!({"SecretKey": "not-the-key"}));
    let (code, checks) = d.doctor(&[("TCBOT_LOCAL_SECRET_FILE", &file)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "tencent");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("70009") && !reason.contains("not-the-key"), "{reason}");
    assert_eq!((check(&checks, "admin").0, check(&checks, "robots").0), ("SKIP", "SKIP"));
}

#[tokio::test]
async fn doctor_fails_the_admin_check_when_the_admin_account_does_not_exist() {
    let d = deployment("admin").await;
    let file = d.secret_file_with("ghost.json", serde_json::json!({"AdminIdentifier": "ghost"}));
    let (code, checks) = d.doctor(&[("TCBOT_LOCAL_SECRET_FILE", &file)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "admin");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("ghost does not exist"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_robots_check_when_a_profiled_robot_is_not_in_tencent() {
    let d = deployment("robots").await;
    let profile = shared::keys::profile(shared::bot::job::Platform::Tencent, "@RBT#404");
    d.store.put_doc(&profile, "{}", None).await.unwrap_or_else(|e| panic!("{e}"));
    // A NIM robot's profile is not Tencent's to check.
    let nim = shared::keys::profile(shared::bot::job::Platform::Nim, "mybot");
    d.store.put_doc(&nim, "{}", None).await.unwrap_or_else(|e| panic!("{e}"));
    let (code, checks) = d.doctor(&[], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "robots");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("@RBT#404") && !reason.contains(BOT) && !reason.contains("mybot"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_llm_check_when_the_endpoint_refuses() {
    let d = deployment("llm").await;
    d.llm.state.push(Script::Status { status: 404 });
    let (code, checks) = d.doctor(&[], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "llm");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("404") && reason.contains("doctor-model"), "{reason}");
    // A wrong key: the emulator answers 401.
    let file = d.secret_file_with("wrong-llm.json", serde_json::json!({"LlmApiKey": "wrong-llm-key"}));
    let (_, checks) = d.doctor(&[("TCBOT_LOCAL_SECRET_FILE", &file)], &[]).await;
    let (status, reason) = check(&checks, "llm");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("401") && reason.contains("LlmApiKey") && !reason.contains("wrong-llm-key"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_table_check_when_the_table_does_not_exist() {
    let d = deployment("table").await;
    let (code, checks) = d.doctor(&[], &["--table", "no-such-table"]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "table");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("no-such-table"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_queues_check_when_a_queue_does_not_exist() {
    let d = deployment("queues").await;
    let missing = d.stack.c2c_queue.replace("bot-c2c", "no-such-queue");
    let (code, checks) = d.doctor(&[], &["--c2c-queue", &missing]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "queues");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("c2c") && reason.contains("no-such-queue"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_webhook_check_when_the_router_takes_a_forged_webhook_or_refuses_a_signed_one() {
    let d = deployment("webhook").await;
    let unsigned = serve_router(&d.moto, &d.stack, None).await;
    let (code, checks) = d.doctor(&[("TCBOT_WEBHOOK_URL", &unsigned)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "webhook");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("forged webhook was accepted"), "{reason}");
    let other = serve_router(&d.moto, &d.stack, Some("another-token")).await;
    let (code, checks) = d.doctor(&[("TCBOT_WEBHOOK_URL", &other)], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "webhook");
    assert_eq!(status, "FAIL");
    assert!(reason.contains("signed with the secret's WebhookToken was refused"), "{reason}");
    // Without a URL the check is skipped, and says how to give one.
    // Nothing failed, but a skipped check is not a pass: the exit code says so.
    let (code, checks) = d.doctor(&[("TCBOT_WEBHOOK_URL", "")], &[]).await;
    assert_eq!(code, 1, "{checks:?}");
    let (status, reason) = check(&checks, "webhook");
    assert_eq!(status, "SKIP");
    assert!(reason.contains("--webhook-url"), "{reason}");
}

#[tokio::test]
async fn doctor_fails_the_dlqs_check_when_a_dead_letter_waits() {
    let d = deployment("dlqs").await;
    d.sqs
        .send_message()
        .queue_url(&d.stack.group_dlq)
        .message_body("{}")
        .message_group_id("g")
        .message_deduplication_id("d")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, checks) = d.doctor(&[], &[]).await;
    assert_eq!(code, 1);
    let (status, reason) = check(&checks, "dlqs");
    assert_eq!(status, "FAIL");
    assert!(reason.contains(&d.stack.group_dlq) && reason.contains("holds 1 message"), "{reason}");
    assert!(!reason.contains(&d.stack.c2c_dlq), "the empty one is not blamed: {reason}");
}
