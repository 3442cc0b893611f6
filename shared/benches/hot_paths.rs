//! `cargo bench -p shared`: the in-process hot paths, each timed over many iterations, printed
//! as median and p99 per operation, with ratios measured in the same run where a comparison is
//! the point. Figures: benches/RESULTS.md.

use async_trait::async_trait;
use shared::moderation::{Action, Engine, Moderator, Policy, Rule, Scope, Verdict, normalize};
use shared::msg::MsgElement;
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::{MemoryStore, Store};
use shared::webhook::CallbackQuery;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Figures {
    median: Duration,
    p99: Duration,
}

fn measure(iters: usize, mut f: impl FnMut(usize)) -> Figures {
    for i in 0..iters.min(100) {
        f(i);
    }
    let mut samples: Vec<Duration> = (0..iters)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    Figures { median: samples[samples.len() / 2], p99: samples[samples.len() * 99 / 100] }
}

fn report(name: &str, f: &Figures) {
    println!("{name:<58} median {:>10.2?}   p99 {:>10.2?}", f.median, f.p99);
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

fn moderation(rt: &tokio::runtime::Runtime) {
    println!("\n## Moderation: compile once, then a verdict per message (a 200-character message)");
    let words: Vec<String> = (0..5_000).map(word).collect();
    let patterns: Vec<String> = (0..500).map(pattern).collect();
    let clean = "Hello everyone, the meeting moved to Friday at three. Please bring the slides and the \
                 quarterly numbers; we will also plan the offsite and pick a restaurant for dinner afterwards!";
    let body_clean = vec![MsgElement::text(clean)];
    let body_dirty = vec![MsgElement::text(format!("{clean} {}", words[4_321]))];
    let w = word(321);
    let body_dirty_pattern = vec![MsgElement::text(format!("{clean} {}1{}", &w[..2], &w[2..]))];
    for (name, policy, body_dirty) in [
        ("5,000 words", policy_of(&words, &[]), &body_dirty),
        ("500 patterns", policy_of(&[], &patterns), &body_dirty_pattern),
    ] {
        let compile = measure(20, |_| {
            black_box(Engine::compile(std::slice::from_ref(black_box(&policy))).ok());
        });
        report(&format!("compile, {name}"), &compile);
        // The moderation function's path: the policy read from the store and compiled on the
        // first message, then kept (a 60 s read cache, the compiled policy by version).
        let store = Arc::new(MemoryStore::new());
        let doc = serde_json::to_string(&policy).unwrap_or_default();
        rt.block_on(store.put_doc(&Policy::app_key(), &doc, None)).unwrap_or_else(|e| panic!("{e}"));
        let m = Moderator::new(store, None, Duration::from_millis(800), Verdict::Allow, Duration::from_secs(60));
        let v = rt.block_on(m.moderate(Scope::Group, None, body_dirty));
        assert!(matches!(v, Verdict::Rewrite(_)), "{name}: the dirty message is masked: {v:?}");
        let warm = measure(20_000, |_| {
            black_box(rt.block_on(m.moderate(Scope::Group, None, black_box(&body_clean))));
        });
        report(&format!("verdict, warm cache, {name}, clean message"), &warm);
        let warm_dirty = measure(20_000, |_| {
            black_box(rt.block_on(m.moderate(Scope::Group, None, black_box(body_dirty))));
        });
        report(&format!("verdict, warm cache, {name}, masked word"), &warm_dirty);
        println!(
            "{name}: compiled {} time(s) for {} verdicts; compiling per message would cost {:.0}x the warm verdict",
            m.compiles(),
            2 * (20_000 + 100),
            (compile.median + warm.median).as_secs_f64() / warm.median.as_secs_f64()
        );
    }

    println!("\n## Moderation verdict against alternatives, 5,000 word rules");
    let engine = Engine::compile(&[policy_of(&words, &[])]).unwrap_or_else(|e| panic!("{e}"));
    let auto = measure(20_000, |_| {
        black_box(engine.judge(black_box(&body_clean), Scope::Group));
    });
    report("automaton (Aho-Corasick), clean message", &auto);
    let auto_dirty = measure(20_000, |_| {
        black_box(engine.judge(black_box(&body_dirty), Scope::Group));
    });
    report("automaton (Aho-Corasick), message with a masked word", &auto_dirty);
    let normalized: Vec<String> = words.iter().map(|w| normalize(w).0).collect();
    let naive = measure(2_000, |_| {
        let (n, _) = normalize(black_box(clean));
        black_box(normalized.iter().filter(|w| n.contains(w.as_str())).count());
    });
    report("loop of 5,000 substring searches, clean message", &naive);
    let regexes: Vec<regex::Regex> = words.iter().filter_map(|w| regex::Regex::new(&regex::escape(w)).ok()).collect();
    let loop_re = measure(500, |_| {
        let (n, _) = normalize(black_box(clean));
        black_box(regexes.iter().filter(|r| r.is_match(&n)).count());
    });
    report("loop of 5,000 regexes, clean message", &loop_re);
    println!(
        "ratio: substring loop / automaton = {:.1}x, regex loop / automaton = {:.1}x (medians)",
        naive.median.as_secs_f64() / auto.median.as_secs_f64(),
        loop_re.median.as_secs_f64() / auto.median.as_secs_f64()
    );
}

fn usersig() {
    println!("\n## UserSig and REST URL signing");
    let key = b"5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    let gen_ = measure(20_000, |i| {
        black_box(shared::tencent::usersig::generate(
            1_400_000_000,
            key,
            "administrator",
            86_400,
            1_700_000_000 + i as u64,
        ));
    });
    report("UserSig generation (HMAC + JSON + zlib + base64)", &gen_);
    let client = shared::tencent::RestClient::new(
        reqwest::Client::new(),
        shared::tencent::client::RestOptions::default(),
        1_400_000_000,
        "administrator".into(),
        SecretString::new("k"),
    );
    let sig = shared::tencent::usersig::generate(1_400_000_000, key, "administrator", 86_400, 1_700_000_000);
    let url = measure(50_000, |_| {
        black_box(client.url("openim_robot_http_svc/send_stream_msg", black_box(&sig)));
    });
    report("REST URL with the cached UserSig (fresh random)", &url);
    println!(
        "ratio: generating a UserSig per call / reusing it = {:.0}x",
        (gen_.median + url.median).as_secs_f64() / url.median.as_secs_f64()
    );
}

