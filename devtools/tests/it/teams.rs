//! Game teams through the router, a standard queue on moto and the `group-team-events`
//! handler against the Tencent emulator: one notification per event however often it is
//! delivered, one message to each player who left, and bad bodies refused with nothing sent.

use crate::common::{APP_ID, Env, TOKEN, guarded, now, unique};
use devtools::tencent_emu::Fault;
use shared::event_worker::{EventHandler, sqs_handler};
use shared::router::{Router, Routes};
use shared::teams::Teams;
use shared::webhook::{Ack, CallbackQuery};
use std::collections::HashMap;

const FULL: &str = "Group.CallbackAfterGroupFull";
const EXIT: &str = "Group.CallbackAfterMemberExit";

pub(crate) fn teams(env: &Env, dm_from: Option<&str>) -> Teams {
    Teams {
        store: guarded("GroupTeamEventsFunction", &env.store),
        chat: env.chat.clone(),
        full_text: "Team {group} is complete!".into(),
        exit_text: "{members} {how}.".into(),
        exit_dm_from: dm_from.map(str::to_owned),
        exit_dm_text: "You {how} team {group}.".into(),
        ttl_secs: 3600,
    }
}

/// A router whose two game-team commands go to a fresh standard queue; returns it and the queue.
pub(crate) async fn team_router(env: &Env) -> (Router, String) {
    team_router_with(env, 30).await
}

/// [`team_router`] with the queue's visibility timeout (seconds).
pub(crate) async fn team_router_with(env: &Env, visibility_secs: u32) -> (Router, String) {
    let (queue, _dlq) = devtools::aws::queue_with_dlq(&env.sqs, &unique("team-events"), visibility_secs, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let routes = Routes {
        event_queues: HashMap::from([(FULL.to_owned(), queue.clone()), (EXIT.to_owned(), queue.clone())]),
        ..Routes::default()
    };
    let router = crate::common::router_with(env, routes);
    (router, queue)
}

pub(crate) async fn send(router: &Router, command: &str, body: &serde_json::Value) -> Ack {
    let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, now())));
    router.handle(&q, body.to_string().as_bytes(), now(), "req-team").await.unwrap_or_else(|e| panic!("{e}")).0
}

/// Delivers everything in `queue` to `handler`; returns how many records failed.
async fn drain(env: &Env, queue: &str, handler: &dyn EventHandler) -> usize {
    drain_with(env, queue, |ev| sqs_handler(handler, ev)).await
}

/// Delivers everything in `queue` to the Lambda adapter `adapter`; returns how many records failed.
pub(crate) async fn drain_with<F, Fut>(env: &Env, queue: &str, adapter: F) -> usize
where
    F: Fn(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    let mut failed = 0;
    loop {
        let stats = devtools::esm::poll_once(&env.sqs, queue, 10, 0, |ev| async { Ok::<_, String>(adapter(ev).await) })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        failed += stats.failed;
        if stats.received == 0 {
            return failed;
        }
    }
}

pub(crate) fn full(group: &str, at: u64) -> serde_json::Value {
    serde_json::json!({"CallbackCommand": FULL, "GroupId": group, "EventTime": at})
}

fn exit(group: &str, how: &str, members: &[&str], at: u64) -> serde_json::Value {
    let list: Vec<serde_json::Value> = members.iter().map(|m| serde_json::json!({"Member_Account": m})).collect();
    serde_json::json!({"CallbackCommand": EXIT, "GroupId": group, "Type": "Public", "ExitType": how,
        "Operator_Account": "captain", "ExitMemberList": list, "EventTime": at})
}

fn notifications(env: &Env) -> Vec<(String, String)> {
    env.tencent.state.system_notifications().into_iter().map(|n| (n.group_id, n.content)).collect()
}

#[tokio::test]
async fn a_full_team_is_notified_once_even_when_the_webhook_comes_twice() {
    let env = Env::new().await;
    let (router, queue) = team_router(&env).await;
    let teams = teams(&env, None);
    for _ in 0..2 {
        let ack = send(&router, FULL, &full("@TGS#team1", 1_700_000_000_000)).await;
        assert_eq!(ack.action_status, "OK");
    }
    assert_eq!(drain(&env, &queue, &teams).await, 0);
    // SQS may deliver a record again after it was handled.
    assert_eq!(teams.handle(FULL, &full("@TGS#team1", 1_700_000_000_000)).await.ok(), Some("duplicate"));
    assert_eq!(notifications(&env), [("@TGS#team1".to_owned(), "Team @TGS#team1 is complete!".to_owned())]);
    let calls = env.tencent.state.calls_to("group_open_http_svc/send_group_system_notification");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].body.get("ToMembers_Account").is_none(), "every member is told: {:?}", calls[0].body);
    // The same team filling up again later is a new event.
    assert_eq!(teams.handle(FULL, &full("@TGS#team1", 1_700_000_900_000)).await.ok(), Some("team_full_notified"));
    assert_eq!(notifications(&env).len(), 2);
}

