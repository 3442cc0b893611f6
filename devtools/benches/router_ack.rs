//! `cargo bench -p devtools --bench router_ack`: how long the callback router takes to ack a new
//! chatbot message (`Router::handle` for a signed `Bot.OnC2CMessage`), the time Tencent waits
//! for our answer and allows 2 s for. Two setups: in process (the in-memory store, a queue that
//! drops messages), which is our own CPU time, and through a local moto server (the DynamoDB
//! store and the SQS FIFO queue), which adds the network calls on the ack path. Every webhook
//! is a message not seen before. On criterion: medians with their spread. Figures:
//! benches/RESULTS.md.

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use devtools::aws::{create_stack, local_config};
use shared::queue::SqsQueue;
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::DynamoStore;
use shared::webhook::CallbackQuery;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP_ID: u64 = 1_400_000_000;
const TOKEN: &str = "local-dev-token";

/// A user's text message to the chatbot, distinct for each `seq`.
fn c2c_body(seq: u64) -> Vec<u8> {
    serde_json::json!({
        "CallbackCommand": "Bot.OnC2CMessage", "From_Account": format!("user{}", seq % 100), "To_Account": "@RBT#001",
        "MsgSeq": seq, "MsgRandom": 1000 + seq, "MsgTime": 1_700_000_000 + seq,
        "MsgKey": format!("{seq}_{}_{}", 1000 + seq, 1_700_000_000 + seq),
        "OnlineOnlyFlag": 0, "SendMsgResult": 0, "ErrorInfo": "send msg succeed",
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "What is the weather like tomorrow in Shenzhen?"}}],
        "EventTime": "1700000000123"
    })
    .to_string()
    .into_bytes()
}

/// The signed query, the body and the time of new webhook `seq` (made outside the timing).
fn webhook(seq: u64) -> (String, Vec<u8>, i64) {
    let now = shared::store::now_secs() as i64;
    (CallbackQuery::encode(APP_ID, "Bot.OnC2CMessage", Some((TOKEN, now))), c2c_body(seq), now)
}

/// Acks one webhook through `router`: asserts it was queued.
async fn ack(router: &Router, (query, body, now): &(String, Vec<u8>, i64)) {
    match router.handle(query, body, *now, "bench").await {
        Ok((_, outcome)) if outcome.kind() == "queued" => {}
        other => panic!("webhook was not queued: {other:?}"),
    }
}

/// The router wired to the DynamoDB store and the SQS queues of a fresh stack on moto server,
/// with an SQS client and the URL of the queue it sends chatbot messages to.
async fn moto_router() -> (Router, aws_sdk_sqs::Client, String) {
    let moto = devtools::moto::moto().unwrap_or_else(|e| panic!("{e}"));
    let aws = local_config(&moto.endpoint).await;
    let prefix = format!("bench{}", std::process::id());
    let stack = create_stack(&aws, &prefix, "{}").await.unwrap_or_else(|e| panic!("stack: {e}"));
    let router = Router::new(
        APP_ID,
        Some(SecretString::new(TOKEN)),
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &stack.table)),
        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws))),
        stack.c2c_queue.clone(),
        stack.group_queue,
    );
    (router, aws_sdk_sqs::Client::new(&aws), stack.c2c_queue)
}

fn router_ack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("router_ack");
    // No tracing subscriber is installed, so the router's log line costs nothing here.
    let memory = devtools::memory_router();
    let mut seq = 0u64;
    g.bench_function("in_process", |b| {
        b.iter_batched(
            || {
                seq += 1;
                webhook(seq)
            },
            |w| rt.block_on(ack(&memory, &w)),
            BatchSize::SmallInput,
        )
    });
    let (router, sqs, queue) = rt.block_on(moto_router());
    // moto 5's FIFO SendMessage takes about 0.13 ms longer for every message the queue holds,
    // which SQS does not: the queue is emptied before each webhook (untimed) so that every send
    // costs what it costs on an empty queue, the same in every run.
    g.sampling_mode(SamplingMode::Flat).sample_size(30).measurement_time(Duration::from_secs(8));
    g.bench_function("through_moto", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    sqs.purge_queue().queue_url(&queue).send().await.unwrap_or_else(|e| panic!("purge: {e}"));
                    seq += 1;
                    let w = webhook(seq);
                    let started = Instant::now();
                    ack(&router, &w).await;
                    timed += started.elapsed();
                }
                timed
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = router_ack
}
criterion_main!(benches);
