//! `cargo bench -p devtools --bench overhead`: our own latency on the streaming path. The real
//! worker (in-memory store) asks the local LLM server and streams to the local Tencent server;
//! measured are the time from the LLM's first token leaving its server to the first
//! `send_stream_msg` reaching Tencent's, and the same for the last token and the finishing call.
//! What remains is our overhead: SSE parsing, the pump, the REST call. Then the placeholder in
//! `modify` mode: from the worker's start to the `thinking…` message reaching Tencent when the
//! model thinks 2 s. Each latency is measured per answer (`iter_custom`: criterion gets the
//! latency, not the answer's wall time), so criterion reports its median and spread. The REST
//! calls per answer are printed (a behaviour, not a timing). Figures: benches/RESULTS.md.

use async_trait::async_trait;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use devtools::llm_emu::LlmEmulator;
use devtools::tencent_emu::TencentEmulator;
use shared::bot::worker::Worker;
use shared::config::{LlmDefaults, OverflowPolicy, StreamSettings};
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::secrets::{AppSecrets, SecretString};
use shared::tencent::intake;
use shared::tencent::sinks::TencentOutbound;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEND_STREAM: &str = "openim_robot_http_svc/send_stream_msg";

struct NullQueue;

#[async_trait]
impl Queue for NullQueue {
    async fn send(&self, _: &str, _: &QueueMessage) -> Result<(), QueueError> {
        Ok(())
    }
    async fn retry_after(&self, _: &str, _: &str, _: std::time::Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The local Tencent and LLM servers and the real worker wired to them.
async fn setup() -> (TencentEmulator, LlmEmulator, Worker) {
    let key = "bench-key";
    let tencent = TencentEmulator::start(1_400_000_000, key).await.unwrap_or_else(|e| panic!("{e}"));
    let llm = LlmEmulator::start(None, Duration::from_millis(10)).await.unwrap_or_else(|e| panic!("{e}"));
    let secrets: AppSecrets =
        serde_json::from_value(serde_json::json!({"SdkAppId": 1_400_000_000u64, "SecretKey": key}))
            .unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::new();
    let opts = shared::tencent::client::RestOptions { base_url: tencent.base_url(), ..Default::default() };
    let chat = Arc::new(shared::tencent::RestClient::new(
        http.clone(),
        opts,
        1_400_000_000,
        "administrator".into(),
        SecretString::new(key),
    ));
    // No burst window: it would hold every first token, and this measures the streaming itself.
    let settings = shared::config::Settings::from_lookup(|k| match k {
        "TCBOT_TABLE_NAME" | "TCBOT_SECRET_ID" => Some("bench".to_owned()),
        "TCBOT_BURST_WINDOW_MS" => Some("0".to_owned()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut worker = Worker::new(
        Arc::new(shared::store::MemoryStore::new()),
        Arc::new(TencentOutbound::new(chat, 12_000, Duration::from_secs(1))),
        Arc::new(shared::llm::OpenAiClient::new(http)),
        Arc::new(NullQueue),
        "dlq".into(),
        Arc::new(secrets),
        &settings,
    );
    worker.defaults = LlmDefaults {
        base_url: llm.base_url(),
        model: "m".into(),
        api_style: "openai".into(),
        system_prompt: "s".into(),
        max_turns: 20,
        max_age_secs: 3600,
        token_budget: 10_000,
        daily_quota: 0,
        language: shared::bot::texts::Language::En,
        connect_timeout: Duration::from_secs(2),
        first_token_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(60),
    };
    worker.stream = StreamSettings {
        interval: Duration::from_millis(400),
        max_chunk_bytes: 600,
        max_message_bytes: 12_000,
        overflow: OverflowPolicy::Truncate,
        ..settings.stream.clone()
    };
    worker.max_receives = 3;
    worker.llm_attempts = 1;
    (tencent, llm, worker)
}

/// One `hello` from a new user `who`, answered by the worker (asserted).
async fn answer(worker: &Worker, who: &str) {
    let ev = serde_json::json!({"From_Account": who, "To_Account": "@RBT#001", "MsgSeq": 1, "MsgRandom": 1,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]});
    let m = serde_json::from_value(ev).unwrap_or_else(|e| panic!("{e}"));
    let job = intake::c2c_job("bench", shared::store::now_ms(), &m);
    let out = worker.process(&serde_json::to_string(&job).unwrap_or_default(), 1).await;
    assert!(matches!(out, Ok(ref o) if o.kind() == "answered"), "{out:?}");
}

/// Answers one message; returns (LLM first token sent -> first `send_stream_msg` received, LLM
/// last token sent -> final `send_stream_msg` received, REST calls of the answer).
async fn streamed(
    tencent: &TencentEmulator,
    llm: &LlmEmulator,
    worker: &Worker,
    who: &str,
) -> (Duration, Duration, usize) {
    let before = tencent.state.calls_to(SEND_STREAM).len();
    answer(worker, who).await;
    let (t_first, t_last) = llm.state.token_instants().last().copied().unwrap_or_else(|| panic!("no LLM answer"));
    let calls = tencent.state.calls_to(SEND_STREAM);
    let mine = calls.get(before..).unwrap_or_default();
    let arrived =
        |c: Option<&devtools::tencent_emu::Call>| c.and_then(|c| c.arrived).unwrap_or_else(|| panic!("no call"));
    (
        arrived(mine.first()).saturating_duration_since(t_first),
        arrived(mine.last()).saturating_duration_since(t_last),
        mine.len(),
    )
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (tencent, llm, mut worker) = rt.block_on(setup());
    let (mut answers, mut calls) = (0usize, 0usize);
    let mut g = c.benchmark_group("streaming_overhead");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for (name, last) in
        [("llm_first_token_to_first_send_stream_msg", false), ("llm_last_token_to_final_send_stream_msg", true)]
    {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        answers += 1;
                        let (first, final_, n) = streamed(&tencent, &llm, &worker, &format!("u{answers}")).await;
                        calls += n;
                        total += if last { final_ } else { first };
                    }
                    total
                })
            })
        });
    }
    g.finish();
    // A behaviour, not a timing.
    println!("REST calls per answer: {:.1} over {answers} answers", calls as f64 / answers.max(1) as f64);

    // The placeholder: `modify` mode, a model that thinks 2 s before its first token.
    worker.stream.direct_mode = shared::bot::sink::StreamMode::Modify;
    llm.state.set_first_token_delay(Duration::from_secs(2));
    let mut g = c.benchmark_group("placeholder");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(20));
    let name = format!("modify_after_{}ms_model_thinks_2s", worker.stream.placeholder_after.as_millis());
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    answers += 1;
                    let before = tencent.state.calls_to("openim/sendmsg").len();
                    let started = Instant::now();
                    answer(&worker, &format!("p{answers}")).await;
                    let sends = tencent.state.calls_to("openim/sendmsg");
                    let placeholder =
                        sends.get(before).and_then(|c| c.arrived).unwrap_or_else(|| panic!("no placeholder"));
                    total += placeholder.saturating_duration_since(started);
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = overhead
}
criterion_main!(benches);
