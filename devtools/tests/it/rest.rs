//! The REST client against the local Tencent emulator: UserSig accepted, retries on the
//! transient, rate-limit and UserSig-expired codes, on 502 and on a timeout; no retry where a
//! retry could duplicate a stream chunk. The native stream APIs with the emulator checking
//! `Index` and `StreamMsgID` and enforcing each limit; send-then-modify; modes refused on demand.

use crate::common::{APP_ID, KEY, rest_options};
use devtools::tencent_emu::{
    EMU_MODIFY_TOO_FAST, EMU_NO_SUCH_C2C_MSG, EMU_STREAM_BAD_INDEX, EMU_STREAM_FINISHED, EMU_STREAM_TIMED_OUT,
    EMU_STREAM_TOO_FAST, EMU_STREAM_TOO_LARGE, EMU_STREAM_UNKNOWN_ID, Fault, RateLimit, StreamLimits, StreamTarget,
    TencentEmulator,
};
use shared::msg::MsgElement;
use shared::secrets::SecretString;
use shared::tencent::client::Repeat;
use shared::tencent::{
    ChatApi, CreateRobot, ForbidCallback, ModifyC2cMsg, RestClient, RestError, SendC2cStreamMsg, SendGroupStreamMsg,
    SendMsg, SendStreamMsg, StreamChunk, StreamElem, StreamMsgReply,
};
use std::time::Duration;

async fn setup() -> (TencentEmulator, RestClient) {
    let emu = TencentEmulator::start(APP_ID, KEY).await.unwrap_or_else(|e| panic!("{e}"));
    let client = RestClient::new(
        reqwest::Client::new(),
        rest_options(&emu.base_url()),
        APP_ID,
        "administrator".into(),
        SecretString::new(KEY),
    );
    (emu, client)
}

fn hello() -> SendMsg {
    SendMsg {
        sync_other_machine: 2,
        from_account: Some("@RBT#001".into()),
        to_account: "user1".into(),
        msg_seq: 7,
        msg_random: 42,
        msg_life_time: None,
        msg_body: vec![MsgElement::text("hi")],
        cloud_custom_data: None,
        forbid_callback_control: ForbidCallback::own_messages(),
    }
}

#[tokio::test]
async fn when_usersig_expired_should_regenerate_and_succeed() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Code { path: None, code: 70001 });
    let r = c.send_msg(&hello()).await;
    assert!(r.is_ok(), "{r:?}");
    let calls = emu.state.calls_to("openim/sendmsg");
    assert_eq!(calls.iter().map(|c| c.code).collect::<Vec<_>>(), [70001, 0]);
    // The retry carries the same MsgSeq and MsgRandom, so Tencent's dedup keeps it idempotent.
    assert_eq!(calls[0].body, calls[1].body);
}

#[tokio::test]
async fn when_rate_limited_or_bad_gateway_should_back_off_and_succeed() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Code { path: None, code: 60007 });
    emu.state.push_fault(Fault::Status { path: None, status: 502 });
    let r = c.send_msg(&hello()).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(emu.state.calls_to("openim/sendmsg").iter().map(|c| c.code).collect::<Vec<_>>(), [60007, 502, 0]);
}

#[tokio::test]
async fn when_a_call_times_out_should_retry_idempotent_calls_only() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Delay { path: None, ms: 1500 });
    let r = c.send_msg(&hello()).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(emu.state.calls_to("openim/sendmsg").len(), 2);

    // A stream chunk that timed out may have been applied: it is not sent twice.
    emu.state.push_fault(Fault::Delay { path: None, ms: 1500 });
    let chunk = SendStreamMsg {
        from_account: "@RBT#001".into(),
        to_account: "user1".into(),
        chunk: "x".into(),
        msg_key: None,
        finish: None,
    };
    let r = c.send_stream_msg(&chunk).await;
    assert_eq!(r, Err(RestError::Timeout { call: "openim_robot_http_svc/send_stream_msg" }));
    // A stream chunk Tencent refused with a code was certainly not applied: it is retried.
    emu.state.push_fault(Fault::Code { path: None, code: 60007 });
    assert!(c.send_stream_msg(&chunk).await.is_ok());
}

