//! What the bot sends to NIM's REST API v2, and the wire bodies it becomes (nim-protocol.md §3;
//! field names are the official SDKs' `SendMessageRequestV2` and `StreamMessageRequestV2`).
//!
//! The request types ([`OutgoingText`], [`StreamChunk`]) say what to send in our terms; the
//! wire bodies are built from them in one place, so the mention of the asker, the force-push
//! list and the message-copy routing switch cannot drift apart.

use super::intake::{Place, TeamKind};
use serde::{Serialize, Serializer};

/// A conversation as the v2 API names it: `sender|type|receiver`, type 1 one-to-one, 2 advanced
/// team, 3 super team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationId {
    pub sender: String,
    pub kind: ConversationKind,
    /// The other account (one-to-one) or the team id.
    pub receiver: String,
}

/// The `type` part of a [`ConversationId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    OneToOne,
    Team,
    SuperTeam,
}

impl ConversationKind {
    pub fn code(self) -> u8 {
        match self {
            ConversationKind::OneToOne => 1,
            ConversationKind::Team => 2,
            ConversationKind::SuperTeam => 3,
        }
    }
}

impl ConversationId {
    /// The conversation a robot answers in: with the asker one-to-one, or in the team.
    pub fn reply_to(robot: &str, asker: &str, place: &Place) -> Self {
        let (kind, receiver) = match place {
            Place::OneToOne => (ConversationKind::OneToOne, asker),
            Place::Team { team_id, kind: TeamKind::Advanced } => (ConversationKind::Team, team_id.as_str()),
            Place::Team { team_id, kind: TeamKind::Super } => (ConversationKind::SuperTeam, team_id.as_str()),
        };
        ConversationId { sender: robot.to_owned(), kind, receiver: receiver.to_owned() }
    }

    /// `sender|type|receiver`.
    pub fn wire(&self) -> String {
        format!("{}|{}|{}", self.sender, self.kind.code(), self.receiver)
    }

    /// The id as a URL path segment: everything but RFC 3986 unreserved characters
    /// percent-encoded (`|` → `%7C`).
    pub fn path_segment(&self) -> String {
        let mut out = String::new();
        for b in self.wire().bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Reads `sender|type|receiver` (the emulator uses it). The receiver may not be empty.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '|');
        let sender = parts.next().filter(|p| !p.is_empty())?;
        let kind = match parts.next()? {
            "1" => ConversationKind::OneToOne,
            "2" => ConversationKind::Team,
            "3" => ConversationKind::SuperTeam,
            _ => return None,
        };
        let receiver = parts.next().filter(|p| !p.is_empty())?;
        Some(ConversationId { sender: sender.to_owned(), kind, receiver: receiver.to_owned() })
    }
}

/// The asker, mentioned at the start of a team answer: `@<display>` in the text, the
/// `yxAitMsg` entry the NetEase UIKits render as a mention, and the force-push list so the
/// asker is notified even with the team muted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskerMention {
    pub accid: String,
    /// The name shown after `@` (the asker's nickname, else the accid).
    pub display: String,
}

impl AskerMention {
    /// The text put before the answer: `@<display> `.
    pub fn prefix(&self) -> String {
        format!("@{} ", self.display)
    }

    /// The message extension: `{"yxAitMsg":{<accid>:{"text":"@<display>","segments":[{"start":0,
    /// "end":<inclusive end in UTF-16 units>,"broken":false}]}}}`, the UIKit convention.
    pub fn extension(&self) -> String {
        let text = format!("@{}", self.display);
        let end = text.encode_utf16().count().saturating_sub(1);
        serde_json::json!({
            "yxAitMsg": { self.accid.as_str(): {
                "text": text,
                "segments": [{"start": 0, "end": end, "broken": false}],
            }}
        })
        .to_string()
    }
}

