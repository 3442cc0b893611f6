//! The chatbot end to end: router handler → SQS FIFO on moto → worker handler → local LLM
//! (SSE) → local Tencent REST emulator.

use crate::common::{BOT, Env, c2c_body, group_body, user_messages};
use devtools::llm_emu::{Script, default_answer};
use devtools::tencent_emu::{Fault, Stream};
use shared::bot::texts::Texts;
use std::time::Duration;

fn only_stream(env: &Env) -> Stream {
    let streams = env.tencent.state.streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    streams.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn c2c_message_gets_one_streamed_answer_that_starts_before_the_llm_ends() {
    let env = Env::new().await;
    let ack = env.webhook("Bot.OnC2CMessage", &c2c_body("alice", "What is Rust?", 1)).await;
    assert_eq!(ack.action_status, "OK");
    assert_eq!(env.drain().await, 1);
    let s = only_stream(&env);
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 1);
    let expected = default_answer(reqs[0]["messages"].as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(s.text(), expected);
    assert!(s.finished);
    assert_eq!((s.from.as_str(), s.to.as_str()), (BOT, "alice"));
    assert!(s.chunks.len() >= 3, "coalesced into several chunks: {:?}", s.chunks);
    let calls = env.tencent.state.calls_to("openim_robot_http_svc/send_stream_msg");
    assert_eq!(calls.iter().filter(|c| c.body["Finish"] == 1).count(), 1, "finished exactly once");
    let done = env.llm.state.done_ms();
    assert!(calls[0].at_ms < done[0], "first chunk at {} before the LLM finished at {}", calls[0].at_ms, done[0]);
    // The system prompt is first and byte-stable; the key went as a Bearer token (checked by the server).
    assert_eq!(reqs[0]["messages"][0]["content"], "You are a test bot.");
    assert_eq!(reqs[0]["stream"], true);
}

#[tokio::test]
async fn the_same_webhook_five_times_concurrently_is_answered_once() {
    let env = Env::new().await;
    let body = c2c_body("bob", "hello", 7);
    let acks = futures_util::future::join_all((0..5).map(|_| env.webhook("Bot.OnC2CMessage", &body))).await;
    assert!(acks.iter().all(|a| a.action_status == "OK"));
    env.drain().await;
    env.drain().await;
    assert_eq!(env.tencent.state.streams().len(), 1);
    assert_eq!(env.llm.state.requests().len(), 1);
}

#[tokio::test]
async fn a_redelivered_job_is_not_answered_twice() {
    let env = Env::new().await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("carol", "hi", 9)).await;
    // Capture the queued job, let it be answered, then deliver the very same job again.
    let msgs = env.sqs.receive_message().queue_url(&env.stack.c2c_queue).send().await.unwrap_or_else(|e| panic!("{e}"));
    let body = msgs.messages().first().and_then(|m| m.body.clone()).unwrap_or_default();
    let first = env.worker.process(&body, 1).await.unwrap_or_else(|e| panic!("{e}"));
    let second = env.worker.process(&body, 2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.kind(), "answered");
    assert_eq!(second.kind(), "duplicate");
    assert_eq!(env.tencent.state.streams().len(), 1);
}

#[tokio::test]
async fn the_conversation_is_remembered_reset_and_bounded() {
    let env = Env::new().await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("dave", "My name is Dave.", 1)).await;
    env.drain().await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("dave", "What is my name?", 2)).await;
    env.drain().await;
    let reqs = env.llm.state.requests();
    let second = user_messages(&reqs[1]);
    assert_eq!(second.len(), 3, "{second:?}");
    assert_eq!(second[0], "My name is Dave.");
    assert!(second[1].starts_with("You said: \"My name is Dave.\""));
    assert_eq!(second[2], "What is my name?");
    // Another user's conversation is separate.
    env.webhook("Bot.OnC2CMessage", &c2c_body("erin", "Hi", 3)).await;
    env.drain().await;
    assert_eq!(user_messages(&env.llm.state.requests()[2]), ["Hi"]);
    // /reset forgets, and is answered without the LLM.
    env.webhook("Bot.OnC2CMessage", &c2c_body("dave", "/reset", 4)).await;
    env.drain().await;
    assert_eq!(env.llm.state.requests().len(), 3);
    assert!(env.tencent.state.streams().iter().any(|s| s.text() == Texts::en().reset_done && s.finished));
    env.webhook("Bot.OnC2CMessage", &c2c_body("dave", "Who am I?", 5)).await;
    env.drain().await;
    assert_eq!(user_messages(&env.llm.state.requests()[3]), ["Who am I?"]);
}

