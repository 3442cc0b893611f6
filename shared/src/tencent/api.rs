//! Request and response bodies of the REST calls this product makes. Field names are Tencent's
//! (tencent-chat-protocol.md §3.4, §3.5, §4.2–§4.5, §5, §6).

use crate::msg::MsgElement;
use serde::{Deserialize, Serialize};

/// A callback a REST send can skip (`ForbidCallbackControl` of `sendmsg` and `send_group_msg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForbidCallback {
    #[serde(rename = "ForbidBeforeSendMsgCallback")]
    BeforeSendMsg,
    #[serde(rename = "ForbidAfterSendMsgCallback")]
    AfterSendMsg,
}

impl ForbidCallback {
    /// What the bot's own sends carry. Messages sent by REST trigger the app's before-send and
    /// after-send callbacks (protocol doc §6): without this every answer would wait for the
    /// moderation function, could be refused by it, and would be counted in the users'
    /// statistics. The bot judges its own text in-process instead (`bot::moderated`).
    pub fn own_messages() -> Vec<ForbidCallback> {
        vec![ForbidCallback::BeforeSendMsg, ForbidCallback::AfterSendMsg]
    }
}

/// `v4/openim/sendmsg`. `MsgSeq` and `MsgRandom` stay the same across retries, so Tencent's
/// 120 s server-side dedup makes a retried send idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMsg {
    #[serde(rename = "SyncOtherMachine")]
    pub sync_other_machine: u8,
    #[serde(rename = "From_Account", skip_serializing_if = "Option::is_none")]
    pub from_account: Option<String>,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    #[serde(rename = "MsgSeq")]
    pub msg_seq: u32,
    #[serde(rename = "MsgRandom")]
    pub msg_random: u32,
    #[serde(rename = "MsgLifeTime", skip_serializing_if = "Option::is_none")]
    pub msg_life_time: Option<u32>,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "CloudCustomData", skip_serializing_if = "Option::is_none")]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "ForbidCallbackControl", skip_serializing_if = "Vec::is_empty", default)]
    pub forbid_callback_control: Vec<ForbidCallback>,
}

/// The reply to `sendmsg`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SendMsgReply {
    #[serde(rename = "MsgTime", default)]
    pub msg_time: Option<u64>,
    #[serde(rename = "MsgKey", default)]
    pub msg_key: Option<String>,
    #[serde(rename = "MsgId", default)]
    pub msg_id: Option<String>,
}

/// `v4/openim_robot_http_svc/send_stream_msg`: one piece of a robot's streamed C2C reply.
/// `chunk` is the new text only; the first call has no `msg_key`, later calls send back the
/// one Tencent returned; the last call has `finish: Some(1)`. No `ForbidCallbackControl`: the
/// API documents none (protocol doc §3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendStreamMsg {
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    #[serde(rename = "Chunk")]
    pub chunk: String,
    #[serde(rename = "MsgKey", skip_serializing_if = "Option::is_none")]
    pub msg_key: Option<String>,
    #[serde(rename = "Finish", skip_serializing_if = "Option::is_none")]
    pub finish: Option<u8>,
}

/// The reply to `send_stream_msg`. Only `MsgKey` is documented (UNCONFIRMED: the full field
/// table was not found), so everything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SendStreamMsgReply {
    #[serde(rename = "MsgKey", default)]
    pub msg_key: Option<String>,
}

/// What a native stream chunk carries (`Chunks[].EventType`). Only `data` has been seen
/// (protocol doc §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEventType {
    #[serde(rename = "data")]
    Data,
}

/// One piece of a native stream (`TIMStreamElem` `Chunks[]`). `index` counts from 1 per stream
/// and goes up by one with every chunk; `markdown` is the new text only, not the text so far;
/// the stream's last chunk has `is_last` (timbot closes with an empty `markdown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    #[serde(rename = "EventType")]
    pub event_type: StreamEventType,
    #[serde(rename = "Index")]
    pub index: u32,
    #[serde(rename = "Markdown")]
    pub markdown: String,
    #[serde(rename = "IsLast")]
    pub is_last: bool,
}

