//! `cargo bench -p shared --bench hot_paths`: the in-process hot paths on criterion, each
//! figure a median with its confidence interval and spread; ratios (compile vs verdict, the
//! automaton vs loops, generating vs reusing a UserSig) are of medians of the same run, computed
//! by `benches/summarize.py` from criterion's estimates. Figures: benches/RESULTS.md.

use async_trait::async_trait;
use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use shared::moderation::{Action, Engine, Moderator, Policy, Rule, Scope, Verdict, normalize};
use shared::msg::MsgElement;
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::{MemoryStore, Store};
use shared::webhook::CallbackQuery;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"))
}

/// A queue that accepts everything (the router's enqueue without a network).
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

fn word(i: usize) -> String {
    // Distinct pseudo-words of 5–9 letters.
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 5 + (i % 5);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// A pattern per word, with the kind of freedom that patterns are written for: `ab[^a-z]?cde`.
fn pattern(i: usize) -> String {
    let w = word(i);
    format!("{}[^a-z]?{}", &w[..2], &w[2..])
}

fn policy_of(words: &[String], patterns: &[String]) -> Policy {
    let rule = |words: Vec<String>, patterns: Vec<String>| Rule { words, patterns, action: Action::Mask };
    Policy {
        rules: words
            .iter()
            .map(|w| rule(vec![w.clone()], vec![]))
            .chain(patterns.iter().map(|p| rule(vec![], vec![p.clone()])))
            .collect(),
        ..Policy::default()
    }
}

const CLEAN: &str = "Hello everyone, the meeting moved to Friday at three. Please bring the slides and the \
                     quarterly numbers; we will also plan the offsite and pick a restaurant for dinner afterwards!";

/// Compile once, then a verdict per message (a 200-character message), for 5,000 word rules and
/// for 500 pattern rules, through the moderation function's own path (`Moderator`: the policy
/// read from the store and compiled on the first message, then kept by version).
fn moderation(c: &mut Criterion) {
    let rt = runtime();
    let words: Vec<String> = (0..5_000).map(word).collect();
    let patterns: Vec<String> = (0..500).map(pattern).collect();
    let body_clean = vec![MsgElement::text(CLEAN)];
    let body_dirty = vec![MsgElement::text(format!("{CLEAN} {}", words[4_321]))];
    let w = word(321);
    let body_dirty_pattern = vec![MsgElement::text(format!("{CLEAN} {}1{}", &w[..2], &w[2..]))];
    for (name, policy, body_dirty) in [
        ("5000_words", policy_of(&words, &[]), &body_dirty),
        ("500_patterns", policy_of(&[], &patterns), &body_dirty_pattern),
    ] {
        let mut g = c.benchmark_group("moderation");
        g.sampling_mode(SamplingMode::Flat).sample_size(20);
        g.bench_function(format!("compile/{name}"), |b| {
            b.iter(|| black_box(Engine::compile(std::slice::from_ref(black_box(&policy))).ok()))
        });
        g.finish();
        let store = Arc::new(MemoryStore::new());
        let doc = serde_json::to_string(&policy).unwrap_or_default();
        rt.block_on(store.put_doc(&Policy::app_key(), &doc, None)).unwrap_or_else(|e| panic!("{e}"));
        let m = Moderator::new(store, None, Duration::from_millis(800), Verdict::Allow, Duration::from_secs(60));
        let v = rt.block_on(m.moderate(Scope::Group, None, body_dirty));
        assert!(matches!(v, Verdict::Rewrite(_)), "{name}: the dirty message is masked: {v:?}");
        let mut g = c.benchmark_group("moderation");
        let mut verdicts = 1u64;
        g.bench_function(format!("verdict_warm/{name}/clean"), |b| {
            b.iter(|| {
                verdicts += 1;
                black_box(rt.block_on(m.moderate(Scope::Group, None, black_box(&body_clean))))
            })
        });
        g.bench_function(format!("verdict_warm/{name}/masked"), |b| {
            b.iter(|| {
                verdicts += 1;
                black_box(rt.block_on(m.moderate(Scope::Group, None, black_box(body_dirty))))
            })
        });
        g.finish();
        // A behaviour, not a timing: the policy is compiled once however many verdicts follow.
        println!("moderation {name}: compiled {} time(s) for {verdicts} verdicts", m.compiles());
    }

    // The engine alone against the alternatives it replaced, 5,000 word rules.
    let engine = Engine::compile(&[policy_of(&words, &[])]).unwrap_or_else(|e| panic!("{e}"));
    let normalized: Vec<String> = words.iter().map(|w| normalize(w).0).collect();
    let regexes: Vec<regex::Regex> = words.iter().filter_map(|w| regex::Regex::new(&regex::escape(w)).ok()).collect();
    let mut g = c.benchmark_group("moderation_engine_5000_words");
    g.bench_function("automaton/clean", |b| b.iter(|| black_box(engine.judge(black_box(&body_clean), Scope::Group))));
    g.bench_function("automaton/masked", |b| b.iter(|| black_box(engine.judge(black_box(&body_dirty), Scope::Group))));
    g.bench_function("substring_loop/clean", |b| {
        b.iter(|| {
            let (n, _) = normalize(black_box(CLEAN));
            black_box(normalized.iter().filter(|w| n.contains(w.as_str())).count())
        })
    });
    g.bench_function("regex_loop/clean", |b| {
        b.iter(|| {
            let (n, _) = normalize(black_box(CLEAN));
            black_box(regexes.iter().filter(|r| r.is_match(&n)).count())
        })
    });
    g.finish();
}

/// UserSig generation against a REST URL signed with the cached UserSig.
fn usersig(c: &mut Criterion) {
    let key = b"5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    let mut g = c.benchmark_group("usersig");
    let mut i = 0u64;
    g.bench_function("generate", |b| {
        b.iter(|| {
            i += 1;
            black_box(shared::tencent::usersig::generate(
                1_400_000_000,
                key,
                "administrator",
                86_400,
                1_700_000_000 + i,
            ))
        })
    });
    let client = shared::tencent::RestClient::new(
        reqwest::Client::new(),
        shared::tencent::client::RestOptions::default(),
        1_400_000_000,
        "administrator".into(),
        SecretString::new("k"),
    );
    let sig = shared::tencent::usersig::generate(1_400_000_000, key, "administrator", 86_400, 1_700_000_000);
    g.bench_function("rest_url_cached_sig", |b| {
        b.iter(|| black_box(client.url("openim_robot_http_svc/send_stream_msg", black_box(&sig))))
    });
    g.finish();
}

/// The router's whole in-process path (parse, verify, route, ack) with the in-memory store and a
/// queue that accepts everything: a new message, a redelivery, a forged signature.
fn router(c: &mut Criterion) {
    let rt = runtime();
    let router = Router::new(
        1_400_000_000,
        Some(SecretString::new("token")),
        Arc::new(MemoryStore::new()),
        Arc::new(NullQueue),
        "q".into(),
        "g".into(),
    );
    let now = shared::store::now_secs() as i64;
    let q = CallbackQuery::encode(1_400_000_000, "Bot.OnC2CMessage", Some(("token", now)));
    let forged = CallbackQuery::encode(1_400_000_000, "Bot.OnC2CMessage", Some(("guess", now)));
    let body = |i: u64| {
        serde_json::json!({"CallbackCommand": "Bot.OnC2CMessage", "From_Account": format!("user{}", i % 500),
            "To_Account": "@RBT#001", "MsgSeq": i, "MsgRandom": i * 7, "MsgTime": 1_700_000_000,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "What is the weather like tomorrow in Shenzhen?"}}]})
        .to_string()
    };
    let mut g = c.benchmark_group("router_in_process");
    let mut seq = 0u64;
    g.bench_function("new_message_queued", |b| {
        b.iter_batched(
            || {
                seq += 1;
                body(seq)
            },
            |bd| {
                let r = rt.block_on(router.handle(&q, bd.as_bytes(), now, "bench"));
                assert!(matches!(&r, Ok((_, o)) if o.kind() == "queued"), "{r:?}");
            },
            BatchSize::SmallInput,
        )
    });
    let seen: Vec<String> = (0..1_000).map(body).collect();
    for bd in &seen {
        rt.block_on(router.handle(&q, bd.as_bytes(), now, "bench")).ok();
    }
    let mut i = 0usize;
    g.bench_function("redelivered_message_queued", |b| {
        b.iter(|| {
            i = (i + 1) % seen.len();
            black_box(rt.block_on(router.handle(&q, seen[i].as_bytes(), now, "bench")).ok())
        })
    });
    g.bench_function("forged_signature_rejected", |b| {
        b.iter(|| {
            i = (i + 1) % seen.len();
            black_box(rt.block_on(router.handle(&forged, seen[i].as_bytes(), now, "bench")).ok())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // No tracing subscriber is installed, so the router's log line costs nothing here.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = moderation, usersig, router
}
criterion_main!(benches);
