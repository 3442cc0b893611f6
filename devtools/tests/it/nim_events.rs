//! The NIM files in `events/` drive the real NIM router handler, so they cannot go stale: the
//! API Gateway envelopes of a one-to-one message copy and a team mention, signed like NIM with
//! the local run's AppKey and AppSecret at a fixed `CurTime` (re-signed now, as NIM would send
//! them today), routed, and answered by the worker through the NIM emulator. Also the
//! environment the NIM tests share: the Tencent test environment with NIM beside it.

use crate::common::Env;
use devtools::nim_emu::{NimEmulator, copy_headers};
use shared::bot::sink::{Outbound, StreamMode};
use shared::bot::worker::Worker;
use shared::nim::checksum::{body_md5, copy_checksum, hex_matches};
use shared::nim::intake::{IntakeLimits, KnownRobot};
use shared::nim::{NimClient, NimOptions, NimOutbound, NimRouter};
use shared::platforms::PlatformOutbound;
use shared::secrets::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// The sample events' AppKey and AppSecret: the local run's (`devtools/src/bin/local-run.rs`),
/// not any real app's.
const APP_KEY: &str = "local-nim-appkey";
const APP_SECRET: &str = "local-nim-app-secret";
/// The `CurTime` the sample events were signed at.
const SIGNED_AT_MS: &str = "1700000000000";

/// The Tencent test environment with NIM beside it: a NIM emulator for `app_key`/`secret`, the
/// worker's outbound serving both platforms (adjusted by `tweak` first), and a NIM router for
/// `robot` on the same queues as Tencent's. With `team_streaming` team answers stream too.
pub async fn env_with_nim(
    app_key: &str,
    secret: &str,
    robot: KnownRobot,
    team_streaming: bool,
    tweak: impl FnOnce(&mut Worker),
) -> (Env, NimEmulator, NimRouter) {
    let nim = NimEmulator::start(app_key, secret).await.unwrap_or_else(|e| panic!("nim: {e}"));
    let opts = NimOptions {
        base_url: nim.base_url(),
        timeout: Duration::from_millis(500),
        max_attempts: 4,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };
    let client = NimClient::new(reqwest::Client::new(), opts, app_key.into(), SecretString::new(secret));
    let nim_out: Arc<dyn Outbound> = Arc::new(NimOutbound::new(Arc::new(client), 12_000, team_streaming));
    let env = Env::with(|w| {
        tweak(w);
        w.outbound = Arc::new(PlatformOutbound {
            tencent: Some(w.outbound.clone()),
            nim: Some(nim_out),
            nim_direct_mode: StreamMode::NativeStream,
        });
        if team_streaming {
            w.stream.group_mode = StreamMode::NativeStream;
        }
    })
    .await;
    let router = NimRouter {
        app_key: app_key.into(),
        secret: SecretString::new(secret),
        limits: IntakeLimits::default(),
        robots: vec![robot],
        queue: Arc::new(shared::queue::SqsQueue::new(env.sqs.clone())),
        c2c_queue_url: env.stack.c2c_queue.clone(),
        group_queue_url: env.stack.group_queue.clone(),
        store: crate::common::guarded("NimCallbackRouterFunction", &env.store),
        arrivals: env.router.arrivals.clone(),
    };
    (env, nim, router)
}

fn event(name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const EVENTS: [&str; 2] = ["nim-callback-router.person.json", "nim-callback-router.team-mention.json"];

/// The envelope with its copy signed now, as NIM would send it today.
fn fresh(mut ev: serde_json::Value) -> serde_json::Value {
    let body = ev["body"].as_str().unwrap_or_default().to_owned();
    for (name, value) in copy_headers(APP_KEY, APP_SECRET, body.as_bytes(), shared::store::now_ms()) {
        ev["headers"][name.to_ascii_lowercase()] = value.into();
    }
    ev
}

/// The status and outcome the NIM router's Lambda handler answers to an envelope.
async fn invoke(router: &NimRouter, name: &str, ev: &serde_json::Value) -> (u16, serde_json::Value) {
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let res = shared::nim::router::http_handler(router, req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    let body = match res.body() {
        lambda_http::Body::Text(t) => t.clone(),
        other => panic!("{name}: unexpected body {other:?}"),
    };
    (res.status().as_u16(), serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {body}: {e}")))
}

#[test]
fn the_sample_copies_are_signed_like_nim_with_the_local_keys() {
    for name in EVENTS {
        let ev = event(name);
        let h = &ev["headers"];
        let body = ev["body"].as_str().unwrap_or_else(|| panic!("{name}: no body"));
        let md5 = h["md5"].as_str().unwrap_or_default();
        assert_eq!((h["appkey"].as_str(), h["curtime"].as_str()), (Some(APP_KEY), Some(SIGNED_AT_MS)), "{name}");
        assert!(hex_matches(&body_md5(body.as_bytes()), md5), "{name}: MD5 of the body");
        let sum = copy_checksum(APP_SECRET, md5, SIGNED_AT_MS);
        assert!(hex_matches(&sum, h["checksum"].as_str().unwrap_or_default()), "{name}: CheckSum");
        assert_eq!((ev["routeKey"].as_str(), ev["rawPath"].as_str()), (Some("POST /nim"), Some("/nim")), "{name}");
    }
}

#[tokio::test]
async fn nim_router_events_are_routed_and_answered_through_nim() {
    let robot = KnownRobot { accid: "mybot".into(), nickname: Some("MyBot".into()) };
    let (env, nim, router) = env_with_nim(APP_KEY, APP_SECRET, robot, false, |_| {}).await;
    // As committed, the copies are long stale: refused, nothing queued.
    for name in EVENTS {
        let (status, reply) = invoke(&router, name, &event(name)).await;
        assert_eq!((status, reply["outcome"].as_str()), (401, Some("rejected")), "{name}: {reply}");
    }
    let (status, reply) = invoke(&router, EVENTS[0], &fresh(event(EVENTS[0]))).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("queued")), "{reply}");
    let (status, reply) = invoke(&router, EVENTS[1], &fresh(event(EVENTS[1]))).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("queued")), "{reply}");
    assert_eq!((env.depth(&env.stack.c2c_queue).await, env.depth(&env.stack.group_queue).await), (1, 1));

    assert_eq!(env.drain().await, 2);
    let asked: Vec<Vec<String>> = env.llm.state.requests().iter().map(crate::common::user_messages).collect::<Vec<_>>();
    let asked: Vec<String> = asked.iter().filter_map(|m| m.last()).map(|t| devtools::llm_emu::turn_text(t)).collect();
    assert!(asked.contains(&"Hello! What can you do?".to_owned()), "{asked:?}");
    assert!(asked.contains(&"[bob] what is X?".to_owned()), "the mention is removed: {asked:?}");
    let streams = nim.state.streams();
    assert!(
        streams.len() == 1 && streams[0].conversation_id == "mybot|1|alice" && streams[0].finished,
        "the one-to-one answer streams: {streams:?}"
    );
    let sent = nim.state.messages();
    assert!(
        sent.len() == 1 && sent[0].conversation_id == "mybot|2|2837465" && sent[0].text.starts_with("@bob You said"),
        "the team answer is sent once, mentioning the asker: {sent:?}"
    );
    assert!(env.tencent.state.streams().is_empty() && env.tencent.state.group_messages().is_empty());
}
