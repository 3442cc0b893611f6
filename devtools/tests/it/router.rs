//! The router handler against moto: what it refuses, what it ignores, and that refused
//! webhooks never reach a queue.

use crate::common::{APP_ID, Env, TOKEN, c2c_body, now};
use shared::store::Store;
use shared::webhook::CallbackQuery;
use shared::webhook::sign::compute_sign;

fn query(app: &str, command: &str, sign: Option<&str>, time: Option<i64>) -> String {
    let mut q = format!("SdkAppid={app}&CallbackCommand={command}&contenttype=json&ClientIP=1.2.3.4&OptPlatform=iOS");
    if let Some(s) = sign {
        q.push_str(&format!("&Sign={s}"));
    }
    if let Some(t) = time {
        q.push_str(&format!("&RequestTime={t}"));
    }
    q
}

#[tokio::test]
async fn when_signature_is_forged_stale_future_missing_or_app_wrong_should_reject_and_queue_nothing() {
    let env = Env::new().await;
    let body = c2c_body("alice", "hi", 1).to_string();
    let t = now();
    let good = compute_sign(TOKEN, &t.to_string());
    let app = APP_ID.to_string();
    let cases = [
        ("forged", query(&app, "Bot.OnC2CMessage", Some(&compute_sign("guess", &t.to_string())), Some(t))),
        ("stale", query(&app, "Bot.OnC2CMessage", Some(&compute_sign(TOKEN, &(t - 120).to_string())), Some(t - 120))),
        ("future", query(&app, "Bot.OnC2CMessage", Some(&compute_sign(TOKEN, &(t + 120).to_string())), Some(t + 120))),
        ("missing", query(&app, "Bot.OnC2CMessage", None, None)),
        ("replayed time", query(&app, "Bot.OnC2CMessage", Some(&good), Some(t - 1))),
        ("wrong app", query("1400999999", "Bot.OnC2CMessage", Some(&good), Some(t))),
        ("no app", format!("CallbackCommand=Bot.OnC2CMessage&Sign={good}&RequestTime={t}")),
    ];
    for (name, q) in cases {
        let ack = env.raw_webhook(&q, body.as_bytes()).await;
        assert_eq!((ack.action_status.as_str(), ack.error_code), ("FAIL", 1), "{name}: {ack:?}");
    }
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 0);
    // The same body, signed right, is accepted and queued.
    let ack = env.raw_webhook(&query(&app, "Bot.OnC2CMessage", Some(&good), Some(t)), body.as_bytes()).await;
    assert_eq!(ack.action_status, "OK");
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 1);
}

#[tokio::test]
async fn when_body_is_malformed_should_fail_ack_without_panic() {
    let env = Env::new().await;
    let q = CallbackQuery::encode(APP_ID, "Bot.OnC2CMessage", Some((TOKEN, now())));
    let huge = format!(r#"{{"CallbackCommand":"Bot.OnC2CMessage","From_Account":"{}"}}"#, "x".repeat(70_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"\xff\xfe".to_vec(),
        b"null".to_vec(),
        br#"{"CallbackCommand":"Bot.OnC2CMessage"}"#.to_vec(),
        br#"{"CallbackCommand":"Bot.OnC2CMessage","From_Account":"a","To_Account":"@RBT#001","MsgSeq":"x","MsgRandom":1}"#.to_vec(),
        br#"{"CallbackCommand":"Bot.OnGroupMessage","From_Account":"a"}"#.to_vec(),
        br#"{"CallbackCommand":"Bot.OnC2CMessage","From_Account":"a","To_Account":"b","MsgSeq":1,"MsgRandom":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":[]}}]}"#.to_vec(),
        huge.into_bytes(),
    ];
    for body in bodies {
        let ack = env.raw_webhook(&q, &body).await;
        assert_eq!(ack.action_status, "FAIL", "{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert!(!ack.error_info.is_empty());
    }
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 0);
}