#[tokio::test]
async fn turns_beyond_n_or_older_than_t_are_not_sent() {
    let env = Env::new().await;
    let profile = r#"{"max_turns": 4, "max_age_secs": 2}"#;
    use shared::store::Store;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), profile, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=4 {
        env.webhook("Bot.OnC2CMessage", &c2c_body("fay", &format!("m{i}"), i)).await;
        env.drain().await;
    }
    let reqs = env.llm.state.requests();
    let last = user_messages(&reqs[3]);
    assert!(last.len() <= 5, "at most N=4 past turns plus the new message: {last:?}");
    assert!(!last.contains(&"m1".to_owned()), "the oldest turns were dropped: {last:?}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("fay", "later", 9)).await;
    env.drain().await;
    assert_eq!(user_messages(&env.llm.state.requests()[4]), ["later"], "turns older than T=2 s are not sent");
}

#[tokio::test]
async fn a_stop_message_mid_stream_ends_that_stream_early() {
    let env = Env::new().await;
    env.llm.state.set_token_delay(Duration::from_millis(60));
    env.webhook("Bot.OnC2CMessage", &c2c_body("gus", "Tell me a long story", 1)).await;
    let mut events = env.tencent.state.subscribe();
    let stopper = async {
        // Wait for the first chunk, then press "stop generating" for that stream.
        let key = loop {
            if let Ok(devtools::tencent_emu::Seen::StreamChunk { msg_key, .. }) = events.recv().await {
                break msg_key;
            }
        };
        let data = serde_json::json!({"chatbotPlugin": 2, "src": 22, "msgKey": key}).to_string();
        let mut stop = c2c_body("gus", "", 2);
        stop["MsgBody"] = serde_json::json!([{"MsgType": "TIMCustomElem", "MsgContent": {"Data": data}}]);
        env.webhook("Bot.OnC2CMessage", &stop).await
    };
    let (_, ack) = tokio::join!(env.drain(), stopper);
    assert_eq!(ack.action_status, "OK");
    let s = only_stream(&env);
    assert!(s.finished);
    let full =
        default_answer(env.llm.state.requests()[0]["messages"].as_array().map(Vec::as_slice).unwrap_or_default());
    assert!(s.text().len() < full.len(), "stopped early: {:?}", s.text());
    assert!(full.starts_with(&s.text()));
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 0, "the stop request itself is not queued");
}

