//! The four stream modes through the Tencent emulator: native `TIMStreamElem` streams (one-to-one,
//! group, topic), send-then-modify, one send at the end, the fallback when Tencent refuses a
//! mode, the placeholder, and a native stream kept open while a reasoning model thinks.

use crate::common::{BOT, Env, c2c_body, group_body};
use devtools::llm_emu::{Script, default_answer};
use devtools::tencent_emu::StreamTarget;
use shared::bot::sink::StreamMode;
use std::time::Duration;

/// The LLM emulator's answer to its `i`-th request.
fn answer(env: &Env, i: usize) -> String {
    let reqs = env.llm.state.requests();
    default_answer(reqs[i]["messages"].as_array().map(Vec::as_slice).unwrap_or_default())
}

async fn env_with(direct: StreamMode, group: StreamMode) -> Env {
    Env::with(|w| {
        w.stream.direct_mode = direct;
        w.stream.group_mode = group;
    })
    .await
}

#[tokio::test]
async fn a_group_answer_in_native_stream_is_one_finished_stream_of_the_whole_answer() {
    let env = env_with(StreamMode::RobotStream, StreamMode::NativeStream).await;
    env.webhook("Bot.OnGroupMessage", &group_body("alice", "What is Rust?", 1)).await;
    assert_eq!(env.drain().await, 1);
    let streams = env.tencent.state.native_streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    let s = &streams[0];
    assert_eq!(s.target, StreamTarget::Group { group_id: "@TGS#grp1".into(), topic_id: None });
    assert_eq!((s.from.as_str(), s.markdown.clone()), (BOT, answer(&env, 0)));
    assert!(s.finished && !s.ended_by_timeout, "{s:?}");
    assert!(s.chunks >= 2, "streamed in several chunks: {s:?}");
    assert!(env.tencent.state.group_messages().is_empty(), "nothing sent another way");
}

#[tokio::test]
async fn a_topic_answer_in_native_stream_names_its_topic() {
    let env = env_with(StreamMode::RobotStream, StreamMode::NativeStream).await;
    let mut body = group_body("bob", "hello", 2);
    body["TopicId"] = "@TGS#_grp1@TOPIC#_t1".into();
    env.webhook("Bot.OnGroupMessage", &body).await;
    env.drain().await;
    let streams = env.tencent.state.native_streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    let topic = Some("@TGS#_grp1@TOPIC#_t1".to_owned());
    assert_eq!(streams[0].target, StreamTarget::Group { group_id: "@TGS#grp1".into(), topic_id: topic });
    assert!(streams[0].finished);
}

#[tokio::test]
async fn a_one_to_one_answer_in_native_stream() {
    let env = env_with(StreamMode::NativeStream, StreamMode::Modify).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("carol", "Hi there", 3)).await;
    env.drain().await;
    let streams = env.tencent.state.native_streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].target, StreamTarget::C2c { to: "carol".into() });
    assert_eq!(streams[0].markdown, answer(&env, 0));
    assert!(env.tencent.state.streams().is_empty(), "no robot stream");
}

#[tokio::test]
async fn a_refused_native_stream_falls_back_to_modify_once_showing_nothing_twice_and_is_remembered() {
    let env = env_with(StreamMode::RobotStream, StreamMode::NativeStream).await;
    // The app's edition has no native streams: every call is refused.
    env.tencent.state.refuse("stream_msg/", 80_001);
    env.webhook("Bot.OnGroupMessage", &group_body("dan", "first question", 4)).await;
    env.drain().await;
    env.webhook("Bot.OnGroupMessage", &group_body("dan", "second question", 5)).await;
    env.drain().await;
    let sent = env.tencent.state.group_messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(m.text, format!("@dan {}", answer(&env, i)), "each answer once, whole");
    }
    assert!(env.tencent.state.native_streams().is_empty());
    let tried = env.tencent.state.calls_to("stream_msg/send_group_stream_msg");
    assert_eq!(tried.len(), 1, "the refusal is remembered: the second answer does not try again");
}

#[tokio::test]
async fn one_to_one_modify_sends_then_modifies_and_final_sends_once() {
    let env = env_with(StreamMode::Modify, StreamMode::Modify).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("erin", "Tell me a story", 6)).await;
    env.drain().await;
    let sent = env.tencent.state.c2c_records();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, answer(&env, 0));
    assert!(sent[0].modifications >= 1, "{:?}", sent[0]);

    let env = env_with(StreamMode::Final, StreamMode::Final).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("erin", "Tell me a story", 6)).await;
    env.drain().await;
    let sent = env.tencent.state.c2c_records();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].text.clone(), sent[0].modifications), (answer(&env, 0), 0));
}

#[tokio::test]
async fn a_slow_first_token_shows_the_placeholder_which_the_answer_replaces() {
    let env = Env::with(|w| {
        w.stream.direct_mode = StreamMode::Modify;
        w.stream.placeholder_after = Duration::from_millis(200);
    })
    .await;
    env.llm.state.push(Script::StallFirst { ms: 900 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("fay", "Think hard", 7)).await;
    env.drain().await;
    let sends = env.tencent.state.calls_to("openim/sendmsg");
    assert_eq!(sends.len(), 1, "one message");
    assert_eq!(sends[0].body["MsgBody"][0]["MsgContent"]["Text"], "thinking…");
    let sent = env.tencent.state.c2c_records();
    assert_eq!(sent[0].text, answer(&env, 0), "replaced by the answer");
    // A fast first token shows no placeholder.
    env.webhook("Bot.OnC2CMessage", &c2c_body("fay", "Quick one", 8)).await;
    env.drain().await;
    let sends = env.tencent.state.calls_to("openim/sendmsg");
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[1].body["MsgBody"][0]["MsgContent"]["Text"], "thinking…");
}

