//! Unit tests of the threads service with the in-memory store and a recording group API.

use super::*;
use crate::store::MemoryStore;
use crate::tencent::RestError;
use crate::tencent::groups::{AddGroupMemberReply, AddResult, GroupMember, GroupMemberPage, ModifyGroupMsgData};
use std::sync::Mutex;

/// A group API over in-memory groups; records the calls.
#[derive(Default)]
struct FakeGroups {
    members: Mutex<HashMap<String, Vec<String>>>,
    calls: Mutex<Vec<String>>,
    /// Fails the add call with this index (0-based among adds), once.
    fail_add: Mutex<Option<usize>>,
}

#[async_trait]
impl GroupApi for FakeGroups {
    async fn get_group_member_info(&self, req: &GetGroupMemberInfo) -> Result<GroupMemberPage, RestError> {
        self.calls.lock().map(|mut c| c.push(format!("get {}", req.group_id))).ok();
        let all = self.members.lock().map(|m| m.get(&req.group_id).cloned().unwrap_or_default()).unwrap_or_default();
        let start: usize = req.next.as_deref().filter(|n| !n.is_empty()).and_then(|n| n.parse().ok()).unwrap_or(0);
        let end = (start + req.limit as usize).min(all.len());
        let list = all[start..end].iter().map(|m| GroupMember { member_account: m.clone() }).collect();
        let next = if end < all.len() { end.to_string() } else { String::new() };
        Ok(GroupMemberPage { member_num: all.len() as u64, member_list: list, next: Some(next) })
    }
    async fn add_group_member(&self, req: &AddGroupMember) -> Result<AddGroupMemberReply, RestError> {
        let adds = self.calls.lock().map(|c| c.iter().filter(|c| c.starts_with("add")).count()).unwrap_or_default();
        if let Ok(mut f) = self.fail_add.lock()
            && *f == Some(adds)
        {
            *f = None;
            return Err(RestError::Tencent { call: "add", code: 10002, info: "internal".into() });
        }
        self.calls.lock().map(|mut c| c.push(format!("add {} {}", req.group_id, req.member_list.len()))).ok();
        let mut g = self.members.lock().map_err(|_| RestError::Decode { call: "add", reason: "poisoned".into() })?;
        let list = g.entry(req.group_id.clone()).or_default();
        let mut out = Vec::new();
        for m in &req.member_list {
            let had = list.contains(&m.member_account);
            if !had {
                list.push(m.member_account.clone());
            }
            out.push(AddResult { member_account: m.member_account.clone(), result: if had { 2 } else { 1 } });
        }
        Ok(AddGroupMemberReply { member_list: out })
    }
    async fn delete_group_member(&self, req: &DeleteGroupMember) -> Result<(), RestError> {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("del {} {}", req.group_id, req.member_to_del_account.join(","))))
            .ok();
        if let Ok(mut g) = self.members.lock() {
            g.entry(req.group_id.clone()).or_default().retain(|m| !req.member_to_del_account.contains(m));
        }
        Ok(())
    }
    async fn modify_group_msg_data(&self, req: &ModifyGroupMsgData) -> Result<(), RestError> {
        self.calls.lock().map(|mut c| c.push(format!("modify {} {}", req.group_id, req.msg_seq))).ok();
        Ok(())
    }
}

fn service(groups: Arc<FakeGroups>) -> Threads {
    let settings =
        ThreadSettings { voice_group_type: Some("Meeting".into()), member_page: 2, ..ThreadSettings::default() };
    Threads { store: Arc::new(MemoryStore::new()), groups, scheduler: None, settings }
}

fn created(group: &str, data: &[(&str, &str)]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = data.iter().map(|(k, v)| serde_json::json!({"Key": k, "Value": v})).collect();
    serde_json::json!({"CallbackCommand": "Group.CallbackAfterCreateGroup", "GroupId": group, "Type": "Public",
        "UserDefinedDataList": list, "EventTime": 1_700_000_000_000u64})
}

fn members_of(g: &FakeGroups, group: &str) -> Vec<String> {
    g.members.lock().map(|m| m.get(group).cloned().unwrap_or_default()).unwrap_or_default()
}

#[tokio::test]
async fn a_thread_is_registered_and_gets_every_server_member_resuming_after_a_failure() {
    let groups = Arc::new(FakeGroups::default());
    let server = "@TGS#_srv";
    groups.members.lock().map(|mut m| m.insert(server.into(), (0..5).map(|i| format!("u{i}")).collect())).ok();
    groups.fail_add.lock().map(|mut f| *f = Some(1)).ok();
    let t = service(groups.clone());
    let body = created(
        "@TGS#t1",
        &[("thread_server", server), ("thread_channel", "@TGS#_srv@TOPIC#_c"), ("thread_root", "12")],
    );
    // The second page's add fails: the event fails after the first page was recorded.
    assert!(t.handle("Group.CallbackAfterCreateGroup", &body).await.is_err());
    assert_eq!(members_of(&groups, "@TGS#t1").len(), 2);
    groups.calls.lock().map(|mut c| c.clear()).ok();
    // The retry starts at the second page, not the first.
    assert_eq!(t.handle("Group.CallbackAfterCreateGroup", &body).await.ok(), Some("thread_registered"));
    assert_eq!(members_of(&groups, "@TGS#t1"), ["u0", "u1", "u2", "u3", "u4"]);
    let info = t.thread("@TGS#t1").await.ok().flatten();
    assert_eq!(info.as_ref().and_then(|i| i.root_seq), Some(12));
    assert_eq!(info.and_then(|i| i.channel).as_deref(), Some("@TGS#_srv@TOPIC#_c"));
    // Pages of 2: the retry read and added pages 2 and 3 only; a redelivery reads nothing again.
    let calls = groups.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls, ["get @TGS#_srv", "add @TGS#t1 2", "get @TGS#_srv", "add @TGS#t1 1"]);
    let n = calls.len();
    assert_eq!(t.handle("Group.CallbackAfterCreateGroup", &body).await.ok(), Some("thread_registered"));
    assert_eq!(groups.calls.lock().map(|c| c.len()).unwrap_or_default(), n);
}

