//! The REST client against the local Tencent emulator: UserSig accepted, retries on the
//! transient, rate-limit and UserSig-expired codes, on 502 and on a timeout; no retry where a
//! retry could duplicate a stream chunk.

use crate::common::{APP_ID, KEY, rest_options};
use devtools::tencent_emu::{Fault, TencentEmulator};
use shared::msg::MsgElement;
use shared::secrets::SecretString;
use shared::tencent::{ChatApi, CreateRobot, ForbidCallback, RestClient, RestError, SendMsg, SendStreamMsg};

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
