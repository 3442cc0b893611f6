//! Threads end to end: webhooks through the router to standard queues on moto, the group event
//! functions' handlers (each with its own service beside `shared::threads`, under its template
//! grants) against the Tencent emulator, and the read API's handler with API Gateway events.
//! Also the sample events in `events/*thread*`, which drive the same handlers.

use crate::common::{APP_ID, Env, TOKEN, guarded, guarded_as, now, unique};
use aws_lambda_events::event::sqs::SqsEvent;
use shared::event_worker::{EventHandler, sqs_handler};
use shared::router::{Router, Routes};
use shared::tencent::{ChatApi, ForbidCallback, SendGroupMsg};
use shared::threads::api::ThreadsApi;
use shared::threads::{Digest, Scheduler, SqsScheduler, ThreadSettings, Threads, WithThreads, keys, read_json};
use shared::webhook::CallbackQuery;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CREATED: &str = "Group.CallbackAfterCreateGroup";
const JOINED: &str = "Group.CallbackAfterNewMemberJoin";
const EXITED: &str = "Group.CallbackAfterMemberExit";
const SENT: &str = "Group.CallbackAfterSendMsg";
const SERVER: &str = "@TGS#_@TGS#srvDEMO1";
const WINDOW_SECS: u64 = 2;

fn channel() -> String {
    format!("{SERVER}@TOPIC#_general")
}

fn event(name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn threads(env: &Env, functions: &[&str], scheduler: Option<Arc<dyn Scheduler>>) -> Threads {
    let settings = ThreadSettings {
        edit_window: Duration::from_secs(WINDOW_SECS),
        member_page: 200,
        voice_group_type: Some("Meeting".into()),
        ..ThreadSettings::default()
    };
    Threads { store: guarded_as(functions, &env.store), groups: env.chat.clone(), scheduler, settings }
}

fn community(env: &Env) -> shared::community::Community {
    shared::community::Community {
        store: guarded_as(&["GroupAfterCreateGroupFunction", "GroupAfterNewMemberJoinFunction"], &env.store),
        chat: env.chat.clone(),
        default_topics: vec![],
        welcome_from: None,
        welcome_text: String::new(),
        welcome_topic: None,
        ttl_secs: 60,
    }
}

fn teams(env: &Env) -> shared::teams::Teams {
    shared::teams::Teams {
        store: guarded("GroupTeamEventsFunction", &env.store),
        chat: env.chat.clone(),
        full_text: "full".into(),
        exit_text: "{members} {how}.".into(),
        exit_dm_from: None,
        exit_dm_text: String::new(),
        ttl_secs: 60,
    }
}

fn stats(env: &Env) -> shared::stats::Stats {
    shared::stats::Stats {
        store: guarded("GroupAfterSendMsgFunction", &env.store),
        kind_field: "kind".into(),
        ttl_secs: 60,
    }
}

/// The four group event functions as deployed, and the queues the router feeds them.
struct Functions {
    router: Router,
    created: (String, WithThreads<shared::community::Community>),
    joined: (String, WithThreads<shared::community::Community>),
    exited: (String, WithThreads<shared::teams::Teams>),
    sent: (String, WithThreads<shared::stats::Stats>),
}

async fn queue(env: &Env, name: &str) -> String {
    devtools::aws::queue_with_dlq(&env.sqs, &unique(name), 30, false).await.unwrap_or_else(|e| panic!("{e}")).0
}

async fn functions(env: &Env) -> Functions {
    let (created, joined, exited, sent) = (
        queue(env, "created").await,
        queue(env, "joined").await,
        queue(env, "exited").await,
        queue(env, "stats").await,
    );
    let routes = Routes {
        event_queues: HashMap::from([
            (CREATED.to_owned(), created.clone()),
            (JOINED.to_owned(), joined.clone()),
            (EXITED.to_owned(), exited.clone()),
            (SENT.to_owned(), sent.clone()),
        ]),
        ..Routes::default()
    };
    let router = crate::common::router_with(env, routes);
    let scheduler: Arc<dyn Scheduler> = Arc::new(SqsScheduler::new(env.sqs.clone(), sent.clone()));
    Functions {
        router,
        created: (
            created,
            WithThreads { inner: community(env), threads: threads(env, &["GroupAfterCreateGroupFunction"], None) },
        ),
        joined: (
            joined,
            WithThreads { inner: community(env), threads: threads(env, &["GroupAfterNewMemberJoinFunction"], None) },
        ),
        exited: (exited, WithThreads { inner: teams(env), threads: threads(env, &["GroupTeamEventsFunction"], None) }),
        sent: (
            sent,
            WithThreads { inner: stats(env), threads: threads(env, &["GroupAfterSendMsgFunction"], Some(scheduler)) },
        ),
    }
}

async fn webhook(router: &Router, command: &str, body: &serde_json::Value) {
    let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, now())));
    let (ack, _) =
        router.handle(&q, body.to_string().as_bytes(), now(), "req-thread").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ack.action_status, "OK", "{command}");
}