/// One source shown under a streamed answer (`rag_info_list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RagInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub icon: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A whole text message (`POST /im/v2/conversations/{id}/messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingText {
    pub conversation: ConversationId,
    pub text: String,
    /// Ours, derived from the job, the same on every retry.
    pub client_id: String,
    /// In teams: the asker, mentioned before the text.
    pub mention: Option<AskerMention>,
    /// Whether NIM copies this message to our message-copy URL. The bot's own sends set it
    /// off (and the intake also ignores robot senders).
    pub route: bool,
}

/// One delta of a streamed answer
/// (`POST /im/v2/conversations/{id}/messages/actions/stream_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    pub conversation: ConversationId,
    /// Ours, sent on every call (the Go SDK identifies a stream by it alone).
    pub client_id: String,
    /// NIM's id from the first reply, sent on every later call once known.
    pub server_id: Option<String>,
    /// 0, 1, 2, … NIM merges the deltas by it.
    pub index: u32,
    /// The new text only.
    pub delta: String,
    pub finish: bool,
    pub mention: Option<AskerMention>,
    pub route: bool,
    /// Sources shown under the answer; sent when not empty.
    pub sources: Vec<RagInfo>,
}

/// What NIM answered to a send or a stream chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentMessage {
    /// `message_server_id`, as a decimal string.
    pub server_id: Option<String>,
    pub client_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Wire bodies

/// `message_server_id` is a Long in the SDKs: sent as a JSON number when it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerId(pub String);

