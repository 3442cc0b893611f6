//! The NIM REST client against the local NIM emulator (checksums enforced, sends and streams
//! recorded, limits applied, refusals on demand), and the emulator's message-copy signer
//! checked by the intake's own verification.

use axum::body::Bytes;
use axum::http::HeaderMap;
use devtools::nim_emu::{
    CODE_BAD_REQUEST, CopyMessage, Endpoint, Fault, Limits, NimEmulator, StreamEnd, post_signed_copy,
};
use shared::nim::intake::{self, AddressedBy, CopyHeaders, IntakeLimits, KnownRobot, Place, Rejection, Verified};
use shared::nim::{
    AskerMention, ConversationId, ConversationKind, NimApi, NimClient, NimError, NimOptions, OutgoingText, StreamChunk,
    StreamWriter,
};
use shared::secrets::SecretString;
use std::time::Duration;
use tokio::sync::mpsc;

const APP_KEY: &str = "nim-test-appkey";
const SECRET: &str = "nim-test-app-secret-0123456789";
const BOT: &str = "mybot";

fn options(base: &str) -> NimOptions {
    NimOptions {
        base_url: base.to_owned(),
        timeout: Duration::from_millis(500),
        max_attempts: 4,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

async fn setup_with(secret: &str) -> (NimEmulator, NimClient) {
    let emu = NimEmulator::start(APP_KEY, SECRET).await.unwrap_or_else(|e| panic!("{e}"));
    let client =
        NimClient::new(reqwest::Client::new(), options(&emu.base_url()), APP_KEY.into(), SecretString::new(secret));
    (emu, client)
}

async fn setup() -> (NimEmulator, NimClient) {
    setup_with(SECRET).await
}

fn direct() -> ConversationId {
    ConversationId { sender: BOT.into(), kind: ConversationKind::OneToOne, receiver: "alice".into() }
}

fn hello() -> OutgoingText {
    OutgoingText {
        conversation: direct(),
        text: "hello".into(),
        client_id: "job-1".into(),
        mention: None,
        route: false,
    }
}

#[tokio::test]
async fn send_text_is_signed_accepted_and_recorded() {
    let (emu, c) = setup().await;
    let sent = c.send_text(&hello()).await.unwrap_or_else(|e| panic!("{e}"));
    let messages = emu.state.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!((m.conversation_id.as_str(), m.text.as_str()), ("mybot|1|alice", "hello"));
    assert_eq!((m.client_id.as_deref(), m.route_enabled), (Some("job-1"), Some(false)));
    assert_eq!(sent.server_id.as_deref(), Some(m.server_id.as_str()));
    assert_eq!(sent.client_id.as_deref(), Some("job-1"));
}

#[tokio::test]
async fn team_send_mentions_the_asker_and_force_pushes_to_them() {
    let (emu, c) = setup().await;
    let msg = OutgoingText {
        conversation: ConversationId { sender: BOT.into(), kind: ConversationKind::Team, receiver: "2837465".into() },
        text: "X is Y.".into(),
        client_id: "job-2".into(),
        mention: Some(AskerMention { accid: "alice".into(), display: "Alice".into() }),
        route: false,
    };
    c.send_text(&msg).await.unwrap_or_else(|e| panic!("{e}"));
    let m = emu.state.messages().pop().unwrap_or_else(|| panic!("no message"));
    assert_eq!((m.conversation_id.as_str(), m.text.as_str()), ("mybot|2|2837465", "@Alice X is Y."));
    assert_eq!(m.forcepush_ids, ["alice"]);
    let ext: serde_json::Value = serde_json::from_str(m.extension.as_deref().unwrap_or("")).unwrap_or_default();
    assert_eq!(ext["yxAitMsg"]["alice"]["text"], "@Alice");
    assert_eq!(ext["yxAitMsg"]["alice"]["segments"][0]["end"], 5);
}

#[tokio::test]
async fn stream_sends_ordered_deltas_with_the_server_id_and_finishes_once() {
    let (emu, c) = setup().await;
    let mut w = StreamWriter::new(direct(), "job-3".into(), None, false);
    for delta in ["Hel", "lo", ", "] {
        w.push(&c, delta).await.unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish(&c, "world", vec![]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(w.finish(&c, "", vec![]).await, Err(NimError::Local { .. })));

    let streams = emu.state.streams();
    assert_eq!(streams.len(), 1);
    let st = &streams[0];
    assert_eq!((st.text().as_str(), st.indexes()), ("Hello, world", vec![0, 1, 2, 3]));
    assert_eq!((st.finished, st.ended, st.duplicate_indexes), (true, Some(StreamEnd::Finished), 0));
    assert_eq!(w.server_id(), Some(st.server_id.as_str()));
    let calls = emu.state.calls_to(Endpoint::Stream);
    assert_eq!(calls.len(), 4, "the second finish made no call");
    assert!(calls[0].body["message"].get("message_server_id").is_none());
    for call in &calls[1..] {
        assert_eq!(call.body["message"]["message_server_id"].to_string(), st.server_id);
        assert_eq!(call.body["message"]["message_client_id"], "job-3");
    }
    let finishes: Vec<_> = calls.iter().map(|c| c.body["message"]["attachment"]["finish"].clone()).collect();
    assert_eq!(finishes, [0, 0, 0, 1]);
}

#[tokio::test]
async fn when_the_secret_or_app_key_is_wrong_the_emulator_refuses_and_nothing_is_retried() {
    let (emu, c) = setup_with("not-the-secret").await;
    let err = c.send_text(&hello()).await.err();
    assert_eq!(err.as_ref().and_then(NimError::code), Some(CODE_BAD_REQUEST));
    assert_eq!(emu.state.calls_to(Endpoint::Send).len(), 1);
    assert!(emu.state.messages().is_empty());
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(!text.contains("not-the-secret") && !text.contains(SECRET), "{text}");

    let other_key = NimClient::new(
        reqwest::Client::new(),
        options(&emu.base_url()),
        "other-appkey".into(),
        SecretString::new(SECRET),
    );
    assert_eq!(other_key.send_text(&hello()).await.err().and_then(|e| e.code()), Some(CODE_BAD_REQUEST));
}

#[tokio::test]
async fn when_rate_limited_should_back_off_and_succeed_but_a_bad_request_fails_at_once() {
    let (emu, c) = setup().await;
    emu.state.refuse(Endpoint::Send, 416);
    emu.state.refuse(Endpoint::Send, 416);
    assert!(c.send_text(&hello()).await.is_ok());
    let codes: Vec<_> = emu.state.calls_to(Endpoint::Send).iter().map(|c| c.code).collect();
    assert_eq!(codes, [416, 416, 200]);
    assert_eq!(emu.state.messages().len(), 1);

    emu.state.reset();
    emu.state.refuse(Endpoint::Send, 414);
    assert_eq!(c.send_text(&hello()).await.err().and_then(|e| e.code()), Some(414));
    assert_eq!(emu.state.calls_to(Endpoint::Send).len(), 1);

    emu.state.reset();
    for _ in 0..4 {
        emu.state.refuse(Endpoint::Send, 416);
    }
    let err = c.send_text(&hello()).await.err();
    assert!(err.as_ref().is_some_and(NimError::is_rate_limited), "{err:?}");
    assert_eq!(emu.state.calls_to(Endpoint::Send).len(), 4);
}

#[tokio::test]
async fn a_rate_limited_stream_chunk_is_retried_and_the_stream_stays_whole() {
    let (emu, c) = setup().await;
    let mut w = StreamWriter::new(direct(), "job-4".into(), None, false);
    w.push(&c, "a").await.unwrap_or_else(|e| panic!("{e}"));
    emu.state.refuse(Endpoint::Stream, 416);
    w.finish(&c, "b", vec![]).await.unwrap_or_else(|e| panic!("{e}"));
    let st = emu.state.streams().pop().unwrap_or_else(|| panic!("no stream"));
    assert_eq!((st.text().as_str(), st.finished, st.duplicate_indexes), ("ab", true, 0));
    assert_eq!(emu.state.calls_to(Endpoint::Stream).iter().map(|c| c.code).collect::<Vec<_>>(), [200, 416, 200]);
}

#[tokio::test]
async fn when_the_outcome_is_uncertain_should_not_send_twice() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Status { endpoint: Some(Endpoint::Send), status: 502 });
    assert_eq!(c.send_text(&hello()).await.err(), Some(NimError::Http { call: "send_message", status: 502 }));
    assert_eq!(emu.state.calls_to(Endpoint::Send).len(), 1);

    // Stored, then answered too late: a retry would duplicate the message.
    emu.state.push_fault(Fault::Delay { endpoint: Some(Endpoint::Send), ms: 1200 });
    assert_eq!(c.send_text(&hello()).await.err(), Some(NimError::Timeout { call: "send_message" }));
    assert_eq!(emu.state.calls_to(Endpoint::Send).len(), 2);
    assert_eq!(emu.state.messages().len(), 1);

    // Nothing listening: certainly not applied, so retried, then reported.
    let closed = devtools::loopback_listener().await.unwrap_or_else(|e| panic!("{e}"));
    let addr = closed.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(closed);
    let nowhere = NimClient::new(
        reqwest::Client::new(),
        options(&format!("http://{addr}")),
        APP_KEY.into(),
        SecretString::new(SECRET),
    );
    assert!(matches!(nowhere.send_text(&hello()).await, Err(NimError::Connect { .. })));
}

fn raw_chunk(client_id: &str, index: u32, delta: &str, finish: bool) -> StreamChunk {
    StreamChunk {
        conversation: direct(),
        client_id: client_id.into(),
        server_id: None,
        index,
        delta: delta.into(),
        finish,
        mention: None,
        route: false,
        sources: vec![],
    }
}

#[tokio::test]
async fn the_emulator_ends_a_stream_past_the_character_limit_or_the_gap() {
    let (emu, c) = setup().await;
    emu.state.set_limits(Limits { max_gap: Duration::from_millis(150), max_chars: 10 });

    // Too long: the chunk that crosses the limit ends the stream at once.
    assert!(c.stream_chunk(&raw_chunk("long", 0, "123456", false)).await.is_ok());
    let over = c.stream_chunk(&raw_chunk("long", 1, "78901", false)).await;
    assert_eq!(over.err().and_then(|e| e.code()), Some(CODE_BAD_REQUEST));
    let after = c.stream_chunk(&raw_chunk("long", 2, "x", true)).await;
    assert_eq!(after.err().and_then(|e| e.code()), Some(CODE_BAD_REQUEST));

    // Too slow: a chunk after the gap is refused and the stream is reported ended.
    assert!(c.stream_chunk(&raw_chunk("slow", 0, "a", false)).await.is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = c.stream_chunk(&raw_chunk("slow", 1, "b", true)).await;
    assert_eq!(late.err().and_then(|e| e.code()), Some(CODE_BAD_REQUEST));

    let streams = emu.state.streams();
    let ended: Vec<_> = streams.iter().map(|s| (s.client_id.as_str(), s.text(), s.finished, s.ended)).collect();
    assert_eq!(
        ended,
        [
            ("long", "123456".to_owned(), false, Some(StreamEnd::TooLong)),
            ("slow", "a".to_owned(), false, Some(StreamEnd::Gap)),
        ]
    );

    // The writer refuses locally before NIM would.
    let mut w = StreamWriter::new(direct(), "local".into(), None, false).with_max_chars(10);
    assert!(w.push(&c, "123456").await.is_ok());
    assert!(matches!(w.push(&c, "78901").await, Err(NimError::Local { .. })));
    assert!(w.finish(&c, "7890", vec![]).await.is_ok());
    assert_eq!(emu.state.streams().last().map(|s| s.text()), Some("1234567890".to_owned()));
}

/// A loopback server that hands each POST's headers and body to the test.
async fn copy_sink() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/nim",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = devtools::loopback_listener().await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/nim", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

async fn next_copy(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) -> (HeaderMap, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no copy arrived"))
}

fn robots() -> Vec<KnownRobot> {
    vec![KnownRobot { accid: BOT.into(), nickname: Some("MyBot".into()) }]
}

#[tokio::test]
async fn copies_signed_by_the_emulator_pass_the_intake_verification() {
    let (emu, _) = setup().await;
    let (url, mut rx) = copy_sink().await;
    let secret = SecretString::new(SECRET);
    let now = shared::store::now_ms();

    let body = CopyMessage::team("alice", "2837465", "@MyBot what is X?", "555").mention(BOT, "@MyBot").body();
    let res = emu.post_copy(&url, &body).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(res.status().is_success());
    let (headers, raw) = next_copy(&mut rx).await;
    let h = CopyHeaders::from_http(&headers);
    assert_eq!(intake::verify(&h, &raw, APP_KEY, &secret, now, &IntakeLimits::default()), Ok(Verified::Copy));
    let Ok(intake::CopyEvent::Message(m)) = intake::parse_copy(&raw) else { panic!("not a message copy") };
    let a = intake::classify(&m, &robots()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.text.as_str(), a.by, a.msg_id_server.as_str()), ("what is X?", AddressedBy::ExtMention, "555"));
    assert_eq!(a.place, Place::Team { team_id: "2837465".into(), kind: intake::TeamKind::Advanced });

    // The console's probe.
    emu.post_copy(&url, "{}").await.unwrap_or_else(|e| panic!("{e}"));
    let (headers, raw) = next_copy(&mut rx).await;
    let h = CopyHeaders::from_http(&headers);
    assert_eq!(intake::verify(&h, &raw, APP_KEY, &secret, now, &IntakeLimits::default()), Ok(Verified::ConsoleProbe));

    // Signed ten minutes ago: stale. Signed with another secret: refused.
    let http = reqwest::Client::new();
    let old = now - 600_000;
    let body = CopyMessage::person("bob", BOT, "hi", "556").body();
    post_signed_copy(&http, &url, APP_KEY, SECRET, &body, old).await.unwrap_or_else(|e| panic!("{e}"));
    let (headers, raw) = next_copy(&mut rx).await;
    let r = intake::verify(&CopyHeaders::from_http(&headers), &raw, APP_KEY, &secret, now, &IntakeLimits::default());
    assert!(matches!(r, Err(Rejection::Stale { .. })), "{r:?}");
    post_signed_copy(&http, &url, APP_KEY, "forged", &body, now).await.unwrap_or_else(|e| panic!("{e}"));
    let (headers, raw) = next_copy(&mut rx).await;
    let r = intake::verify(&CopyHeaders::from_http(&headers), &raw, APP_KEY, &secret, now, &IntakeLimits::default());
    assert_eq!(r, Err(Rejection::ChecksumMismatch));
}

#[tokio::test]
async fn routed_sends_come_back_as_copies_the_intake_ignores_and_unrouted_ones_do_not() {
    let (emu, c) = setup().await;
    let (url, mut rx) = copy_sink().await;
    emu.state.set_copy_target(Some(url));

    c.send_text(&OutgoingText { route: true, ..hello() }).await.unwrap_or_else(|e| panic!("{e}"));
    let (headers, raw) = next_copy(&mut rx).await;
    let now = shared::store::now_ms();
    let h = CopyHeaders::from_http(&headers);
    let secret = SecretString::new(SECRET);
    assert_eq!(intake::verify(&h, &raw, APP_KEY, &secret, now, &IntakeLimits::default()), Ok(Verified::Copy));
    let Ok(intake::CopyEvent::Message(m)) = intake::parse_copy(&raw) else { panic!("not a message copy") };
    assert_eq!(intake::classify(&m, &robots()), Err(intake::Ignored::OwnReply));

    // Routing off (what the bot sends): no copy; a finished stream with routing on: one copy.
    c.send_text(&hello()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut w = StreamWriter::new(direct(), "job-5".into(), None, true);
    w.push(&c, "str").await.unwrap_or_else(|e| panic!("{e}"));
    w.finish(&c, "eam", vec![]).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, raw) = next_copy(&mut rx).await;
    let Ok(intake::CopyEvent::Message(m)) = intake::parse_copy(&raw) else { panic!("not a message copy") };
    assert_eq!(m.text().as_deref(), Some("stream"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "an unrouted send was copied");
}