impl StreamChunk {
    /// A `data` chunk.
    pub fn data(index: u32, markdown: impl Into<String>, is_last: bool) -> Self {
        StreamChunk { event_type: StreamEventType::Data, index, markdown: markdown.into(), is_last }
    }
}

/// The content of a `TIMStreamElem` (cloud.tencent.com/document/product/269/128596, protocol doc
/// §6). `stream_msg_id` is absent on a stream's first call and, on every later call, the
/// `StreamMsgID` that the first reply carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamElem {
    /// What clients too old to render stream elements show instead.
    #[serde(rename = "CompatibleText")]
    pub compatible_text: String,
    #[serde(rename = "Chunks")]
    pub chunks: Vec<StreamChunk>,
    #[serde(rename = "StreamMsgID", skip_serializing_if = "Option::is_none", default)]
    pub stream_msg_id: Option<String>,
}

/// A `MsgBody` element of the native stream APIs: `{"MsgType":"TIMStreamElem","MsgContent":{…}}`.
/// Its own type rather than [`MsgElement`] so that these calls can carry nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "MsgType", content = "MsgContent")]
pub enum StreamMsgElem {
    #[serde(rename = "TIMStreamElem")]
    Stream(StreamElem),
}

impl StreamElem {
    /// The whole `MsgBody` of a native stream call: this one element.
    pub fn into_body(self) -> Vec<StreamMsgElem> {
        vec![StreamMsgElem::Stream(self)]
    }
}

/// `v4/stream_msg/send_c2c_stream_msg`: one call of a native (`TIMStreamElem`) C2C stream
/// (cloud.tencent.com/document/product/269/128596, protocol doc §6). Not idempotent: a repeated
/// chunk would be refused or shown twice. Limits: at most 15 s between calls, at most 5
/// continuations a second, the Markdown under 128 KB; a finished stream takes no more chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendC2cStreamMsg {
    /// 1 = also sync to the sender's devices, 2 = do not (as in `sendmsg`).
    #[serde(rename = "SyncOtherMachine")]
    pub sync_other_machine: u8,
    /// The robot (`@RBT#…`) speaking, as timbot sends it.
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    /// Chosen by the caller, as in `sendmsg`.
    #[serde(rename = "MsgSeq")]
    pub msg_seq: u32,
    #[serde(rename = "MsgRandom")]
    pub msg_random: u32,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<StreamMsgElem>,
}

/// `v4/stream_msg/send_group_stream_msg`: one call of a native group stream
/// (cloud.tencent.com/document/product/269/128597, protocol doc §6). The official sample names
/// the random `MsgRandom` (timbot and §3.5C say `Random`; the emulator takes both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendGroupStreamMsg {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "MsgRandom")]
    pub msg_random: u32,
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<StreamMsgElem>,
    #[serde(rename = "CloudCustomData", skip_serializing_if = "Option::is_none", default)]
    pub cloud_custom_data: Option<String>,
    /// UNCONFIRMED: whether this API accepts `TopicId` is not documented. Send it for topic
    /// messages and fall back to another mode when the call is refused.
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none", default)]
    pub topic_id: Option<String>,
}

/// The reply to either native stream call. The first reply's top-level `StreamMsgID` is what
/// every later call of the stream sends back in [`StreamElem::stream_msg_id`]; nothing else in
/// the reply is documented, and whether later replies repeat it is UNCONFIRMED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StreamMsgReply {
    #[serde(rename = "StreamMsgID", default)]
    pub stream_msg_id: Option<String>,
}

/// One `@` in a group message, matched in order to the `@` marks in the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAt {
    #[serde(rename = "GroupAtAllFlag")]
    pub group_at_all_flag: u8,
    #[serde(rename = "GroupAt_Account", skip_serializing_if = "Option::is_none")]
    pub group_at_account: Option<String>,
}

/// `v4/group_open_http_svc/send_group_msg`. The same `Random` and content within 5 minutes
/// is dropped by Tencent as a duplicate, which makes retries idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendGroupMsg {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Random")]
    pub random: u32,
    #[serde(rename = "From_Account", skip_serializing_if = "Option::is_none")]
    pub from_account: Option<String>,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    #[serde(rename = "GroupAtInfo", skip_serializing_if = "Vec::is_empty", default)]
    pub group_at_info: Vec<GroupAt>,
    #[serde(rename = "CloudCustomData", skip_serializing_if = "Option::is_none")]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "ForbidCallbackControl", skip_serializing_if = "Vec::is_empty", default)]
    pub forbid_callback_control: Vec<ForbidCallback>,
}