#[tokio::test]
async fn when_error_is_permanent_should_fail_at_once_with_code() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Code { path: None, code: 90001 });
    let r = c.send_msg(&hello()).await;
    assert_eq!(r.as_ref().err().and_then(RestError::code), Some(90001));
    assert_eq!(emu.state.calls_to("openim/sendmsg").len(), 1);
    let text = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!text.contains("usersig") && !text.contains(KEY), "{text}");
}

#[tokio::test]
async fn when_retries_run_out_should_report_last_error() {
    let (emu, c) = setup().await;
    for _ in 0..4 {
        emu.state.push_fault(Fault::Code { path: None, code: 20004 });
    }
    let r = c.send_msg(&hello()).await;
    assert_eq!(r.err().and_then(|e| e.code()), Some(20004));
    assert_eq!(emu.state.calls_to("openim/sendmsg").len(), 4);
}

#[tokio::test]
async fn robot_calls_round_trip() {
    let (emu, c) = setup().await;
    let robot = CreateRobot {
        user_id: "@RBT#helper".into(),
        nick: Some("Helper".into()),
        face_url: None,
        self_signature: None,
    };
    c.create_robot(&robot).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.get_all_robots().await.map(|r| r.robot_account), Ok(vec!["@RBT#helper".to_owned()]));
    let bad = CreateRobot { user_id: "helper".into(), ..robot };
    assert_eq!(c.create_robot(&bad).await.err().and_then(|e| e.code()), Some(10004));
    assert_eq!(emu.state.robots(), vec!["@RBT#helper".to_owned()]);
}

#[tokio::test]
async fn wrong_key_is_refused_by_the_emulator_as_by_tencent() {
    let emu = TencentEmulator::start(APP_ID, KEY).await.unwrap_or_else(|e| panic!("{e}"));
    let c = RestClient::new(
        reqwest::Client::new(),
        rest_options(&emu.base_url()),
        APP_ID,
        "administrator".into(),
        SecretString::new("wrong"),
    );
    assert_eq!(c.send_msg(&hello()).await.err().and_then(|e| e.code()), Some(70009));
}

#[tokio::test]
async fn when_a_reply_exceeds_the_cap_should_fail_without_retrying() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Huge { path: None, bytes: 4 << 20 });
    let r = c.send_msg(&hello()).await;
    assert_eq!(
        r.err(),
        Some(RestError::Decode { call: "openim/sendmsg", reason: "the reply exceeded 1048576 bytes".into() })
    );
    assert_eq!(emu.state.calls_to("openim/sendmsg").len(), 1);
}

const C2C_STREAM: &str = "stream_msg/send_c2c_stream_msg";
const GROUP_STREAM: &str = "stream_msg/send_group_stream_msg";

fn elem(id: Option<&str>, index: u32, markdown: &str, is_last: bool) -> StreamElem {
    StreamElem {
        compatible_text: "[Upgrade to see this streamed answer]".into(),
        chunks: vec![StreamChunk::data(index, markdown, is_last)],
        stream_msg_id: id.map(str::to_owned),
    }
}

/// One call of a native C2C stream from the bot to user1.
fn c2c_chunk(id: Option<&str>, index: u32, markdown: &str, is_last: bool) -> SendC2cStreamMsg {
    SendC2cStreamMsg {
        sync_other_machine: 2,
        from_account: "@RBT#001".into(),
        to_account: "user1".into(),
        msg_seq: 11,
        msg_random: 77,
        msg_body: elem(id, index, markdown, is_last).into_body(),
    }
}

fn group_chunk(id: Option<&str>, index: u32, markdown: &str, is_last: bool) -> SendGroupStreamMsg {
    SendGroupStreamMsg {
        group_id: "@TGS#_g1".into(),
        msg_random: 78,
        from_account: "@RBT#001".into(),
        msg_body: elem(id, index, markdown, is_last).into_body(),
        cloud_custom_data: None,
        topic_id: Some("@TGS#_g1@TOPIC#_t1".into()),
    }
}

