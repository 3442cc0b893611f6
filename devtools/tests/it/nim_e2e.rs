//! NIM robots end to end: a signed message copy → the NIM router → SQS FIFO on moto → the
//! same worker as Tencent's (its outbound choosing by platform) → local LLM (SSE) → the local
//! NIM emulator.

use crate::common::{Env, user_messages};
use devtools::llm_emu::{default_answer, turn_text};
use devtools::nim_emu::{CopyMessage, EmuStream, Endpoint, NimEmulator, copy_headers};
use shared::bot::job::Platform;
use shared::bot::texts::Texts;
use shared::keys;
use shared::nim::NimRouter;
use shared::nim::intake::{CopyHeaders, KnownRobot};
use shared::router::Outcome;
use shared::store::Store;
use std::time::Duration;

const APP_KEY: &str = "nim-e2e-appkey";
const APP_SECRET: &str = "nim-e2e-app-secret-0123456789";
const ROBOT: &str = "mybot";
const NICK: &str = "MyBot";
const TEAM: &str = "2837465";

/// The Tencent test environment with NIM beside it: a NIM emulator, the worker's outbound
/// serving both platforms, and a NIM router on the same queues.
struct NimEnv {
    env: Env,
    nim: NimEmulator,
    router: NimRouter,
}

impl NimEnv {
    async fn new() -> NimEnv {
        Self::with(false).await
    }

    async fn with(team_streaming: bool) -> NimEnv {
        let robot = KnownRobot { accid: ROBOT.into(), nickname: Some(NICK.into()) };
        let (env, nim, router) =
            crate::nim_events::env_with_nim(APP_KEY, APP_SECRET, robot, team_streaming, |_| {}).await;
        NimEnv { env, nim, router }
    }

    /// Delivers `body` as NIM's message copy, signed with `secret` at `cur_time_ms`.
    async fn copy_signed(&self, body: &str, secret: &str, cur_time_ms: u64) -> (u16, Outcome) {
        let headers = copy_headers(APP_KEY, secret, body.as_bytes(), cur_time_ms);
        let h = CopyHeaders::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let now = shared::store::now_ms();
        self.router.handle(&h, body.as_bytes(), now, "req-nim").await.unwrap_or_else(|e| panic!("router: {e}"))
    }

    /// Delivers a message copy signed as NIM would sign it now.
    async fn copy(&self, msg: &CopyMessage) -> (u16, Outcome) {
        self.copy_signed(&msg.body(), APP_SECRET, shared::store::now_ms()).await
    }

    fn only_stream(&self) -> EmuStream {
        let streams = self.nim.state.streams();
        assert_eq!(streams.len(), 1, "{streams:?}");
        streams.into_iter().next().unwrap_or_else(|| panic!("no stream"))
    }

    /// The full text of every answer, streamed or sent, in the order they were opened.
    fn answers(&self) -> Vec<String> {
        let mut all: Vec<(String, String)> =
            self.nim.state.streams().into_iter().map(|s| (s.server_id.clone(), s.text())).collect();
        all.extend(self.nim.state.messages().into_iter().map(|m| (m.server_id, m.text)));
        all.sort();
        all.into_iter().map(|(_, t)| t).collect()
    }
}

fn to_robot(from: &str, text: &str, id: &str) -> CopyMessage {
    CopyMessage::person(from, ROBOT, text, id)
}

fn expected_answer(req: &serde_json::Value) -> String {
    default_answer(req["messages"].as_array().map(Vec::as_slice).unwrap_or_default())
}

#[tokio::test]
async fn a_one_to_one_answer_is_streamed_in_index_order_and_finished_once() {
    let t = NimEnv::new().await;
    assert_eq!(t.copy(&to_robot("alice", "What is Rust?", "1001")).await, (200, Outcome::Queued { jobs: 1 }));
    assert_eq!(t.env.drain().await, 1);
    let s = t.only_stream();
    let reqs = t.env.llm.state.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(user_messages(&reqs[0]), ["What is Rust?"]);
    assert_eq!(s.text(), expected_answer(&reqs[0]));
    assert_eq!(s.conversation_id, "mybot|1|alice");
    let n = s.chunks.len() as u32;
    assert!(n >= 3, "streamed in several deltas: {:?}", s.chunks);
    assert_eq!(s.indexes(), (0..n).collect::<Vec<_>>(), "deltas numbered from 0 without gaps");
    assert_eq!((s.finished, s.duplicate_indexes, s.route_enabled), (true, 0, Some(false)));
    let calls = t.nim.state.calls_to(Endpoint::Stream);
    let finishes = calls.iter().filter(|c| c.body["message"]["attachment"]["finish"] == 1).count();
    assert_eq!(finishes, 1, "finished exactly once");
    let server_id =
        |c: &devtools::nim_emu::Call| c.body["message"]["message_server_id"].as_u64().map(|n| n.to_string());
    assert!(calls[1..].iter().all(|c| server_id(c).as_deref() == Some(s.server_id.as_str())), "{calls:?}");
    let done = t.env.llm.state.done_ms();
    assert!(calls[0].at_ms < done[0], "first delta at {} before the LLM finished at {}", calls[0].at_ms, done[0]);
    assert!(t.nim.state.messages().is_empty());
    assert!(t.env.tencent.state.streams().is_empty(), "nothing went to Tencent");
}

