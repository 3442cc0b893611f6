//! `cargo bench -p devtools --bench deploy` (driven by `benches/measure-deploy.sh`): the built
//! function binaries measured as Lambda runs them. Each binary runs under a Lambda Runtime API
//! served here, with moto server (DynamoDB, SQS, Secrets Manager) and the local Tencent and LLM
//! servers behind it:
//! - size of the stripped binary;
//! - start to first reply: from the process's exec to its first response reaching the Runtime
//!   API (cold start included: settings, secret, clients), `DEPLOY_COLD` fresh processes each;
//! - peak RSS (`VmHWM`) and the warm duration per invocation over `DEPLOY_LOAD` invocations of
//!   one process (Lambda gives an instance one event at a time).
//!
//! Cold starts are measured for every profile in `DEPLOY_PROFILES` (the binaries built under
//! `$DEPLOY_TARGET_DIR/<profile>/`), the load for the first. The router's job in Python
//! (`benches/python-router/bootstrap.py`, run with `DEPLOY_PYTHON`) is measured the same way in
//! the same run. Prints markdown tables; figures and the cost table: benches/RESULTS.md.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use devtools::aws::{create_stack, local_config};
use devtools::llm_emu::LlmEmulator;
use devtools::tencent_emu::TencentEmulator;
use serde_json::{Value, json};
use shared::webhook::CallbackQuery;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

const APP_ID: u64 = 1_400_000_000;
const KEY: &str = "deploy-bench-key";
const TOKEN: &str = "local-dev-token";
const BOT: &str = "@RBT#001";
const NIM_APP_KEY: &str = "deploy-nim-appkey";
const NIM_SECRET: &str = "deploy-nim-secret";

/// The Runtime API's side of one process: events waiting to be taken, and the replies.
struct Rt {
    waiting: Mutex<VecDeque<(String, Vec<u8>)>>,
    ready: Notify,
    replies: mpsc::UnboundedSender<(String, Instant, bool, Vec<u8>)>,
}

async fn next(State(rt): State<Arc<Rt>>) -> (HeaderMap, Vec<u8>) {
    loop {
        let notified = rt.ready.notified();
        let item = rt.waiting.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some((id, body)) = item {
            let mut h = HeaderMap::new();
            let deadline = shared::store::now_ms() + 30_000;
            let pairs = [
                ("lambda-runtime-aws-request-id", id),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench".into()),
                ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into()),
                ("content-type", "application/json".into()),
            ];
            for (k, v) in pairs {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            return (h, body);
        }
        notified.await;
    }
}

async fn reply(
    State(rt): State<Arc<Rt>>,
    Path((id, kind)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> StatusCode {
    rt.replies.send((id, Instant::now(), kind == "error", body.to_vec())).ok();
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Rt>>, body: axum::body::Bytes) -> StatusCode {
    rt.replies.send(("init".into(), Instant::now(), true, body.to_vec())).ok();
    StatusCode::ACCEPTED
}

/// What one process did: start to first reply, warm durations of the others, peak RSS.
struct Run {
    start: Duration,
    warm: Vec<Duration>,
    rss_kib: u64,
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `cmd` with `env` as Lambda would, hands it `events` one at a time and checks each reply
/// contains `expect`.
async fn run(cmd: &[String], env: &[(String, String)], events: Vec<Vec<u8>>, expect: &str) -> Result<Run, String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rt = Arc::new(Rt { waiting: Mutex::new(VecDeque::new()), ready: Notify::new(), replies: tx });
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(reply))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt.clone());
    let listener = devtools::loopback_listener().await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut events = events.into_iter().enumerate();
    let push = |i: usize, body: Vec<u8>| {
        rt.waiting.lock().unwrap_or_else(|p| p.into_inner()).push_back((format!("req-{i}"), body));
        rt.ready.notify_waiters();
    };
    let (i, first) = events.next().ok_or("no event")?;
    push(i, first);
    let (program, args) = cmd.split_first().ok_or("no command")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let mut wait = async || -> Result<Instant, String> {
        let (id, at, error, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .map_err(|_| "no reply within 60 s".to_owned())?
            .ok_or("runtime API closed")?;
        let text = String::from_utf8_lossy(&body);
        if error || !text.contains(expect) {
            return Err(format!("{id}: {} reply without {expect:?}: {text}", if error { "error" } else { "a" }));
        }
        if std::env::var_os("DEPLOY_SHOW").is_some() {
            eprintln!("{program} {id}: {}", text.chars().take(300).collect::<String>());
        }
        Ok(at)
    };
    let outcome = async {
        let start = wait().await?.duration_since(started);
        let mut warm = Vec::new();
        for (i, ev) in events {
            let sent = Instant::now();
            push(i, ev);
            warm.push(wait().await?.duration_since(sent));
        }
        Ok::<_, String>((start, warm))
    }
    .await;
    let rss_kib = peak_rss_kib(pid);
    child.start_kill().ok();
    let stderr = match child.wait_with_output().await {
        Ok(o) => {
            String::from_utf8_lossy(&o.stderr).chars().rev().take(1500).collect::<String>().chars().rev().collect()
        }
        Err(e) => e.to_string(),
    };
    server.abort();
    let (start, warm) = outcome.map_err(|e| format!("{e}\n{program} said: {stderr}"))?;
    Ok(Run { start, warm, rss_kib })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn read_event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The sample API Gateway event with a freshly signed query and the webhook `body`.
fn http_event(body: &Value, command: &str) -> Vec<u8> {
    let mut ev = read_event("callback-router.bot-c2c-message.json");
    let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, shared::store::now_secs() as i64)));
    let params: serde_json::Map<String, Value> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    ev["rawQueryString"] = Value::String(q);
    ev["queryStringParameters"] = Value::Object(params);
    ev["body"] = Value::String(body.to_string());
    ev["isBase64Encoded"] = Value::Bool(false);
    ev.to_string().into_bytes()
}