#[tokio::test]
async fn a_group_mention_is_answered_in_the_group_with_an_at_of_the_asker() {
    let env = Env::new().await;
    env.webhook("Bot.OnGroupMessage", &group_body("hana", "what time is it?", 31)).await;
    env.drain().await;
    let msgs = env.tencent.state.group_messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!((m.group_id.as_str(), m.from.as_deref()), ("@TGS#grp1", Some(BOT)));
    assert_eq!(m.at_accounts, ["hana"]);
    let reqs = env.llm.state.requests();
    let asked: Vec<String> = user_messages(&reqs[0]).iter().map(|m| devtools::llm_emu::turn_text(m)).collect();
    assert_eq!(asked, ["[hana] what time is it?"], "mention stripped, sender carried beside the text");
    let expected = default_answer(reqs[0]["messages"].as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(m.text, format!("@hana {expected}"), "streamed by send-then-modify to the full answer");
    // A bot's own group message is ignored.
    let mut from_bot = group_body("@RBT#002", "hi", 32);
    from_bot["From_Account"] = serde_json::json!("@RBT#002");
    env.webhook("Bot.OnGroupMessage", &from_bot).await;
    assert_eq!(env.drain().await, 0);
    // The same group message again is dropped by the queue or the worker, never answered twice.
    env.webhook("Bot.OnGroupMessage", &group_body("hana", "what time is it?", 31)).await;
    env.drain().await;
    assert_eq!(env.tencent.state.group_messages().len(), 1);
    assert_eq!(env.llm.state.requests().len(), 1);
}

#[tokio::test]
async fn group_answers_can_be_sent_once_without_streaming() {
    let env = Env::with(|w| w.stream.group_mode = shared::bot::sink::StreamMode::Final).await;
    env.webhook("Bot.OnGroupMessage", &group_body("ivy", "hello", 40)).await;
    env.drain().await;
    assert_eq!(env.tencent.state.calls_to("group_open_http_svc/send_group_msg").len(), 1);
    assert_eq!(env.tencent.state.calls_to("openim/modify_group_msg").len(), 0);
}

#[tokio::test]
async fn llm_500_before_the_first_token_is_retried_without_a_second_answer() {
    let env = Env::new().await;
    env.llm.state.push(Script::Status { status: 500 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("jon", "hi", 1)).await;
    env.drain().await;
    assert_eq!(env.llm.state.requests().len(), 2);
    let s = only_stream(&env);
    assert!(s.finished && s.text().starts_with("You said"));
}

#[tokio::test]
async fn llm_down_for_every_attempt_ends_in_one_apology_and_the_dlq() {
    let env = Env::with(|w| w.llm_attempts = 1).await;
    for _ in 0..devtools::aws::MAX_RECEIVES {
        env.llm.state.push(Script::Status { status: 503 });
    }
    env.webhook("Bot.OnC2CMessage", &c2c_body("kim", "hi", 1)).await;
    env.drain().await;
    assert_eq!(
        env.llm.state.requests().len(),
        devtools::aws::MAX_RECEIVES as usize,
        "one try per delivery, each delivery after a short backoff, not the visibility timeout"
    );
    let s = only_stream(&env);
    assert_eq!((s.text(), s.finished), (Texts::en().apology, true));
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1);
}

#[tokio::test]
async fn llm_cut_mid_stream_finishes_the_stream_with_the_apology_and_dead_letters() {
    let env = Env::new().await;
    env.llm.state.push(Script::CutAfter { after: 5 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("lee", "hi", 1)).await;
    env.drain().await;
    let s = only_stream(&env);
    assert!(s.finished);
    assert!(s.text().starts_with("You said") && s.text().ends_with(&Texts::en().apology), "{:?}", s.text());
    assert_eq!(env.llm.state.requests().len(), 1, "never restarted once text was shown");
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1);
}

#[tokio::test]
async fn tencent_usersig_expiry_mid_stream_is_survived() {
    let env = Env::new().await;
    env.tencent
        .state
        .push_fault(Fault::Code { path: Some("openim_robot_http_svc/send_stream_msg".into()), code: 70001 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("mia", "hi", 1)).await;
    env.drain().await;
    let s = only_stream(&env);
    assert!(s.finished && s.text().starts_with("You said") && !s.text().contains(&Texts::en().apology));
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 0);
}

#[tokio::test]
async fn a_worker_that_died_mid_stream_finishes_that_stream_on_redelivery() {
    let env = Env::new().await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("ned", "hi", 1)).await;
    let msgs = env.sqs.receive_message().queue_url(&env.stack.c2c_queue).send().await.unwrap_or_else(|e| panic!("{e}"));
    let body = msgs.messages().first().and_then(|m| m.body.clone()).unwrap_or_default();
    // Simulate a crash: the first chunk went out, then the process vanished.
    env.llm.state.set_token_delay(Duration::from_millis(100));
    let attempt = tokio::time::timeout(Duration::from_millis(400), env.worker.process(&body, 1)).await;
    assert!(attempt.is_err(), "the first attempt was cut off mid-stream");
    let again = env.worker.process(&body, 2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.kind(), "dead_lettered");
    let s = only_stream(&env);
    assert!(s.finished && s.text().ends_with(&Texts::en().apology), "{:?}", s.text());
    assert_eq!(env.llm.state.requests().len(), 1, "no second answer");
}

