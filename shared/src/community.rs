//! Community set-up: default topics for every new topic-enabled Community group
//! (`Group.CallbackAfterCreateGroup`), and an optional welcome message when members join
//! (`Group.CallbackAfterNewMemberJoin`).
//!
//! Both are idempotent. A topic's ID is derived from the group and the topic's name and given to
//! `create_topic` as its custom `TopicId`, which Tencent returns unchanged, so a topic is named
//! by its name everywhere (the welcome topic too). A welcome is recorded only after Tencent
//! accepted it, so a failed send is tried again when the event is redelivered; a copy sent
//! before the record was written carries the same `Random`, derived from the event, and Tencent
//! drops it as a duplicate within 5 minutes (the queue redelivers after 3).

use crate::event_worker::{EventError, EventHandler, parse};
use crate::msg::MsgElement;
use crate::store::Store;
use crate::tencent::{ChatApi, CreateTopic, ForbidCallback, SendGroupMsg};
use crate::webhook::events::{GroupAfterCreateGroup, GroupAfterNewMemberJoin};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Tencent's answers when a topic ID is taken: 10021, and 10025 when the operator (the owner,
/// our `From_Account`) also owns it (protocol doc §6).
const TOPIC_EXISTS: [i64; 2] = [10021, 10025];

/// Whether a group is a topic-enabled community: only those take topics, and their root refuses
/// plain messages (protocol doc §6).
pub fn has_topics(group: &str) -> bool {
    group.starts_with("@TGS#_")
}

/// A topic ID of the documented form `<GroupId>@TOPIC#_<suffix>`, stable for a name.
pub fn topic_id(group: &str, name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    format!("{group}@TOPIC#_{}", hex::encode(&h[..6]))
}

/// The community function's service (both commands).
pub struct Community {
    pub store: Arc<dyn Store>,
    pub chat: Arc<dyn ChatApi>,
    pub default_topics: Vec<String>,
    pub welcome_from: Option<String>,
    pub welcome_text: String,
    /// The default topic that welcomes go to in topic-enabled communities.
    pub welcome_topic: Option<String>,
    pub ttl_secs: u64,
}

impl Community {
    async fn create_topics(&self, g: &GroupAfterCreateGroup) -> Result<&'static str, EventError> {
        if g.group_type.as_deref() != Some("Community") {
            return Ok("not_community");
        }
        if !has_topics(&g.group_id) {
            return Ok("no_topics");
        }
        for name in &self.default_topics {
            let done = format!("topic#{}#{name}", g.group_id);
            if self.store.get_doc(&done).await?.is_some() {
                continue;
            }
            let req = CreateTopic {
                group_id: g.group_id.clone(),
                topic_name: name.clone(),
                topic_id: Some(topic_id(&g.group_id, name)),
                from_account: g.owner_account.clone(),
            };
            match self.chat.create_topic(&req).await {
                Ok(_) => {}
                Err(e) if e.code().is_some_and(|c| TOPIC_EXISTS.contains(&c)) => {}
                Err(e) => return Err(e.into()),
            }
            self.store.put_doc(&done, "{}", Some(self.ttl_secs)).await?;
        }
        Ok("topics_created")
    }

    async fn welcome(&self, j: &GroupAfterNewMemberJoin) -> Result<&'static str, EventError> {
        let Some(from) = &self.welcome_from else {
            return Ok("welcome_off");
        };
        let members: Vec<&str> = j.new_member_list.iter().map(|m| m.member_account.as_str()).collect();
        if members.is_empty() {
            return Ok("no_members");
        }
        let topic_id = match (has_topics(&j.group_id), &self.welcome_topic) {
            (false, _) => None,
            (true, Some(name)) => Some(topic_id(&j.group_id, name)),
            (true, None) => return Ok("no_welcome_topic"),
        };
        let seed = format!("{}#{}#{}", j.group_id, members.join(","), j.event_time.unwrap_or(0));
        let h = Sha256::digest(seed.as_bytes());
        let done = format!("welcome#{}", hex::encode(&h[..12]));
        if self.store.get_doc(&done).await?.is_some() {
            return Ok("duplicate");
        }
        let req = SendGroupMsg {
            group_id: j.group_id.clone(),
            random: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            from_account: Some(from.clone()),
            msg_body: vec![MsgElement::text(self.welcome_text.replace("{members}", &members.join(", ")))],
            topic_id,
            group_at_info: vec![],
            cloud_custom_data: None,
            forbid_callback_control: ForbidCallback::own_messages(),
        };
        self.chat.send_group_msg(&req).await?;
        self.store.put_doc(&done, "{}", Some(self.ttl_secs)).await?;
        Ok("welcomed")
    }
}

#[async_trait]
impl EventHandler for Community {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        match command {
            "Group.CallbackAfterCreateGroup" => self.create_topics(&parse(body)?).await,
            "Group.CallbackAfterNewMemberJoin" => self.welcome(&parse(body)?).await,
            other => Err(EventError::Malformed(format!("community got {other}"))),
        }
    }
}