/// A new user's question to the robot, as the router receives it.
fn router_event(i: usize) -> Vec<u8> {
    let body = json!({"CallbackCommand": "Bot.OnC2CMessage", "From_Account": format!("user{i}"), "To_Account": BOT,
        "MsgSeq": i, "MsgRandom": 1000 + i, "MsgTime": 1_700_000_000u64 + i as u64,
        "MsgKey": format!("{i}_{}_{}", 1000 + i, 1_700_000_000 + i),
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "What is the weather like tomorrow in Shenzhen?"}}]});
    http_event(&body, "Bot.OnC2CMessage")
}

fn sqs_event(body: String) -> Vec<u8> {
    json!({"Records": [{"messageId": format!("m-{}", next_id()), "receiptHandle": "rh", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "MessageGroupId": "g"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q.fifo", "awsRegion": "us-east-1"}]})
    .to_string()
    .into_bytes()
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A one-to-one question for the worker, from a new user each time (so each is answered).
fn c2c_job_event(i: usize) -> Vec<u8> {
    let m = serde_json::from_value(json!({"From_Account": format!("d{i}-{}", std::process::id()), "To_Account": BOT,
        "MsgSeq": i, "MsgRandom": i, "MsgTime": 1_700_000_000u64,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]}))
    .unwrap_or_else(|e| panic!("{e}"));
    let job = shared::tencent::intake::c2c_job(&format!("r{i}"), shared::store::now_ms(), &m);
    sqs_event(serde_json::to_string(&job).unwrap_or_default())
}

fn group_job_event(i: usize) -> Vec<u8> {
    let m = serde_json::from_value(json!({"CallbackCommand": "Bot.OnGroupMessage", "GroupId": "@TGS#deploy", "Type": "Public",
        "From_Account": format!("g{i}-{}", std::process::id()), "MsgSeq": i, "Random": i, "MsgTime": 1_700_000_000u64,
        "AtRobots_Account": [BOT], "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("@{BOT} question {i}")}}]}))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut job = shared::tencent::intake::group_job(&format!("g{i}"), shared::store::now_ms(), &m, BOT);
    job.per_member = true;
    sqs_event(serde_json::to_string(&job).unwrap_or_default())
}

/// A NIM message copy of a new message to the robot, signed with the app's secret now.
fn nim_event(i: usize) -> Vec<u8> {
    let mut ev = read_event("nim-callback-router.person.json");
    let mut copy: Value = serde_json::from_str(ev["body"].as_str().unwrap_or("{}")).unwrap_or_else(|e| panic!("{e}"));
    copy["fromAccount"] = json!(format!("n{i}-{}", std::process::id()));
    copy["msgidClient"] = json!(format!("c{i}-{}", std::process::id()));
    copy["msgidServer"] = json!(format!("{}", 1_000_000 + i));
    let body = copy.to_string();
    let now = shared::store::now_ms().to_string();
    let md5 = shared::nim::checksum::body_md5(body.as_bytes());
    ev["headers"]["appkey"] = json!(NIM_APP_KEY);
    ev["headers"]["curtime"] = json!(now);
    ev["headers"]["checksum"] = json!(shared::nim::checksum::copy_checksum(NIM_SECRET, &md5, &now));
    ev["headers"]["md5"] = json!(md5);
    ev["body"] = Value::String(body);
    ev.to_string().into_bytes()
}

/// Distinct pseudo-words of 5-9 letters.
fn word(i: usize) -> String {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..5 + i % 5)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

fn policy_json() -> String {
    let patterns: Vec<String> =
        (0..500).map(|i| word(10_000 + i)).map(|w| format!("{}[^a-z]?{}", &w[..2], &w[2..])).collect();
    json!({"rules": [
        {"words": (0..5_000).map(word).collect::<Vec<_>>(), "action": {"kind": "mask"}},
        {"patterns": patterns, "action": {"kind": "mask"}},
    ]})
    .to_string()
}

type EventFn = fn(usize) -> Vec<u8>;

/// A number not used before in this run: every event is a new message (a worker does not
/// answer a message twice, so a repeated one would skip the work).
fn unique() -> usize {
    1_000_000 + next_id() as usize
}

/// Each function: binary, what it is fed, what its reply contains.
fn functions() -> Vec<(&'static str, EventFn, &'static str)> {
    fn sample(name: &'static str) -> Vec<u8> {
        read_event(name).to_string().into_bytes()
    }
    vec![
        ("callback-router", router_event, "ActionStatus"),
        ("bot-c2c-message", c2c_job_event, "batchItemFailures\":[]"),
        ("bot-group-message", group_job_event, "batchItemFailures\":[]"),
        ("group-before-send-msg", |_| sample("group-before-send-msg.text.json"), "ActionStatus"),
        ("c2c-before-send-msg", |_| sample("c2c-before-send-msg.text.json"), "ActionStatus"),
        ("group-after-send-msg", |_| sample("group-after-send-msg.like.json"), "batchItemFailures\":[]"),
        ("state-change", |_| sample("state-change.login.json"), "batchItemFailures\":[]"),
        ("group-after-create-group", |_| sample("group-after-create-group.community.json"), "batchItemFailures"),
        ("group-after-new-member-join", |_| sample("group-after-new-member-join.welcome.json"), "batchItemFailures"),
        ("group-team-events", |_| sample("group-team-events.group-full.json"), "batchItemFailures"),
        ("nim-callback-router", nim_event, "\\\"outcome\\\":\\\"queued"),
        ("usersig", |_| sample("usersig.request.json"), "statusCode"),
    ]
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        if let Err(e) = measure().await {
            eprintln!("deploy bench: {e}");
            std::process::exit(1);
        }
    });
}

async fn measure() -> Result<(), String> {
    let target = std::env::var("DEPLOY_TARGET_DIR")
        .or_else(|_| std::env::var("CARGO_TARGET_DIR"))
        .unwrap_or_else(|_| format!("{}/../target", env!("CARGO_MANIFEST_DIR")));
    let profiles: Vec<String> =
        std::env::var("DEPLOY_PROFILES").unwrap_or_else(|_| "release".into()).split(',').map(str::to_owned).collect();
    let cold = env_num("DEPLOY_COLD", 5).max(1);
    let load = env_num("DEPLOY_LOAD", 200).max(2);
    let python = std::env::var("DEPLOY_PYTHON").unwrap_or_else(|_| "python3".into());

    let moto = devtools::moto::moto()?;
    let aws = local_config(&moto.endpoint).await;
    let secret = json!({"SdkAppId": APP_ID, "SecretKey": KEY, "AdminIdentifier": "administrator",
        "WebhookToken": TOKEN, "LlmApiKey": "k", "NimAppKey": NIM_APP_KEY, "NimAppSecret": NIM_SECRET})
    .to_string();
    let stack = create_stack(&aws, &format!("deploy{}", std::process::id()), &secret).await?;
    // The moderation functions read the app's policy: 5,000 words and 500 patterns (the size the
    // hot-path bench uses), so that their memory and start include compiling it.
    let store = shared::store::DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &stack.table);
    if std::env::var_os("DEPLOY_NO_POLICY").is_none() {
        shared::store::Store::put_doc(&store, &shared::moderation::Policy::app_key(), &policy_json(), None)
            .await
            .map_err(|e| format!("policy: {e}"))?;
    }
    let tencent = TencentEmulator::start(APP_ID, KEY).await.map_err(|e| e.to_string())?;
    // A fast model: the LLM's wait is not ours to measure (the cost table states one).
    let llm = LlmEmulator::start(None, Duration::from_millis(1)).await.map_err(|e| e.to_string())?;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("RUST_LOG", "info"),
        ("TCBOT_TABLE_NAME", &stack.table),
        ("TCBOT_SECRET_ID", &stack.secret_id),
        ("TCBOT_NIM_SECRET_ID", &stack.secret_id),
        ("TCBOT_TENCENT_BASE_URL", &tencent.base_url()),
        ("TCBOT_LLM_BASE_URL", &llm.base_url()),
        ("TCBOT_LLM_MODEL", "emulated"),
        ("TCBOT_DAILY_QUOTA", "0"),
        ("TCBOT_C2C_QUEUE_URL", &stack.c2c_queue),
        ("TCBOT_GROUP_QUEUE_URL", &stack.group_queue),
        ("TCBOT_DLQ_URL", &stack.c2c_dlq),
        ("TCBOT_STATS_QUEUE_URL", &stack.stats.0),
        ("TCBOT_PRESENCE_QUEUE_URL", &stack.presence.0),
        ("TCBOT_GROUP_CREATED_QUEUE_URL", &stack.group_created.0),
        ("TCBOT_MEMBER_JOINED_QUEUE_URL", &stack.member_joined.0),
        ("TCBOT_TEAM_EVENTS_QUEUE_URL", &stack.stats.0),
        ("TCBOT_NIM_ROBOTS", r#"{"mybot": "MyBot"}"#),
        ("TCBOT_APP_USERSIG_CLAIM", "sub"),
        ("TCBOT_WEBHOOK_TOKEN", TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    println!("# Deployed binaries under a Lambda Runtime API (moto, local Tencent and LLM servers)");
    println!("\ncold starts: {cold} fresh processes per binary; load: {load} invocations of one process\n");
    println!("| profile | function | binary bytes | start to first reply, median (min-max) ms |");
    println!("|---|---|---:|---:|");
    for profile in &profiles {
        for (bin, event, expect) in functions() {
            let path = format!("{target}/{profile}/{bin}");
            let Ok(size) = std::fs::metadata(&path).map(|m| m.len()) else {
                println!("| {profile} | {bin} | not built | |");
                continue;
            };
            let mut starts = Vec::new();
            for _ in 0..cold {
                let r = run(std::slice::from_ref(&path), &env, vec![event(unique())], expect).await?;
                starts.push(r.start);
            }
            let (lo, hi) = (starts.iter().min().copied(), starts.iter().max().copied());
            println!(
                "| {profile} | {bin} | {size} | {} ({}-{}) |",
                ms(median(&mut starts)),
                ms(lo.unwrap_or_default()),
                ms(hi.unwrap_or_default())
            );
        }
    }

    let python_cmd =
        vec![python.clone(), format!("{}/../benches/python-router/bootstrap.py", env!("CARGO_MANIFEST_DIR"))];
    let mut starts = Vec::new();
    for _ in 0..cold {
        starts.push(run(&python_cmd, &env, vec![router_event(unique())], "ActionStatus").await?.start);
    }
    let (lo, hi) = (starts.iter().min().copied(), starts.iter().max().copied());
    println!(
        "| python | router (boto3 put + send) | {} | {} ({}-{}) |",
        std::fs::metadata(&python_cmd[1]).map(|m| m.len()).unwrap_or(0),
        ms(median(&mut starts)),
        ms(lo.unwrap_or_default()),
        ms(hi.unwrap_or_default())
    );

    let profile = profiles.first().ok_or("no profile")?;
    println!("\n## Under load ({profile}): {load} invocations of one process\n");
    println!("| function | peak RSS KiB | warm duration median (p90) ms |");
    println!("|---|---:|---:|");
    let mut loaded: Vec<(String, Vec<String>, EventFn, &str)> = functions()
        .into_iter()
        .map(|(bin, ev, expect)| (bin.to_owned(), vec![format!("{target}/{profile}/{bin}")], ev, expect))
        .collect();
    loaded.push(("python router (boto3 put + send)".into(), python_cmd, router_event, "ActionStatus"));
    for (name, cmd, event, expect) in loaded {
        if cmd.len() == 1 && !std::path::Path::new(&cmd[0]).exists() {
            println!("| {name} | not built | |");
            continue;
        }
        let events = (0..load).map(|_| event(unique())).collect();
        let mut r = run(&cmd, &env, events, expect).await?;
        r.warm.sort_unstable();
        let p90 = r.warm.get(r.warm.len() * 9 / 10).copied().unwrap_or_default();
        println!("| {name} | {} | {} ({}) |", r.rss_kib, ms(median(&mut r.warm)), ms(p90));
    }
    Ok(())
}
