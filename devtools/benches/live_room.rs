//! `cargo bench -p devtools --bench live_room`: a live room where 200 members @-mention the robot
//! within a few seconds, answered by the real worker (in-process store, the local Tencent and LLM
//! servers) through an in-process FIFO queue with 10 concurrent consumers (Lambda's concurrency
//! on an SQS FIFO queue: one message group at a time each). Group scope puts every mention in one
//! FIFO group; member scope gives each member their own. Printed: mentions answered and told the
//! room is busy (`max_wait_secs`), and the delay of the last answer (behaviour, printed as a
//! table). Then, on criterion, 2,000 concurrent one-to-one webhooks through the router
//! (in-process store and queue): the time per batch and webhooks per second, with their spread.
//! Figures: benches/RESULTS.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use devtools::llm_emu::LlmEmulator;
use devtools::tencent_emu::TencentEmulator;
use shared::bot::job::Job;
use shared::bot::worker::{WorkOutcome, Worker};
use shared::secrets::{AppSecrets, SecretString};
use shared::store::{MemoryStore, Store, now_ms};
use shared::tencent::intake;
use shared::tencent::sinks::TencentOutbound;
use shared::webhook::CallbackQuery;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const APP: u64 = 1_400_000_000;
const KEY: &str = "bench-key";
const BOT: &str = "@RBT#001";
const MEMBERS: u64 = 200;
/// The mentions arrive over this long.
const SPREAD: Duration = Duration::from_secs(5);
const CONSUMERS: usize = 10;
const MAX_WAIT_SECS: u64 = 20;

/// An SQS FIFO queue in process: a consumer takes the oldest message whose group has no
/// message in flight.
struct Fifo {
    waiting: VecDeque<(String, Job)>,
    in_flight: HashSet<String>,
}

impl Fifo {
    fn take(&mut self) -> Option<(String, Job)> {
        let i = self.waiting.iter().position(|(g, _)| !self.in_flight.contains(g))?;
        let item = self.waiting.remove(i)?;
        self.in_flight.insert(item.0.clone());
        Some(item)
    }
}