/// Delivers everything visible in `queue` to `handler`; returns how many records failed.
async fn drain(env: &Env, queue: &str, handler: &dyn EventHandler) -> usize {
    crate::teams::drain_with(env, queue, |ev| sqs_handler(handler, ev)).await
}

fn create_body(thread: &str, root_seq: u64) -> serde_json::Value {
    serde_json::json!({"CallbackCommand": CREATED, "GroupId": thread, "Type": "Public", "Owner_Account": "owner",
        "Operator_Account": "owner", "Name": format!("about {root_seq}"), "MemberList": [{"Member_Account": "owner"}],
        "UserDefinedDataList": [{"Key": "thread_server", "Value": SERVER}, {"Key": "thread_channel", "Value": channel()},
            {"Key": "thread_root", "Value": root_seq.to_string()}],
        "EventTime": now() as u64 * 1000})
}

fn members_body(command: &str, group: &str, list_field: &str, members: &[&str]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = members.iter().map(|m| serde_json::json!({"Member_Account": m})).collect();
    serde_json::json!({"CallbackCommand": command, "GroupId": group, "Type": "Community", "ExitType": "Quit",
        "JoinType": "Apply", list_field: list, "EventTime": now() as u64 * 1000})
}

/// A root message posted in the server's channel; its MsgSeq.
async fn root_message(env: &Env, text: &str) -> u64 {
    let req = SendGroupMsg {
        group_id: SERVER.into(),
        random: text.bytes().fold(17u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b))),
        from_account: Some("owner".into()),
        msg_body: vec![shared::msg::MsgElement::text(text)],
        topic_id: Some(channel()),
        group_at_info: vec![],
        cloud_custom_data: None,
        forbid_callback_control: ForbidCallback::own_messages(),
    };
    env.chat.send_group_msg(&req).await.unwrap_or_else(|e| panic!("{e}")).msg_seq.unwrap_or_else(|| panic!("no MsgSeq"))
}

fn root_data(env: &Env, seq: u64) -> Option<serde_json::Value> {
    let m = env.tencent.state.group_messages().into_iter().find(|m| m.group_id == SERVER && m.msg_seq == seq)?;
    serde_json::from_str(m.cloud_custom_data.as_deref()?).ok()
}

