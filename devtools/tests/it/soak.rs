//! Soak: conversations of 5 messages on both platforms through the same queues and worker:
//! Tencent one-to-one and in the topics of a Community, and (a quarter of them) NetEase NIM
//! one-to-one and team mentions, through each platform's router, SQS FIFO on moto and the one
//! worker. On both platforms 20% of messages are delivered twice (concurrently), 5% are
//! answered empty by the LLM, 5% fail once at the LLM. Every message is answered exactly once
//! or apologised for and dead-lettered, in order within its conversation, and the counts
//! reconcile per platform. 20 conversations (100 messages) in the test command;
//! `SOAK_CONVERSATIONS=200` for the full 1,000.

use crate::common::{APP_ID, Env, TOKEN, c2c_body, group_body, now};
use devtools::nim_emu::{CopyMessage, NimEmulator, copy_headers};
use shared::bot::dead_letter::DeadLetter;
use shared::bot::job::Platform;
use shared::bot::texts::Texts;
use shared::keys;
use shared::nim::NimRouter;
use shared::nim::intake::{CopyHeaders, KnownRobot};
use shared::store::Store;
use shared::webhook::CallbackQuery;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const NIM_APP_KEY: &str = "soak-nim-appkey";
const NIM_SECRET: &str = "soak-nim-app-secret-0123456789";
const NIM_ROBOT: &str = "soakbot";
const NIM_NICK: &str = "SoakBot";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The message number `k` in a prompt turn such as `m3`, `[soak1] m3 [[flaky]] #1`.
fn message_number(turn: &str) -> Option<u64> {
    let shown = devtools::llm_emu::turn_text(turn);
    let t = shown.split_once("] ").map_or(shown.as_str(), |(_, rest)| rest);
    t.strip_prefix('m')?.split_whitespace().next()?.parse().ok()
}

/// Where a soak conversation takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TencentDirect,
    /// A member talking to the bot in a topic of one Community, every topic numbering its
    /// messages 1..5 (so `MsgSeq` collides across topics).
    TencentTopic,
    NimDirect,
    /// A member @-mentioning the robot in a NIM team of its own.
    NimTeam,
}

impl Kind {
    /// Every fourth conversation is NIM's, alternately one-to-one and in a team; the rest are
    /// Tencent's, alternately one-to-one and in a topic.
    fn of(c: u64) -> Kind {
        match (c % 4, (c / 4) % 2) {
            (3, 0) => Kind::NimDirect,
            (3, _) => Kind::NimTeam,
            (1, _) => Kind::TencentTopic,
            _ => Kind::TencentDirect,
        }
    }

    fn platform(self) -> Platform {
        match self {
            Kind::TencentDirect | Kind::TencentTopic => Platform::Tencent,
            Kind::NimDirect | Kind::NimTeam => Platform::Nim,
        }
    }
}

/// 5% of messages get an empty answer every time (apologised for, dead-lettered), 5% fail
/// once at the LLM (answered after a retry); in every 20 conversations each kind has one of
/// each. The conversation number keeps the prompts of a marker apart, so every flaky message
/// fails once.
fn marker(c: u64, k: u64) -> &'static str {
    match (c * 3 + k) % 20 {
        2 => " [[empty]]",
        10 => " [[flaky]]",
        _ => "",
    }
}

fn text(c: u64, k: u64) -> String {
    match marker(c, k) {
        "" => format!("m{k}"),
        m => format!("m{k}{m} #{c}"),
    }
}

/// 20% of messages are delivered twice, concurrently.
fn copies(c: u64, k: u64) -> usize {
    if (c + k).is_multiple_of(5) { 2 } else { 1 }
}

fn topic(c: u64) -> String {
    format!("@TGS#_soak@TOPIC#{c}")
}

fn team(c: u64) -> String {
    (2_000_000 + c).to_string()
}

/// The NIM conversation a NIM soak conversation's answers go to.
fn nim_conversation(c: u64) -> String {
    match Kind::of(c) {
        Kind::NimTeam => format!("{NIM_ROBOT}|2|{}", team(c)),
        _ => format!("{NIM_ROBOT}|1|soak{c}"),
    }
}

/// The Tencent test environment with NIM beside it: one worker whose outbound serves both,
/// and a NIM router on the same queues as Tencent's.
async fn setup() -> (Env, NimEmulator, NimRouter) {
    let robot = KnownRobot { accid: NIM_ROBOT.into(), nickname: Some(NIM_NICK.into()) };
    let (env, nim, router) = crate::nim_events::env_with_nim(NIM_APP_KEY, NIM_SECRET, robot, false, |w| {
        w.stream.interval = Duration::from_millis(5);
        w.defaults.first_token_timeout = Duration::from_millis(500);
        w.stream.max_chunk_bytes = 120;
    })
    .await;
    env.llm.state.set_token_delay(Duration::ZERO);
    // The soak queues everything at once and measures that each message is answered: no
    // waiting bound (`max_wait_secs` would tell the last of a long backlog the room is busy).
    let unbounded = r#"{"max_wait_secs": 0}"#;
    for key in [keys::profile(Platform::Tencent, crate::common::BOT), keys::profile(Platform::Nim, NIM_ROBOT)] {
        env.store.put_doc(&key, unbounded, None).await.unwrap_or_else(|e| panic!("{e}"));
    }
    (env, nim, router)
}