/// The reply to `send_group_msg`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SendGroupMsgReply {
    #[serde(rename = "MsgTime", default)]
    pub msg_time: Option<u64>,
    #[serde(rename = "MsgSeq", default)]
    pub msg_seq: Option<u64>,
}

/// `v4/openim/modify_c2c_msg`: replaces the body of a sent C2C message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModifyC2cMsg {
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    #[serde(rename = "MsgKey")]
    pub msg_key: String,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<MsgElement>,
}

/// `v4/openim/modify_group_msg`: replaces the body of a sent group message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModifyGroupMsg {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "MsgSeq")]
    pub msg_seq: u64,
    #[serde(rename = "MsgBody")]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

/// `v4/openim_robot_http_svc/create_robot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRobot {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "Nick", skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(rename = "FaceUrl", skip_serializing_if = "Option::is_none")]
    pub face_url: Option<String>,
    #[serde(rename = "SelfSignature", skip_serializing_if = "Option::is_none")]
    pub self_signature: Option<String>,
}

/// `v4/openim_robot_http_svc/delete_robot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRobot {
    #[serde(rename = "Robot_Account")]
    pub robot_account: String,
}

/// The reply to `get_all_robots`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AllRobots {
    #[serde(rename = "Robot_Account", default)]
    pub robot_account: Vec<String>,
}

/// `v4/openim/admin_getroammsg`: C2C history, seen from `operator_account`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminGetRoamMsg {
    #[serde(rename = "Operator_Account")]
    pub operator_account: String,
    #[serde(rename = "Peer_Account")]
    pub peer_account: String,
    #[serde(rename = "MaxCnt")]
    pub max_cnt: u32,
    #[serde(rename = "MinTime")]
    pub min_time: u64,
    #[serde(rename = "MaxTime")]
    pub max_time: u64,
    #[serde(rename = "LastMsgKey", skip_serializing_if = "Option::is_none")]
    pub last_msg_key: Option<String>,
}

/// A message in a history reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryMsg {
    #[serde(rename = "From_Account", default)]
    pub from_account: Option<String>,
    #[serde(rename = "MsgSeq", default)]
    pub msg_seq: Option<u64>,
    #[serde(rename = "MsgTimeStamp", default)]
    pub msg_time_stamp: Option<u64>,
    #[serde(rename = "MsgKey", default)]
    pub msg_key: Option<String>,
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Vec<MsgElement>,
}

/// The reply to `admin_getroammsg`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RoamMsgPage {
    /// 1 when there is nothing more to pull.
    #[serde(rename = "Complete", default)]
    pub complete: u8,
    #[serde(rename = "LastMsgKey", default)]
    pub last_msg_key: Option<String>,
    #[serde(rename = "MsgList", default)]
    pub msg_list: Vec<HistoryMsg>,
}

/// `v4/group_open_http_svc/group_msg_get_simple`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMsgGetSimple {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "ReqMsgNumber")]
    pub req_msg_number: u32,
    #[serde(rename = "ReqMsgSeq", skip_serializing_if = "Option::is_none")]
    pub req_msg_seq: Option<u64>,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

/// The reply to `group_msg_get_simple`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GroupMsgPage {
    #[serde(rename = "IsFinished", default)]
    pub is_finished: u8,
    #[serde(rename = "RspMsgList", default)]
    pub rsp_msg_list: Vec<HistoryMsg>,
}

/// `v4/million_group_open_http_svc/create_topic` (Community groups only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "TopicName")]
    pub topic_name: String,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    #[serde(rename = "From_Account", skip_serializing_if = "Option::is_none")]
    pub from_account: Option<String>,
}

/// The reply to `create_topic`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CreateTopicReply {
    #[serde(rename = "TopicId", default)]
    pub topic_id: Option<String>,
}