#[tokio::test]
async fn a_thread_gets_its_server_s_members_follows_joins_and_exits_and_digests_its_messages() {
    let env = Env::new().await;
    let f = functions(&env).await;
    let emu = &env.tencent.state;
    let server_members: Vec<String> = (0..1200).map(|i| format!("u{i:04}")).collect();
    emu.seed_group(SERVER, &server_members);
    let threads = ["@TGS#2thread1", "@TGS#2thread2", "@TGS#2thread3"];
    let mut roots = Vec::new();
    for (i, t) in threads.iter().enumerate() {
        emu.seed_group(t, &["owner".to_owned()]);
        let root = root_message(&env, &format!("root {i}")).await;
        roots.push(root);
        webhook(&f.router, CREATED, &create_body(t, root)).await;
    }
    assert_eq!(drain(&env, &f.created.0, &f.created.1).await, 0);

    // GIVEN a server of 1,200: every member is in each thread, added 200 at a time.
    for t in threads {
        let members = emu.group_members(t);
        assert_eq!(members.len(), 1201, "{t}");
        assert!(server_members.iter().all(|m| members.contains(m)), "{t}");
    }
    let adds = emu.calls_to("group_open_http_svc/add_group_member");
    assert_eq!(adds.len(), 18, "6 pages of 200 for each of 3 threads");
    assert!(adds.iter().all(|c| c.code == 0 && c.body["MemberList"].as_array().is_some_and(|a| a.len() <= 300)));
    let reads = emu.calls_to("group_open_http_svc/get_group_member_info");
    assert!(reads.iter().all(|c| c.code == 0 && c.body["Limit"].as_u64().is_some_and(|l| l <= 200)), "{reads:?}");

    // WHEN someone joins the server THEN they are added to its 3 threads.
    emu.seed_group(SERVER, &[server_members.clone(), vec!["newbie".into()]].concat());
    webhook(&f.router, JOINED, &members_body(JOINED, SERVER, "NewMemberList", &["newbie"])).await;
    assert_eq!(drain(&env, &f.joined.0, &f.joined.1).await, 0);
    assert!(threads.iter().all(|t| emu.group_members(t).contains(&"newbie".to_owned())));
    // WHEN someone leaves the server THEN they leave its threads.
    webhook(&f.router, EXITED, &members_body(EXITED, SERVER, "ExitMemberList", &["u0007"])).await;
    assert_eq!(drain(&env, &f.exited.0, &f.exited.1).await, 0);
    assert!(threads.iter().all(|t| !emu.group_members(t).contains(&"u0007".to_owned())));
    // Tencent then reports those removals as exits from the threads: neither they nor the
    // server's exit are a game team's, so nobody is told "… was kicked".
    let mut removed = members_body(EXITED, threads[0], "ExitMemberList", &["u0007"]);
    (removed["Type"], removed["ExitType"]) = ("Public".into(), "Kicked".into());
    webhook(&f.router, EXITED, &removed).await;
    assert_eq!(drain(&env, &f.exited.0, &f.exited.1).await, 0);
    assert!(emu.system_notifications().is_empty(), "{:?}", emu.system_notifications());

    // 50 messages in a thread, each delivered twice: counted 50, the last one is the last.
    let started = Instant::now();
    let t = threads[0];
    for seq in 1..=50u64 {
        let body = serde_json::json!({"CallbackCommand": SENT, "GroupId": t, "Type": "Public",
            "From_Account": format!("u{:04}", seq % 7), "MsgSeq": seq, "MsgTime": 1_700_000_000 + seq, "Random": seq,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("message number {seq}")}}],
            "EventTime": now() as u64 * 1000});
        webhook(&f.router, SENT, &body).await;
        webhook(&f.router, SENT, &body).await;
    }
    assert_eq!(drain(&env, &f.sent.0, &f.sent.1).await, 0);
    let digest: Option<Digest> =
        read_json(env.store.as_ref(), &keys::digest(t)).await.unwrap_or_else(|e| panic!("{e}"));
    let digest = digest.unwrap_or_else(|| panic!("no digest"));
    assert_eq!(digest.count, 50);
    let last = digest.last.clone().unwrap_or_else(|| panic!("no last message"));
    assert_eq!(
        (last.seq, last.from.as_str(), last.text.as_str(), last.time),
        (50, "u0001", "message number 50", 1_700_000_050)
    );
    // The delayed edit brings the root message up to date after the window.
    let deadline = Instant::now() + Duration::from_secs(30);
    while root_data(&env, roots[0]).is_none_or(|d| d["thread"]["count"] != 50) {
        assert!(Instant::now() < deadline, "the root message never showed 50: {:?}", root_data(&env, roots[0]));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(drain(&env, &f.sent.0, &f.sent.1).await, 0);
    }
    let data = root_data(&env, roots[0]).unwrap_or_default();
    assert_eq!(data["thread"]["id"], t);
    assert_eq!(
        data["thread"]["last"],
        serde_json::json!({"from": "u0001", "text": "message number 50", "time": 1_700_000_050u64, "seq": 50})
    );
    // At most one edit per window: edits are a window apart, and few.
    let edits: Vec<u64> = emu
        .calls_to("openim/modify_group_msg")
        .iter()
        .filter(|c| c.code == 0 && c.body["MsgSeq"] == roots[0])
        .map(|c| c.at_ms)
        .collect();
    assert!(edits.windows(2).all(|w| w[1] - w[0] >= WINDOW_SECS * 1000), "{edits:?}");
    let windows = started.elapsed().as_secs() / WINDOW_SECS + 1;
    assert!(!edits.is_empty() && edits.len() as u64 <= windows, "{} edits in {windows} windows", edits.len());
    // The edits replaced only the root's custom data: its text is as posted.
    let root = emu.group_messages().into_iter().find(|m| m.msg_seq == roots[0]).map(|m| m.text);
    assert_eq!(root.as_deref(), Some("root 0"));

    // The read API lists the server's threads with their digests.
    let api = ThreadsApi { store: guarded("ThreadsApiFunction", &env.store), claim: "sub".into() };
    let listing = read_api(&api, &[("server", SERVER)], "u0002").await;
    assert_eq!(listing.0, 200);
    let list = &listing.1["threads"];
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(list[0]["thread"], t);
    assert_eq!((list[0]["count"].as_u64(), list[1]["count"].as_u64()), (Some(50), Some(0)));
    assert_eq!(list[0]["last"]["seq"], 50);
    assert_eq!(list[0]["root_seq"], roots[0]);
    // Only the server's members read its threads: not a stranger, not one who left.
    for (caller, status) in [("u0002", 200), ("newbie", 200), ("stranger", 403), ("u0007", 403)] {
        let (got, body) = read_api(&api, &[("server", SERVER)], caller).await;
        assert_eq!(got, status, "{caller}: {body}");
    }
    let other = read_api(&api, &[("server", SERVER), ("channel", "elsewhere")], "u0002").await;
    assert_eq!(other.1["threads"].as_array().map(Vec::len), Some(0));
}

