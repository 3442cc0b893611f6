//! Group membership and message-data REST calls that threads and voice channels need
//! (`group_open_http_svc/get_group_member_info`, `add_group_member`, `delete_group_member`, and
//! `openim/modify_group_msg` with `CloudCustomData` only), behind their own small port so that
//! the chatbot's [`super::ChatApi`] and its test doubles stay as they are.
//!
//! Limits, from Tencent's pages (doc:https://trtc.io/document/34948, 34921, 34949, 47948):
//! - `get_group_member_info`: `Limit` at most 200 (100 advised). Community groups page with the
//!   opaque `Next` cursor (empty when done); other groups with `Offset`. Not for AVChatRoom.
//! - `add_group_member`: at most 300 members a call; each listed member comes back with a
//!   `Result` (0 failed, 1 added, 2 already a member, 3 waiting for approval). AVChatRoom: 10007.
//! - `delete_group_member`: at most 100 members a call (`MemberToDel_Account`). AVChatRoom: 10004.
//! - `modify_group_msg`: `MsgBody` and `CloudCustomData` are each optional and replace the
//!   message's field; `TopicId` for a message in a topic; 200 calls/s.

use super::client::{Repeat, RestClient, RestError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The most members `get_group_member_info` returns in one page.
pub const MAX_MEMBER_PAGE: u32 = 200;
/// The most members one `add_group_member` call may add.
pub const MAX_ADD_MEMBERS: usize = 300;
/// The most members one `delete_group_member` call may remove.
pub const MAX_DELETE_MEMBERS: usize = 100;

/// Where a member page starts: the first page, an `Offset` (ordinary groups) or a `Next`
/// cursor (Community groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "at", rename_all = "snake_case")]
pub enum PageAt {
    Offset(u64),
    Next(String),
}

/// `v4/group_open_http_svc/get_group_member_info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GetGroupMemberInfo {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Limit")]
    pub limit: u32,
    #[serde(rename = "Offset", skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(rename = "Next", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Only the account of each member: the rest of the profile is not needed.
    #[serde(rename = "MemberInfoFilter")]
    pub member_info_filter: Vec<String>,
}

impl GetGroupMemberInfo {
    /// The page of `group` starting at `at`, `limit` members (capped at [`MAX_MEMBER_PAGE`]).
    /// A Community group's first page sends an empty `Next`, as Tencent's sample does.
    pub fn page(group: &str, community: bool, at: Option<&PageAt>, limit: u32) -> Self {
        let (offset, next) = match (community, at) {
            (true, Some(PageAt::Next(n))) => (None, Some(n.clone())),
            (true, _) => (None, Some(String::new())),
            (false, Some(PageAt::Offset(o))) => (Some(*o), None),
            (false, _) => (Some(0), None),
        };
        GetGroupMemberInfo {
            group_id: group.to_owned(),
            limit: limit.clamp(1, MAX_MEMBER_PAGE),
            offset,
            next,
            member_info_filter: vec!["Member_Account".into()],
        }
    }
}

/// One member in a member page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupMember {
    #[serde(rename = "Member_Account")]
    pub member_account: String,
}

/// The reply to `get_group_member_info`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GroupMemberPage {
    #[serde(rename = "MemberNum", default)]
    pub member_num: u64,
    #[serde(rename = "MemberList", default)]
    pub member_list: Vec<GroupMember>,
    /// Community groups: the cursor of the next page, empty when this was the last.
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
}

/// A member to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    #[serde(rename = "Member_Account")]
    pub member_account: String,
}

/// `v4/group_open_http_svc/add_group_member`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddGroupMember {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    /// 1: nobody is notified (no "X joined" tip for every member of a large server).
    #[serde(rename = "Silence")]
    pub silence: u8,
    #[serde(rename = "MemberList")]
    pub member_list: Vec<NewMember>,
}

/// One member's outcome in an `add_group_member` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddResult {
    #[serde(rename = "Member_Account")]
    pub member_account: String,
    /// 0 failed, 1 added, 2 already a member, 3 waiting for approval.
    #[serde(rename = "Result", default)]
    pub result: u8,
}

