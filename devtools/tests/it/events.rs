//! The files in `events/` drive the real handlers, so they cannot go stale: the router's API
//! Gateway envelopes (re-signed with a fresh RequestTime) and the workers' SQS envelopes.

use crate::common::{APP_ID, Env, TOKEN, guarded, guarded_as, now};
use aws_lambda_events::event::sqs::SqsEvent;
use shared::webhook::CallbackQuery;

fn event(name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The envelope with its query string signed now, as Tencent would send it today.
fn fresh(mut ev: serde_json::Value) -> serde_json::Value {
    let old = CallbackQuery::parse(ev["rawQueryString"].as_str().unwrap_or_default());
    let q = CallbackQuery::encode(APP_ID, old.command.as_deref().unwrap_or_default(), Some((TOKEN, now())));
    ev["rawQueryString"] = serde_json::json!(q);
    let params: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), serde_json::json!(v.into_owned())))
        .collect();
    ev["queryStringParameters"] = serde_json::Value::Object(params);
    // The sample events are for app 1400000000; the tests' app differs, as a user's would.
    ev
}

async fn invoke_router(env: &Env, name: &str) -> serde_json::Value {
    let ev = fresh(event(name));
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let res = shared::router::http_handler(&env.router, req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(res.status(), 200);
    let body = match res.body() {
        lambda_http::Body::Text(t) => t.clone(),
        other => panic!("{name}: unexpected body {other:?}"),
    };
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn router_events_are_acked_and_routed() {
    let env = Env::new().await;
    for name in [
        "callback-router.bot-c2c-message.json",
        "callback-router.unknown-command.json",
        "callback-router.stop-generating.json",
    ] {
        let ack = invoke_router(&env, name).await;
        assert_eq!(ack["ActionStatus"], "OK", "{name}: {ack}");
    }
    assert_eq!(env.depth(&env.stack.c2c_queue).await, 1, "only the chat message is queued");
    let ack = invoke_router(&env, "callback-router.bot-group-message.json").await;
    assert_eq!(ack["ActionStatus"], "OK");
    assert_eq!(env.depth(&env.stack.group_queue).await, 1);
    for name in ["callback-router.group-before-send-msg.json", "callback-router.group-after-send-msg.json"] {
        let ack = invoke_router(&env, name).await;
        assert_eq!((ack["ActionStatus"].as_str(), ack["ErrorCode"].as_i64()), (Some("OK"), Some(0)), "{name}: {ack}");
    }
}

#[tokio::test]
async fn worker_events_are_answered() {
    let env = Env::new().await;
    for (name, group) in [("bot-c2c-message.text.json", false), ("bot-group-message.mention.json", true)] {
        let ev: SqsEvent = serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let resp = env.worker.sqs_handler(ev, shared::store::now_ms() + 60_000).await;
        assert!(resp.batch_item_failures.is_empty(), "{name}");
        if group {
            assert_eq!(env.tencent.state.group_messages().len(), 1);
        } else {
            let s = env.tencent.state.streams();
            assert!(s.len() == 1 && s[0].finished && s[0].to == "user1", "{s:?}");
        }
    }
}

#[tokio::test]
async fn other_command_events_are_handled_by_their_functions() {
    use shared::event_worker::sqs_handler;
    let env = Env::new().await;
    // Moderation: the direct-invoke payloads.
    let m = shared::moderation::Moderator::new(
        guarded("GroupBeforeSendMsgFunction", &env.store),
        None,
        std::time::Duration::from_millis(300),
        shared::moderation::Verdict::Allow,
        std::time::Duration::ZERO,
    );
    let policy = r#"{"rules":[{"words":["scam"],"action":{"kind":"refuse"}}]}"#;
    use shared::store::Store;
    env.store.put_doc(&shared::moderation::Policy::app_key(), policy, None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.handle(&event("group-before-send-msg.text.json")).await.error_code, 1);
    assert_eq!(m.handle(&event("c2c-before-send-msg.text.json")).await.error_code, 0);
    // The event functions: SQS envelopes.
    let stats = shared::stats::Stats {
        store: guarded("GroupAfterSendMsgFunction", &env.store),
        kind_field: "type".into(),
        ttl_secs: 60,
    };
    let presence = shared::presence::Presence { store: guarded("StateChangeFunction", &env.store) };
    let community = shared::community::Community {
        store: guarded_as(&["GroupAfterCreateGroupFunction", "GroupAfterNewMemberJoinFunction"], &env.store),
        chat: env.chat.clone(),
        default_topics: vec!["General".into()],
        welcome_from: Some("@RBT#001".into()),
        welcome_text: "Hi {members}".into(),
        welcome_topic: Some("General".into()),
        ttl_secs: 60,
    };
    let cases: [(&str, &dyn shared::event_worker::EventHandler); 4] = [
        ("group-after-send-msg.like.json", &stats),
        ("state-change.login.json", &presence),
        ("group-after-create-group.community.json", &community),
        ("group-after-new-member-join.welcome.json", &community),
    ];
    for (name, handler) in cases {
        let ev: SqsEvent = serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(sqs_handler(handler, ev).await.batch_item_failures.is_empty(), "{name}");
    }
    assert_eq!(env.store.counter(&shared::stats::group_counter("@TGS#2J4SZEAEL", "likes")).await, Ok(1));
    assert_eq!(env.store.counter(shared::presence::ONLINE_KEY).await, Ok(1));
    assert_eq!(env.tencent.state.topics().len(), 1);
    assert_eq!(env.tencent.state.group_messages().first().map(|m| m.text.clone()), Some("Hi user2, user3".into()));
    // The welcome is our own message: it skips the app's before-send and after-send callbacks.
    let welcome = env.tencent.state.calls_to("group_open_http_svc/send_group_msg");
    let forbid = serde_json::json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"]);
    assert!(welcome.iter().all(|c| c.body["ForbidCallbackControl"] == forbid), "{welcome:?}");
}

#[tokio::test]
async fn team_events_are_handled_by_their_function() {
    use shared::event_worker::sqs_handler;
    let env = Env::new().await;
    let teams = shared::teams::Teams {
        store: guarded("GroupTeamEventsFunction", &env.store),
        chat: env.chat.clone(),
        full_text: "Team {group} is complete".into(),
        exit_text: "{members} {how}".into(),
        exit_dm_from: Some("administrator".into()),
        exit_dm_text: "You {how} {group}".into(),
        ttl_secs: 60,
    };
    for name in ["group-team-events.group-full.json", "group-team-events.member-exit.json"] {
        let ev: SqsEvent = serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(sqs_handler(&teams, ev).await.batch_item_failures.is_empty(), "{name}");
    }
    let notes: Vec<String> = env.tencent.state.system_notifications().into_iter().map(|n| n.content).collect();
    assert_eq!(notes, ["Team @TGS#2TEAMFULL1 is complete", "player4 was kicked"]);
    let dms = env.tencent.state.c2c_messages();
    assert_eq!(
        dms,
        [("administrator".to_owned(), "player4".to_owned(), "You were removed from @TGS#2TEAMFULL1".to_owned())]
    );
}
