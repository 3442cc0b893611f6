//! A robot's fixed texts and `/usage`, through the router, the queue, the worker and the
//! Tencent emulator: the robot's language, a profile's overrides, and the daily usage.

use crate::common::{BOT, Env, c2c_body};
use devtools::llm_emu::Script;
use devtools::tencent_emu::Stream;
use shared::store::Store;
use std::time::Duration;

async fn set_profile(env: &Env, profile: &str) {
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), profile, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn replies(env: &Env) -> Vec<String> {
    env.tencent.state.streams().iter().map(Stream::text).collect()
}

/// Whether `s` has Chinese characters (the emulated LLM answers in English: "You said …").
fn is_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test]
async fn a_zh_robot_answers_help_and_non_text_in_chinese() {
    let env = Env::new().await;
    set_profile(&env, r#"{"language": "zh"}"#).await;
    let mut img = c2c_body("ada", "", 1);
    img["MsgBody"] = serde_json::json!([{"MsgType": "TIMImageElem", "MsgContent": {"UUID": "x"}}]);
    env.webhook("Bot.OnC2CMessage", &img).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("ada", "/help", 2)).await;
    env.drain().await;
    let texts = replies(&env);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.iter().all(|t| is_chinese(t)), "{texts:?}");
    assert!(
        ["/reset", "/usage", "/help"].iter().all(|c| texts[1].contains(c)),
        "the help names the commands: {texts:?}"
    );
    assert!(env.llm.state.requests().is_empty());
}

#[tokio::test]
async fn a_profile_s_text_overrides_the_built_in_one() {
    let env = Env::new().await;
    set_profile(&env, r#"{"language": "zh", "texts": {"help": "Ask me anything, in any language."}}"#).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("bo", "/help", 1)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("bo", "/reset", 2)).await;
    env.drain().await;
    let texts = replies(&env);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[0], "Ask me anything, in any language.");
    assert!(is_chinese(&texts[1]), "the texts not overridden stay in the robot's language: {texts:?}");
}

#[tokio::test]
async fn an_unknown_text_makes_the_profile_invalid_and_the_defaults_apply() {
    let env = Env::new().await;
    set_profile(&env, r#"{"language": "zh", "texts": {"help": "Custom help.", "hlep": "a typo"}}"#).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("cy", "/help", 1)).await;
    env.drain().await;
    let texts = replies(&env);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0] != "Custom help." && !is_chinese(&texts[0]), "the deployment's default help: {texts:?}");
    assert!(texts[0].contains("/help"), "{texts:?}");
}

#[tokio::test]
async fn the_apology_follows_the_robot_s_language() {
    // Cut mid-stream: the pump finishes the open message with the apology.
    let env = Env::new().await;
    set_profile(&env, r#"{"language": "zh"}"#).await;
    env.llm.state.push(Script::CutAfter { after: 5 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("di", "hi", 1)).await;
    env.drain().await;
    let texts = replies(&env);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("You said") && is_chinese(&texts[0]), "{texts:?}");

    // Down for every attempt: the worker gives up with the apology as a message of its own.
    let env = Env::with(|w| {
        w.llm_attempts = 1;
        w.max_receives = 1;
    })
    .await;
    set_profile(&env, r#"{"language": "zh"}"#).await;
    env.llm.state.push(Script::Status { status: 503 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("di", "hi", 1)).await;
    env.drain().await;
    let texts = replies(&env);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(is_chinese(&texts[0]), "{texts:?}");
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1);

    // Died mid-stream: the redelivery finishes that stream with the apology.
    let env = Env::new().await;
    set_profile(&env, r#"{"language": "zh"}"#).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("di", "hi", 1)).await;
    let msgs = env.sqs.receive_message().queue_url(&env.stack.c2c_queue).send().await.unwrap_or_else(|e| panic!("{e}"));
    let body = msgs.messages().first().and_then(|m| m.body.clone()).unwrap_or_default();
    env.llm.state.set_token_delay(Duration::from_millis(100));
    let attempt = tokio::time::timeout(Duration::from_millis(400), env.worker.process(&body, 1)).await;
    assert!(attempt.is_err(), "the first attempt was cut off mid-stream");
    let again = env.worker.process(&body, 2).await.map(|o| o.kind()).map_err(|e| e.to_string());
    assert_eq!(again, Ok("dead_lettered"));
    let texts = replies(&env);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("You said") && is_chinese(&texts[0]), "{texts:?}");
}

/// Sends `before` messages and then `/usage` as `user` to a robot with `profile`; returns the
/// reply to `/usage`.
async fn usage_after(env: &Env, profile: &str, user: &str, before: u64) -> String {
    set_profile(env, profile).await;
    for i in 1..=before {
        env.webhook("Bot.OnC2CMessage", &c2c_body(user, &format!("message {i}"), i)).await;
    }
    env.webhook("Bot.OnC2CMessage", &c2c_body(user, "/usage", before + 1)).await;
    env.drain().await;
    let texts = replies(env);
    assert_eq!(texts.len() as u64, before + 1, "{texts:?}");
    assert_eq!(env.llm.state.requests().len() as u64, before, "/usage is answered without the LLM");
    texts.last().cloned().unwrap_or_default()
}

#[tokio::test]
async fn usage_says_how_many_messages_were_used_and_are_left_today() {
    let env = Env::new().await;
    let reply = usage_after(&env, r#"{"daily_quota": 5}"#, "ed", 2).await;
    assert!(reply.contains("2 used") && reply.contains("3 left"), "{reply:?}");
    // `/usage` did not count: a second one says the same.
    env.webhook("Bot.OnC2CMessage", &c2c_body("ed", "/usage", 9)).await;
    env.drain().await;
    assert_eq!(replies(&env).last(), Some(&reply));
}

#[tokio::test]
async fn usage_in_chinese_for_a_zh_robot() {
    let env = Env::new().await;
    let reply = usage_after(&env, r#"{"daily_quota": 5, "language": "zh"}"#, "fu", 2).await;
    assert!(is_chinese(&reply) && reply.contains("已用 2 条") && reply.contains("剩 3 条"), "{reply:?}");
}

#[tokio::test]
async fn usage_without_a_quota_says_there_is_no_limit() {
    let env = Env::new().await;
    let reply = usage_after(&env, r#"{"daily_quota": 0}"#, "gi", 1).await;
    assert!(reply.contains("no daily limit"), "{reply:?}");
}