/// The read API's handler with the sample API Gateway event, its query and caller replaced.
async fn read_api(api: &ThreadsApi, query: &[(&str, &str)], sub: &str) -> (u16, serde_json::Value) {
    let mut ev = event("threads-api.request.json");
    let params: serde_json::Map<String, serde_json::Value> =
        query.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect();
    ev["queryStringParameters"] = serde_json::Value::Object(params);
    ev["rawQueryString"] =
        serde_json::json!(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(query.iter()).finish());
    ev["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = serde_json::json!(sub);
    call_api(api, &ev).await
}

async fn call_api(api: &ThreadsApi, ev: &serde_json::Value) -> (u16, serde_json::Value) {
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let res = shared::threads::api::http_handler(api, req).await.unwrap_or_else(|e| panic!("{e}"));
    let body = match res.body() {
        lambda_http::Body::Text(t) => t.clone(),
        other => panic!("unexpected body {other:?}"),
    };
    (res.status().as_u16(), serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[tokio::test]
async fn the_sample_thread_events_drive_their_functions_and_the_read_api() {
    let env = Env::new().await;
    let emu = &env.tencent.state;
    emu.seed_group(SERVER, &["user1".to_owned(), "user2".to_owned(), "user9".to_owned()]);
    emu.seed_group("@TGS#2thrDEMO1", &["user1".to_owned()]);
    emu.seed_group("@TGS#3voiceDEMO1", &["user9".to_owned()]);
    emu.seed_group("@TGS#3voiceDEMO2", &["user9".to_owned()]);
    // The root message the sample thread names (MsgSeq 101 is the emulator's first).
    assert_eq!(root_message(&env, "root").await, 101);
    let created =
        WithThreads { inner: community(&env), threads: threads(&env, &["GroupAfterCreateGroupFunction"], None) };
    let joined =
        WithThreads { inner: community(&env), threads: threads(&env, &["GroupAfterNewMemberJoinFunction"], None) };
    let exited = WithThreads { inner: teams(&env), threads: threads(&env, &["GroupTeamEventsFunction"], None) };
    let sent = WithThreads { inner: stats(&env), threads: threads(&env, &["GroupAfterSendMsgFunction"], None) };
    // user9 was in another voice channel before the sample join.
    joined.threads.voice_join("@TGS#3voiceDEMO1", "user9", 1).await.unwrap_or_else(|e| panic!("{e}"));
    let cases: [(&str, &dyn EventHandler); 4] = [
        ("group-after-create-group.thread.json", &created),
        ("group-after-send-msg.thread.json", &sent),
        ("group-after-new-member-join.thread-voice.json", &joined),
        ("group-after-new-member-join.thread-server.json", &joined),
    ];
    for (name, handler) in cases {
        let ev: SqsEvent = serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(sqs_handler(handler, ev).await.batch_item_failures.is_empty(), "{name}");
    }
    assert_eq!(emu.group_members("@TGS#2thrDEMO1"), ["user1", "user2", "user9"]);
    assert_eq!(root_data(&env, 101).map(|d| d["thread"]["count"].clone()), Some(serde_json::json!(1)));
    assert!(!emu.group_members("@TGS#3voiceDEMO1").contains(&"user9".to_owned()), "left the first voice channel");
    let api = ThreadsApi { store: guarded("ThreadsApiFunction", &env.store), claim: "sub".into() };
    let (status, listing) = call_api(&api, &event("threads-api.request.json")).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["threads"][0]["last"]["text"], "Saturday at ten?");
    assert_eq!(listing["threads"][0]["name"], "Weekend plans");
    assert_eq!(listing["voice"], serde_json::json!({"user": "user9", "channel": "@TGS#3voiceDEMO2"}));
    let ev: SqsEvent =
        serde_json::from_value(event("group-team-events.thread-server-exit.json")).unwrap_or_else(|e| panic!("{e}"));
    assert!(sqs_handler(&exited, ev).await.batch_item_failures.is_empty());
    assert_eq!(emu.group_members("@TGS#2thrDEMO1"), ["user1", "user2"]);
    assert_eq!(call_api(&api, &event("threads-api.request.json")).await.0, 403, "user9 left the server");
    // No claim, no listing; no server, a clear error.
    let mut anonymous = event("threads-api.request.json");
    anonymous["requestContext"]["authorizer"]["jwt"]["claims"] = serde_json::json!({});
    assert_eq!(call_api(&api, &anonymous).await.0, 401);
    let mut no_server = event("threads-api.request.json");
    no_server["queryStringParameters"] = serde_json::json!({});
    no_server["rawQueryString"] = serde_json::json!("");
    let (status, body) = call_api(&api, &no_server).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("the server parameter is required")));
}

