//! The EventBridge extension point on moto: a bus, a rule on it and an SQS target, as an app
//! would add them. After-events go through the router and their standard queue, the consumer
//! publishes them with the events it made (team ready), and the target receives them in the
//! documented shape; the chatbot worker's answer events go through the outbox. A bus that
//! refuses fails the record, which is published when it comes back.

use crate::common::{Env, c2c_body, unique};
use crate::teams::{drain_with, full, team_router, team_router_with, teams};
use shared::bus::{Bus, EventBridge, Outbox};
use shared::event_worker::{OutboxOnly, publishing_sqs_handler};
use std::sync::Arc;
use std::time::Duration;

type Eb = aws_sdk_eventbridge::Client;

async fn eventbridge() -> Eb {
    aws_sdk_eventbridge::Client::new(&crate::common::aws().await)
}

/// Creates a bus with a rule matching everything this product publishes and an SQS target
/// queue; returns the target queue's URL.
async fn bus_with_target(env: &Env, eb: &Eb, bus: &str) -> String {
    eb.create_event_bus()
        .name(bus)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(e)));
    let target = env.sqs.create_queue().queue_name(unique("bus-target")).send().await;
    let target = target.unwrap_or_else(|e| panic!("{e}")).queue_url.unwrap_or_default();
    let arn = devtools::esm::queue_arn(&env.sqs, &target).await.unwrap_or_else(|e| panic!("{e}"));
    let pattern = serde_json::json!({ "source": ["tcbot", "tcbot.tencent"] }).to_string();
    eb.put_rule()
        .name("all-tcbot")
        .event_bus_name(bus)
        .event_pattern(pattern)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(e)));
    let t = aws_sdk_eventbridge::types::Target::builder().id("q").arn(arn).build().unwrap_or_else(|e| panic!("{e}"));
    eb.put_targets()
        .rule("all-tcbot")
        .event_bus_name(bus)
        .targets(t)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(e)));
    target
}

/// Everything the target queue has received, as EventBridge delivered it.
async fn received(env: &Env, queue: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let r = env.sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await;
        let msgs = r.unwrap_or_else(|e| panic!("{e}")).messages.unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            out.push(serde_json::from_str(m.body().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}")));
            if let Some(h) = m.receipt_handle() {
                let _ = env.sqs.delete_message().queue_url(queue).receipt_handle(h).send().await;
            }
        }
    }
}

fn bus(eb: &Eb, name: &str) -> Bus {
    let mut b = Bus::new(Arc::new(EventBridge::new(eb.clone(), name)));
    b.backoff = Duration::from_millis(10);
    b
}

#[tokio::test]
async fn a_full_team_reaches_a_rule_s_sqs_target_as_its_callback_and_a_team_ready_event() {
    let env = Env::new().await;
    let eb = eventbridge().await;
    let name = unique("bus");
    let target = bus_with_target(&env, &eb, &name).await;
    let bus = bus(&eb, &name);
    let (router, queue) = team_router(&env).await;
    let service = teams(&env, None);
    let group = unique("@TGS#team");
    let body = full(&group, 1_700_000_000_123);

    crate::teams::send(&router, "Group.CallbackAfterGroupFull", &body).await;
    let failed = drain_with(&env, &queue, |ev| async { publishing_sqs_handler(&service, Some(&bus), ev).await }).await;
    assert_eq!(failed, 0);

    let got = received(&env, &target).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let callback = got.iter().find(|e| e["source"] == "tcbot.tencent").unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(callback["detail-type"], "Group.CallbackAfterGroupFull");
    assert_eq!(callback["detail"]["v"], 1);
    assert_eq!(callback["detail"]["command"], "Group.CallbackAfterGroupFull");
    assert_eq!(callback["detail"]["request_id"], "req-team");
    assert_eq!(callback["detail"]["callback"], body);
    let ready = got.iter().find(|e| e["source"] == "tcbot").unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(ready["detail-type"], "Team Ready");
    assert_eq!(ready["detail"]["v"], 1);
    assert_eq!(ready["detail"]["group_id"], group.as_str());
    assert_eq!(ready["detail"]["time"], 1_700_000_000_123_u64);
    // Exactly one system notification, as without a bus.
    assert_eq!(env.tencent.state.system_notifications().iter().filter(|n| n.group_id == group).count(), 1);

    // Tencent delivers the callback again: published again, with the same ids, and still one
    // notification.
    crate::teams::send(&router, "Group.CallbackAfterGroupFull", &body).await;
    drain_with(&env, &queue, |ev| async { publishing_sqs_handler(&service, Some(&bus), ev).await }).await;
    let again = received(&env, &target).await;
    let ids = |v: &[serde_json::Value]| {
        let mut ids: Vec<String> =
            v.iter().map(|e| e["detail"]["id"].as_str().unwrap_or_default().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&got));
    assert_eq!(env.tencent.state.system_notifications().iter().filter(|n| n.group_id == group).count(), 1);
}

