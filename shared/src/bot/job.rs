//! The unit of chatbot work: one inbound message for one robot, as a platform's intake queued it.
//!
//! A job is neutral: it names the platform, but carries no platform type. Each platform's intake
//! (`tencent::intake`, later NetEase's) maps its webhook to a [`Job`]; the worker, pump, window
//! and quota know nothing else. The queued body is versioned (`"v": 1`), so a deploy that changes
//! a platform's structs does not dead-letter work in flight; bodies queued before the version
//! existed (Tencent's raw webhook in a `msg` field) are still read, by the Tencent intake.

use crate::keys;
use crate::redact::JsonError;
use serde::{Deserialize, Serialize};

/// The version of the queued body this code writes.
pub const JOB_VERSION: u32 = 1;

/// The chat platform a message came from and its answer goes back to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Tencent Cloud Chat (`@RBT#` robots).
    #[default]
    Tencent,
    /// NetEase CommsEase (NIM) robot accounts.
    Nim,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Tencent => "tencent",
            Platform::Nim => "nim",
        }
    }
}

/// Where a message was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Place {
    /// A one-to-one conversation between the sender and the robot.
    Direct,
    /// A group (a NIM team), and the topic within it in a topic-enabled Community.
    Group {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
}

impl Place {
    /// The topic of a group message; `None` outside topics (an empty topic is none).
    pub fn topic(&self) -> Option<&str> {
        match self {
            Place::Group { topic, .. } => topic.as_deref().filter(|t| !t.is_empty()),
            Place::Direct => None,
        }
    }

    pub fn group(&self) -> Option<&str> {
        match self {
            Place::Group { id, .. } => Some(id),
            Place::Direct => None,
        }
    }
}

/// A part of a message that is not text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Part {
    /// An image the platform stores, at the largest size offered under the intake's limit.
    Image {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// Anything else (voice, file, video, location, sticker, custom data), by a neutral name.
    Other { what: String },
}

/// A queued chatbot message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// [`JOB_VERSION`] when written by this code.
    pub v: u32,
    pub platform: Platform,
    /// The intake's request id, carried so every log line of one message shares it.
    pub request_id: String,
    /// When the intake received the webhook, unix milliseconds.
    pub received_ms: u64,
    /// The robot that answers.
    pub bot: String,
    /// The user who wrote.
    pub sender: String,
    pub place: Place,
    /// The platform's id of the message, unique within its place (Tencent: the C2C `MsgKey`, or
    /// the group's (topic's) `MsgSeq`).
    pub msg_id: String,
    /// The message's text, the robots' @-mentions removed; empty when it has none.
    #[serde(default)]
    pub text: String,
    /// Everything else the message carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// In a group: the robot keeps one conversation per member (its profile's `group_scope`
    /// when the intake queued the message), so each member's mentions wait only for each other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_member: bool,
}

/// A queued body that is not a job this code can read. The text names what is wrong, never
/// the input (it may be a user's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed job: {0}")]
    Malformed(JsonError),
    #[error("job version {0} is newer than this code reads ({JOB_VERSION})")]
    Version(u32),
}

impl Job {
    /// Reads a queued body: a versioned job, or a body queued before versions existed.
    pub fn decode(body: &str) -> Result<Job, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u32>,
        }
        let version: Version = serde_json::from_str(body).map_err(|e| DecodeError::Malformed(e.into()))?;
        match version.v {
            Some(JOB_VERSION) => serde_json::from_str(body).map_err(|e| DecodeError::Malformed(e.into())),
            Some(v) => Err(DecodeError::Version(v)),
            None => crate::tencent::intake::legacy_job(body).map_err(|e| DecodeError::Malformed(e.into())),
        }
    }

    /// Identifies this message for this robot: the idempotency key of its answer, its FIFO
    /// deduplication id, its quota count ([`keys::job`]).
    pub fn key(&self) -> String {
        keys::job(self)
    }

    /// Messages with the same ordering key are answered one at a time, in order.
    pub fn ordering_key(&self) -> String {
        keys::ordering(self)
    }

    /// The scope of "stop generating" requests that apply to this job's answer. Only one-to-one
    /// answers can be stopped: TUIKit's interrupt message carries no @-mention, so it never
    /// reaches a robot through `Bot.OnGroupMessage` (protocol doc §6).
    pub fn stop_scope(&self) -> Option<String> {
        match self.place {
            Place::Direct => Some(keys::direct_scope(self.platform, &self.bot, &self.sender)),
            Place::Group { .. } => None,
        }
    }

    /// Whether the message was written in a group.
    pub fn in_group(&self) -> bool {
        matches!(self.place, Place::Group { .. })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A Tencent job for tests: one-to-one when `group` is `None`.
    pub fn job(bot: &str, sender: &str, group: Option<(&str, Option<&str>)>, msg_id: &str, text: &str) -> Job {
        Job {
            v: JOB_VERSION,
            platform: Platform::Tencent,
            request_id: "r".into(),
            received_ms: 1,
            bot: bot.into(),
            sender: sender.into(),
            place: match group {
                None => Place::Direct,
                Some((id, topic)) => Place::Group { id: id.into(), topic: topic.map(str::to_owned) },
            },
            msg_id: msg_id.into(),
            text: text.into(),
            parts: vec![],
            per_member: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::job;
    use super::*;

    #[test]
    fn robots_in_one_group_are_answered_independently() {
        let g = |bot: &str, topic: Option<&str>| job(bot, "ann", Some(("@TGS#_g", topic)), "7", "hi");
        // Two robots mentioned in one group wait for their own answers, not for each other's.
        assert_ne!(g("@RBT#a", None).ordering_key(), g("@RBT#b", None).ordering_key());
        // One robot answers a group (and a topic) one message at a time.
        assert_eq!(g("@RBT#a", None).ordering_key(), g("@RBT#a", None).ordering_key());
        assert_ne!(g("@RBT#a", Some("t1")).ordering_key(), g("@RBT#a", Some("t2")).ordering_key());
    }

    #[test]
    fn a_job_round_trips_and_unknown_versions_are_refused() {
        let j = job("@RBT#a", "ann", Some(("@TGS#_g", Some("t"))), "7", "hi");
        let body = serde_json::to_string(&j).unwrap_or_default();
        assert_eq!(Job::decode(&body).ok(), Some(j));
        let newer = body.replacen("\"v\":1", "\"v\":2", 1);
        assert!(matches!(Job::decode(&newer), Err(DecodeError::Version(2))), "{newer}");
        assert!(matches!(Job::decode("{\"v\":1}"), Err(DecodeError::Malformed(_))));
        assert!(matches!(Job::decode("[]"), Err(DecodeError::Malformed(_))));
    }
}