/// `v4/group_open_http_svc/send_group_system_notification`: a system notification shown in
/// the group, not a message from anyone [doc:https://trtc.io/document/34958 (field names seen in
/// several Tencent SDKs: `GroupId`, `ToMembers_Account`, `Content`, `TopicId`)]. Without
/// `ToMembers_Account` every member gets it (up to 500 recipients when listed). Tencent
/// documents no `Random` for it, so a repeated call shows twice: callers record what they sent.
/// Whether it triggers the app's send callbacks is UNCONFIRMED (no `ForbidCallbackControl` is
/// documented for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendGroupSystemNotification {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "ToMembers_Account", skip_serializing_if = "Vec::is_empty", default)]
    pub to_members_account: Vec<String>,
    #[serde(rename = "Content")]
    pub content: String,
    #[serde(rename = "TopicId", skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_messages_forbid_both_send_callbacks_in_tencents_spelling() {
        let v = serde_json::to_value(ForbidCallback::own_messages()).ok();
        assert_eq!(v, Some(serde_json::json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"])));
    }

    fn first_chunk(stream_msg_id: Option<&str>) -> StreamElem {
        StreamElem {
            compatible_text: "[stream]".into(),
            chunks: vec![StreamChunk::data(1, "Hel", false)],
            stream_msg_id: stream_msg_id.map(str::to_owned),
        }
    }

    #[test]
    fn c2c_stream_call_has_tencents_field_names_and_no_stream_id_on_the_first_call() {
        let req = SendC2cStreamMsg {
            sync_other_machine: 2,
            from_account: "@RBT#001".into(),
            to_account: "user1".into(),
            msg_seq: 7,
            msg_random: 42,
            msg_body: first_chunk(None).into_body(),
        };
        let expected = serde_json::json!({
            "SyncOtherMachine": 2, "From_Account": "@RBT#001", "To_Account": "user1",
            "MsgSeq": 7, "MsgRandom": 42,
            "MsgBody": [{"MsgType": "TIMStreamElem", "MsgContent": {
                "CompatibleText": "[stream]",
                "Chunks": [{"EventType": "data", "Index": 1, "Markdown": "Hel", "IsLast": false}]
            }}]
        });
        assert_eq!(serde_json::to_value(&req).ok(), Some(expected.clone()));
        assert_eq!(serde_json::from_value::<SendC2cStreamMsg>(expected).ok(), Some(req));
    }

    #[test]
    fn group_stream_call_sends_msg_random_and_the_stream_id_on_continuations() {
        let mut elem = first_chunk(Some("sid-1"));
        elem.chunks = vec![StreamChunk::data(2, "", true)];
        let req = SendGroupStreamMsg {
            group_id: "@TGS#g".into(),
            msg_random: 9,
            from_account: "@RBT#001".into(),
            msg_body: elem.into_body(),
            cloud_custom_data: None,
            topic_id: Some("@TGS#g@TOPIC#_t".into()),
        };
        let expected = serde_json::json!({
            "GroupId": "@TGS#g", "MsgRandom": 9, "From_Account": "@RBT#001", "TopicId": "@TGS#g@TOPIC#_t",
            "MsgBody": [{"MsgType": "TIMStreamElem", "MsgContent": {
                "CompatibleText": "[stream]",
                "Chunks": [{"EventType": "data", "Index": 2, "Markdown": "", "IsLast": true}],
                "StreamMsgID": "sid-1"
            }}]
        });
        assert_eq!(serde_json::to_value(&req).ok(), Some(expected));
        let with_data = SendGroupStreamMsg { cloud_custom_data: Some("{}".into()), topic_id: None, ..req };
        let v = serde_json::to_value(&with_data).unwrap_or_default();
        assert_eq!(v["CloudCustomData"], "{}");
        assert!(v.get("TopicId").is_none() && v.get("Random").is_none(), "{v}");
    }

    #[test]
    fn stream_reply_reads_the_top_level_stream_msg_id() {
        let r: Result<StreamMsgReply, _> = serde_json::from_str(
            r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","StreamMsgID":"abc","MsgTime":1}"#,
        );
        assert_eq!(r.ok().and_then(|r| r.stream_msg_id).as_deref(), Some("abc"));
        let empty: Result<StreamMsgReply, _> = serde_json::from_str(r#"{"ActionStatus":"OK"}"#);
        assert_eq!(empty.ok(), Some(StreamMsgReply::default()));
    }
}
