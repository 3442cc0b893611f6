//! The bot's own messages and the app's callbacks: the bot's sends skip the before-send and
//! after-send callbacks (protocol doc §6), and its answers are judged in-process by the
//! moderation policies instead, before any of their text is shown.

use crate::common::{Env, c2c_body, group_body};
use devtools::llm_emu::Script;
use shared::bot::texts::Texts;
use shared::config::ModerateAnswers;
use shared::moderation::Policy;
use shared::store::Store;

const SEND_GROUP: &str = "group_open_http_svc/send_group_msg";
const MODIFY_GROUP: &str = "openim/modify_group_msg";
const STREAM: &str = "openim_robot_http_svc/send_stream_msg";
/// The group of `group_body`.
const GROUP: &str = "@TGS#grp1";

async fn set_policy(env: &Env, key: &str, policy: &str) {
    env.store.put_doc(key, policy, None).await.unwrap_or_else(|e| panic!("{e}"));
}

fn deltas(parts: &[&str]) -> Script {
    Script::Deltas { deltas: parts.iter().map(|p| p.to_string()).collect() }
}

/// Every version of a group message the bot sent or modified, in order: what members saw.
fn group_texts(env: &Env) -> Vec<String> {
    env.tencent
        .state
        .calls()
        .into_iter()
        .filter(|c| c.path == SEND_GROUP || c.path == MODIFY_GROUP)
        .filter_map(|c| c.body.pointer("/MsgBody/0/MsgContent/Text").and_then(|t| t.as_str()).map(str::to_owned))
        .collect()
}

fn last_group_text(env: &Env) -> String {
    env.tencent.state.group_messages().last().map(|m| m.text.clone()).unwrap_or_default()
}

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

#[tokio::test]
async fn a_masked_word_split_across_deltas_reaches_the_group_masked() {
    let env = Env::new().await;
    set_policy(&env, &Policy::group_key(GROUP), r#"{"rules":[{"words":["badword"],"action":{"kind":"mask"}}]}"#).await;
    // The first delta opens the message at once; the word is completed two deltas later.
    env.llm.state.push(deltas(&["Here is the bad", "wo", "rd you asked about, ", "and some more text after it."]));
    env.webhook("Bot.OnGroupMessage", &group_body("bea", "say it", 1)).await;
    env.drain().await;
    let want = "@bea Here is the ******* you asked about, and some more text after it.";
    assert_eq!(last_group_text(&env), want);
    let texts = group_texts(&env);
    assert!(texts.len() >= 2, "streamed by send-then-modify: {texts:?}");
    for t in &texts {
        assert!(want.starts_with(t.as_str()), "every version shown is a prefix of the masked answer: {t:?}");
    }
}

#[tokio::test]
async fn a_refusing_policy_replaces_the_group_answer_with_the_refusal_text() {
    let env = Env::new().await;
    set_policy(&env, &Policy::group_key(GROUP), r#"{"rules":[{"words":["scam"],"action":{"kind":"refuse"}}]}"#).await;
    env.llm
        .state
        .push(Script::Answer { text: "Scam ahead: send me your bank details and I double your money.".into() });
    env.webhook("Bot.OnGroupMessage", &group_body("cy", "how do I get rich?", 1)).await;
    env.drain().await;
    assert_eq!(last_group_text(&env), format!("@cy {}", Texts::en().answer_refused));
    let texts = group_texts(&env);
    assert!(texts.iter().all(|t| !t.to_lowercase().contains("scam") && !t.contains("bank")), "{texts:?}");
    // The conversation remembers the refusal, not the refused answer.
    env.webhook("Bot.OnGroupMessage", &group_body("cy", "why not?", 2)).await;
    env.drain().await;
    let reqs = env.llm.state.requests();
    let remembered: Vec<&str> = reqs[1]["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").filter_map(|m| m["content"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(remembered, [Texts::en().answer_refused]);
}

#[tokio::test]
async fn with_answer_moderation_off_the_answer_is_shown_unmoderated() {
    let mut env = Env::with(|w| w.moderate_answers = ModerateAnswers::Off).await;
    set_policy(&env, &Policy::group_key(GROUP), r#"{"rules":[{"words":["badword"],"action":{"kind":"mask"}}]}"#).await;
    env.llm.state.push(Script::Answer { text: "a badword here".into() });
    env.webhook("Bot.OnGroupMessage", &group_body("dan", "say it", 1)).await;
    env.drain().await;
    assert_eq!(last_group_text(&env), "@dan a badword here");
    // The same policy and answer with the default setting: masked.
    env.worker.moderate_answers = ModerateAnswers::Auto;
    env.llm.state.push(Script::Answer { text: "a badword here".into() });
    env.webhook("Bot.OnGroupMessage", &group_body("dan", "again", 2)).await;
    env.drain().await;
    assert_eq!(last_group_text(&env), "@dan a ******* here");
}

#[tokio::test]
async fn c2c_robot_stream_answers_are_moderated_by_the_app_policy() {
    let env = Env::new().await;
    set_policy(&env, &Policy::app_key(), r#"{"rules":[{"words":["password"],"action":{"kind":"mask"}}]}"#).await;
    env.llm.state.push(deltas(&["Your pass", "word is hunter2, keep it ", "to yourself."]));
    env.webhook("Bot.OnC2CMessage", &c2c_body("eve", "what is my password?", 1)).await;
    env.drain().await;
    let streams = env.tencent.state.streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].text(), "Your ******** is hunter2, keep it to yourself.");
    assert!(streams[0].finished);
    assert!(
        streams[0].chunks.iter().all(|c| !c.contains("pas")),
        "no piece of the word is shown: {:?}",
        streams[0].chunks
    );
}

#[tokio::test]
async fn when_the_policies_cannot_be_read_the_answer_is_retried_not_shown_unjudged() {
    let mut env = Env::new().await;
    set_policy(&env, &Policy::app_key(), r#"{"rules":[{"words":["password"],"action":{"kind":"mask"}}]}"#).await;
    // The worker's grants without the policies' prefix: every policy read fails, as a store
    // outage would.
    let template = devtools::iam::template().unwrap_or_else(|e| panic!("{e}"));
    let mut prefixes = devtools::iam::leading_keys(&template, "BotC2cMessageFunction").unwrap_or_default();
    prefixes.retain(|p| p != "modpolicy#");
    env.worker.store = std::sync::Arc::new(devtools::iam::GuardedStore::new("worker", prefixes, env.store.clone()));
    env.llm.state.push(Script::Answer { text: "Your password is hunter2".into() });
    env.webhook("Bot.OnC2CMessage", &c2c_body("dee", "what is my password?", 3)).await;
    let job = {
        let out =
            env.sqs.receive_message().queue_url(&env.stack.c2c_queue).send().await.unwrap_or_else(|e| panic!("{e}"));
        out.messages().first().and_then(|m| m.body.clone()).unwrap_or_default()
    };
    let r = env.worker.process(&job, 1).await;
    assert!(r.is_err(), "retried: {r:?}");
    assert!(env.tencent.state.calls_to(STREAM).is_empty(), "nothing shown unjudged");
}