#[tokio::test]
async fn unknown_commands_and_bot_senders_are_acked_and_ignored() {
    let env = Env::new().await;
    let ack =
        env.webhook("Sns.CallbackFriendAdd", &serde_json::json!({"CallbackCommand": "Sns.CallbackFriendAdd"})).await;
    assert_eq!((ack.action_status.as_str(), ack.error_code), ("OK", 0));
    let ack = env.webhook("Bot.OnC2CMessage", &c2c_body("@RBT#other", "loop?", 3)).await;
    assert_eq!(ack.action_status, "OK");
    let ack = env
        .webhook(
            "C2C.CallbackBeforeSendMsg",
            &serde_json::json!({"From_Account": "a", "To_Account": "b", "MsgBody": []}),
        )
        .await;
    assert_eq!(
        (ack.action_status.as_str(), ack.error_code),
        ("OK", 0),
        "before-send without a moderation function allows"
    );
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 0);
}

#[tokio::test]
async fn when_body_has_wrong_type_should_not_echo_the_value() {
    let router = devtools::memory_router();
    let t = now();
    let q = CallbackQuery::encode(1_400_000_000, "Bot.OnC2CMessage", Some(("local-dev-token", t)));
    let mut body = c2c_body("alice", "hi", 1);
    body["MsgBody"] = serde_json::json!("my password is hunter2");
    let (ack, outcome) =
        router.handle(&q, body.to_string().as_bytes(), t, "req-test").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ack.action_status, "FAIL");
    assert!(!ack.error_info.is_empty() && !ack.to_json().contains("hunter2"), "{ack:?}");
    let shared::router::Outcome::Rejected(reason) = outcome else { panic!("{outcome:?}") };
    assert!(!reason.contains("hunter2"), "{reason}");
}

#[tokio::test]
async fn when_a_signal_message_has_no_handler_should_ack_it_with_error_code_1() {
    let router = devtools::memory_router();
    let t = now();
    let command = "Chatbot.OnC2CSignalMessage";
    let q = CallbackQuery::encode(1_400_000_000, command, Some(("local-dev-token", t)));
    let body = serde_json::json!({"CallbackCommand": command, "From_Account": "alice", "To_Account": "@RBT#001",
        "MsgSeq": 1, "MsgRandom": 2, "MsgKey": "1_2_3", "EventTime": 1_700_000_000_000u64, "Data": "ping"});
    let (ack, outcome) =
        router.handle(&q, body.to_string().as_bytes(), t, "req-test").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ack.action_status.as_str(), ack.error_code), ("OK", 1), "1 = ignore, nothing to forward (§6)");
    assert_eq!(outcome.kind(), "ignored");
}

/// The FIFO group of every message in the group queue (received, not deleted).
async fn group_ids(env: &Env) -> Vec<String> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let out = env
        .sqs
        .receive_message()
        .queue_url(&env.stack.group_queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    out.messages()
        .iter()
        .filter_map(|m| m.attributes()?.get(&MessageSystemAttributeName::MessageGroupId).cloned())
        .collect()
}

#[tokio::test]
async fn a_robot_with_a_conversation_per_member_answers_each_member_in_a_fifo_group_of_their_own() {
    use crate::common::group_body;
    let env = Env::new().await;
    for (from, seq) in [("ann", 1), ("bob", 2)] {
        env.webhook("Bot.OnGroupMessage", &group_body(from, "hi", seq)).await;
    }
    let shared_group = group_ids(&env).await;
    assert_eq!(shared_group.len(), 2);
    assert_eq!(shared_group[0], shared_group[1], "group scope: one FIFO group for the group");

    let env = Env::new().await;
    env.store
        .put_doc(&shared::bot::profile::BotProfile::key(crate::common::BOT), r#"{"group_scope": "member"}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (from, seq) in [("ann", 1), ("bob", 2)] {
        env.webhook("Bot.OnGroupMessage", &group_body(from, "hi", seq)).await;
    }
    let per_member = group_ids(&env).await;
    assert_eq!(per_member.len(), 2);
    assert_ne!(per_member[0], per_member[1], "member scope: each member's mentions wait only for their own");
}
