//! A busy conversation, end to end through moto, the router, the worker and the emulators: a
//! message waiting behind an answer in progress is told it is next (once), and messages sent
//! in a burst are answered as one turn.

use crate::common::{BOT, Env, c2c_body, group_body, unique, user_messages};
use devtools::llm_emu::default_answer;
use shared::bot::arrivals::Arrivals;
use shared::bot::texts::Texts;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An environment with busy notes after `note_after` and bursts within `burst` (0: none): the
/// router notes arrivals as the deployment's would.
async fn busy_env(note_after: Duration, burst: Duration) -> (Env, String) {
    let mut env = Env::with(|w| {
        w.busy.burst_window = burst;
        // Slow first answers are how these tests keep a conversation busy.
        w.defaults.first_token_timeout = Duration::from_secs(10);
    })
    .await;
    let busy_queue = env
        .sqs
        .create_queue()
        .queue_name(unique("busy"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .queue_url
        .unwrap_or_default();
    env.worker.busy.queue_url = Some(busy_queue.clone());
    env.worker.busy.note_after = note_after;
    env.router.arrivals = Arrivals { busy_queue_url: Some(busy_queue.clone()), note_after, inbox: !burst.is_zero() };
    (env, busy_queue)
}

/// Runs the worker over one message of the C2C queue, as the event source mapping would.
async fn work_one(env: &Env) -> usize {
    let stats = devtools::esm::poll_once(&env.sqs, &env.stack.c2c_queue, 1, 0, |ev| async {
        Ok::<_, String>(env.worker.sqs_handler(ev, shared::store::now_ms() + 60_000).await)
    })
    .await
    .unwrap_or_else(|e| panic!("poll: {e}"));
    stats.received
}

/// Waits (up to `secs`) for busy checks and hands them to the worker; returns their bodies.
async fn work_checks(env: &Env, queue: &str, secs: i32) -> Vec<String> {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    devtools::esm::poll_once(&env.sqs, queue, 10, secs, |ev| {
        let bodies = bodies.clone();
        async move {
            let mut seen: Vec<String> = ev.records.iter().filter_map(|r| r.body.clone()).collect();
            bodies.lock().unwrap_or_else(|p| p.into_inner()).append(&mut seen);
            Ok::<_, String>(env.worker.sqs_handler(ev, shared::store::now_ms() + 60_000).await)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("poll: {e}"));
    bodies.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn notes(env: &Env) -> usize {
    let busy = Texts::en().busy;
    env.tencent
        .state
        .c2c_messages()
        .iter()
        .filter(|(from, to, text)| from == BOT && to == "alice" && *text == busy)
        .count()
}

#[tokio::test]
async fn a_message_waiting_behind_an_answer_is_told_once_that_it_is_next_and_then_answered() {
    let (env, busy_queue) = busy_env(Duration::from_secs(1), Duration::ZERO).await;
    // Nothing in progress: no check.
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "first question", 1)).await;
    assert_eq!(env.depth(&busy_queue).await, 0, "a message with nothing before it waits for nothing");
    // The first answer is slow; the second message arrives while it streams.
    env.llm.state.set_first_token_delay(Duration::from_secs(4));
    let (handled, checks) = tokio::join!(work_one(&env), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "second question", 2)).await;
        work_checks(&env, &busy_queue, 5).await
    });
    assert_eq!(handled, 1);
    assert_eq!(checks.len(), 1, "one check for the waiting message: {checks:?}");
    assert_eq!(notes(&env), 1, "told it is next: {:?}", env.tencent.state.c2c_messages());
    // So far only the first message is answered: the note did not stand in for an answer.
    assert_eq!(env.tencent.state.streams().len(), 1);
    // A second delivery of the same check tells nobody again.
    let msg = shared::queue::QueueMessage { body: checks[0].clone(), group_id: None, dedup_id: None };
    use shared::queue::Queue;
    shared::queue::SqsQueue::new(env.sqs.clone()).send(&busy_queue, &msg).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(work_checks(&env, &busy_queue, 2).await.len(), 1);
    assert_eq!(notes(&env), 1, "told once");
    // Then the second message is answered, once.
    env.llm.state.set_first_token_delay(Duration::ZERO);
    assert_eq!(env.drain().await, 1);
    let streams = env.tencent.state.streams();
    assert_eq!(streams.len(), 2);
    assert!(streams.iter().all(|s| s.finished));
    let reqs = env.llm.state.requests();
    assert_eq!(user_messages(&reqs[1]).last().map(String::as_str), Some("second question"));
    // A check that comes due after its message was answered tells nothing, and no check
    // follows a message that arrives once the conversation is idle again.
    shared::queue::SqsQueue::new(env.sqs.clone()).send(&busy_queue, &msg).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(work_checks(&env, &busy_queue, 2).await.len(), 1);
    assert_eq!(notes(&env), 1);
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "third question", 3)).await;
    assert_eq!(env.depth(&busy_queue).await, 0, "the answer before it is over: no check");
}

