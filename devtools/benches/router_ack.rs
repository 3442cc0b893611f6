//! `cargo bench -p devtools --bench router_ack`: how long the callback router takes to ack a new
//! chatbot message (`Router::handle` for a signed `Bot.OnC2CMessage`), the time Tencent waits
//! for our answer and allows 2 s for. Two setups: in process (the in-memory store, a queue that
//! drops messages), which is our own CPU time, and through a local moto server (the DynamoDB
//! store and the SQS FIFO queue), which adds the network calls on the ack path. Every webhook
//! is a message not seen before. Figures: benches/RESULTS.md.

use devtools::aws::{create_stack, local_config};
use shared::queue::SqsQueue;
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::DynamoStore;
use shared::webhook::CallbackQuery;
use std::sync::Arc;
use std::time::Instant;

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

/// Sends `warmup` then `n` new webhooks through `router`, calling `reset` (untimed) before
/// each, and times each `handle` of the latter; prints the median and p99.
async fn run(name: &str, router: &Router, warmup: u64, n: u64, reset: impl AsyncFn()) {
    let mut samples = Vec::with_capacity(n as usize);
    for seq in 0..warmup + n {
        reset().await;
        let now = shared::store::now_secs() as i64;
        let query = CallbackQuery::encode(APP_ID, "Bot.OnC2CMessage", Some((TOKEN, now)));
        let body = c2c_body(seq);
        let started = Instant::now();
        let result = router.handle(&query, &body, now, "bench").await;
        let took = started.elapsed();
        match result {
            Ok((_, outcome)) if outcome.kind() == "queued" => {}
            other => panic!("webhook {seq} was not queued: {other:?}"),
        }
        if seq >= warmup {
            samples.push(took);
        }
    }
    samples.sort_unstable();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!("{name:<52} median {:>10.2?}   p99 {:>10.2?}", pct(50), pct(99));
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

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    // No tracing subscriber is installed, so the router's log line costs nothing here.
    println!(
        "# Router ack latency, new Bot.OnC2CMessage webhooks ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    rt.block_on(async {
        run("in process (MemoryStore, DiscardQueue), 2,000", &devtools::memory_router(), 200, 2_000, async || {}).await;
        let (router, sqs, queue) = moto_router().await;
        // moto 5's FIFO SendMessage takes about 0.13 ms longer for every message the queue
        // holds, which SQS does not: the queue is emptied before each webhook (untimed) so that
        // every send costs what it costs on an empty queue, the same in every run.
        let empty = async || {
            sqs.purge_queue().queue_url(&queue).send().await.unwrap_or_else(|e| panic!("purge: {e}"));
        };
        run("through moto (DynamoStore, SqsQueue FIFO), 300", &router, 30, 300, empty).await;
    });
}