/// Delivers a message of conversation `c` once through its platform's router, again when
/// our infrastructure failed (the router answers an error), as Tencent does with retries on
/// and as NIM is assumed to. Returns the outcome's kind.
async fn deliver(env: &Env, nim: &NimRouter, c: u64, body: &str) -> &'static str {
    for _ in 0..5 {
        let handled = match Kind::of(c) {
            Kind::TencentDirect | Kind::TencentTopic => {
                let command =
                    if Kind::of(c) == Kind::TencentDirect { "Bot.OnC2CMessage" } else { "Bot.OnGroupMessage" };
                let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, now())));
                env.router.handle(&q, body.as_bytes(), now(), "soak").await.map(|(_, o)| o.kind())
            }
            Kind::NimDirect | Kind::NimTeam => {
                let headers = copy_headers(NIM_APP_KEY, NIM_SECRET, body.as_bytes(), shared::store::now_ms());
                let h = CopyHeaders::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_str())));
                match nim.handle(&h, body.as_bytes(), shared::store::now_ms(), "soak").await {
                    Ok((200, o)) => Ok(o.kind()),
                    Ok((_, _)) => Ok("refused"),
                    Err(e) => Err(e),
                }
            }
        };
        match handled {
            Ok(kind) => return kind,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    "error"
}

/// The body of message `k` of conversation `c`, as its platform sends it.
fn body(c: u64, k: u64) -> String {
    let (user, text) = (format!("soak{c}"), text(c, k));
    match Kind::of(c) {
        Kind::TencentDirect => c2c_body(&user, &text, c * 10 + k).to_string(),
        Kind::TencentTopic => {
            let mut b = group_body(&user, &text, k);
            b["GroupId"] = "@TGS#_soak".into();
            b["TopicId"] = topic(c).into();
            b.to_string()
        }
        Kind::NimDirect => CopyMessage::person(&user, NIM_ROBOT, &text, &(c * 10 + k).to_string()).body(),
        Kind::NimTeam => {
            let shown = format!("@{NIM_NICK}");
            CopyMessage::team(&user, &team(c), &format!("{shown} {text}"), &(c * 10 + k).to_string())
                .mention(NIM_ROBOT, &shown)
                .body()
        }
    }
}

