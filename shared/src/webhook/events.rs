//! Typed bodies of the webhook commands this product serves. Field names are Tencent's
//! (tencent-chat-protocol.md §3 and §5); fields that some pages omit are `Option`, numbers are
//! accepted as numbers or strings, and unknown commands are kept as raw JSON.

use crate::lenient::{opt_i64_lenient, opt_u64_lenient, u64_lenient};
use crate::msg::MsgElement;
use crate::redact::JsonError;
use serde::{Deserialize, Serialize};

/// A webhook command, named as Tencent names it in `CallbackCommand`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    BotC2cMessage,
    BotGroupMessage,
    C2cBeforeSendMsg,
    C2cAfterSendMsg,
    GroupBeforeSendMsg,
    GroupAfterSendMsg,
    StateChange,
    GroupAfterCreateGroup,
    GroupAfterNewMemberJoin,
    GroupAfterGroupFull,
    GroupAfterMemberExit,
    Unknown(String),
}

impl Command {
    const NAMES: [(&'static str, Command); 11] = [
        ("Bot.OnC2CMessage", Command::BotC2cMessage),
        ("Bot.OnGroupMessage", Command::BotGroupMessage),
        ("C2C.CallbackBeforeSendMsg", Command::C2cBeforeSendMsg),
        ("C2C.CallbackAfterSendMsg", Command::C2cAfterSendMsg),
        ("Group.CallbackBeforeSendMsg", Command::GroupBeforeSendMsg),
        ("Group.CallbackAfterSendMsg", Command::GroupAfterSendMsg),
        ("State.StateChange", Command::StateChange),
        ("Group.CallbackAfterCreateGroup", Command::GroupAfterCreateGroup),
        ("Group.CallbackAfterNewMemberJoin", Command::GroupAfterNewMemberJoin),
        ("Group.CallbackAfterGroupFull", Command::GroupAfterGroupFull),
        ("Group.CallbackAfterMemberExit", Command::GroupAfterMemberExit),
    ];

    pub fn parse(name: &str) -> Self {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Command::Unknown(name.to_owned()))
    }

    pub fn name(&self) -> &str {
        match self {
            Command::Unknown(n) => n,
            known => Self::NAMES.iter().find(|(_, c)| c == known).map(|(n, _)| *n).unwrap_or("unknown"),
        }
    }
}

/// `Bot.OnC2CMessage` (and the same body for `C2C.CallbackAfterSendMsg`).
/// Mirrors <https://trtc.io/document/68952>.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct C2cMessage {
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    #[serde(rename = "MsgSeq", deserialize_with = "u64_lenient")]
    pub msg_seq: u64,
    #[serde(rename = "MsgRandom", deserialize_with = "u64_lenient")]
    pub msg_random: u64,
    #[serde(rename = "MsgTime", default, deserialize_with = "opt_u64_lenient")]
    pub msg_time: Option<u64>,
    #[serde(rename = "MsgKey", default)]
    pub msg_key: Option<String>,
    #[serde(rename = "MsgId", default)]
    pub msg_id: Option<String>,
    #[serde(rename = "OnlineOnlyFlag", default, deserialize_with = "opt_u64_lenient")]
    pub online_only_flag: Option<u64>,
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "CloudCustomData", default)]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "UnreadMsgNum", default, deserialize_with = "opt_i64_lenient")]
    pub unread_msg_num: Option<i64>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

impl C2cMessage {
    /// The message's key: `MsgKey` when sent, else `{MsgSeq}_{MsgRandom}_{MsgTime}` as Tencent
    /// builds it.
    pub fn key(&self) -> String {
        match &self.msg_key {
            Some(k) if !k.is_empty() => k.clone(),
            _ => format!("{}_{}_{}", self.msg_seq, self.msg_random, self.msg_time.unwrap_or(0)),
        }
    }
}