async fn worker(tencent: &TencentEmulator, llm: &LlmEmulator, store: Arc<MemoryStore>) -> Worker {
    let http = reqwest::Client::new();
    let opts = shared::tencent::client::RestOptions { base_url: tencent.base_url(), ..Default::default() };
    let chat = Arc::new(shared::tencent::RestClient::new(
        http.clone(),
        opts,
        APP,
        "administrator".into(),
        SecretString::new(KEY),
    ));
    let settings = shared::config::Settings::from_lookup(|k| match k {
        "TCBOT_TABLE_NAME" | "TCBOT_SECRET_ID" => Some("bench".to_owned()),
        "TCBOT_LLM_BASE_URL" => Some(llm.base_url()),
        "TCBOT_DAILY_QUOTA" => Some("0".to_owned()),
        // One mention per member: no bursts to wait for.
        "TCBOT_BURST_WINDOW_MS" => Some("0".to_owned()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let secrets: AppSecrets = serde_json::from_value(serde_json::json!({"SdkAppId": APP, "SecretKey": KEY}))
        .unwrap_or_else(|e| panic!("{e}"));
    Worker::new(
        store,
        Arc::new(TencentOutbound::new(chat, 12_000, Duration::from_secs(1))),
        Arc::new(shared::llm::OpenAiClient::new(http)),
        Arc::new(devtools::DiscardQueue),
        "dlq".into(),
        Arc::new(secrets),
        &settings,
    )
}

fn mention(from: &str, seq: u64) -> shared::webhook::events::BotGroupMessage {
    let body = serde_json::json!({"CallbackCommand": "Bot.OnGroupMessage", "GroupId": "@TGS#live", "Type": "AVChatRoom",
        "From_Account": from, "MsgSeq": seq, "Random": seq, "MsgTime": 1_700_000_000u64, "AtRobots_Account": [BOT],
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("@{BOT} question {seq}")}}]});
    serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the room with `scope` (`group` or `member`): (answered, overloaded, last answer's delay
/// after its mention, total time).
async fn room(scope: &str) -> (usize, usize, Duration, Duration) {
    let tencent = TencentEmulator::start(APP, KEY).await.unwrap_or_else(|e| panic!("{e}"));
    let llm = LlmEmulator::start(None, Duration::from_millis(5)).await.unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(MemoryStore::new());
    let profile = format!(r#"{{"group_scope": "{scope}", "max_wait_secs": {MAX_WAIT_SECS}}}"#);
    store.put_doc(&shared::bot::profile::BotProfile::key(BOT), &profile, None).await.unwrap_or_else(|e| panic!("{e}"));
    let worker = Arc::new(worker(&tencent, &llm, store).await);
    let fifo = Arc::new(Mutex::new(Fifo { waiting: VecDeque::new(), in_flight: HashSet::new() }));
    let started = Instant::now();
    let per_member = scope == "member";
    let arrivals = {
        let fifo = fifo.clone();
        tokio::spawn(async move {
            for i in 0..MEMBERS {
                tokio::time::sleep(SPREAD / MEMBERS as u32).await;
                let mut job = intake::group_job("bench", now_ms(), &mention(&format!("m{i}"), i + 1), BOT);
                job.per_member = per_member;
                fifo.lock().await.waiting.push_back((job.ordering_key(), job));
            }
        })
    };
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (fifo, worker, outcomes) = (fifo.clone(), worker.clone(), outcomes.clone());
            tokio::spawn(async move {
                loop {
                    let next = fifo.lock().await.take();
                    let Some((group, job)) = next else {
                        let done =
                            fifo.lock().await.waiting.is_empty() && outcomes.lock().await.len() as u64 == MEMBERS;
                        if done {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let body = serde_json::to_string(&job).unwrap_or_default();
                    let out = worker.process(&body, 1).await;
                    let delay = Duration::from_millis(now_ms().saturating_sub(job.received_ms));
                    outcomes.lock().await.push((out, delay));
                    fifo.lock().await.in_flight.remove(&group);
                }
            })
        })
        .collect();
    arrivals.await.ok();
    for c in consumers {
        c.await.ok();
    }
    let outcomes = outcomes.lock().await;
    let answered = outcomes.iter().filter(|(o, _)| matches!(o, Ok(WorkOutcome::Answered(_)))).count();
    let overloaded = outcomes.iter().filter(|(o, _)| matches!(o, Ok(WorkOutcome::Replied("overloaded")))).count();
    let last = outcomes.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert_eq!(answered + overloaded, MEMBERS as usize, "every mention ends answered or told the room is busy");
    (answered, overloaded, last, started.elapsed())
}

const BATCH: u64 = 2_000;

/// `BATCH` signed one-to-one webhooks, each a new message.
fn webhooks() -> (String, Vec<String>, i64) {
    let now = shared::store::now_secs() as i64;
    let q = CallbackQuery::encode(APP, "Bot.OnC2CMessage", Some(("local-dev-token", now)));
    let bodies = (0..BATCH)
        .map(|i| {
            serde_json::json!({"CallbackCommand": "Bot.OnC2CMessage", "From_Account": format!("u{i}"), "To_Account": BOT,
                "MsgSeq": i, "MsgRandom": i, "MsgTime": 1_700_000_000u64, "MsgKey": format!("{i}_{i}_1700000000"),
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]})
            .to_string()
        })
        .collect();
    (q, bodies, now)
}

/// Sends the batch concurrently through a fresh router (in-process store and queue); every
/// webhook must be acked OK.
async fn router_batch((q, bodies, now): (String, Vec<String>, i64)) {
    let router = Arc::new(devtools::memory_router());
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (router, q) = (router.clone(), q.clone());
            tokio::spawn(
                async move { router.handle(&q, b.as_bytes(), now, "bench").await.map(|(a, _)| a.action_status) },
            )
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.ok().as_deref(), Some("OK"));
    }
}

fn router_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("router_concurrent");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("2000_one_to_one_webhooks", |b| {
        b.iter_batched(webhooks, |w| rt.block_on(router_batch(w)), BatchSize::PerIteration)
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = router_throughput
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "# Live room: {MEMBERS} mentions over {} s, {CONSUMERS} consumers, max_wait_secs {MAX_WAIT_SECS}",
        SPREAD.as_secs()
    );
    println!("| scope | answered | told busy | last answer after its mention | all done in |");
    println!("|---|---:|---:|---:|---:|");
    for scope in ["group", "member"] {
        let (answered, busy, last, total) = rt.block_on(room(scope));
        println!("| {scope} | {answered} | {busy} | {:.1} s | {:.1} s |", last.as_secs_f64(), total.as_secs_f64());
    }
    drop(rt);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