/// The reply to `add_group_member`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AddGroupMemberReply {
    #[serde(rename = "MemberList", default)]
    pub member_list: Vec<AddResult>,
}

/// `v4/group_open_http_svc/delete_group_member`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteGroupMember {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Silence")]
    pub silence: u8,
    #[serde(rename = "MemberToDel_Account")]
    pub member_to_del_account: Vec<String>,
}

/// `v4/openim/modify_group_msg` replacing only a message's `CloudCustomData` (its body stays).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModifyGroupMsgData {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "MsgSeq")]
    pub msg_seq: u64,
    #[serde(rename = "CloudCustomData")]
    pub cloud_custom_data: String,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

/// The group calls of threads and voice channels. One production adapter ([`RestClient`]);
/// tests run it against the Tencent emulator.
#[async_trait]
pub trait GroupApi: Send + Sync {
    async fn get_group_member_info(&self, req: &GetGroupMemberInfo) -> Result<GroupMemberPage, RestError>;
    async fn add_group_member(&self, req: &AddGroupMember) -> Result<AddGroupMemberReply, RestError>;
    async fn delete_group_member(&self, req: &DeleteGroupMember) -> Result<(), RestError>;
    async fn modify_group_msg_data(&self, req: &ModifyGroupMsgData) -> Result<(), RestError>;
}

#[async_trait]
impl GroupApi for RestClient {
    async fn get_group_member_info(&self, req: &GetGroupMemberInfo) -> Result<GroupMemberPage, RestError> {
        self.call("group_open_http_svc/get_group_member_info", req, Repeat::Safe).await
    }
    // Adding someone twice answers "already a member" (Result 2): safe to repeat.
    async fn add_group_member(&self, req: &AddGroupMember) -> Result<AddGroupMemberReply, RestError> {
        self.call("group_open_http_svc/add_group_member", req, Repeat::Safe).await
    }
    async fn delete_group_member(&self, req: &DeleteGroupMember) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("group_open_http_svc/delete_group_member", req, Repeat::Safe).await.map(drop)
    }
    // The whole CloudCustomData is replaced each time: repeating a call changes nothing.
    async fn modify_group_msg_data(&self, req: &ModifyGroupMsgData) -> Result<(), RestError> {
        self.call::<_, serde_json::Value>("openim/modify_group_msg", req, Repeat::Safe).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_pages_use_next_in_communities_and_offset_elsewhere_within_the_limit() {
        let first = serde_json::to_value(GetGroupMemberInfo::page("@TGS#_s", true, None, 500)).unwrap_or_default();
        assert_eq!(first["Next"], "");
        assert_eq!(first["Limit"], 200);
        assert!(first.get("Offset").is_none(), "{first}");
        let at = PageAt::Next("c1".into());
        let next = serde_json::to_value(GetGroupMemberInfo::page("@TGS#_s", true, Some(&at), 100)).unwrap_or_default();
        assert_eq!(next["Next"], "c1");
        let at = PageAt::Offset(300);
        let plain = serde_json::to_value(GetGroupMemberInfo::page("@TGS#g", false, Some(&at), 0)).unwrap_or_default();
        assert_eq!((plain["Offset"].as_u64(), plain["Limit"].as_u64()), (Some(300), Some(1)));
        assert!(plain.get("Next").is_none(), "{plain}");
    }

    #[test]
    fn a_data_only_modify_sends_no_msg_body() {
        let req = ModifyGroupMsgData {
            group_id: "@TGS#_s".into(),
            msg_seq: 7,
            cloud_custom_data: "{}".into(),
            topic_id: Some("@TGS#_s@TOPIC#_t".into()),
        };
        let v = serde_json::to_value(req).unwrap_or_default();
        assert!(v.get("MsgBody").is_none() && v["CloudCustomData"] == "{}" && v["TopicId"] == "@TGS#_s@TOPIC#_t");
    }
}