#[tokio::test]
async fn a_20_s_reasoning_pause_mid_answer_keeps_the_native_stream_open() {
    let env = env_with(StreamMode::NativeStream, StreamMode::NativeStream).await;
    // Longer than the 15 s after which a silent native stream ends by itself.
    env.llm.state.push(Script::ReasonAfter { after: 3, ms: 20_000 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("gus", "Ponder this", 9)).await;
    env.drain().await;
    let streams = env.tencent.state.native_streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    let s = &streams[0];
    assert!(s.finished && !s.ended_by_timeout, "{s:?}");
    assert_eq!(s.markdown, answer(&env, 0), "the whole answer, nothing of the reasoning");
}

#[tokio::test]
async fn an_llm_outage_after_the_placeholder_is_retried_in_the_placeholder_s_message() {
    let env = Env::with(|w| {
        w.stream.direct_mode = StreamMode::Modify;
        w.stream.placeholder_after = Duration::from_millis(200);
    })
    .await;
    // Both attempts of the first delivery find no first token in time (1.5 s): the placeholder
    // is shown, nothing of an answer.
    env.llm.state.push(Script::StallFirst { ms: 3_000 });
    env.llm.state.push(Script::StallFirst { ms: 3_000 });
    env.webhook("Bot.OnC2CMessage", &c2c_body("hal", "Are you there?", 10)).await;
    env.drain().await;
    let sent = env.tencent.state.c2c_records();
    assert_eq!(sent.len(), 1, "one message, the placeholder's: {sent:?}");
    let reqs = env.llm.state.requests();
    assert_eq!(sent[0].text, answer(&env, reqs.len() - 1), "the redelivery answered in it");
    assert_eq!(env.depth(&env.stack.c2c_dlq).await, 0, "nothing dead-lettered");
}

#[tokio::test]
async fn a_mode_that_cannot_serve_groups_is_not_remembered_as_refused_for_one_to_one_chats() {
    // robot_stream everywhere: in a group it cannot serve, and falls back to modify.
    let env = env_with(StreamMode::RobotStream, StreamMode::RobotStream).await;
    env.webhook("Bot.OnGroupMessage", &group_body("ivy", "hello group", 11)).await;
    env.drain().await;
    assert_eq!(env.tencent.state.group_messages().len(), 1);
    env.webhook("Bot.OnC2CMessage", &c2c_body("ivy", "hello you", 12)).await;
    env.drain().await;
    assert_eq!(env.tencent.state.streams().len(), 1, "the one-to-one answer is still a robot stream");
}

fn image_message(from: &str, seq: u64, text: Option<&str>, url: &str) -> serde_json::Value {
    let mut body = c2c_body(from, "", seq);
    let image = serde_json::json!({"MsgType": "TIMImageElem", "MsgContent": {"UUID": "u1", "ImageFormat": 1,
        "ImageInfoArray": [
            {"Type": 1, "Size": 30_000_000, "Width": 4000, "Height": 3000, "URL": format!("{url}/orig.jpg")},
            {"Type": 2, "Size": 200_000, "Width": 720, "Height": 540, "URL": format!("{url}/large.jpg")},
            {"Type": 3, "Size": 8_000, "Width": 198, "Height": 148, "URL": format!("{url}/thumb.jpg")}]}});
    let mut elems = vec![image];
    if let Some(t) = text {
        elems.push(serde_json::json!({"MsgType": "TIMTextElem", "MsgContent": {"Text": t}}));
    }
    body["MsgBody"] = serde_json::Value::Array(elems);
    body
}

#[tokio::test]
async fn images_go_to_robots_with_vision_at_the_largest_size_under_the_limit_and_only_from_tencent() {
    use shared::store::Store;
    let env = Env::new().await;
    let cos = "https://app-1250000000.cos.ap-shanghai.myqcloud.com/img";
    // Without vision, an image alone gets the text-only reply and no LLM call.
    env.webhook("Bot.OnC2CMessage", &image_message("jay", 13, None, cos)).await;
    env.drain().await;
    assert!(env.llm.state.requests().is_empty());
    let reply = env.tencent.state.streams().last().map(|s| s.text()).unwrap_or_default();
    assert!(reply.contains("not images"), "the text-only reply: {reply}");

    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(BOT), r#"{"vision": true}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.webhook("Bot.OnC2CMessage", &image_message("kim", 14, Some("What is this?"), cos)).await;
    // An image from elsewhere is not fetched by the LLM on the sender's say-so.
    env.webhook("Bot.OnC2CMessage", &image_message("lee", 15, None, "https://attacker.example/x")).await;
    env.drain().await;
    let reqs = env.llm.state.requests();
    assert_eq!(reqs.len(), 1, "the foreign image alone is not an answerable message");
    let last = reqs[0]["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
    assert_eq!(
        last["content"],
        serde_json::json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("{cos}/large.jpg")}},
        ])
    );
}