fn router(rt: &tokio::runtime::Runtime) {
    println!("\n## Router hot path in process (parse, verify, route, ack)");
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
    let bodies: Vec<String> = (0..40_000)
        .map(|i| {
            serde_json::json!({"CallbackCommand": "Bot.OnC2CMessage", "From_Account": format!("user{}", i % 500),
                "To_Account": "@RBT#001", "MsgSeq": i, "MsgRandom": i * 7, "MsgTime": 1_700_000_000,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "What is the weather like tomorrow in Shenzhen?"}}]})
            .to_string()
        })
        .collect();
    let fresh = measure(20_000, |i| {
        black_box(rt.block_on(router.handle(&q, bodies[i].as_bytes(), now, "bench")).ok());
    });
    report("new message: queued", &fresh);
    let dup = measure(20_000, |i| {
        black_box(rt.block_on(router.handle(&q, bodies[i % 1000].as_bytes(), now, "bench")).ok());
    });
    report("redelivered message: queued again", &dup);
    let forged = CallbackQuery::encode(1_400_000_000, "Bot.OnC2CMessage", Some(("guess", now)));
    let rej = measure(20_000, |i| {
        black_box(rt.block_on(router.handle(&forged, bodies[i].as_bytes(), now, "bench")).ok());
    });
    report("forged signature: rejected", &rej);
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    // No tracing subscriber is installed, so the router's log line costs nothing here.
    println!("# shared hot paths ({} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
    moderation(&rt);
    usersig();
    router(&rt);
}