#[tokio::test]
async fn a_team_mention_is_answered_once_with_the_asker_mentioned() {
    let t = NimEnv::new().await;
    let msg = CopyMessage::team("bob", TEAM, "@MyBot what time is it?", "2001").mention(ROBOT, "@MyBot");
    assert_eq!(t.copy(&msg).await, (200, Outcome::Queued { jobs: 1 }));
    assert_eq!(t.env.drain().await, 1);
    let reqs = t.env.llm.state.requests();
    let asked: Vec<String> = user_messages(&reqs[0]).iter().map(|m| turn_text(m)).collect();
    assert_eq!(asked, ["[bob] what time is it?"], "mention removed, the sender beside the text");
    let msgs = t.nim.state.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m.conversation_id, format!("mybot|2|{TEAM}"));
    assert_eq!(m.text, format!("@bob {}", expected_answer(&reqs[0])));
    assert_eq!((m.forcepush_ids.clone(), m.route_enabled), (vec!["bob".to_owned()], Some(false)));
    let ext: serde_json::Value = serde_json::from_str(m.extension.as_deref().unwrap_or("")).unwrap_or_default();
    assert_eq!(ext["yxAitMsg"]["bob"]["text"], "@bob");
    assert!(t.nim.state.streams().is_empty(), "team streaming is off: one send, no stream");
    // A mention by nickname alone (no extension) is addressed too, and answered once.
    let by_nick = CopyMessage::team("carol", TEAM, "hey @MyBot, and you?", "2002");
    assert_eq!(t.copy(&by_nick).await.1, Outcome::Queued { jobs: 1 });
    t.env.drain().await;
    assert_eq!(t.nim.state.messages().len(), 2);
}

#[tokio::test]
async fn with_team_streaming_on_a_team_answer_streams_with_the_mention_first() {
    let t = NimEnv::with(true).await;
    let msg = CopyMessage::team("bob", TEAM, "@MyBot hi", "2101").mention(ROBOT, "@MyBot");
    t.copy(&msg).await;
    t.env.drain().await;
    let s = t.only_stream();
    assert!(s.finished && s.text().starts_with("@bob You said"), "{:?}", s.text());
    assert_eq!(s.forcepush_ids, ["bob"]);
    assert!(t.nim.state.messages().is_empty());
}

#[tokio::test]
async fn a_team_message_that_does_not_mention_the_robot_is_ignored() {
    let t = NimEnv::new().await;
    let (status, outcome) = t.copy(&CopyMessage::team("bob", TEAM, "hello everyone", "3001")).await;
    assert_eq!((status, outcome), (200, Outcome::Ignored("the team message mentions no robot".into())));
    // Our own reply coming back through message copy is ignored as well.
    let mut own = CopyMessage::person(ROBOT, "alice", "an answer", "3002");
    own.client_type = "REST";
    assert_eq!(t.copy(&own).await.1.kind(), "ignored");
    assert_eq!(t.env.depth(&t.env.stack.group_queue).await + t.env.depth(&t.env.stack.c2c_queue).await, 0);
    assert_eq!(t.env.drain().await, 0);
    assert!(t.nim.state.calls().is_empty() && t.env.llm.state.requests().is_empty());
}

#[tokio::test]
async fn a_copy_delivered_again_is_answered_once() {
    let t = NimEnv::new().await;
    let msg = to_robot("dora", "hello", "4001");
    let outcomes = futures_util::future::join_all((0..4).map(|_| t.copy(&msg))).await;
    assert!(outcomes.iter().all(|o| o.0 == 200), "{outcomes:?}");
    t.env.drain().await;
    // Later, outside SQS's deduplication window's reach: the worker's reply record drops it.
    t.copy(&msg).await;
    t.env.drain().await;
    assert_eq!(t.nim.state.streams().len(), 1);
    assert_eq!(t.env.llm.state.requests().len(), 1);
}