#[tokio::test]
async fn non_text_and_help_get_fixed_replies_without_the_llm() {
    let env = Env::new().await;
    let mut img = c2c_body("ola", "", 1);
    img["MsgBody"] = serde_json::json!([{"MsgType": "TIMImageElem", "MsgContent": {"UUID": "x"}}]);
    env.webhook("Bot.OnC2CMessage", &img).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("ola", "/help", 2)).await;
    env.drain().await;
    let texts: Vec<String> = env.tencent.state.streams().iter().map(Stream::text).collect();
    let image = shared::bot::job::Part::Other { what: "image".into() };
    assert_eq!(texts, [Texts::en().text_only_reply(&[image]), Texts::en().help]);
    assert!(texts[0].contains("not images"), "{texts:?}");
    assert!(env.llm.state.requests().is_empty());
}

#[tokio::test]
async fn the_daily_quota_is_enforced_politely() {
    let env = Env::new().await;
    use shared::store::Store;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), r#"{"daily_quota": 1}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.webhook("Bot.OnC2CMessage", &c2c_body("pat", "one", 1)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("pat", "two", 2)).await;
    env.drain().await;
    let texts: Vec<String> = env.tencent.state.streams().iter().map(Stream::text).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("today's limit of 1"), "{texts:?}");
    assert_eq!(env.llm.state.requests().len(), 1);
}

#[tokio::test]
async fn a_fallback_model_answers_when_the_primary_fails_before_its_first_token() {
    let env = Env::new().await;
    use shared::store::Store;
    let profile = r#"{"model": "primary", "fallback_models": ["backup"]}"#;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), profile, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.llm.state.push(Script::Status { status: 500 });
    env.llm.state.push(Script::Status { status: 429 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("quinn", "hi", 1)).await;
    env.drain().await;
    let models: Vec<String> =
        env.llm.state.requests().iter().map(|r| r["model"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(models, ["primary", "primary", "backup"]);
    assert!(only_stream(&env).text().starts_with("You said"));
}

#[tokio::test]
async fn a_redelivered_message_is_counted_once_against_the_quota() {
    let env = Env::new().await;
    use shared::store::Store;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), r#"{"daily_quota": 1}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.llm.state.push(Script::Status { status: 500 });
    env.llm.state.push(Script::Status { status: 500 });
    // Both in-process attempts fail before the first token: the message goes back to the queue
    // and is delivered again, and must not count twice against a quota of one.
    env.webhook("Bot.OnC2CMessage", &c2c_body("rae", "hi", 1)).await;
    env.drain().await;
    let texts: Vec<String> = env.tencent.state.streams().iter().map(Stream::text).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("You said"), "answered, not refused by the quota: {texts:?}");
}

#[tokio::test]
async fn when_a_job_has_wrong_type_should_dead_letter_without_the_value() {
    let env = Env::new().await;
    let job = serde_json::json!({"request_id": "r", "received_ms": 1, "bot": BOT,
                                 "msg": {"kind": "c2c", "event": "my password is hunter2"}});
    let outcome = env.worker.process(&job.to_string(), 1).await.unwrap_or_else(|e| panic!("{e}"));
    let shared::bot::worker::WorkOutcome::DeadLettered(reason) = outcome else { panic!("{outcome:?}") };
    assert!(reason.starts_with("malformed job: ") && !reason.contains("hunter2"), "{reason}");
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1);
}

#[tokio::test]
async fn a_group_mention_that_waited_past_the_robot_s_limit_gets_the_overloaded_reply_not_a_late_answer() {
    use shared::store::Store;
    let env = Env::new().await;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), r#"{"max_wait_secs": 1}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.webhook("Bot.OnGroupMessage", &group_body("max", "anyone there?", 1)).await;
    // A live room's backlog: the mention waits longer than the robot allows.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    env.drain().await;
    assert!(env.llm.state.requests().is_empty(), "no LLM call for an answer nobody waits for");
    let sent = env.tencent.state.group_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, format!("@max {}", Texts::en().overloaded));
    // In time, the next one is answered.
    env.webhook("Bot.OnGroupMessage", &group_body("max", "and now?", 2)).await;
    env.drain().await;
    assert_eq!(env.llm.state.requests().len(), 1);
}