#[tokio::test]
async fn a_message_whose_answer_starts_before_the_note_is_due_is_not_told_anything() {
    let (env, busy_queue) = busy_env(Duration::from_secs(3), Duration::ZERO).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "first", 1)).await;
    env.llm.state.set_first_token_delay(Duration::from_millis(800));
    tokio::join!(work_one(&env), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "second", 2)).await;
    });
    // The second is answered before its check is due.
    assert_eq!(env.drain().await, 1);
    let checks = work_checks(&env, &busy_queue, 5).await;
    assert_eq!(checks.len(), 1, "the router scheduled a check");
    assert_eq!(notes(&env), 0, "but nobody was told: the answer had started");
}

#[tokio::test]
async fn messages_sent_within_the_burst_window_are_answered_as_one_turn() {
    let (env, _) = busy_env(Duration::from_secs(5), Duration::from_millis(1500)).await;
    for (seq, text) in [(1, "Tell me"), (2, "about Rust"), (3, "briefly")] {
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", text, seq)).await;
    }
    assert_eq!(env.drain().await, 3);
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 1, "one question to the LLM");
    assert_eq!(user_messages(&reqs[0]), vec!["Tell me\nabout Rust\nbriefly".to_owned()]);
    let streams = env.tencent.state.streams();
    assert_eq!(streams.len(), 1, "one answer");
    let expected = default_answer(reqs[0]["messages"].as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(streams[0].text(), expected);
    // Remembered as one turn.
    let conv = shared::keys::direct_scope(shared::bot::job::Platform::Tencent, BOT, "alice");
    use shared::store::Store;
    let turns: Vec<String> = env
        .store
        .recent_turns(&conv, 0, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|t| t.text)
        .collect();
    assert_eq!(turns, vec!["Tell me\nabout Rust\nbriefly".to_owned(), expected]);
    // A message after the window is a turn of its own.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "and Go?", 4)).await;
    assert_eq!(env.drain().await, 1);
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(user_messages(&reqs[1]).last().map(String::as_str), Some("and Go?"));
}

#[tokio::test]
async fn a_message_arriving_while_the_first_waits_out_the_window_restarts_the_request_unseen() {
    let (env, _) = busy_env(Duration::from_secs(5), Duration::from_millis(1500)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "What is", 1)).await;
    // The worker asks the LLM at once and holds its first token until the window closes; the
    // second message comes meanwhile.
    tokio::join!(work_one(&env), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "a borrow checker?", 2)).await;
    });
    assert_eq!(env.drain().await, 1, "the second message's own turn finds it answered");
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 2, "asked again with the whole burst");
    assert_eq!(user_messages(&reqs[0]), vec!["What is".to_owned()]);
    assert_eq!(user_messages(&reqs[1]), vec!["What is\na borrow checker?".to_owned()]);
    let streams = env.tencent.state.streams();
    assert_eq!(streams.len(), 1, "nothing of the first request was shown: {streams:?}");
    let expected = default_answer(reqs[1]["messages"].as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(streams[0].text(), expected);
}

