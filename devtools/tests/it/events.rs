//! The files in `events/` drive the real handlers, so they cannot go stale: the router's API
//! Gateway envelopes (re-signed with a fresh RequestTime) and the workers' SQS envelopes.

use crate::common::{APP_ID, Env, TOKEN, now};
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
}

#[tokio::test]
async fn worker_events_are_answered() {
    let env = Env::new().await;
    for (name, group) in [("bot-c2c-message.text.json", false), ("bot-group-message.mention.json", true)] {
        let ev: SqsEvent = serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let resp = env.worker.sqs_handler(ev).await;
        assert!(resp.batch_item_failures.is_empty(), "{name}");
        if group {
            assert_eq!(env.tencent.state.group_messages().len(), 1);
        } else {
            let s = env.tencent.state.streams();
            assert!(s.len() == 1 && s[0].finished && s[0].to == "user1", "{s:?}");
        }
    }
}
