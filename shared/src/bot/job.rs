//! The unit of chatbot work: one inbound message for one robot, as queued by the router.

use crate::webhook::events::{BotGroupMessage, C2cMessage};
use serde::{Deserialize, Serialize};

/// A queued chatbot message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The router's request id, carried so every log line of one message shares it.
    pub request_id: String,
    /// When the router received the webhook, unix milliseconds.
    pub received_ms: u64,
    /// The robot that answers.
    pub bot: String,
    pub msg: JobMsg,
}

/// The inbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "event", rename_all = "lowercase")]
pub enum JobMsg {
    C2c(C2cMessage),
    Group(BotGroupMessage),
}

impl Job {
    pub fn new(request_id: &str, bot: String, msg: JobMsg) -> Self {
        Job { request_id: request_id.to_owned(), received_ms: crate::store::now_ms(), bot, msg }
    }

    /// Identifies this message for this robot: the idempotency key of its answer, its FIFO
    /// deduplication id, its quota count. In a topic-enabled Community `MsgSeq` is numbered per
    /// topic, so a topic message's key names its topic; a message outside topics keeps the
    /// key it always had.
    pub fn key(&self) -> String {
        match &self.msg {
            JobMsg::C2c(m) => format!("c2c#{}#{}#{}", self.bot, m.from_account, m.key()),
            JobMsg::Group(m) => match m.topic_id.as_deref().filter(|t| !t.is_empty()) {
                None => format!("grp#{}#{}#{}", m.group_id, m.msg_seq, self.bot),
                Some(topic) => format!("grp#{}#{topic}#{}#{}", m.group_id, m.msg_seq, self.bot),
            },
        }
    }

    /// Messages with the same ordering key are answered one at a time, in order.
    pub fn ordering_key(&self) -> String {
        match &self.msg {
            JobMsg::C2c(m) => format!("c2c#{}#{}", self.bot, m.from_account),
            // Per robot: robots mentioned in one group do not wait for each other's answers.
            JobMsg::Group(m) => format!("grp#{}#{}#{}", m.group_id, m.topic_id.as_deref().unwrap_or(""), self.bot),
        }
    }

    /// The scope of "stop generating" requests that apply to this job's answer. Only one-to-one
    /// answers can be stopped: TUIKit's interrupt message carries no @-mention, so it never
    /// reaches a robot through `Bot.OnGroupMessage` (protocol doc §6).
    pub fn stop_scope(&self) -> Option<String> {
        match &self.msg {
            JobMsg::C2c(m) => Some(format!("c2c#{}#{}", self.bot, m.from_account)),
            JobMsg::Group(_) => None,
        }
    }

    /// The user who wrote.
    pub fn sender(&self) -> &str {
        match &self.msg {
            JobMsg::C2c(m) => &m.from_account,
            JobMsg::Group(m) => &m.from_account,
        }
    }
}

/// The store key of a stop flag: for one streamed reply (`msg_key`), or for whatever the robot
/// is streaming in that scope when the client did not say which (`*`).
pub fn stop_key(scope: &str, msg_key: Option<&str>) -> String {
    format!("stop#{scope}#{}", msg_key.unwrap_or("*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_job(bot: &str, topic: Option<&str>) -> Job {
        let body = serde_json::json!({
            "CallbackCommand": "Bot.OnGroupMessage", "GroupId": "@TGS#_g", "From_Account": "ann",
            "MsgSeq": 7, "Random": 1, "MsgTime": 1, "MsgBody": [], "AtRobots_Account": [bot],
            "TopicId": topic,
        });
        let m: BotGroupMessage = serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}"));
        Job::new("r", bot.to_owned(), JobMsg::Group(m))
    }

    #[test]
    fn robots_in_one_group_are_answered_independently() {
        // Two robots mentioned in one group wait for their own answers, not for each other's.
        assert_ne!(group_job("@RBT#a", None).ordering_key(), group_job("@RBT#b", None).ordering_key());
        // One robot answers a group (and a topic) one message at a time.
        assert_eq!(group_job("@RBT#a", None).ordering_key(), group_job("@RBT#a", None).ordering_key());
        assert_ne!(group_job("@RBT#a", Some("t1")).ordering_key(), group_job("@RBT#a", Some("t2")).ordering_key());
    }
}
