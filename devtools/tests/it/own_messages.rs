//! The bot's own messages and the app's callbacks: the bot's sends skip the before-send and
//! after-send callbacks (protocol doc §6).

use crate::common::{Env, c2c_body, group_body};

const SEND_GROUP: &str = "group_open_http_svc/send_group_msg";
const STREAM: &str = "openim_robot_http_svc/send_stream_msg";

#[tokio::test]
async fn the_bots_group_sends_forbid_the_apps_before_and_after_send_callbacks() {
    let env = Env::new().await;
    env.webhook("Bot.OnGroupMessage", &group_body("ana", "hello", 1)).await;
    env.webhook("Bot.OnC2CMessage", &c2c_body("ana", "hello", 2)).await;
    env.drain().await;
    let sends = env.tencent.state.calls_to(SEND_GROUP);
    assert_eq!(sends.len(), 1, "{sends:?}");
    let forbid = serde_json::json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"]);
    assert_eq!(sends[0].body["ForbidCallbackControl"], forbid, "{}", sends[0].body);
    // The robot stream documents no ForbidCallbackControl, so none is sent.
    let chunks = env.tencent.state.calls_to(STREAM);
    assert!(!chunks.is_empty());
    assert!(chunks.iter().all(|c| c.body.get("ForbidCallbackControl").is_none()), "{chunks:?}");
}