fn code<T>(r: &Result<T, RestError>) -> Option<i64> {
    r.as_ref().err().and_then(RestError::code)
}

/// Opens a C2C stream with `first` and returns its `StreamMsgID`.
async fn open_c2c(c: &RestClient, first: &str) -> String {
    let r = c.send_c2c_stream_msg(&c2c_chunk(None, 1, first, false)).await;
    r.unwrap_or_else(|e| panic!("{e}")).stream_msg_id.unwrap_or_else(|| panic!("no StreamMsgID"))
}

#[tokio::test]
async fn native_c2c_stream_opens_continues_and_finishes_with_index_and_id_checked() {
    let (emu, c) = setup().await;
    let id = open_c2c(&c, "Hello, ").await;
    // A continuation must send the issued ID back and the next Index.
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 3, "skipped", false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_BAD_INDEX));
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some("not-issued"), 2, "x", false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_UNKNOWN_ID));
    let mut other_user = c2c_chunk(Some(&id), 2, "x", false);
    other_user.to_account = "user2".into();
    assert_eq!(code(&c.send_c2c_stream_msg(&other_user).await), Some(EMU_STREAM_UNKNOWN_ID));
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 2, "**world**", false)).await;
    assert_eq!(r.map(|r| r.stream_msg_id), Ok(Some(id.clone())));
    // timbot's close: an empty Markdown with IsLast.
    assert!(c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 3, "", true)).await.is_ok());

    let streams = emu.state.native_streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    let s = &streams[0];
    assert_eq!(s.stream_msg_id, id);
    assert_eq!((s.from.as_str(), &s.target), ("@RBT#001", &StreamTarget::C2c { to: "user1".into() }));
    assert_eq!(s.markdown, "Hello, **world**");
    assert_eq!(s.compatible_text, "[Upgrade to see this streamed answer]");
    assert_eq!((s.chunks, s.calls, s.finished, s.ended_by_timeout), (3, 3, true, false));
    // Refused calls were not retried (their codes are final) and changed nothing.
    assert_eq!(emu.state.calls_to(C2C_STREAM).iter().map(|c| c.code).filter(|c| *c != 0).count(), 3);
}

#[tokio::test]
async fn when_a_first_call_starts_past_index_1_or_lacks_fields_should_refuse() {
    let (emu, c) = setup().await;
    assert_eq!(code(&c.send_c2c_stream_msg(&c2c_chunk(None, 2, "x", false)).await), Some(EMU_STREAM_BAD_INDEX));
    let no_random = serde_json::json!({"SyncOtherMachine": 2, "From_Account": "@RBT#001", "To_Account": "user1",
        "MsgSeq": 1, "MsgBody": elem(None, 1, "x", false).into_body()});
    let r = c.call::<_, StreamMsgReply>(C2C_STREAM, &no_random, Repeat::Unsafe).await;
    assert_eq!(code(&r), Some(90005));
    let text_body = serde_json::json!({"SyncOtherMachine": 2, "From_Account": "@RBT#001", "To_Account": "user1",
        "MsgSeq": 1, "MsgRandom": 1, "MsgBody": [MsgElement::text("x")]});
    let r = c.call::<_, StreamMsgReply>(C2C_STREAM, &text_body, Repeat::Unsafe).await;
    assert_eq!(code(&r), Some(90001));
    assert!(emu.state.native_streams().is_empty());
}