#[tokio::test]
async fn players_who_quit_or_were_kicked_are_named_and_each_gets_one_message() {
    let env = Env::new().await;
    let (router, queue) = team_router(&env).await;
    let teams = teams(&env, Some("@RBT#coach"));
    let quit = exit("@TGS#team2", "Quit", &["cat", "bob"], 1_700_000_001_000);
    let kicked = exit("@TGS#team2", "Kicked", &["dan"], 1_700_000_002_000);
    for _ in 0..2 {
        send(&router, EXIT, &quit).await;
        send(&router, EXIT, &kicked).await;
    }
    assert_eq!(drain(&env, &queue, &teams).await, 0);
    let mut notes: Vec<String> = notifications(&env).into_iter().map(|(_, c)| c).collect();
    notes.sort();
    assert_eq!(notes, ["bob, cat quit.", "dan was kicked."]);
    let mut dms = env.tencent.state.c2c_messages();
    dms.sort();
    assert_eq!(
        dms,
        [
            ("@RBT#coach".to_owned(), "bob".to_owned(), "You left team @TGS#team2.".to_owned()),
            ("@RBT#coach".to_owned(), "cat".to_owned(), "You left team @TGS#team2.".to_owned()),
            ("@RBT#coach".to_owned(), "dan".to_owned(), "You were removed from team @TGS#team2.".to_owned()),
        ]
    );
    // Our own messages skip the app's before-send and after-send callbacks.
    let forbid = serde_json::json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"]);
    assert!(env.tencent.state.calls_to("openim/sendmsg").iter().all(|c| c.body["ForbidCallbackControl"] == forbid));
}

#[tokio::test]
async fn when_a_message_to_a_player_fails_the_redelivery_sends_only_what_is_missing() {
    let env = Env::new().await;
    let teams = teams(&env, Some("admin"));
    let ev = exit("@TGS#team3", "Quit", &["amy", "ben"], 1_700_000_003_000);
    // The notification goes out, the first message is refused (not a code worth retrying).
    env.tencent.state.push_fault(Fault::Code { path: Some("openim/sendmsg".into()), code: 90001 });
    let first = teams.handle(EXIT, &ev).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(teams.handle(EXIT, &ev).await.ok(), Some("team_exit_notified"));
    assert_eq!(teams.handle(EXIT, &ev).await.ok(), Some("duplicate"));
    assert_eq!(notifications(&env), [("@TGS#team3".to_owned(), "amy, ben quit.".to_owned())]);
    let mut to: Vec<String> = env.tencent.state.c2c_messages().into_iter().map(|(_, to, _)| to).collect();
    to.sort();
    assert_eq!(to, ["amy", "ben"]);
    assert_eq!(env.tencent.state.calls_to("openim/sendmsg").len(), 3, "the refused one and one to each");
}

#[tokio::test]
async fn without_a_sender_no_one_to_one_message_is_sent() {
    let env = Env::new().await;
    let teams = teams(&env, None);
    let ev = exit("@TGS#team4", "Kicked", &["eve", "fay"], 1_700_000_004_000);
    assert_eq!(teams.handle(EXIT, &ev).await.ok(), Some("team_exit_notified"));
    assert_eq!(notifications(&env), [("@TGS#team4".to_owned(), "eve, fay were kicked.".to_owned())]);
    assert!(env.tencent.state.c2c_messages().is_empty());
}

#[tokio::test]
async fn bad_bodies_are_refused_clearly_and_nothing_is_sent() {
    let env = Env::new().await;
    let (router, queue) = team_router(&env).await;
    let teams = teams(&env, Some("admin"));
    let bad = [
        (FULL, serde_json::json!({"EventTime": 1})),
        (FULL, serde_json::json!({"GroupId": "  "})),
        (EXIT, serde_json::json!({"GroupId": 7, "ExitMemberList": []})),
        (EXIT, serde_json::json!({"GroupId": "@TGS#t", "ExitMemberList": "bob"})),
        (EXIT, serde_json::json!({"GroupId": "", "ExitType": "Quit", "ExitMemberList": [{"Member_Account": "bob"}]})),
        (EXIT, serde_json::json!([1, 2])),
    ];
    for (command, body) in &bad {
        let err = teams.handle(command, body).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("the event is malformed: "), "{command} {body}: {err:?}");
    }
    let err = teams.handle("Group.CallbackAfterSendMsg", &full("@TGS#t", 1)).await.err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("group-team-events got Group.CallbackAfterSendMsg")));
    // An exit that names nobody is nothing to announce.
    let nobody = exit("@TGS#t", "Quit", &[" "], 1);
    assert_eq!(teams.handle(EXIT, &nobody).await.ok(), Some("no_members"));
    // The router refuses bodies that are not the command's type before queuing them.
    let ack = send(&router, EXIT, &serde_json::json!({"GroupId": "@TGS#t", "ExitMemberList": "bob"})).await;
    assert_eq!(ack.action_status, "FAIL", "{ack:?}");
    assert!(ack.error_info.contains(EXIT), "{}", ack.error_info);
    // A record that is unreadable when it arrives fails and goes back to the queue.
    send(&router, FULL, &serde_json::json!({"GroupId": "  "})).await;
    assert_eq!(drain(&env, &queue, &teams).await, 1);
    assert!(env.tencent.state.system_notifications().is_empty());
    assert!(env.tencent.state.c2c_messages().is_empty());
}

#[tokio::test]
async fn members_leaving_a_community_are_not_announced_as_a_team_s() {
    let env = Env::new().await;
    let teams = teams(&env, Some("@RBT#coach"));
    let mut left = exit("@TGS#_server", "Quit", &["cat"], 1_700_000_003_000);
    left["Type"] = "Community".into();
    assert_eq!(teams.handle(EXIT, &left).await.ok(), Some("not_a_team"));
    assert!(notifications(&env).is_empty() && env.tencent.state.c2c_messages().is_empty());
}