#[tokio::test]
async fn the_emulator_refuses_member_calls_past_tencent_s_limits() {
    let env = Env::new().await;
    env.tencent.state.seed_group("@TGS#g", &[]);
    let too_many: Vec<shared::tencent::groups::NewMember> =
        (0..301).map(|i| shared::tencent::groups::NewMember { member_account: format!("m{i}") }).collect();
    let add = shared::tencent::groups::AddGroupMember { group_id: "@TGS#g".into(), silence: 1, member_list: too_many };
    use shared::tencent::groups::GroupApi;
    assert_eq!(env.chat.add_group_member(&add).await.err().and_then(|e| e.code()), Some(10004));
    let missing = shared::tencent::groups::AddGroupMember {
        group_id: "@TGS#none".into(),
        member_list: add.member_list[..1].to_vec(),
        ..add.clone()
    };
    assert_eq!(env.chat.add_group_member(&missing).await.err().and_then(|e| e.code()), Some(10010));
    let page = shared::tencent::groups::GetGroupMemberInfo {
        limit: 201,
        ..shared::tencent::groups::GetGroupMemberInfo::page("@TGS#g", false, None, 1)
    };
    assert_eq!(env.chat.get_group_member_info(&page).await.err().and_then(|e| e.code()), Some(10004));
    env.tencent.state.set_group_capacity(2);
    let three = shared::tencent::groups::AddGroupMember {
        member_list: (0..3).map(|i| shared::tencent::groups::NewMember { member_account: format!("m{i}") }).collect(),
        ..add
    };
    assert_eq!(env.chat.add_group_member(&three).await.err().and_then(|e| e.code()), Some(10014));
}

#[tokio::test]
async fn a_full_team_passes_through_the_threads_wrapper_to_its_notice_and_team_ready() {
    let env = Env::new().await;
    let f = functions(&env).await;
    let body = serde_json::json!({"CallbackCommand": "Group.CallbackAfterGroupFull", "GroupId": "@TGS#team9",
        "EventTime": 1_700_000_000_000u64});
    let mut made = Vec::new();
    let outcome = f.exited.1.handle_and_tell("Group.CallbackAfterGroupFull", &body, &mut made).await;
    assert_eq!(outcome.ok(), Some("team_full_notified"));
    assert_eq!(made.iter().map(|e| e.detail_type.as_str()).collect::<Vec<_>>(), ["Team Ready"]);
    assert_eq!(env.tencent.state.system_notifications().len(), 1);
}