#[tokio::test]
async fn native_group_stream_accepts_msg_random_and_timbots_random() {
    let (emu, c) = setup().await;
    let r = c.send_group_stream_msg(&group_chunk(None, 1, "# Title\n", false)).await;
    let id = r.ok().and_then(|r| r.stream_msg_id).unwrap_or_else(|| panic!("no StreamMsgID"));
    assert!(c.send_group_stream_msg(&group_chunk(Some(&id), 2, "body", true)).await.is_ok());

    // timbot spells the random `Random`: accepted too. Neither spelling: refused.
    let mut timbot = serde_json::to_value(group_chunk(None, 1, "from timbot", true)).unwrap_or_default();
    let random = timbot.as_object_mut().and_then(|o| o.remove("MsgRandom"));
    assert_eq!(random, Some(serde_json::json!(78)));
    timbot["Random"] = serde_json::json!(79);
    let r = c.call::<_, StreamMsgReply>(GROUP_STREAM, &timbot, Repeat::Unsafe).await;
    assert!(r.as_ref().is_ok_and(|r| r.stream_msg_id.is_some()), "{r:?}");
    let _ = timbot.as_object_mut().and_then(|o| o.remove("Random"));
    let r = c.call::<_, StreamMsgReply>(GROUP_STREAM, &timbot, Repeat::Unsafe).await;
    assert_eq!(code(&r), Some(90005));

    let streams = emu.state.native_streams();
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_eq!(streams[0].markdown, "# Title\nbody");
    assert_eq!(
        streams[0].target,
        StreamTarget::Group { group_id: "@TGS#_g1".into(), topic_id: Some("@TGS#_g1@TOPIC#_t1".into()) }
    );
    assert!(streams[0].finished && streams[1].finished);
    assert_eq!(streams[1].markdown, "from timbot");
    assert_eq!(emu.state.calls_to(GROUP_STREAM).iter().map(|c| c.code).collect::<Vec<_>>(), [0, 0, 0, 90005]);
    // A group stream's ID does not continue a C2C stream.
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 3, "x", false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_UNKNOWN_ID));
}

#[tokio::test]
async fn when_a_stream_waits_longer_than_the_gap_should_end_by_itself_and_refuse_chunks() {
    let (emu, c) = setup().await;
    assert_eq!(emu.state.stream_limits().max_gap, Duration::from_secs(15), "Tencent's gap by default");
    let gap = Duration::from_millis(600);
    emu.state.set_stream_limits(StreamLimits { max_gap: gap, ..StreamLimits::default() });
    let id = open_c2c(&c, "a").await;
    // Within the gap each call keeps the stream alive.
    for i in 2..=3 {
        tokio::time::sleep(gap / 4).await;
        assert!(c.send_c2c_stream_msg(&c2c_chunk(Some(&id), i, "b", false)).await.is_ok());
    }
    let quiet = open_c2c(&c, "q").await;
    tokio::time::sleep(gap + Duration::from_millis(150)).await;
    // Seen as ended without another call...
    let streams = emu.state.native_streams();
    assert!(streams.iter().all(|s| s.ended_by_timeout && !s.finished), "{streams:?}");
    // ...and refusing the late chunk, even the last one.
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 4, "late", true)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_TIMED_OUT));
    assert_eq!(code(&c.send_c2c_stream_msg(&c2c_chunk(Some(&quiet), 2, "", true)).await), Some(EMU_STREAM_TIMED_OUT));
    assert_eq!(emu.state.native_streams()[0].markdown, "abb");
}

#[tokio::test]
async fn when_continuations_come_faster_than_the_limit_should_refuse_the_extra_one() {
    let (emu, c) = setup().await;
    assert_eq!(emu.state.stream_limits().continuations, RateLimit::per_second(5), "Tencent's rate by default");
    // A wider window than Tencent's second keeps a slow machine from spreading the burst out.
    let window = Duration::from_millis(1500);
    emu.state.set_stream_limits(StreamLimits {
        continuations: RateLimit { max: 5, per: window },
        ..StreamLimits::default()
    });
    let id = open_c2c(&c, "0").await;
    for i in 2..=6 {
        let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), i, "+", false)).await;
        assert!(r.is_ok(), "continuation {i}: {r:?}");
    }
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 7, "+", false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_TOO_FAST));
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    // The refused call did not count: Index 7 is still the next one.
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 7, "", true)).await;
    assert!(r.is_ok(), "{r:?}");
    let s = emu.state.native_streams();
    assert_eq!((s[0].markdown.as_str(), s[0].chunks, s[0].finished), ("0+++++", 7, true));
}

