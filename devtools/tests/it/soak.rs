//! Soak: conversations of 5 messages through the router, SQS FIFO on moto and the worker, 20%
//! of webhooks delivered twice (some concurrently). Every message is answered exactly once, in
//! order within its conversation, and the outcome counts add up. 20 conversations (100
//! webhooks) in the test command; `SOAK_CONVERSATIONS=200` for the full 1,000.

use crate::common::{APP_ID, Env, TOKEN, c2c_body, now};
use shared::webhook::CallbackQuery;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn every_message_is_answered_once_and_in_order() {
    let conversations: u64 = std::env::var("SOAK_CONVERSATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let env = Env::with(|w| {
        w.stream.interval = Duration::from_millis(5);
    })
    .await;
    env.llm.state.set_token_delay(Duration::ZERO);
    let started = Instant::now();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let mut received = 0u64;
    // Conversations run side by side; within one, messages go in order, 20% of them twice, the
    // second copy at the same moment as the first.
    let per_conversation = futures_util::future::join_all((0..conversations).map(|c| {
        let env = &env;
        async move {
            let mut kinds = Vec::new();
            for k in 1..=5u64 {
                let body = c2c_body(&format!("soak{c}"), &format!("m{k}"), c * 10 + k).to_string();
                let copies = if (c * 5 + k) % 5 == 0 { 2 } else { 1 };
                // A webhook our infrastructure failed (the router answers an error) is delivered
                // again, as Tencent does with retries on.
                let deliver = || async {
                    for _ in 0..5 {
                        let q = CallbackQuery::encode(APP_ID, "Bot.OnC2CMessage", Some((TOKEN, now())));
                        match env.router.handle(&q, body.as_bytes(), now(), "soak").await {
                            Ok((_, o)) => return o.kind(),
                            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                    }
                    "error"
                };
                for kind in futures_util::future::join_all((0..copies).map(|_| deliver())).await {
                    kinds.push(kind);
                }
            }
            kinds
        }
    }))
    .await;
    for kinds in per_conversation {
        for k in kinds {
            received += 1;
            *outcomes.entry(k).or_default() += 1;
        }
    }
    let handled = env.drain().await as u64;
    let streams = env.tencent.state.streams();
    let dead = env.depth(&env.stack.c2c_dlq).await;
    let queued = outcomes.get("queued").copied().unwrap_or(0);
    let sum: u64 =
        ["queued", "duplicate", "rejected", "ignored"].iter().map(|k| outcomes.get(k).copied().unwrap_or(0)).sum();
    println!(
        "soak: {received} webhooks, {queued} queued, {} duplicate, {handled} handled, {} answered, {dead} dead-lettered, \
         {:.1?} total, peak RSS {} MiB",
        outcomes.get("duplicate").copied().unwrap_or(0),
        streams.len(),
        started.elapsed(),
        peak_rss_kib() / 1024
    );
    assert_eq!(received, sum, "received = queued + duplicate + rejected + ignored: {outcomes:?}");
    assert_eq!(queued, conversations * 5, "each message queued once");
    assert_eq!(queued, streams.len() as u64 + dead, "queued = answered + dead-lettered");
    assert_eq!(dead, 0);
    assert!(streams.iter().all(|s| s.finished));
    // In order within each conversation: the LLM saw m1..m5 for each user, in that order.
    for req in env.llm.state.requests() {
        let msgs = req["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs.last().and_then(|m| m["content"].as_str()).unwrap_or_default().to_owned();
        let user_turns = msgs.iter().filter(|m| m["role"] == "user").count();
        let n: usize = last.trim_start_matches('m').parse().unwrap_or(0);
        assert_eq!(user_turns, n, "message m{n} came after exactly {} earlier ones", n - 1);
    }
}
