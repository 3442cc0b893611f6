//! `cargo bench -p devtools --bench pipeline`: REST calls per answer and the user's wait for the
//! last word, for answers of 50, 500 and 5,000 tokens at 20 and 100 tokens/s, comparing our
//! coalescing pump with one call per token and with a fixed one-second throttle. Runs the real
//! pump in virtual time (tokio's paused clock) with a sink that takes 30 ms per REST call, so the
//! figures are exact and repeatable: they are printed as tables (behaviour, not timing). Then, on
//! criterion, the real CPU time the pump spends on one answer (virtual time costs nothing).
//! Figures: benches/RESULTS.md.

use async_trait::async_trait;
use criterion::{Criterion, criterion_group};
use shared::bot::pump::{Control, PumpSettings, pump};
use shared::bot::sink::{Limits, Sink, SinkError, StreamMode};
use shared::bot::texts::Texts;
use shared::config::OverflowPolicy;
use shared::llm::{Delta, DeltaStream, LlmError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const REST_LATENCY: Duration = Duration::from_millis(30);

#[derive(Default)]
struct Log {
    calls: u32,
    last_done: Option<Instant>,
    max_per_second: u32,
    stamps: Vec<Instant>,
}

struct SlowSink {
    log: Arc<Mutex<Log>>,
    bytes: usize,
    open: bool,
    limits: Limits,
    /// `final` mode: only the finishing push makes a call.
    final_only: bool,
}

/// A sink without limits of its own: the pump's settings alone pace it.
const NO_LIMITS: Limits =
    Limits { min_interval: Duration::ZERO, max_bytes: usize::MAX, max_silence: None, resumable: true, replaces: false };

#[async_trait]
impl Sink for SlowSink {
    fn mode(&self) -> StreamMode {
        StreamMode::RobotStream
    }
    fn limits(&self) -> Limits {
        self.limits
    }
    fn shown(&self) -> bool {
        self.log.lock().map(|l| l.calls > 0).unwrap_or(true)
    }
    async fn push(&mut self, d: &str, finish: bool) -> Result<Option<String>, SinkError> {
        if self.final_only && !finish {
            self.bytes += d.len();
            return Ok(None);
        }
        tokio::time::sleep(REST_LATENCY).await;
        let mut l = self.log.lock().unwrap_or_else(|p| p.into_inner());
        l.calls += 1;
        let now = Instant::now();
        l.stamps.push(now);
        let window = l.stamps.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(1)).count() as u32;
        l.max_per_second = l.max_per_second.max(window);
        l.last_done = Some(now);
        self.bytes += d.len();
        let opened = !self.open;
        self.open = !finish;
        Ok(opened.then(|| "k".to_owned()))
    }
    fn message_bytes(&self) -> usize {
        self.bytes
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn next_message(&mut self) {
        self.bytes = 0;
        self.open = false;
    }
    fn calls(&self) -> u32 {
        0
    }
}

struct NoStop;

#[async_trait]
impl Control for NoStop {
    async fn stop_requested(&self, _: Option<&str>) -> bool {
        false
    }
    async fn opened(&self, _: &str, _: StreamMode) {}
}

/// An LLM that sends `n` tokens of four bytes at `rate` tokens per second; returns the stream
/// and a cell that receives the instant of the last token.
fn llm(n: usize, rate: f64, last: Arc<Mutex<Option<Instant>>>) -> DeltaStream {
    let gap = Duration::from_secs_f64(1.0 / rate);
    Box::pin(futures_util::stream::unfold(1usize, move |i| {
        let last = last.clone();
        async move {
            if i >= n {
                return None;
            }
            tokio::time::sleep(gap).await;
            if i + 1 == n {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            Some((Ok::<_, LlmError>(Delta::Text("tok ".into())), i + 1))
        }
    }))
}

async fn run(n: usize, rate: f64, cfg: &PumpSettings) -> (u32, u32, Duration) {
    run_in(n, rate, cfg, NO_LIMITS, false).await
}

/// The limits each Tencent sink declares (`shared::tencent::sinks`), and whether it calls only
/// at the end.
fn modes() -> [(&'static str, Limits, bool); 4] {
    let l = |ms: u64, silence: Option<u64>| Limits {
        min_interval: Duration::from_millis(ms),
        max_bytes: usize::MAX,
        max_silence: silence.map(Duration::from_secs),
        resumable: true,
        replaces: false,
    };
    [
        ("robot_stream", l(0, None), false),
        ("native_stream", l(200, Some(15)), false),
        ("modify", l(1_000, None), false),
        ("final", l(0, None), true),
    ]
}

async fn run_in(n: usize, rate: f64, cfg: &PumpSettings, limits: Limits, final_only: bool) -> (u32, u32, Duration) {
    let log = Arc::new(Mutex::new(Log::default()));
    let last = Arc::new(Mutex::new(None));
    let mut sink = SlowSink { log: log.clone(), bytes: 0, open: false, limits, final_only };
    let r = pump("tok ".into(), llm(n, rate, last.clone()), &mut sink, &NoStop, cfg).await;
    assert!(r.is_ok());
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    let last_token = last.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now);
    let wait = l.last_done.map(|d| d.duration_since(last_token)).unwrap_or_default();
    (l.calls, l.max_per_second, wait)
}

fn tables() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (ours, per_token, throttle) = strategies();
    println!(
        "# REST calls per answer and wait for the last word (virtual time, {} ms per REST call)",
        REST_LATENCY.as_millis()
    );
    println!("| tokens | tok/s | strategy | REST calls | peak calls/s | wait after last token |");
    println!("|---:|---:|---|---:|---:|---:|");
    for n in [50, 500, 5_000] {
        for rate in [20.0, 100.0] {
            let mut ours_calls = 0;
            for (name, cfg) in [
                ("ours (400 ms / 600 B)", &ours),
                ("one call per token", &per_token),
                ("fixed 1 s throttle", &throttle),
            ] {
                let (calls, peak, wait) = rt.block_on(run(n, rate, cfg));
                if name.starts_with("ours") {
                    ours_calls = calls;
                }
                let ratio = if name.starts_with("ours") {
                    String::new()
                } else {
                    format!(" ({:.1}x ours)", f64::from(calls) / f64::from(ours_calls))
                };
                println!("| {n} | {rate} | {name} | {calls}{ratio} | {peak} | {:.0} ms |", wait.as_secs_f64() * 1000.0);
            }
        }
    }
    println!();
    println!("# Per stream mode: the same pump, paced by each sink's declared limits");
    println!("| tokens | tok/s | mode | REST calls | peak calls/s | wait after last token |");
    println!("|---:|---:|---|---:|---:|---:|");
    for n in [50, 500] {
        for rate in [20.0, 100.0] {
            for (mode, limits, final_only) in modes() {
                let (calls, peak, wait) = rt.block_on(run_in(n, rate, &ours, limits, final_only));
                println!("| {n} | {rate} | {mode} | {calls} | {peak} | {:.0} ms |", wait.as_secs_f64() * 1000.0);
            }
        }
    }
}

/// Our pump settings (a chunk at most every 400 ms or at 600 bytes), one call per token, and a
/// fixed one-second throttle.
fn strategies() -> (PumpSettings, PumpSettings, PumpSettings) {
    let ours = PumpSettings {
        interval: Duration::from_millis(400),
        max_chunk_bytes: 600,
        max_message_bytes: usize::MAX / 2,
        overflow: OverflowPolicy::Continue,
        last_call: None,
        apology: Texts::en().apology,
        truncated_notice: Texts::en().truncated_notice,
    };
    let per_token = PumpSettings { interval: Duration::ZERO, max_chunk_bytes: 1, ..ours.clone() };
    let throttle = PumpSettings { interval: Duration::from_secs(1), max_chunk_bytes: usize::MAX / 2, ..ours.clone() };
    (ours, per_token, throttle)
}

/// The CPU time of one 500-token answer through the pump (the clock is virtual, so only the
/// work is timed), ours against one call per token.
fn pump_cpu(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (ours, per_token, _) = strategies();
    let mut g = c.benchmark_group("pump_cpu_500_tokens_100_tok_s");
    for (name, cfg) in [("ours", &ours), ("one_call_per_token", &per_token)] {
        g.bench_function(name, |b| b.iter(|| rt.block_on(run(500, 100.0, cfg))));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = pump_cpu
}

fn main() {
    tables();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