#[tokio::test]
async fn when_the_markdown_would_reach_128_kb_should_refuse_the_chunk() {
    let (emu, c) = setup().await;
    let kb = 1024;
    let r = c.send_c2c_stream_msg(&c2c_chunk(None, 1, &"x".repeat(128 * kb), false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_TOO_LARGE), "one call alone");
    let id = open_c2c(&c, &"a".repeat(100 * kb)).await;
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 2, &"b".repeat(28 * kb), false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_TOO_LARGE), "exactly 128 KB in all");
    let r = c.send_c2c_stream_msg(&c2c_chunk(Some(&id), 2, &"b".repeat(28 * kb - 1), true)).await;
    assert!(r.is_ok(), "one byte under: {r:?}");
    let s = emu.state.native_streams();
    assert_eq!((s.len(), s[0].markdown.len(), s[0].finished), (1, 128 * kb - 1, true));
}

#[tokio::test]
async fn when_a_stream_has_finished_should_refuse_more_chunks() {
    let (emu, c) = setup().await;
    let r = c.send_group_stream_msg(&group_chunk(None, 1, "all at once", true)).await;
    let id = r.ok().and_then(|r| r.stream_msg_id).unwrap_or_else(|| panic!("no StreamMsgID"));
    let r = c.send_group_stream_msg(&group_chunk(Some(&id), 2, " and more", false)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_FINISHED));
    let r = c.send_group_stream_msg(&group_chunk(Some(&id), 2, "", true)).await;
    assert_eq!(code(&r), Some(EMU_STREAM_FINISHED));
    let s = emu.state.native_streams();
    assert_eq!((s[0].markdown.as_str(), s[0].chunks, s[0].calls), ("all at once", 1, 1));
}

#[tokio::test]
async fn a_native_stream_chunk_that_timed_out_is_not_sent_twice() {
    let (emu, c) = setup().await;
    emu.state.push_fault(Fault::Delay { path: Some(GROUP_STREAM.into()), ms: 1500 });
    let r = c.send_group_stream_msg(&group_chunk(None, 1, "x", false)).await;
    assert_eq!(r, Err(RestError::Timeout { call: GROUP_STREAM }));
    assert_eq!(emu.state.calls_to(GROUP_STREAM).len(), 1);
    // Refused with a rate-limit code, it was certainly not applied: retried.
    emu.state.push_fault(Fault::Code { path: Some(C2C_STREAM.into()), code: 60007 });
    assert!(c.send_c2c_stream_msg(&c2c_chunk(None, 1, "y", true)).await.is_ok());
    assert_eq!(emu.state.calls_to(C2C_STREAM).iter().map(|c| c.code).collect::<Vec<_>>(), [60007, 0]);
}

#[tokio::test]
async fn send_then_modify_replaces_the_body_of_the_sent_message() {
    let (emu, c) = setup().await;
    let key = c.send_msg(&hello()).await.ok().and_then(|r| r.msg_key).unwrap_or_else(|| panic!("no MsgKey"));
    let modify = |text: &str| ModifyC2cMsg {
        from_account: "@RBT#001".into(),
        to_account: "user1".into(),
        msg_key: key.clone(),
        msg_body: vec![MsgElement::text(text)],
    };
    assert!(c.modify_c2c_msg(&modify("hi there")).await.is_ok());
    let wrong = ModifyC2cMsg { msg_key: "9_9_9".into(), ..modify("x") };
    assert_eq!(code(&c.modify_c2c_msg(&wrong).await), Some(EMU_NO_SUCH_C2C_MSG));
    let not_the_sender = ModifyC2cMsg { from_account: "@RBT#002".into(), ..modify("x") };
    assert_eq!(code(&c.modify_c2c_msg(&not_the_sender).await), Some(EMU_NO_SUCH_C2C_MSG));
    let m = emu.state.c2c_records();
    assert_eq!((m[0].msg_key.as_str(), m[0].text.as_str(), m[0].modifications), (key.as_str(), "hi there", 1));
    assert_eq!(emu.state.c2c_messages(), [("@RBT#001".into(), "user1".into(), "hi there".into())]);
}