#[tokio::test]
async fn in_a_group_another_member_s_message_ends_a_burst_and_commands_are_never_merged() {
    let (env, _) = busy_env(Duration::from_secs(5), Duration::from_millis(1500)).await;
    for (seq, from, text) in [(1, "ann", "one"), (2, "bob", "two"), (3, "ann", "three")] {
        env.webhook("Bot.OnGroupMessage", &group_body(from, text, seq)).await;
    }
    assert_eq!(env.drain().await, 3);
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 3, "three turns, in order: {:?}", reqs.iter().map(user_messages).collect::<Vec<_>>());
    env.llm.state.reset();
    for (seq, text) in [(11, "hello"), (12, "/help")] {
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", text, seq)).await;
    }
    assert_eq!(env.drain().await, 2);
    assert_eq!(env.llm.state.requests().len(), 1, "the question is answered, and /help replied to");
    assert!(
        env.tencent.state.streams().iter().any(|s| s.text() == Texts::en().help),
        "{:?}",
        env.tencent.state.streams()
    );
}

#[tokio::test]
async fn a_mention_with_more_than_max_pending_waiting_behind_it_gets_the_overloaded_reply() {
    // No bursts here, but the routers note arrivals as a deployment with bursts does.
    let (mut env, _) = busy_env(Duration::from_secs(5), Duration::ZERO).await;
    env.router.arrivals.inbox = true;
    use shared::store::Store;
    let profile = serde_json::json!({ "max_pending": 1 }).to_string();
    env.store
        .put_doc(&shared::keys::profile(shared::bot::job::Platform::Tencent, BOT), &profile, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (seq, from) in [(1, "ann"), (2, "bob"), (3, "cat")] {
        env.webhook("Bot.OnGroupMessage", &group_body(from, "a question", seq)).await;
    }
    assert_eq!(env.drain().await, 3);
    let overloaded = Texts::en().overloaded;
    let sent = env.tencent.state.group_messages();
    let told: Vec<&str> = sent
        .iter()
        .filter(|m| m.text.ends_with(&overloaded))
        .flat_map(|m| m.at_accounts.iter().map(String::as_str))
        .collect();
    assert_eq!(told, ["ann"], "two waited behind ann's mention, one behind bob's: {sent:?}");
    assert_eq!(env.llm.state.requests().len(), 2, "bob and cat are answered");
}

#[tokio::test]
async fn a_burst_message_delivered_twice_is_taken_once() {
    let (env, _) = busy_env(Duration::from_secs(5), Duration::from_millis(1500)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "Tell me", 1)).await;
    // Tencent retries a webhook it thinks failed: the router notes it twice.
    for _ in 0..2 {
        env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "about Rust", 2)).await;
    }
    env.drain().await;
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(user_messages(&reqs[0]), vec!["Tell me\nabout Rust".to_owned()]);
}

#[tokio::test]
async fn a_message_claimed_by_a_turn_that_never_finished_is_answered_in_its_own() {
    let (env, _) = busy_env(Duration::from_secs(5), Duration::ZERO).await;
    // An earlier message's worker claimed this one for its burst, then died: its turn is not
    // done, so the claim does not hold.
    use shared::store::Store;
    let key = |seq: u64| format!("c2c#{BOT}#alice#{seq}_{}_{}", 1000 + seq, 1_700_000_000 + seq);
    let claim = serde_json::json!({"state": "merged", "into": key(1)}).to_string();
    env.store.put_doc(&shared::keys::reply_of_key(&key(2)), &claim, Some(3600)).await.unwrap_or_else(|e| panic!("{e}"));
    env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "still here?", 2)).await;
    assert_eq!(env.drain().await, 1);
    assert_eq!(env.llm.state.requests().len(), 1, "answered");
    assert_eq!(env.tencent.state.streams().len(), 1);
}
