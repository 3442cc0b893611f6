//! Every `tcbot` command against the local servers: moto server for AWS, the Tencent emulator,
//! and the router handler behind a local HTTP server for `send`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use devtools::aws::{Stack, create_stack, local_config};
use devtools::tencent_emu::TencentEmulator;
use shared::queue::SqsQueue;
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::{DynamoStore, Role, Store, Turn};
use std::sync::Arc;

const APP: u64 = 1_400_000_077;
const KEY: &str = "cli-test-key";
const TOKEN: &str = "cli-test-token";
const NIM_KEY: &str = "cli-nim-appkey";
const NIM_SECRET: &str = "cli-nim-app-secret";

struct Setup {
    stack: Stack,
    tencent: TencentEmulator,
    secret_file: std::path::PathBuf,
    moto: String,
    store: DynamoStore,
    sqs: aws_sdk_sqs::Client,
}

async fn setup(name: &str) -> Setup {
    let moto = devtools::moto::moto().unwrap_or_else(|e| panic!("{e}")).endpoint.clone();
    let cfg = local_config(&moto).await;
    let secret = serde_json::json!({"SdkAppId": APP, "SecretKey": KEY, "WebhookToken": TOKEN,
        "NimAppKey": NIM_KEY, "NimAppSecret": NIM_SECRET})
    .to_string();
    let prefix = format!("cli{}{name}", std::process::id());
    let stack = create_stack(&cfg, &prefix, &secret).await.unwrap_or_else(|e| panic!("{e}"));
    let secret_file = std::env::temp_dir().join(format!("{prefix}.json"));
    std::fs::write(&secret_file, &secret).unwrap_or_else(|e| panic!("{e}"));
    let tencent = TencentEmulator::start(APP, KEY).await.unwrap_or_else(|e| panic!("{e}"));
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&cfg), &stack.table);
    Setup { stack, tencent, secret_file, moto, store, sqs: aws_sdk_sqs::Client::new(&cfg) }
}

impl Setup {
    /// Puts `job` in the one-to-one DLQ as a worker records it.
    async fn dead_letter(&self, job: &str) {
        let record = serde_json::json!({"reason": "LLM down", "job": job}).to_string();
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.stack.c2c_dlq)
            .message_body(record)
            .message_group_id("g")
            .message_deduplication_id("d")
            .send()
            .await;
        sent.unwrap_or_else(|e| panic!("{e}"));
    }

    async fn tcbot(&self, args: &[&str]) -> (i32, String, String) {
        self.tcbot_in(std::path::Path::new("."), args).await
    }

    /// Runs `tcbot` in the directory `dir`.
    async fn tcbot_in(&self, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
        self.tcbot_with(dir, &[("TCBOT_LOCAL_SECRET_FILE", self.secret_file.to_string_lossy().as_ref())], args).await
    }

    /// Runs `tcbot` in the directory `dir` with the test's environment and `vars`.
    async fn tcbot_with(&self, dir: &std::path::Path, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcbot"))
            .args(args)
            .current_dir(dir)
            .envs(vars.iter().copied())
            .env("TCBOT_TABLE_NAME", &self.stack.table)
            .env("TCBOT_TENCENT_BASE_URL", self.tencent.base_url())
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }
}

#[tokio::test]
async fn usersig_is_valid_for_the_app() {
    let s = setup("sig").await;
    let (code, out, _) = s.tcbot(&["usersig", "--identifier", "alice", "--expire", "3600"]).await;
    assert_eq!(code, 0);
    let doc = shared::tencent::usersig::verify(APP, KEY.as_bytes(), "alice", out.trim(), shared::store::now_secs());
    assert_eq!(doc.map(|d| d.expire), Ok(3600));
}