#[tokio::test]
async fn when_the_bus_refuses_the_record_fails_and_is_published_when_it_comes_back() {
    let env = Env::new().await;
    let eb = eventbridge().await;
    let name = unique("bus");
    let bus = bus(&eb, &name);
    let (router, queue) = team_router_with(&env, 1).await;
    let service = teams(&env, None);
    let group = unique("@TGS#late");
    crate::teams::send(&router, "Group.CallbackAfterGroupFull", &full(&group, 7)).await;

    // The bus does not exist yet: PutEvents fails, so the handled record is reported failed.
    let stats = devtools::esm::poll_once(&env.sqs, &queue, 10, 0, |ev| async {
        Ok::<_, String>(publishing_sqs_handler(&service, Some(&bus), ev).await)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.received, stats.failed), (1, 1));

    // Once the bus is there, the record comes back (visibility 1 s) and is published; the
    // handler sees a duplicate and sends nothing twice.
    let target = bus_with_target(&env, &eb, &name).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = drain_with(&env, &queue, |ev| async { publishing_sqs_handler(&service, Some(&bus), ev).await }).await;
    assert_eq!(failed, 0);
    let got = received(&env, &target).await;
    let kinds: Vec<&str> = got.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert!(kinds.contains(&"Team Ready") && kinds.contains(&"Group.CallbackAfterGroupFull"), "{kinds:?}");
    assert_eq!(env.tencent.state.system_notifications().iter().filter(|n| n.group_id == group).count(), 1);
}

#[tokio::test]
async fn an_answer_is_published_as_answer_delivered_through_the_outbox_after_it_is_shown() {
    let aws = crate::common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (outbox_url, _dlq) =
        devtools::aws::queue_with_dlq(&sqs, &unique("outbox"), 1, false).await.unwrap_or_else(|e| panic!("{e}"));
    let queue: Arc<dyn shared::queue::Queue> = Arc::new(shared::queue::SqsQueue::new(sqs.clone()));
    let outbox = Outbox { queue, url: outbox_url.clone() };
    let env = Env::with(|w| w.outbox = Some(outbox)).await;
    let eb = eventbridge().await;
    let name = unique("bus");
    let target = bus_with_target(&env, &eb, &name).await;
    let bus = bus(&eb, &name);

    let user = unique("user");
    env.webhook("Bot.OnC2CMessage", &c2c_body(&user, "Hello", 1)).await;
    assert_eq!(env.drain().await, 1);
    // The user has the answer before anything is published: the event waits in the outbox.
    assert!(!env.tencent.state.calls().is_empty(), "no answer shown");
    assert!(received(&env, &target).await.is_empty());

    let failed =
        drain_with(&env, &outbox_url, |ev| async { publishing_sqs_handler(&OutboxOnly, Some(&bus), ev).await }).await;
    assert_eq!(failed, 0);
    let got = received(&env, &target).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!((e["source"].as_str(), e["detail-type"].as_str()), (Some("tcbot"), Some("Answer Delivered")));
    assert_eq!(e["detail"]["v"], 1);
    assert_eq!(e["detail"]["user"], user.as_str());
    assert_eq!(e["detail"]["bot"], crate::common::BOT);
    assert_eq!(e["detail"]["end"], "completed");
    assert_eq!(e["detail"]["platform"], "tencent");
}

#[tokio::test]
async fn an_outbox_record_without_a_bus_or_with_a_bad_body_fails_rather_than_vanishing() {
    let record = |body: &str| {
        let mut r = aws_lambda_events::event::sqs::SqsMessage::default();
        r.message_id = Some("m1".into());
        r.body = Some(body.into());
        let mut ev = aws_lambda_events::event::sqs::SqsEvent::default();
        ev.records.push(r);
        ev
    };
    let event = shared::bus::BusEvent::product("Team Ready", "x".into(), 1, serde_json::json!({}));
    let resp = publishing_sqs_handler(&OutboxOnly, None, record(&shared::bus::outbox_record(&event))).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    let eb = eventbridge().await;
    let bus = bus(&eb, &unique("never-made"));
    let bad = serde_json::json!({"command": shared::bus::OUTBOX_COMMAND, "body": {"source": 1}}).to_string();
    let resp = publishing_sqs_handler(&OutboxOnly, Some(&bus), record(&bad)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    let other = serde_json::json!({"command": "State.StateChange", "body": {}}).to_string();
    let resp = publishing_sqs_handler(&OutboxOnly, Some(&bus), record(&other)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn the_sample_outbox_batch_is_told_apart_from_answers_and_published() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/bot-c2c-message.bus-outbox.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    // bot-c2c-message hands this batch to the outbox adapter (the queue name matches), and
    // would answer a batch from any other queue.
    let outbox_url = "https://sqs.ap-southeast-1.amazonaws.com/123456789012/tcbot-BusOutboxQueue";
    assert!(shared::bus::from_queue(&event, Some(outbox_url)));
    assert!(!shared::bus::from_queue(
        &event,
        Some("https://sqs.ap-southeast-1.amazonaws.com/123456789012/tcbot-BotC2cQueue.fifo")
    ));
    assert!(!shared::bus::from_queue(&event, None));

    let env = Env::new().await;
    let eb = eventbridge().await;
    let name = unique("bus");
    let target = bus_with_target(&env, &eb, &name).await;
    let resp = publishing_sqs_handler(&OutboxOnly, Some(&bus(&eb, &name)), event).await;
    assert!(resp.batch_item_failures.is_empty());
    let got = received(&env, &target).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["detail-type"], "Answer Delivered");
    assert_eq!(got[0]["detail"]["id"], "3f1c2a9b0d4e5f60718293a4b5c6d7e8");
}