#[tokio::test]
async fn the_conversation_is_remembered_and_reset() {
    let t = NimEnv::new().await;
    t.copy(&to_robot("erin", "My name is Erin.", "5001")).await;
    t.env.drain().await;
    t.copy(&to_robot("erin", "What is my name?", "5002")).await;
    t.env.drain().await;
    let reqs = t.env.llm.state.requests();
    let second = user_messages(&reqs[1]);
    assert_eq!(second.len(), 3, "{second:?}");
    assert_eq!(second[0], "My name is Erin.");
    assert!(second[1].starts_with("You said: \"My name is Erin.\""), "{second:?}");
    assert_eq!(second[2], "What is my name?");
    // The memory is NIM's own: the same user id on Tencent starts afresh.
    t.env.webhook("Bot.OnC2CMessage", &crate::common::c2c_body("erin", "Hi from Tencent", 1)).await;
    t.env.drain().await;
    assert_eq!(user_messages(&t.env.llm.state.requests()[2]), ["Hi from Tencent"]);
    assert_eq!(t.env.tencent.state.streams().len(), 1, "the Tencent job went to Tencent");
    // /reset forgets, and is answered without the LLM.
    t.copy(&to_robot("erin", "/reset", "5003")).await;
    t.env.drain().await;
    assert_eq!(t.env.llm.state.requests().len(), 3);
    assert!(t.answers().contains(&Texts::en().reset_done), "{:?}", t.answers());
    t.copy(&to_robot("erin", "Who am I?", "5004")).await;
    t.env.drain().await;
    assert_eq!(user_messages(&t.env.llm.state.requests()[3]), ["Who am I?"]);
}

#[tokio::test]
async fn the_daily_quota_of_a_nim_robot_is_enforced() {
    let t = NimEnv::new().await;
    t.env
        .store
        .put_doc(&keys::profile(Platform::Nim, ROBOT), r#"{"daily_quota": 1}"#, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.copy(&to_robot("fred", "one", "6001")).await;
    t.copy(&to_robot("fred", "two", "6002")).await;
    t.env.drain().await;
    let answers = t.answers();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].starts_with("You said: \"one\""), "{answers:?}");
    assert_eq!(answers[1], Texts::en().quota_reply(1));
    assert_eq!(t.env.llm.state.requests().len(), 1);
}

#[tokio::test]
async fn a_forged_or_stale_copy_is_refused_and_nothing_is_queued() {
    let t = NimEnv::new().await;
    let body = to_robot("gina", "hello", "7001").body();
    let now = shared::store::now_ms();
    let (status, outcome) = t.copy_signed(&body, "not-the-app-secret", now).await;
    assert_eq!((status, outcome), (401, Outcome::Rejected("CheckSum does not match".into())));
    let (status, outcome) = t.copy_signed(&body, APP_SECRET, now - 10 * 60_000).await;
    assert_eq!((status, outcome.kind()), (401, "rejected"));
    // Tampered on the way: the body no longer matches its MD5.
    let headers = copy_headers(APP_KEY, APP_SECRET, body.as_bytes(), now);
    let h = CopyHeaders::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_str())));
    let tampered = body.replace("hello", "HELLO");
    let r = t.router.handle(&h, tampered.as_bytes(), now, "r").await.map(|(s, o)| (s, o.kind()));
    assert_eq!(r.ok(), Some((401, "rejected")));
    assert_eq!(t.env.depth(&t.env.stack.c2c_queue).await, 0);
    assert_eq!(t.env.drain().await, 0);
    assert!(t.nim.state.calls().is_empty());
}

#[tokio::test]
async fn a_one_to_one_stop_ends_the_answer_in_progress() {
    let t = NimEnv::new().await;
    t.env.llm.state.push(devtools::llm_emu::Script::StallAfter { after: 4, ms: 1_200 });
    assert_eq!(t.copy(&to_robot("bob", "Tell me everything", "1101")).await, (200, Outcome::Queued { jobs: 1 }));
    let stop = async {
        // While the answer waits on the LLM, the user sends /stop: a stop flag, not a question.
        tokio::time::sleep(Duration::from_millis(500)).await;
        t.copy(&to_robot("bob", "/stop", "1102")).await
    };
    let (drained, stopped) = tokio::join!(t.env.drain(), stop);
    assert_eq!(stopped, (200, Outcome::StopRequested));
    assert_eq!(drained, 1, "the stop was not queued as a question");
    let s = t.only_stream();
    let full = expected_answer(&t.env.llm.state.requests()[0]);
    assert!(s.finished, "{s:?}");
    assert!(s.text().len() < full.len() && full.starts_with(&s.text()), "stopped early: {:?}", s.text());
    assert_eq!(t.env.llm.state.requests().len(), 1);
}