#[tokio::test]
async fn when_one_message_is_modified_faster_than_the_limit_should_refuse() {
    let (emu, c) = setup().await;
    emu.state.set_modify_limit(Some(RateLimit::per_second(1)));
    let key = c.send_msg(&hello()).await.ok().and_then(|r| r.msg_key).unwrap_or_else(|| panic!("no MsgKey"));
    let other = c.send_msg(&hello()).await.ok().and_then(|r| r.msg_key).unwrap_or_else(|| panic!("no MsgKey"));
    assert_ne!(key, other);
    let modify = |key: &str, text: &str| ModifyC2cMsg {
        from_account: "@RBT#001".into(),
        to_account: "user1".into(),
        msg_key: key.to_owned(),
        msg_body: vec![MsgElement::text(text)],
    };
    assert!(c.modify_c2c_msg(&modify(&key, "one")).await.is_ok());
    assert_eq!(code(&c.modify_c2c_msg(&modify(&key, "two")).await), Some(EMU_MODIFY_TOO_FAST));
    assert!(c.modify_c2c_msg(&modify(&other, "per message")).await.is_ok(), "the limit is per message");
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert!(c.modify_c2c_msg(&modify(&key, "three")).await.is_ok());
    let texts: Vec<_> = emu.state.c2c_records().into_iter().map(|m| (m.text, m.modifications)).collect();
    assert_eq!(texts, [("three".to_owned(), 2), ("per message".to_owned(), 1)]);
}

#[tokio::test]
async fn a_refused_mode_is_refused_on_every_call_until_cleared() {
    let (emu, c) = setup().await;
    // Both native stream APIs, by their common prefix, with a code the client retries: every
    // attempt is refused.
    emu.state.refuse("stream_msg/", 10002);
    let r = c.send_c2c_stream_msg(&c2c_chunk(None, 1, "x", true)).await;
    assert_eq!(code(&r), Some(10002));
    assert_eq!(emu.state.calls_to(C2C_STREAM).len(), 4, "every retry refused");
    assert_eq!(code(&c.send_group_stream_msg(&group_chunk(None, 1, "x", true)).await), Some(10002));
    assert!(c.send_msg(&hello()).await.is_ok(), "other paths still work");
    assert!(emu.state.native_streams().is_empty());

    // The refusal can also be set over HTTP (the local run uses this), here for the modify mode.
    let http = reqwest::Client::new();
    let set = |code: Option<i64>| {
        http.post(format!("{}/__emulator/refusals", emu.base_url()))
            .json(&serde_json::json!({"path": "openim/modify_c2c_msg", "code": code}))
            .send()
    };
    assert!(set(Some(20009)).await.is_ok_and(|r| r.status().is_success()));
    let key = c.send_msg(&hello()).await.ok().and_then(|r| r.msg_key).unwrap_or_default();
    let modify = ModifyC2cMsg {
        from_account: "@RBT#001".into(),
        to_account: "user1".into(),
        msg_key: key,
        msg_body: vec![MsgElement::text("edited")],
    };
    assert_eq!(code(&c.modify_c2c_msg(&modify).await), Some(20009));
    assert_eq!(emu.state.refusals(), [("stream_msg/".to_owned(), 10002), ("openim/modify_c2c_msg".to_owned(), 20009)]);

    emu.state.stop_refusing("stream_msg/");
    assert!(set(None).await.is_ok_and(|r| r.status().is_success()));
    assert!(emu.state.refusals().is_empty());
    assert!(c.send_c2c_stream_msg(&c2c_chunk(None, 1, "x", true)).await.is_ok());
    assert!(c.modify_c2c_msg(&modify).await.is_ok());
    assert_eq!(emu.state.native_streams().len(), 1);
}