/// `Bot.OnGroupMessage`, sent when a robot is @-mentioned in a group.
/// Mirrors <https://trtc.io/document/68953>.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotGroupMessage {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Type", default)]
    pub group_type: Option<String>,
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "Operator_Account", default)]
    pub operator_account: Option<String>,
    #[serde(rename = "Random", default, deserialize_with = "opt_u64_lenient")]
    pub random: Option<u64>,
    #[serde(rename = "MsgSeq", deserialize_with = "u64_lenient")]
    pub msg_seq: u64,
    #[serde(rename = "MsgTime", default, deserialize_with = "opt_u64_lenient")]
    pub msg_time: Option<u64>,
    #[serde(rename = "OnlineOnlyFlag", default, deserialize_with = "opt_u64_lenient")]
    pub online_only_flag: Option<u64>,
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "AtRobots_Account", default)]
    pub at_robots_account: Vec<String>,
    #[serde(rename = "CloudCustomData", default)]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "TopicId", default)]
    pub topic_id: Option<String>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `C2C.CallbackBeforeSendMsg` (<https://trtc.io/document/34364>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct C2cBeforeSendMsg {
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "To_Account")]
    pub to_account: String,
    #[serde(rename = "MsgSeq", default, deserialize_with = "opt_u64_lenient")]
    pub msg_seq: Option<u64>,
    #[serde(rename = "MsgRandom", default, deserialize_with = "opt_u64_lenient")]
    pub msg_random: Option<u64>,
    #[serde(rename = "MsgTime", default, deserialize_with = "opt_u64_lenient")]
    pub msg_time: Option<u64>,
    #[serde(rename = "MsgKey", default)]
    pub msg_key: Option<String>,
    #[serde(rename = "OnlineOnlyFlag", default, deserialize_with = "opt_u64_lenient")]
    pub online_only_flag: Option<u64>,
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "CloudCustomData", default)]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `Group.CallbackBeforeSendMsg` and `Group.CallbackAfterSendMsg`
/// (<https://trtc.io/document/34374>, tencentcloud.com/document/product/1047/34375).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSendMsg {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Type", default)]
    pub group_type: Option<String>,
    #[serde(rename = "From_Account")]
    pub from_account: String,
    #[serde(rename = "Operator_Account", default)]
    pub operator_account: Option<String>,
    #[serde(rename = "Random", default, deserialize_with = "opt_u64_lenient")]
    pub random: Option<u64>,
    #[serde(rename = "MsgId", default)]
    pub msg_id: Option<String>,
    /// Present only after sending.
    #[serde(rename = "MsgSeq", default, deserialize_with = "opt_u64_lenient")]
    pub msg_seq: Option<u64>,
    #[serde(rename = "MsgTime", default, deserialize_with = "opt_u64_lenient")]
    pub msg_time: Option<u64>,
    #[serde(rename = "OnlineOnlyFlag", default, deserialize_with = "opt_u64_lenient")]
    pub online_only_flag: Option<u64>,
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Vec<MsgElement>,
    #[serde(rename = "CloudCustomData", default)]
    pub cloud_custom_data: Option<String>,
    #[serde(rename = "TopicId", default)]
    pub topic_id: Option<String>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `State.StateChange` (<https://trtc.io/document/34357>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    #[serde(rename = "Info")]
    pub info: StateInfo,
    #[serde(rename = "KickedDevice", default)]
    pub kicked_device: Vec<KickedDevice>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// The `Info` of a state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateInfo {
    #[serde(rename = "To_Account")]
    pub to_account: String,
    /// `Login`, `Logout` or `Disconnect`.
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Reason", default)]
    pub reason: Option<String>,
}

/// A device kicked off by a login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KickedDevice {
    #[serde(rename = "Platform", default)]
    pub platform: Option<String>,
}

/// A group member as Tencent lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    #[serde(rename = "Member_Account")]
    pub member_account: String,
}

