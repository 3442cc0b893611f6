//! `cargo bench -p devtools --bench overhead`: our own latency on the streaming path. The real
//! worker (in-memory store) asks the local LLM server and streams to the local Tencent server;
//! measured are the time from the LLM's first token leaving its server to the first
//! `send_stream_msg` reaching Tencent's, and the same for the last token and the finishing call.
//! What remains is our overhead: SSE parsing, the pump, the REST call. Figures: benches/RESULTS.md.

use async_trait::async_trait;
use devtools::llm_emu::LlmEmulator;
use devtools::tencent_emu::TencentEmulator;
use shared::bot::worker::Worker;
use shared::config::{LlmDefaults, OverflowPolicy, StreamSettings};
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::secrets::{AppSecrets, SecretString};
use shared::tencent::intake;
use shared::tencent::sinks::TencentOutbound;
use std::sync::Arc;
use std::time::Duration;

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

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let key = "bench-key";
        let tencent = TencentEmulator::start(1_400_000_000, key).await.unwrap_or_else(|e| panic!("{e}"));
        let llm = LlmEmulator::start(None, Duration::from_millis(10)).await.unwrap_or_else(|e| panic!("{e}"));
        let secrets: AppSecrets = serde_json::from_value(serde_json::json!({"SdkAppId": 1_400_000_000u64, "SecretKey": key}))
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
        let settings = shared::config::Settings::from_lookup(|k| {
            matches!(k, "TCBOT_TABLE_NAME" | "TCBOT_SECRET_ID").then(|| "bench".to_owned())
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
        let runs = 40;
        for i in 0..runs {
            let ev = serde_json::json!({"From_Account": format!("u{i}"), "To_Account": "@RBT#001", "MsgSeq": i, "MsgRandom": i,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]});
            let m = serde_json::from_value(ev).unwrap_or_else(|e| panic!("{e}"));
            let job = intake::c2c_job("bench", shared::store::now_ms(), &m);
            let out = worker.process(&serde_json::to_string(&job).unwrap_or_default(), 1).await;
            assert!(matches!(out, Ok(ref o) if o.kind() == "answered"), "{out:?}");
        }
        let tokens = llm.state.token_instants();
        let calls = tencent.state.calls_to("openim_robot_http_svc/send_stream_msg");
        let mut first = Vec::new();
        let mut last = Vec::new();
        let mut per_answer: Vec<Vec<std::time::Instant>> = Vec::new();
        for c in &calls {
            let at = c.arrived.unwrap_or_else(std::time::Instant::now);
            if c.body.get("MsgKey").is_none() {
                per_answer.push(vec![at]);
            } else if let Some(a) = per_answer.last_mut() {
                a.push(at);
            }
        }
        for ((t_first, t_last), arrivals) in tokens.iter().zip(&per_answer) {
            first.push(arrivals[0].saturating_duration_since(*t_first));
            last.push(arrivals[arrivals.len() - 1].saturating_duration_since(*t_last));
        }
        println!("# Streaming overhead over {runs} answers (local servers, loopback, release build)");
        println!("LLM first token sent -> first send_stream_msg received: median {:.2?}, p99 {:.2?}", pct(&mut first.clone(), 50), pct(&mut first, 99));
        println!("LLM last token sent  -> final send_stream_msg received: median {:.2?}, p99 {:.2?}", pct(&mut last.clone(), 50), pct(&mut last, 99));
        println!("REST calls per answer: {:.1}", calls.len() as f64 / runs as f64);

        // The placeholder: `modify` mode, a model that thinks 2 s before its first token.
        let mut worker = worker;
        worker.stream.direct_mode = shared::bot::sink::StreamMode::Modify;
        llm.state.set_first_token_delay(Duration::from_secs(2));
        let mut waits = Vec::new();
        for i in 0..10u64 {
            let ev = serde_json::json!({"From_Account": format!("p{i}"), "To_Account": "@RBT#001", "MsgSeq": i, "MsgRandom": i,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}]});
            let m = serde_json::from_value(ev).unwrap_or_else(|e| panic!("{e}"));
            let job = intake::c2c_job("bench", shared::store::now_ms(), &m);
            let before = tencent.state.calls_to("openim/sendmsg").len();
            let started = std::time::Instant::now();
            let out = worker.process(&serde_json::to_string(&job).unwrap_or_default(), 1).await;
            assert!(matches!(out, Ok(ref o) if o.kind() == "answered"), "{out:?}");
            let sends = tencent.state.calls_to("openim/sendmsg");
            let placeholder = sends.get(before).and_then(|c| c.arrived).unwrap_or_else(std::time::Instant::now);
            waits.push(placeholder.saturating_duration_since(started));
        }
        println!(
            "worker start -> placeholder received (TCBOT_PLACEHOLDER_AFTER_MS {} ms): median {:.1} ms, p99 {:.1} ms",
            worker.stream.placeholder_after.as_millis(),
            pct(&mut waits.clone(), 50).as_secs_f64() * 1000.0,
            pct(&mut waits, 99).as_secs_f64() * 1000.0
        );
    });
}