/// Runs the worker over both queues until they are empty, one message per invocation as the
/// template's event source mappings do (`BatchSize: 1`), waiting for messages that a failure
/// made invisible for a while (until a minute passes with nothing to handle). Returns how many
/// messages were handled.
///
/// One at a time matters here: with several messages of one FIFO group in flight (a batch that
/// failed after its first message, each retried after its own jittered delay), moto's group
/// lock can let a later message of the group through before an earlier one that is visible
/// again, which SQS never does.
async fn drain(env: &Env) -> usize {
    // Idle time, not total time, bounds the wait: a 1,000-message soak runs for minutes, and a
    // moment when every waiting message is in its retry backoff is not the end.
    let mut idle_since = Instant::now();
    let mut retry_due: Option<Instant> = None;
    let mut total = 0;
    loop {
        let mut n = 0;
        for q in [&env.stack.c2c_queue, &env.stack.group_queue] {
            let stats = devtools::esm::poll_once(&env.sqs, q, 1, 0, |ev| async {
                Ok::<_, String>(env.worker.sqs_handler(ev, shared::store::now_ms() + 60_000).await)
            })
            .await
            .unwrap_or_else(|e| panic!("poll: {e}"));
            n += stats.received;
            if stats.failed > 0 {
                retry_due = Some(Instant::now() + env.worker.retry_max + Duration::from_secs(1));
            }
        }
        total += n;
        if n > 0 {
            idle_since = Instant::now();
            continue;
        }
        let waiting = env.depth(&env.stack.c2c_queue).await + env.depth(&env.stack.group_queue).await;
        let retry_pending = retry_due.is_some_and(|t| Instant::now() < t);
        if (waiting == 0 && !retry_pending) || idle_since.elapsed() > Duration::from_secs(60) {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every dead letter of a DLQ, read and deleted.
async fn dead_letters(sqs: &aws_sdk_sqs::Client, dlq: &str) -> Vec<DeadLetter> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return all;
        }
        for m in msgs {
            let body = m.body().unwrap_or_default();
            all.push(DeadLetter::parse(body).unwrap_or_else(|e| panic!("{e}: {body}")));
            let handle = m.receipt_handle().unwrap_or_default();
            sqs.delete_message().queue_url(dlq).receipt_handle(handle).send().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    messages: u64,
    answered: u64,
    apologised: u64,
    replies: u64,
    dead_lettered: u64,
}

#[tokio::test]
async fn every_message_on_both_platforms_is_answered_once_and_in_order() {
    let conversations: u64 = std::env::var("SOAK_CONVERSATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let (env, nim, nim_router) = setup().await;
    let started = Instant::now();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let mut received = 0u64;
    let per_conversation = futures_util::future::join_all((0..conversations).map(|c| {
        let (env, nim_router) = (&env, &nim_router);
        async move {
            let mut kinds = Vec::new();
            for k in 1..=5u64 {
                let body = body(c, k);
                let delivered = (0..copies(c, k)).map(|_| deliver(env, nim_router, c, &body));
                kinds.extend(futures_util::future::join_all(delivered).await);
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
    let handled = drain(&env).await as u64;
    let streams = env.tencent.state.streams();
    let groups = env.tencent.state.group_messages();
    let (nim_streams, nim_messages) = (nim.state.streams(), nim.state.messages());
    let mut dead = dead_letters(&env.sqs, &env.stack.c2c_dlq).await;
    dead.extend(dead_letters(&env.sqs, &env.stack.group_dlq).await);
    let queued = outcomes.get("queued").copied().unwrap_or(0);
    println!(
        "soak: {received} deliveries, {queued} queued, {handled} handled; Tencent: {} answered one-to-one, {} in \
         topics; NIM: {} streamed, {} sent; {} dead-lettered, {:.1?} total, peak RSS {} MiB",
        streams.len(),
        groups.len(),
        nim_streams.len(),
        nim_messages.len(),
        dead.len(),
        started.elapsed(),
        peak_rss_kib() / 1024
    );
    assert_eq!(received, queued, "every delivery, copies too, was queued: {outcomes:?}");
    assert!(streams.iter().all(|s| s.finished), "no Tencent stream left open");
    assert!(nim_streams.iter().all(|s| s.finished && s.duplicate_indexes == 0), "NIM streams: {nim_streams:?}");

    // Exactly one reply per message, on its own platform: its answer, or (empty answers) the
    // apology.
    let mut tally: HashMap<Platform, Tally> = HashMap::new();
    for c in 0..conversations {
        let kind = Kind::of(c);
        let user = format!("soak{c}");
        let mention = format!("@{user} ");
        let replies: Vec<String> = match kind {
            Kind::TencentDirect => streams.iter().filter(|s| s.to == user).map(|s| s.text()).collect(),
            Kind::TencentTopic => groups
                .iter()
                .filter(|g| g.topic_id.as_deref() == Some(topic(c).as_str()))
                .map(|g| g.text.trim_start_matches(&mention).to_owned())
                .collect(),
            Kind::NimDirect | Kind::NimTeam => {
                let conv = nim_conversation(c);
                let streamed = nim_streams.iter().filter(|s| s.conversation_id == conv).map(|s| s.text());
                let sent = nim_messages.iter().filter(|m| m.conversation_id == conv).map(|m| m.text.clone());
                streamed.chain(sent).map(|t| t.trim_start_matches(&mention).to_owned()).collect()
            }
        };
        let t = tally.entry(kind.platform()).or_default();
        t.replies += replies.len() as u64;
        for k in 1..=5u64 {
            let asked = text(c, k);
            let answers = replies.iter().filter(|r| r.contains(&format!("{asked}\"."))).count();
            let apologies = replies.iter().filter(|r| **r == Texts::en().apology).count();
            t.messages += 1;
            if marker(c, k) == " [[empty]]" {
                assert_eq!((answers, apologies), (0, 1), "{kind:?} {user} {asked}: {replies:?}");
                t.apologised += 1;
            } else {
                assert_eq!(answers, 1, "{kind:?} {user} {asked} answered once: {replies:?}");
                t.answered += 1;
            }
        }
    }
    for d in &dead {
        assert!(d.job.text.contains("[[empty]]"), "only the empty answers are dead-lettered: {:?}", d.job.text);
        tally.entry(d.job.platform).or_default().dead_lettered += 1;
    }
    // Per platform: nothing lost, nothing answered twice, every apology dead-lettered.
    let nim_share = (0..conversations).filter(|c| Kind::of(*c).platform() == Platform::Nim).count() as u64;
    for (platform, n) in [(Platform::Tencent, conversations - nim_share), (Platform::Nim, nim_share)] {
        let t = tally.remove(&platform).unwrap_or_default();
        assert_eq!(t.messages, n * 5, "{platform:?}");
        assert!(t.apologised > 0 || conversations < 20, "{platform:?}: the mix has empty answers: {t:?}");
        assert_eq!(t.answered + t.apologised, t.messages, "{platform:?}: nothing lost: {t:?}");
        assert_eq!(t.replies, t.messages, "{platform:?}: one reply per message, none twice: {t:?}");
        assert_eq!(t.dead_lettered, t.apologised, "{platform:?}: dead-lettered = apologised for: {t:?}");
    }
    assert!(tally.is_empty(), "no other platform: {tally:?}");

    // In order within each conversation: every prompt's user turns are that conversation's
    // messages in increasing order, ending with the message being answered.
    for req in env.llm.state.requests() {
        let msgs = req["messages"].as_array().cloned().unwrap_or_default();
        let nums: Vec<u64> = msgs
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| message_number(m["content"].as_str().unwrap_or_default()))
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "in order: {nums:?} in {msgs:?}");
    }
}