impl Serialize for ServerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.parse::<u64>() {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.serialize_str(&self.0),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RouteConfig {
    pub route_enabled: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct PushConfig {
    pub push_forcepush_enable: bool,
    pub push_forcepush_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TextMessage<'a> {
    pub message_type: u8,
    pub text: String,
    pub message_client_id: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct SendBody<'a> {
    pub message: TextMessage<'a>,
    pub route_config: RouteConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_config: Option<PushConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamAttachment {
    pub text: String,
    pub index: u32,
    pub finish: u8,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamMessage<'a> {
    pub message_type: u8,
    pub message_client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_server_id: Option<ServerId>,
    pub attachment: StreamAttachment,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamBody<'a> {
    pub message: StreamMessage<'a>,
    pub route_config: RouteConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_config: Option<PushConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    #[serde(skip_serializing_if = "<[RagInfo]>::is_empty")]
    pub rag_info_list: &'a [RagInfo],
}

fn mention_parts(m: Option<&AskerMention>) -> (Option<PushConfig>, Option<String>) {
    match m {
        Some(m) => (
            Some(PushConfig { push_forcepush_enable: true, push_forcepush_ids: vec![m.accid.clone()] }),
            Some(m.extension()),
        ),
        None => (None, None),
    }
}

impl OutgoingText {
    pub(crate) fn body(&self) -> SendBody<'_> {
        let (push_config, extension) = mention_parts(self.mention.as_ref());
        let text = match &self.mention {
            Some(m) => format!("{}{}", m.prefix(), self.text),
            None => self.text.clone(),
        };
        SendBody {
            message: TextMessage { message_type: 0, text, message_client_id: &self.client_id },
            route_config: RouteConfig { route_enabled: self.route },
            push_config,
            extension,
        }
    }
}

impl StreamChunk {
    /// The wire body. The mention's `@<display> ` is put before the delta of index 0 only; the
    /// extension, push and routing settings go on every call, the same each time.
    pub(crate) fn body(&self) -> StreamBody<'_> {
        let (push_config, extension) = mention_parts(self.mention.as_ref());
        let text = match &self.mention {
            Some(m) if self.index == 0 => format!("{}{}", m.prefix(), self.delta),
            _ => self.delta.clone(),
        };
        StreamBody {
            message: StreamMessage {
                message_type: 0,
                message_client_id: &self.client_id,
                message_server_id: self.server_id.clone().map(ServerId),
                attachment: StreamAttachment { text, index: self.index, finish: u8::from(self.finish) },
            },
            route_config: RouteConfig { route_enabled: self.route },
            push_config,
            extension,
            rag_info_list: &self.sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn team() -> ConversationId {
        ConversationId { sender: "mybot".into(), kind: ConversationKind::Team, receiver: "2837465".into() }
    }

    #[test]
    fn conversation_id_is_pipe_separated_and_percent_encoded_in_paths() {
        let c = team();
        assert_eq!(c.wire(), "mybot|2|2837465");
        assert_eq!(c.path_segment(), "mybot%7C2%7C2837465");
        assert_eq!(ConversationId::parse("mybot|2|2837465"), Some(c));
        let odd = ConversationId { sender: "a b/c".into(), kind: ConversationKind::OneToOne, receiver: "é".into() };
        assert_eq!(odd.path_segment(), "a%20b%2Fc%7C1%7C%C3%A9");
        assert_eq!(ConversationId::parse("a|4|b"), None);
        assert_eq!(ConversationId::parse("a|1|"), None);
        let place = Place::Team { team_id: "9".into(), kind: TeamKind::Super };
        assert_eq!(ConversationId::reply_to("bot", "alice", &place).wire(), "bot|3|9");
        assert_eq!(ConversationId::reply_to("bot", "alice", &Place::OneToOne).wire(), "bot|1|alice");
    }

    #[test]
    fn team_send_mentions_the_asker_in_text_extension_and_force_push() {
        let msg = OutgoingText {
            conversation: team(),
            text: "X is Y.".into(),
            client_id: "job-1".into(),
            mention: Some(AskerMention { accid: "alice".into(), display: "Alice".into() }),
            route: false,
        };
        let body = serde_json::to_value(msg.body()).unwrap_or_default();
        let ext = r#"{"yxAitMsg":{"alice":{"segments":[{"broken":false,"end":5,"start":0}],"text":"@Alice"}}}"#;
        assert_eq!(
            body,
            json!({
                "message": {"message_type": 0, "text": "@Alice X is Y.", "message_client_id": "job-1"},
                "route_config": {"route_enabled": false},
                "push_config": {"push_forcepush_enable": true, "push_forcepush_ids": ["alice"]},
                "extension": ext,
            })
        );
    }

    #[test]
    fn mention_end_counts_utf16_units_inclusively() {
        let m = AskerMention { accid: "u".into(), display: "小明😀".into() };
        let ext: serde_json::Value = serde_json::from_str(&m.extension()).unwrap_or_default();
        // "@小明😀" is 1 + 2 + 2 = 5 UTF-16 units: inclusive end 4.
        assert_eq!(ext["yxAitMsg"]["u"]["segments"][0]["end"], json!(4));
    }

    #[test]
    fn stream_chunks_carry_index_finish_and_ids() {
        let mut chunk = StreamChunk {
            conversation: team(),
            client_id: "job-1".into(),
            server_id: None,
            index: 0,
            delta: "Hel".into(),
            finish: false,
            mention: Some(AskerMention { accid: "alice".into(), display: "Alice".into() }),
            route: false,
            sources: vec![],
        };
        let first = serde_json::to_value(chunk.body()).unwrap_or_default();
        assert_eq!(
            first["message"],
            json!({"message_type": 0, "message_client_id": "job-1",
                   "attachment": {"text": "@Alice Hel", "index": 0, "finish": 0}})
        );
        assert!(first.get("rag_info_list").is_none());
        chunk.server_id = Some("1234567890123".into());
        chunk.index = 1;
        chunk.delta = "lo".into();
        chunk.finish = true;
        chunk.sources = vec![RagInfo { title: "Doc".into(), url: "https://e.x/d".into(), ..RagInfo::default() }];
        let last = serde_json::to_value(chunk.body()).unwrap_or_default();
        assert_eq!(last["message"]["message_server_id"], json!(1_234_567_890_123u64));
        assert_eq!(last["message"]["attachment"], json!({"text": "lo", "index": 1, "finish": 1}));
        assert_eq!(last["rag_info_list"], json!([{"title": "Doc", "url": "https://e.x/d"}]));
        assert_eq!(last["push_config"]["push_forcepush_ids"], json!(["alice"]));
    }
}