/// `Group.CallbackAfterCreateGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAfterCreateGroup {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Type", default)]
    pub group_type: Option<String>,
    #[serde(rename = "Operator_Account", default)]
    pub operator_account: Option<String>,
    #[serde(rename = "Owner_Account", default)]
    pub owner_account: Option<String>,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "MemberList", default)]
    pub member_list: Vec<Member>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `Group.CallbackAfterNewMemberJoin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAfterNewMemberJoin {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Type", default)]
    pub group_type: Option<String>,
    #[serde(rename = "JoinType", default)]
    pub join_type: Option<String>,
    #[serde(rename = "Operator_Account", default)]
    pub operator_account: Option<String>,
    #[serde(rename = "NewMemberList", default)]
    pub new_member_list: Vec<Member>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `Group.CallbackAfterGroupFull`: the group reached its member limit (a game team is
/// complete). The reply is ignored (protocol doc §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAfterGroupFull {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// `Group.CallbackAfterMemberExit`: members quit or were kicked. The reply is ignored
/// (protocol doc §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAfterMemberExit {
    #[serde(rename = "GroupId")]
    pub group_id: String,
    #[serde(rename = "Type", default)]
    pub group_type: Option<String>,
    /// `Kicked` or `Quit`; other values are kept as they came.
    #[serde(rename = "ExitType", default)]
    pub exit_type: Option<String>,
    #[serde(rename = "Operator_Account", default)]
    pub operator_account: Option<String>,
    #[serde(rename = "ExitMemberList", default)]
    pub exit_member_list: Vec<Member>,
    #[serde(rename = "EventTime", default, deserialize_with = "opt_u64_lenient")]
    pub event_time: Option<u64>,
}

/// A parsed webhook body.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    BotC2cMessage(C2cMessage),
    BotGroupMessage(BotGroupMessage),
    C2cBeforeSendMsg(C2cBeforeSendMsg),
    C2cAfterSendMsg(C2cMessage),
    GroupBeforeSendMsg(GroupSendMsg),
    GroupAfterSendMsg(GroupSendMsg),
    StateChange(StateChange),
    GroupAfterCreateGroup(GroupAfterCreateGroup),
    GroupAfterNewMemberJoin(GroupAfterNewMemberJoin),
    GroupAfterGroupFull(GroupAfterGroupFull),
    GroupAfterMemberExit(GroupAfterMemberExit),
    /// A command this product does not know, kept as it came.
    Unknown {
        command: String,
        body: serde_json::Value,
    },
}

/// Why a webhook body could not be read. Its text names the command and where the body went
/// wrong, never the message content.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the {command} body is unreadable: {source}")]
    Json { command: String, source: JsonError },
    #[error("CallbackCommand in the body ({body}) differs from the query ({query})")]
    CommandMismatch { query: String, body: String },
}

impl WebhookEvent {
    /// Parses `body` as the command named in the query string.
    pub fn parse(command: &Command, body: &[u8]) -> Result<Self, EventError> {
        Ok(match command {
            Command::BotC2cMessage => Self::BotC2cMessage(typed(command, body)?),
            Command::BotGroupMessage => Self::BotGroupMessage(typed(command, body)?),
            Command::C2cBeforeSendMsg => Self::C2cBeforeSendMsg(typed(command, body)?),
            Command::C2cAfterSendMsg => Self::C2cAfterSendMsg(typed(command, body)?),
            Command::GroupBeforeSendMsg => Self::GroupBeforeSendMsg(typed(command, body)?),
            Command::GroupAfterSendMsg => Self::GroupAfterSendMsg(typed(command, body)?),
            Command::StateChange => Self::StateChange(typed(command, body)?),
            Command::GroupAfterCreateGroup => Self::GroupAfterCreateGroup(typed(command, body)?),
            Command::GroupAfterNewMemberJoin => Self::GroupAfterNewMemberJoin(typed(command, body)?),
            Command::GroupAfterGroupFull => Self::GroupAfterGroupFull(typed(command, body)?),
            Command::GroupAfterMemberExit => Self::GroupAfterMemberExit(typed(command, body)?),
            Command::Unknown(name) => {
                let value: serde_json::Value = serde_json::from_slice(body).map_err(json_error(command))?;
                check_command(command, value.get("CallbackCommand").and_then(|v| v.as_str()))?;
                Self::Unknown { command: name.clone(), body: value }
            }
        })
    }
}

fn json_error(command: &Command) -> impl Fn(serde_json::Error) -> EventError + '_ {
    move |e| EventError::Json { command: command.name().to_owned(), source: JsonError::from(e) }
}

/// The body's own `CallbackCommand`, when it has one, must be the query's.
fn check_command(command: &Command, in_body: Option<&str>) -> Result<(), EventError> {
    match in_body {
        Some(b) if b != command.name() => {
            Err(EventError::CommandMismatch { query: command.name().to_owned(), body: b.to_owned() })
        }
        _ => Ok(()),
    }
}

/// A known command's typed event. The body's command is read first (the rest skipped, not
/// built into a tree), then the event is typed from the bytes, so an error says where it is.
fn typed<T: serde::de::DeserializeOwned>(command: &Command, body: &[u8]) -> Result<T, EventError> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "CallbackCommand", borrow, default)]
        command: Option<std::borrow::Cow<'a, str>>,
    }
    let head: Head = serde_json::from_slice(body).map_err(json_error(command))?;
    check_command(command, head.command.as_deref())?;
    serde_json::from_slice(body).map_err(json_error(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_c2c_message_parses_with_string_numbers() {
        let body = br#"{"CallbackCommand":"Bot.OnC2CMessage","From_Account":"jared","To_Account":"@RBT#001",
            "MsgSeq":"48374","MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126",
            "MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}},{"MsgType":"TIMNewElem","MsgContent":{}}],
            "EventTime":"1670574414123"}"#;
        let ev = WebhookEvent::parse(&Command::BotC2cMessage, body);
        let Ok(WebhookEvent::BotC2cMessage(m)) = ev else { panic!("parsed as {ev:?}") };
        assert_eq!((m.msg_seq, m.event_time), (48374, Some(1_670_574_414_123)));
        assert_eq!(m.msg_body.len(), 2);
        assert_eq!(m.key(), "48374_2837546_1557481126");
    }

    #[test]
    fn group_message_reads_at_robots() {
        let body = br#"{"CallbackCommand":"Bot.OnGroupMessage","GroupId":"@TGS#2","From_Account":"jared","MsgSeq":123,
            "MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"@@RBT#001 hello"}}],"AtRobots_Account":["@RBT#001"]}"#;
        let Ok(WebhookEvent::BotGroupMessage(m)) = WebhookEvent::parse(&Command::BotGroupMessage, body) else {
            panic!("group message did not parse")
        };
        assert_eq!(m.at_robots_account, vec!["@RBT#001".to_owned()]);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let cases: [&[u8]; 6] = [
            b"",
            b"not json",
            b"[]",
            br#"{"From_Account":1}"#,
            br#"{"CallbackCommand":"Bot.OnC2CMessage","From_Account":"a","To_Account":"b","MsgSeq":-1,"MsgRandom":1}"#,
            br#"{"CallbackCommand":"State.StateChange","Info":{"To_Account":"a","Action":"Login"}}"#,
        ];
        for body in cases {
            assert!(WebhookEvent::parse(&Command::BotC2cMessage, body).is_err(), "{body:?}");
        }
    }

    /// A body where a message's text sits in a field of another type, as a client bug or a
    /// probe would send it.
    fn wrong_types(secret: &str) -> [String; 3] {
        let head = r#""CallbackCommand":"Bot.OnC2CMessage","From_Account":"a","To_Account":"@RBT#001""#;
        [
            format!(r#"{{{head},"MsgSeq":1,"MsgRandom":1,"MsgBody":"{secret}"}}"#),
            format!(r#"{{{head},"MsgSeq":"{secret}","MsgRandom":1}}"#),
            format!(
                r#"{{{head},"MsgSeq":1,"MsgRandom":1,"MsgBody":[{{"MsgType":"TIMTextElem","MsgContent":{{"Text":"{secret}"}}}}],"OnlineOnlyFlag":"{secret}"}}"#
            ),
        ]
    }

    #[test]
    fn when_body_has_wrong_type_should_not_echo_the_value() {
        let secret = "my password is hunter2";
        for body in wrong_types(secret) {
            let text = WebhookEvent::parse(&Command::BotC2cMessage, body.as_bytes()).err().map(|e| e.to_string());
            let text = text.unwrap_or_else(|| panic!("{body} parsed"));
            assert!(text.contains("Bot.OnC2CMessage") && !text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn when_body_has_wrong_type_should_say_where() {
        let body = &wrong_types("x")[0];
        let column = body.find(r#""x""#).map(|i| i + 3);
        let text = WebhookEvent::parse(&Command::BotC2cMessage, body.as_bytes()).err().map(|e| e.to_string());
        assert_eq!(
            text,
            column
                .map(|c| format!("the Bot.OnC2CMessage body is unreadable: wrong type or value at line 1, column {c}"))
        );
    }

    #[test]
    fn unknown_command_is_kept() {
        let cmd = Command::parse("Sns.CallbackFriendAdd");
        let ev = WebhookEvent::parse(&cmd, br#"{"CallbackCommand":"Sns.CallbackFriendAdd","X":1}"#);
        assert!(matches!(ev, Ok(WebhookEvent::Unknown { ref command, .. }) if command == "Sns.CallbackFriendAdd"));
        assert_eq!(Command::parse("Bot.OnC2CMessage").name(), "Bot.OnC2CMessage");
    }
}