#[tokio::test]
async fn a_bad_root_field_or_a_thread_of_itself_is_refused() {
    let t = service(Arc::new(FakeGroups::default()));
    let bad = created("@TGS#t1", &[("thread_server", "@TGS#_s"), ("thread_root", "twelve")]);
    assert!(matches!(t.handle("Group.CallbackAfterCreateGroup", &bad).await, Err(EventError::Malformed(_))));
    let selfish = created("@TGS#t1", &[("thread_server", "@TGS#t1")]);
    assert!(matches!(t.handle("Group.CallbackAfterCreateGroup", &selfish).await, Err(EventError::Malformed(_))));
    let plain = created("@TGS#g", &[]);
    assert_eq!(t.handle("Group.CallbackAfterCreateGroup", &plain).await.ok(), Some("not_a_thread"));
}

#[tokio::test]
async fn joining_a_second_voice_channel_leaves_the_first_and_a_stale_join_loses() {
    let groups = Arc::new(FakeGroups::default());
    let t = service(groups.clone());
    let join = |g: &str, at: u64| serde_json::json!({"GroupId": g, "Type": "Meeting", "NewMemberList": [{"Member_Account": "amy"}], "EventTime": at});
    assert_eq!(t.handle("Group.CallbackAfterNewMemberJoin", &join("@TGS#v1", 10)).await.ok(), Some("voice_joined"));
    assert_eq!(t.handle("Group.CallbackAfterNewMemberJoin", &join("@TGS#v2", 20)).await.ok(), Some("voice_joined"));
    // An older join delivered late: the user is taken out of that channel instead.
    assert_eq!(t.handle("Group.CallbackAfterNewMemberJoin", &join("@TGS#v1", 15)).await.ok(), Some("voice_joined"));
    let calls = groups.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls, ["del @TGS#v1 amy", "del @TGS#v1 amy"]);
    let state: Option<VoiceState> = read_json(t.store.as_ref(), &keys::voice_user("amy")).await.ok().flatten();
    assert_eq!(state.and_then(|s| s.channel).as_deref(), Some("@TGS#v2"));
    // Leaving the current channel clears it; leaving another does not.
    let exit = |g: &str, at: u64| serde_json::json!({"GroupId": g, "Type": "Meeting", "ExitType": "Quit", "ExitMemberList": [{"Member_Account": "amy"}], "EventTime": at});
    t.handle("Group.CallbackAfterMemberExit", &exit("@TGS#v1", 30)).await.ok();
    let state: Option<VoiceState> = read_json(t.store.as_ref(), &keys::voice_user("amy")).await.ok().flatten();
    assert_eq!(state.and_then(|s| s.channel).as_deref(), Some("@TGS#v2"));
    t.handle("Group.CallbackAfterMemberExit", &exit("@TGS#v2", 31)).await.ok();
    let state: Option<VoiceState> = read_json(t.store.as_ref(), &keys::voice_user("amy")).await.ok().flatten();
    assert_eq!(state.map(|s| s.channel), Some(None));
}

#[test]
fn settings_have_defaults_and_refuse_out_of_range_values() {
    let s = ThreadSettings::from_lookup(|_| None).unwrap_or_default();
    assert_eq!((s.server_field.as_str(), s.edit_window.as_secs(), s.member_page), ("thread_server", 5, 100));
    let bad = ThreadSettings::from_lookup(|k| (k == "TCBOT_THREAD_MEMBER_PAGE").then(|| "500".to_owned()));
    assert!(bad.err().is_some_and(|e| e.to_string().contains("TCBOT_THREAD_MEMBER_PAGE")));
    let w = ThreadSettings::from_lookup(|k| (k == "TCBOT_THREAD_EDIT_WINDOW_SECS").then(|| "2".to_owned()));
    assert_eq!(w.map(|s| s.edit_window.as_secs()).ok(), Some(2));
}

#[tokio::test]
async fn the_edited_version_never_goes_back() {
    let t = service(Arc::new(FakeGroups::default()));
    t.set_edited("@TGS#t", 5).await.unwrap_or_else(|e| panic!("{e}"));
    // An older edit that finished last.
    t.set_edited("@TGS#t", 3).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.store.get_doc(&keys::edited("@TGS#t")).await.ok().flatten().as_deref(), Some("5"));
    t.set_edited("@TGS#t", 7).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.store.get_doc(&keys::edited("@TGS#t")).await.ok().flatten().as_deref(), Some("7"));
}
