//! Fault injection against the local servers. For each fault: what the user sees, that no
//! answer is doubled, that no stream is left open, and that what could not be answered is in
//! the dead-letter queue.

use crate::common::{Env, c2c_body};
use devtools::llm_emu::Script;
use devtools::tencent_emu::{Fault, Stream};
use shared::bot::texts::Texts;
use std::time::Duration;

const STREAM: &str = "openim_robot_http_svc/send_stream_msg";

/// Sends one message, lets the worker run, and returns what the user saw.
async fn one_message(env: &Env) -> Vec<Stream> {
    env.webhook("Bot.OnC2CMessage", &c2c_body("user", "hello", 1)).await;
    env.drain().await;
    let streams = env.tencent.state.streams();
    assert!(streams.iter().all(|s| s.finished), "no stream left open: {streams:?}");
    streams
}

fn answered(streams: &[Stream]) -> bool {
    streams.len() == 1 && streams[0].text().starts_with("You said") && !streams[0].text().contains(&Texts::en().apology)
}

async fn fast_env() -> Env {
    Env::with(|w| {
        w.defaults.first_token_timeout = Duration::from_millis(400);
        w.defaults.idle_timeout = Duration::from_millis(400);
    })
    .await
}

#[tokio::test]
async fn llm_429_before_the_first_token_is_retried() {
    let env = fast_env().await;
    env.llm.state.push(Script::Status { status: 429 });
    assert!(answered(&one_message(&env).await));
    assert_eq!(env.llm.state.requests().len(), 2);
}

#[tokio::test]
async fn llm_stalling_before_the_first_token_is_retried() {
    let env = fast_env().await;
    env.llm.state.push(Script::StallFirst { ms: 1_500 });
    assert!(answered(&one_message(&env).await));
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 0);
}

#[tokio::test]
async fn llm_stalling_or_malformed_mid_stream_ends_with_the_apology_and_the_dlq() {
    for script in [Script::StallAfter { after: 4, ms: 1_500 }, Script::MalformedAfter { after: 4 }] {
        let env = fast_env().await;
        env.llm.state.push(script.clone());
        let streams = one_message(&env).await;
        assert_eq!(streams.len(), 1, "{script:?}: one answer");
        let text = streams[0].text();
        assert!(text.starts_with("You said") && text.ends_with(&Texts::en().apology), "{script:?}: {text:?}");
        assert_eq!(env.llm.state.requests().len(), 1, "{script:?}: not restarted");
        assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1, "{script:?}");
    }
}

#[tokio::test]
async fn tencent_rate_limit_and_concurrent_modify_codes_are_survived() {
    for code in [60007, 20028] {
        let env = fast_env().await;
        env.tencent.state.push_fault(Fault::Code { path: Some(STREAM.into()), code });
        let streams = one_message(&env).await;
        assert!(answered(&streams), "{code}: {streams:?}");
        assert_eq!(env.depth(&env.stack.c2c_dlq).await, 0);
    }
}

#[tokio::test]
async fn tencent_502_or_timeout_on_the_first_chunk_is_never_doubled() {
    for fault in [
        Fault::Status { path: Some(STREAM.into()), status: 502 },
        Fault::Delay { path: Some(STREAM.into()), ms: 1_200 },
    ] {
        let env = fast_env().await;
        env.tencent.state.push_fault(fault.clone());
        env.webhook("Bot.OnC2CMessage", &c2c_body("user", "hello", 1)).await;
        env.drain().await;
        tokio::time::sleep(Duration::from_millis(1_300)).await; // a delayed call lands late
        let streams = env.tencent.state.streams();
        // The chunk may have been applied, so it is not re-sent: the user sees at most that
        // chunk and one apology, never a second answer.
        let answers = streams.iter().filter(|s| s.text().starts_with("You said")).count();
        assert!(answers <= 1, "{fault:?}: {streams:?}");
        assert!(streams.iter().any(|s| s.text() == Texts::en().apology && s.finished), "{fault:?}: {streams:?}");
        assert_eq!(env.llm.state.requests().len(), 1);
        assert_eq!(env.depth(&env.stack.c2c_dlq).await, 1);
    }
}