#[tokio::test]
async fn robots_are_created_listed_and_deleted() {
    let s = setup("robot").await;
    assert_eq!(s.tcbot(&["robot", "create", "@RBT#001", "--nick", "Jarvis"]).await.0, 0);
    let (code, out, _) = s.tcbot(&["robot", "list"]).await;
    assert_eq!((code, out.trim()), (0, "@RBT#001"));
    assert_eq!(s.tcbot(&["robot", "delete", "@RBT#001"]).await.0, 0);
    assert!(s.tencent.state.robots().is_empty());
    let (code, _, err) = s.tcbot(&["robot", "delete", "@RBT#001"]).await;
    assert_eq!(code, 1, "Tencent's refusal is exit code 1");
    assert!(err.contains("10004"), "{err}");
    let (code, _, err) = s.tcbot(&["robot", "create", "jarvis"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("@RBT#"), "{err}");
}

#[tokio::test]
async fn profiles_are_validated_saved_and_shown() {
    let s = setup("profile").await;
    let (code, _, _) =
        s.tcbot(&["profile", "set", "@RBT#001", "--json", r#"{"system_prompt":"Be brief.","max_turns":6}"#]).await;
    assert_eq!(code, 0);
    let (_, out, _) = s.tcbot(&["profile", "show", "@RBT#001"]).await;
    assert!(out.contains("Be brief.") && out.contains("\"max_turns\":6"), "{out}");
    let (code, _, err) = s.tcbot(&["profile", "set", "@RBT#001", "--json", r#"{"max_turn":6}"#]).await;
    assert_eq!(code, 2, "a misspelt field is refused");
    assert!(err.contains("invalid profile"), "{err}");
}

async fn route(State(r): State<Arc<Router>>, RawQuery(q): RawQuery, body: Bytes) -> String {
    match r.handle(&q.unwrap_or_default(), &body, shared::store::now_secs() as i64, "cli-send").await {
        Ok((ack, _)) => ack.to_json(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn send_signs_an_event_file_that_the_router_accepts() {
    let s = setup("send").await;
    let cfg = local_config(&s.moto).await;
    let router = Arc::new(Router::new(
        APP,
        Some(SecretString::new(TOKEN)),
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&cfg), &s.stack.table)),
        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&cfg))),
        s.stack.c2c_queue.clone(),
        s.stack.group_queue.clone(),
    ));
    let app = axum::Router::new().route("/webhook", axum::routing::post(route)).with_state(router);
    let listener = devtools::loopback_listener().await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/webhook", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let event = format!("{}/../events/callback-router.bot-c2c-message.json", env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = s.tcbot(&["send", &url, "--event", &event]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(r#""ActionStatus":"OK""#), "{out}");
    let (visible, _) = devtools::esm::depth(&s.sqs, &s.stack.c2c_queue).await.unwrap_or_default();
    assert_eq!(visible, 1, "the signed webhook was queued");
    // A bare body with a wrong secret is refused: exit code 1.
    let bad_secret = std::env::temp_dir().join(format!("cli-bad-{}.json", std::process::id()));
    std::fs::write(&bad_secret, format!(r#"{{"SdkAppId":{APP},"SecretKey":"k","WebhookToken":"wrong"}}"#))
        .unwrap_or_default();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcbot"))
        .args(["send", &url, "--event", &event])
        .env("TCBOT_LOCAL_SECRET_FILE", &bad_secret)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn conversations_are_shown_and_cleared() {
    let s = setup("conv").await;
    let t = Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: "remember me".into() };
    s.store.append_turn("c2c#@RBT#001#alice", &t, 3600).await.unwrap_or_else(|e| panic!("{e}"));
    let (code, out, _) = s.tcbot(&["conversation", "show", "--bot", "@RBT#001", "--user", "alice"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("user: remember me"), "{out}");
    assert_eq!(s.tcbot(&["conversation", "clear", "--bot", "@RBT#001", "--user", "alice"]).await.0, 0);
    assert_eq!(s.store.recent_turns("c2c#@RBT#001#alice", 0, 10).await.map(|t| t.len()), Ok(0));
    assert_eq!(s.tcbot(&["conversation", "show"]).await.0, 2, "no selector is a usage error");
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let s = setup("dlq").await;
    let job = serde_json::json!({"request_id": "r1", "received_ms": 1, "bot": "@RBT#001", "msg": {"kind": "c2c", "event": {
        "From_Account": "alice", "To_Account": "@RBT#001", "MsgSeq": 1, "MsgRandom": 2, "MsgTime": 3, "MsgBody": []}}});
    let record = serde_json::json!({"reason": "LLM down", "job": job.to_string()}).to_string();
    s.sqs
        .send_message()
        .queue_url(&s.stack.c2c_dlq)
        .message_body(record)
        .message_group_id("g")
        .message_deduplication_id("d")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.store
        .put_doc("reply#c2c#@RBT#001#alice#1_2_3", r#"{"state":"done"}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, _) = s.tcbot(&["dlq", "list", &s.stack.c2c_dlq]).await;
    assert_eq!(code, 0);
    assert!(out.contains("c2c#@RBT#001#alice#1_2_3") && out.contains("LLM down"), "{out}");
    let (code, out, _) = s.tcbot(&["dlq", "redrive", &s.stack.c2c_dlq, &s.stack.c2c_queue]).await;
    assert_eq!((code, out.trim()), (0, "redriven 1, parked 0, left 0"));
    assert_eq!(devtools::esm::depth(&s.sqs, &s.stack.c2c_queue).await.map(|d| d.0), Ok(1));
    assert_eq!(s.store.get_doc("reply#c2c#@RBT#001#alice#1_2_3").await, Ok(None), "the job will be answered again");
}

/// A C2C job of `user` with `seq`, as the router queues it.
fn c2c_job(user: &str, seq: u64) -> String {
    serde_json::json!({"request_id": format!("r{seq}"), "received_ms": 1, "bot": "@RBT#001", "msg": {"kind": "c2c",
        "event": {"From_Account": user, "To_Account": "@RBT#001", "MsgSeq": seq, "MsgRandom": 2, "MsgTime": 3, "MsgBody": []}}})
    .to_string()
}

/// Receives and deletes every message of a FIFO queue: (group id, body) in delivery order.
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<(String, String)> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let mut got = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(A::MessageGroupId)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return got;
        }
        for m in msgs {
            let group = m.attributes().and_then(|a| a.get(&A::MessageGroupId)).cloned().unwrap_or_default();
            got.push((group, m.body().unwrap_or_default().to_owned()));
            let handle = m.receipt_handle().unwrap_or_default();
            sqs.delete_message().queue_url(queue).receipt_handle(handle).send().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[tokio::test]
async fn redrive_sends_back_every_readable_dead_letter_and_parks_the_unreadable_ones() {
    use shared::bot::job::Job;
    use shared::queue::fifo_id;
    let s = setup("redrive25").await;
    let conv = |user: &str| fifo_id(&format!("c2c#@RBT#001#{user}"));
    // 25 dead letters of 5 conversations, in each conversation's FIFO group: the worker's
    // records and raw jobs moved by SQS, alternately. Two are unreadable, each ahead of readable
    // records of its group: a body that is not JSON, and a record whose job is not JSON.
    let garbage = "not JSON {".to_owned();
    let bad_job = serde_json::json!({"reason": "malformed job: invalid JSON", "job": "{oops", "at_ms": 1}).to_string();
    for seq in 0..25u64 {
        let user = format!("u{}", seq % 5);
        let body = match seq {
            7 => garbage.clone(),
            13 => bad_job.clone(),
            _ if seq % 2 == 0 => {
                serde_json::json!({"reason": "LLM down", "job": c2c_job(&user, seq), "at_ms": 1}).to_string()
            }
            _ => c2c_job(&user, seq),
        };
        s.sqs
            .send_message()
            .queue_url(&s.stack.c2c_dlq)
            .message_body(body)
            .message_group_id(conv(&user))
            .message_deduplication_id(format!("dl{seq}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = std::env::temp_dir().join(format!("cli-redrive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));

    let (code, out, err) = s.tcbot_in(&dir, &["dlq", "redrive", &s.stack.c2c_dlq, &s.stack.c2c_queue]).await;

    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("redriven 23, parked 2, left 0"), "{out}{err}");
    let park = dir.join("tcbot-dlq-parked.jsonl");
    assert!(out.contains("tcbot-dlq-parked.jsonl"), "the summary says where the parked records are: {out}");
    let parked: Vec<serde_json::Value> = std::fs::read_to_string(&park)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut bodies: Vec<&str> = parked.iter().filter_map(|p| p["body"].as_str()).collect();
    bodies.sort_unstable();
    let mut expected = [bad_job.as_str(), garbage.as_str()];
    expected.sort_unstable();
    assert_eq!(bodies, expected, "each parked record is kept whole");
    assert!(parked.iter().all(|p| p["message_id"].is_string() && p["error"].is_string()), "{parked:?}");
    assert_eq!(devtools::esm::depth(&s.sqs, &s.stack.c2c_dlq).await, Ok((0, 0)), "the DLQ is empty");
    let back = drain(&s.sqs, &s.stack.c2c_queue).await;
    assert_eq!(back.len(), 23);
    let mut last_seq = std::collections::HashMap::new();
    for (group, body) in &back {
        let job: Job = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(group, &fifo_id(&job.ordering_key()), "sent back in its conversation's group");
        // A one-to-one message's id is `MsgSeq_MsgRandom_MsgTime`.
        let seq: u64 = job.msg_id.split('_').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{body}"));
        let prev = last_seq.insert(job.sender.clone(), seq);
        assert!(prev < Some(seq), "in order within {}: {prev:?} then {seq}", job.sender);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn when_a_redrive_cannot_send_back_the_record_stays_in_the_dlq() {
    let s = setup("redrivefail").await;
    s.dead_letter(&c2c_job("alice", 1)).await;
    let missing = s.stack.c2c_queue.replace("bot-c2c", "no-such-queue");

    let (code, out, err) = s.tcbot(&["dlq", "redrive", &s.stack.c2c_dlq, &missing]).await;

    assert_eq!((code, out.trim()), (1, "redriven 0, parked 0, left 1"), "{err}");
    assert!(err.contains("could not send c2c#@RBT#001#alice#1_2_3 back"), "{err}");
    let (visible, in_flight) = devtools::esm::depth(&s.sqs, &s.stack.c2c_dlq).await.unwrap_or_default();
    assert_eq!(visible + in_flight, 1, "not deleted");
}

#[tokio::test]
async fn help_and_bad_usage() {
    let s = setup("help").await;
    let (code, out, _) = s.tcbot(&["help"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Usage: tcbot") && out.contains("robot") && out.contains("doctor"), "{out}");
    assert_eq!(s.tcbot(&["frobnicate"]).await.0, 2);
    assert_eq!(s.tcbot(&["robot", "list", "--bogus", "x"]).await.0, 2);
}

#[tokio::test]
async fn moderation_policies_are_validated_saved_and_tested() {
    let s = setup("mod").await;
    let policy =
        r#"{"rules":[{"words":["bad"],"action":{"kind":"mask"}},{"patterns":["sc[a4]m"],"action":{"kind":"refuse"}}]}"#;
    let (code, out, err) = s.tcbot(&["moderation", "set", "--app", "--json", policy]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = s.tcbot(&["moderation", "show", "--app"]).await;
    assert!(out.contains("sc[a4]m"), "{out}");
    let (_, out, _) = s.tcbot(&["moderation", "test", "so BAD"]).await;
    assert!(out.contains(r#""Text":"so ***""#), "{out}");
    let (_, out, _) = s.tcbot(&["moderation", "test", "a sc4m", "--group", "@TGS#1"]).await;
    assert!(out.contains(r#""ErrorCode":1"#), "{out}");
    let (code, _, err) = s
        .tcbot(&[
            "moderation",
            "set",
            "--group",
            "@TGS#1",
            "--json",
            r#"{"rules":[{"patterns":["("],"action":{"kind":"refuse"}}]}"#,
        ])
        .await;
    assert_eq!(code, 2);
    assert!(err.contains("not a valid regular expression"), "{err}");
    // A group's policy judges only group messages: a C2C refusal code could never be used.
    let c2c_code = r#"{"rules":[{"words":["x"],"action":{"kind":"refuse_with","code":120050,"text":"no"}}]}"#;
    let (code, _, err) = s.tcbot(&["moderation", "set", "--group", "@TGS#1", "--json", c2c_code]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must be in 10100-10200"), "{err}");
    assert_eq!(s.tcbot(&["moderation", "set", "--app", "--json", c2c_code]).await.0, 0, "the app's judges C2C too");
}

#[tokio::test]
async fn draws_open_close_with_a_recorded_seed_and_figures_are_read() {
    let s = setup("draw").await;
    assert_eq!(s.tcbot(&["draw", "open", "@TGS#g", "lucky"]).await.0, 0);
    assert_eq!(s.tcbot(&["draw", "open", "@TGS#g", "again"]).await.0, 1, "one open draw per group");
    let doc = s.store.get_doc(&shared::stats::Draw::key("@TGS#g")).await.ok().flatten().unwrap_or_default();
    let draw: shared::stats::Draw = serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{e}"));
    for u in ["ann", "bob", "cat", "dan"] {
        let t = Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: u.into() };
        s.store.append_turn(&shared::stats::Draw::entrants_log("@TGS#g", &draw.id), &t, 3600).await.ok();
    }
    let (code, out, _) = s.tcbot(&["draw", "close", "@TGS#g", "--winners", "2", "--seed", "99"]).await;
    assert_eq!(code, 0);
    let people: Vec<String> = ["ann", "bob", "cat", "dan"].map(String::from).to_vec();
    for w in shared::stats::pick_winners(&people, 2, 99) {
        assert!(out.contains(&format!("winner: {w}")), "{out}");
    }
    let (_, out, _) = s.tcbot(&["draw", "show", "@TGS#g"]).await;
    assert!(out.contains("seed: 99") && out.contains("entrants (4): ann, bob, cat, dan"), "{out}");
    s.store.incr(&shared::stats::group_counter("@TGS#g", "likes"), 3, None).await.ok();
    s.store.incr(&shared::stats::user_counter(None, "ann", "messages"), 5, None).await.ok();
    s.store.incr(shared::presence::ONLINE_KEY, 2, None).await.ok();
    s.store.incr(&shared::presence::total_key("ann"), 90_000, None).await.ok();
    assert!(s.tcbot(&["stats", "group", "@TGS#g"]).await.1.contains("likes: 3"));
    assert!(s.tcbot(&["stats", "user", "ann"]).await.1.contains("messages: 5"));
    assert_eq!(s.tcbot(&["presence", "online"]).await.1.trim(), "2");
    assert!(s.tcbot(&["presence", "user", "ann"]).await.1.contains("online time: 90 s"));
}

#[tokio::test]
async fn draw_close_keeps_the_list_it_drew_from_and_show_rechecks_it() {
    let s = setup("drawlist").await;
    assert_eq!(s.tcbot(&["draw", "open", "@TGS#h", "lucky"]).await.0, 0);
    let doc = s.store.get_doc(&shared::stats::Draw::key("@TGS#h")).await.ok().flatten().unwrap_or_default();
    let draw: shared::stats::Draw = serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{e}"));
    let log = shared::stats::Draw::entrants_log("@TGS#h", &draw.id);
    let enter = |u: &'static str| {
        let t = Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: u.into() };
        let (store, log) = (&s.store, log.clone());
        async move { store.append_turn(&log, &t, 3600).await.ok() }
    };
    for u in ["ann", "bob", "ann", "cat"] {
        enter(u).await;
    }
    let (code, out, _) = s.tcbot(&["draw", "close", "@TGS#h", "--winners", "5", "--seed", "3"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("winner: ann").count(), 1, "one user wins at most once: {out}");
    assert_eq!(out.matches("winner: ").count(), 3, "{out}");
    // An entry that lands after the close does not change the draw.
    enter("dan").await;
    let (_, out, _) = s.tcbot(&["draw", "show", "@TGS#h"]).await;
    assert!(out.contains("entrants (3): ann, bob, cat"), "{out}");
    assert!(out.contains("generator: ") && out.contains("re-check: same winners"), "{out}");
}

#[tokio::test]
async fn profiles_are_kept_per_platform() {
    use shared::bot::job::Platform;
    use shared::keys;
    let s = setup("nimprofile").await;
    let (code, out, err) =
        s.tcbot(&["profile", "set", "mybot", "--platform", "nim", "--json", r#"{"system_prompt":"NIM bot."}"#]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nim robot mybot"), "{out}");
    let stored = s.store.get_doc(&keys::profile(Platform::Nim, "mybot")).await.ok().flatten().unwrap_or_default();
    assert!(stored.contains("NIM bot."), "stored under the NIM profile key: {stored:?}");
    assert_eq!(s.store.get_doc(&keys::profile(Platform::Tencent, "mybot")).await, Ok(None), "not Tencent's");
    let (_, out, _) = s.tcbot(&["profile", "show", "mybot", "--platform", "nim"]).await;
    assert!(out.contains("NIM bot."), "{out}");
    let (_, out, _) = s.tcbot(&["profile", "show", "mybot"]).await;
    assert!(out.contains("has no profile"), "Tencent is the default platform: {out}");
    let (code, _, err) =
        s.tcbot(&["profile", "set", "mybot", "--platform", "nim", "--json", r#"{"max_turn":6}"#]).await;
    assert_eq!(code, 2, "a misspelt field is refused on NIM too");
    assert!(err.contains("invalid profile"), "{err}");
}

#[tokio::test]
async fn an_unknown_platform_is_refused_clearly() {
    let s = setup("badplatform").await;
    for args in [
        &["profile", "show", "mybot", "--platform", "wechat"][..],
        &["profile", "set", "mybot", "--platform", "Nim", "--json", "{}"],
        &["conversation", "show", "--bot", "b", "--user", "u", "--platform", "slack"],
        &["send", "http://127.0.0.1:9/x", "--body", "/dev/null", "--platform", ""],
    ] {
        let (code, out, err) = s.tcbot(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("unknown platform") && err.contains("tencent or nim"), "{args:?}: {err}");
    }
    assert_eq!(s.store.get_doc(&shared::keys::profile(shared::bot::job::Platform::Nim, "mybot")).await, Ok(None));
    // Commands that are Tencent's alone say so.
    let (code, _, err) = s.tcbot(&["robot", "list", "--platform", "nim"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--platform applies to"), "{err}");
}

#[tokio::test]
async fn nim_conversations_are_shown_and_reset_apart_from_tencent_s() {
    use shared::bot::job::Platform;
    use shared::keys;
    let s = setup("nimconv").await;
    let turn = |text: &str| Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: text.into() };
    let nim_direct = keys::direct_scope(Platform::Nim, "mybot", "alice");
    let tencent_direct = keys::direct_scope(Platform::Tencent, "mybot", "alice");
    let nim_team = keys::group_conversation(Platform::Nim, "2837465", None, "mybot", None);
    let nim_member = keys::group_conversation(Platform::Nim, "2837465", None, "mybot", Some("bob"));
    for (conv, text) in
        [(&nim_direct, "nim hello"), (&tencent_direct, "tencent hello"), (&nim_team, "team"), (&nim_member, "bob's")]
    {
        s.store.append_turn(conv, &turn(text), 3600).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let direct = ["--bot", "mybot", "--user", "alice"];
    let (code, out, _) = s.tcbot(&[&["conversation", "show", "--platform", "nim"][..], &direct].concat()).await;
    assert_eq!(code, 0);
    assert!(out.contains("user: nim hello") && !out.contains("tencent hello"), "{out}");
    let (_, out, _) = s.tcbot(&[&["conversation", "show"][..], &direct].concat()).await;
    assert!(out.contains("user: tencent hello") && !out.contains("nim hello"), "{out}");
    let (_, out, _) =
        s.tcbot(&["conversation", "show", "--platform", "nim", "--bot", "mybot", "--group", "2837465"]).await;
    assert!(out.contains("user: team") && !out.contains("bob's"), "{out}");
    let member = ["--platform", "nim", "--bot", "mybot", "--group", "2837465", "--user", "bob"];
    let (_, out, _) = s.tcbot(&[&["conversation", "show"][..], &member].concat()).await;
    assert!(out.contains("user: bob's"), "{out}");

    let (code, out, _) = s.tcbot(&[&["conversation", "reset", "--platform", "nim"][..], &direct].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.store.recent_turns(&nim_direct, 0, 10).await.map(|t| t.len()), Ok(0), "the NIM conversation is reset");
    assert_eq!(s.store.recent_turns(&tencent_direct, 0, 10).await.map(|t| t.len()), Ok(1), "Tencent's is kept");
    assert_eq!(s.tcbot(&[&["conversation", "clear"][..], &member].concat()).await.0, 0);
    assert_eq!(s.store.recent_turns(&nim_member, 0, 10).await.map(|t| t.len()), Ok(0));
    assert_eq!(s.store.recent_turns(&nim_team, 0, 10).await.map(|t| t.len()), Ok(1), "the team's own is kept");

    let (code, _, err) =
        s.tcbot(&["conversation", "show", "--platform", "nim", "--bot", "mybot", "--group", "1", "--topic", "t"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("NIM teams have none"), "{err}");
    let (code, _, err) = s.tcbot(&["conversation", "show", "--id", "c2c#a#b", "--bot", "a"]).await;
    assert_eq!(code, 2, "{err}");
}

async fn nim_route(
    State(r): State<Arc<shared::nim::NimRouter>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let h =
        shared::nim::CopyHeaders::from_pairs(headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))));
    match r.handle(&h, &body, shared::store::now_ms(), "cli-send-nim").await {
        Ok((status, outcome)) => (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            format!(r#"{{"outcome":"{}"}}"#, outcome.kind()),
        ),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[tokio::test]
async fn send_signs_a_nim_message_copy_that_the_nim_router_accepts() {
    use shared::nim::intake::{IntakeLimits, KnownRobot};
    let s = setup("sendnim").await;
    let cfg = local_config(&s.moto).await;
    let router = Arc::new(shared::nim::NimRouter {
        app_key: NIM_KEY.into(),
        secret: SecretString::new(NIM_SECRET),
        limits: IntakeLimits::default(),
        robots: vec![KnownRobot { accid: "mybot".into(), nickname: Some("MyBot".into()) }],
        queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&cfg))),
        c2c_queue_url: s.stack.c2c_queue.clone(),
        group_queue_url: s.stack.group_queue.clone(),
        store: Arc::new(shared::store::MemoryStore::new()),
        arrivals: Default::default(),
    });
    let app = axum::Router::new().route("/nim", axum::routing::post(nim_route)).with_state(router);
    let listener = devtools::loopback_listener().await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/nim", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let events = format!("{}/../events", env!("CARGO_MANIFEST_DIR"));

    // The sample events, re-signed now with the secret file's NIM keys.
    let person = format!("{events}/nim-callback-router.person.json");
    let (code, out, err) = s.tcbot(&["send", &url, "--platform", "nim", "--event", &person]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("HTTP 200") && out.contains(r#""outcome":"queued""#), "{out}");
    let team = format!("{events}/nim-callback-router.team-mention.json");
    assert_eq!(s.tcbot(&["send", &url, "--platform", "nim", "--event", &team]).await.0, 0);
    let depth = |q: String| {
        let sqs = s.sqs.clone();
        async move { devtools::esm::depth(&sqs, &q).await.map(|d| d.0).unwrap_or_default() }
    };
    assert_eq!((depth(s.stack.c2c_queue.clone()).await, depth(s.stack.group_queue.clone()).await), (1, 1));

    // A bare copy body, with the keys from TCBOT_NIM_SECRET_ID (the NIM secret) over the app
    // secret's.
    let sm = aws_sdk_secretsmanager::Client::new(&cfg);
    let nim_secret = format!("cli-nim-{}", std::process::id());
    let keys = serde_json::json!({"NimAppKey": NIM_KEY, "NimAppSecret": NIM_SECRET}).to_string();
    sm.create_secret().name(&nim_secret).secret_string(keys).send().await.unwrap_or_else(|e| panic!("{e}"));
    let body_file = std::env::temp_dir().join(format!("cli-nim-body-{}.json", std::process::id()));
    let copy = devtools::nim_emu::CopyMessage::person("carol", "mybot", "hi", "777").body();
    std::fs::write(&body_file, copy).unwrap_or_else(|e| panic!("{e}"));
    let body_path = body_file.to_string_lossy().into_owned();
    let wrong = std::env::temp_dir().join(format!("cli-nim-wrong-{}.json", std::process::id()));
    std::fs::write(&wrong, r#"{"NimAppKey":"cli-nim-appkey","NimAppSecret":"not-the-secret"}"#).unwrap_or_default();
    let wrong_path = wrong.to_string_lossy().into_owned();
    let dir = std::path::Path::new(".");
    let with_nim_secret = [("TCBOT_LOCAL_SECRET_FILE", wrong_path.as_str()), ("TCBOT_NIM_SECRET_ID", &nim_secret)];
    let (code, out, err) =
        s.tcbot_with(dir, &with_nim_secret, &["send", &url, "--platform", "nim", "--body", &body_path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(depth(s.stack.c2c_queue.clone()).await, 2);

    // Signed with the wrong secret: refused by the router (401), exit code 1, nothing queued.
    let wrong_only = [("TCBOT_LOCAL_SECRET_FILE", wrong_path.as_str())];
    let (code, out, err) =
        s.tcbot_with(dir, &wrong_only, &["send", &url, "--platform", "nim", "--body", &body_path]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("HTTP 401") && err.contains("not accepted"), "{out}{err}");
    assert!(!format!("{out}{err}").contains("not-the-secret"), "the secret is not shown");
    // A secret without NIM keys is a configuration error that names the fields.
    let tencent_only = std::env::temp_dir().join(format!("cli-tencent-only-{}.json", std::process::id()));
    std::fs::write(&tencent_only, format!(r#"{{"SdkAppId":{APP},"SecretKey":"k"}}"#)).unwrap_or_default();
    let tencent_only_path = tencent_only.to_string_lossy().into_owned();
    let (code, _, err) = s
        .tcbot_with(
            dir,
            &[("TCBOT_LOCAL_SECRET_FILE", &tencent_only_path)],
            &["send", &url, "--platform", "nim", "--body", &body_path],
        )
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NimAppKey") && err.contains("TCBOT_NIM_SECRET_ID"), "{err}");
    // Tencent's --command means nothing to NIM.
    let (code, _, err) =
        s.tcbot(&["send", &url, "--platform", "nim", "--body", &body_path, "--command", "Bot.OnC2CMessage"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown option --command"), "{err}");
    assert_eq!(depth(s.stack.c2c_queue.clone()).await, 2);
    for f in [body_file, wrong, tencent_only] {
        std::fs::remove_file(f).ok();
    }
}

/// Every command, by its words: the nouns and each of their verbs.
const COMMANDS: [&[&str]; 32] = [
    &["usersig"],
    &["robot"],
    &["robot", "create"],
    &["robot", "list"],
    &["robot", "delete"],
    &["profile"],
    &["profile", "set"],
    &["profile", "show"],
    &["send"],
    &["conversation"],
    &["conversation", "show"],
    &["conversation", "clear"],
    &["moderation"],
    &["moderation", "set"],
    &["moderation", "show"],
    &["moderation", "test"],
    &["draw"],
    &["draw", "open"],
    &["draw", "close"],
    &["draw", "show"],
    &["stats"],
    &["stats", "group"],
    &["stats", "user"],
    &["presence"],
    &["presence", "user"],
    &["presence", "online"],
    &["dlq"],
    &["dlq", "list"],
    &["dlq", "redrive"],
    &["doctor"],
    &["completions"],
    &["conversation", "reset"],
];

/// Runs `tcbot` with no settings at all: what it prints must not need any.
async fn bare_tcbot(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcbot"))
        .args(args)
        .env_clear()
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The subcommands a help text lists under "Commands:".
fn listed(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[tokio::test]
async fn every_command_has_help_and_refuses_an_unknown_flag() {
    for words in COMMANDS {
        let (code, out, err) = bare_tcbot(&[words, &["--help"][..]].concat()).await;
        assert_eq!(code, 0, "{words:?} --help: {err}");
        let path = words.iter().map(|w| if *w == "reset" { "clear" } else { w }).collect::<Vec<_>>().join(" ");
        assert!(out.contains(&format!("Usage: tcbot {path}")), "{words:?}: {out}");
        // Every subcommand its help lists is one this test knows.
        for sub in listed(&out) {
            let known =
                COMMANDS.iter().any(|w| w.len() == words.len() + 1 && w.starts_with(words) && w[words.len()] == sub);
            assert!(known, "{words:?} lists {sub}, which COMMANDS leaves out");
        }
        let (code, out, err) = bare_tcbot(&[words, &["--no-such-flag"][..]].concat()).await;
        assert_eq!(code, 2, "{words:?} --no-such-flag: {out}{err}");
        assert!(err.contains("unexpected argument '--no-such-flag'"), "{words:?}: {err}");
        assert!(out.is_empty(), "{words:?} ran: {out}");
    }
    let (code, out, _) = bare_tcbot(&["--help"]).await;
    assert_eq!(code, 0);
    for sub in listed(&out) {
        assert!(COMMANDS.iter().any(|w| w == &[sub.as_str()]), "tcbot lists {sub}, which COMMANDS leaves out");
    }
    let (code, out, _) = bare_tcbot(&[]).await;
    assert_eq!(code, 0, "tcbot alone prints its help");
    assert!(out.contains("Usage: tcbot") && out.contains("TCBOT_TABLE_NAME"), "{out}");
}

#[tokio::test]
async fn a_mistyped_flag_never_runs_a_destructive_command() {
    let s = setup("typo").await;
    assert_eq!(s.tcbot(&["robot", "create", "@RBT#001"]).await.0, 0);
    let (code, _, err) = s.tcbot(&["robot", "delete", "@RBT#001", "--forse"]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(s.tencent.state.robots(), ["@RBT#001"], "nothing was deleted");
    let t = Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: "keep me".into() };
    s.store.append_turn("c2c#@RBT#001#alice", &t, 3600).await.unwrap_or_else(|e| panic!("{e}"));
    // `--users` is not `--user`: the selector is not completed with a default.
    let (code, _, err) = s.tcbot(&["conversation", "clear", "--bot", "@RBT#001", "--users", "alice"]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(s.store.recent_turns("c2c#@RBT#001#alice", 0, 10).await.map(|t| t.len()), Ok(1), "nothing was cleared");
    // A value where none is taken, and a missing one, are usage errors too.
    assert_eq!(s.tcbot(&["draw", "close", "@TGS#g", "--winners"]).await.0, 2);
    assert_eq!(s.tcbot(&["draw", "close", "@TGS#g", "--winners", "many"]).await.0, 2);
}

#[tokio::test]
async fn completions_are_generated_for_bash_zsh_and_fish() {
    for (shell, mark) in [("bash", "_tcbot()"), ("zsh", "#compdef tcbot"), ("fish", "complete -c tcbot")] {
        let (code, out, err) = bare_tcbot(&["completions", shell]).await;
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(mark) && out.contains("doctor") && out.contains("redrive"), "{shell}: {out}");
    }
    let (code, _, err) = bare_tcbot(&["completions", "tcsh"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("bash") && err.contains("fish"), "the shells it takes are listed: {err}");
}

#[tokio::test]
async fn a_redrive_that_is_piped_shows_no_progress() {
    let s = setup("quiet").await;
    s.dead_letter(&c2c_job("alice", 1)).await;
    let (code, out, err) = s.tcbot(&["dlq", "redrive", &s.stack.c2c_dlq, &s.stack.c2c_queue]).await;
    assert_eq!((code, out.trim()), (0, "redriven 1, parked 0, left 0"), "{err}");
    assert_eq!(err, "", "stderr is not a terminal: no progress line");
}

fn fail<E: std::fmt::Display, T>(e: E) -> T {
    panic!("{e}")
}

#[tokio::test]
async fn a_closed_draw_is_published_to_the_event_bus_as_draw_closed() {
    let s = setup("drawbus").await;
    let cfg = local_config(&s.moto).await;
    let eb = aws_sdk_eventbridge::Client::new(&cfg);
    let bus = format!("{}-events", s.stack.table);
    eb.create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap_or_else(|e| fail(aws_sdk_eventbridge::error::DisplayErrorContext(e)));
    let target = s.sqs.create_queue().queue_name(format!("{}-target", s.stack.table)).send().await;
    let target = target.unwrap_or_else(fail).queue_url.unwrap_or_default();
    let arn = devtools::esm::queue_arn(&s.sqs, &target).await.unwrap_or_else(fail);
    let pattern = serde_json::json!({ "source": ["tcbot"], "detail-type": ["Draw Closed"] }).to_string();
    eb.put_rule().name("draws").event_bus_name(&bus).event_pattern(pattern).send().await.unwrap_or_else(fail);
    let t = aws_sdk_eventbridge::types::Target::builder().id("q").arn(arn).build().unwrap_or_else(fail);
    eb.put_targets().rule("draws").event_bus_name(&bus).targets(t).send().await.unwrap_or_else(fail);
    assert_eq!(s.tcbot(&["draw", "open", "@TGS#g", "lucky"]).await.0, 0);
    let doc = s.store.get_doc(&shared::stats::Draw::key("@TGS#g")).await.ok().flatten().unwrap_or_default();
    let draw: shared::stats::Draw = serde_json::from_str(&doc).unwrap_or_else(fail);
    for u in ["ann", "bob"] {
        let t = Turn { at_ms: shared::store::now_ms(), role: Role::User, speaker: None, text: u.into() };
        s.store.append_turn(&shared::stats::Draw::entrants_log("@TGS#g", &draw.id), &t, 3600).await.ok();
    }
    let (code, out, errs) = s.tcbot(&["draw", "close", "@TGS#g", "--seed", "7", "--bus", &bus]).await;
    assert_eq!(code, 0, "{out}{errs}");
    assert!(out.contains("published to"), "{out}");
    let got = s.sqs.receive_message().queue_url(&target).max_number_of_messages(10).send().await;
    let msgs = got.unwrap_or_else(fail).messages.unwrap_or_default();
    assert_eq!(msgs.len(), 1, "one event");
    let ev: serde_json::Value = serde_json::from_str(msgs[0].body().unwrap_or_default()).unwrap_or_else(fail);
    assert_eq!((ev["source"].as_str(), ev["detail-type"].as_str()), (Some("tcbot"), Some("Draw Closed")));
    let d = &ev["detail"];
    assert_eq!(
        (d["v"].as_u64(), d["group"].as_str(), d["draw"].as_str()),
        (Some(1), Some("@TGS#g"), Some(draw.id.as_str()))
    );
    assert_eq!((d["entrants"].as_u64(), d["seed"].as_u64()), (Some(2), Some(7)));
    let winners = shared::stats::pick_winners(&["ann".to_owned(), "bob".to_owned()], 1, 7);
    assert_eq!(d["winners"], serde_json::json!(winners));
    // A bus that does not exist: the draw stays closed, and the failure says so.
    assert_eq!(s.tcbot(&["draw", "open", "@TGS#h", "lucky"]).await.0, 0);
    let (code, _, errs) = s.tcbot(&["draw", "close", "@TGS#h", "--bus", "no-such-bus"]).await;
    assert_eq!(code, 1);
    assert!(errs.contains("closed and saved"), "{errs}");
}
