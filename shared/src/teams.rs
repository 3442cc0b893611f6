//! Game teams (Tencent's "integrate Chat into games": team-up): a group system notification
//! when a team is complete (`Group.CallbackAfterGroupFull`), and when players leave
//! (`Group.CallbackAfterMemberExit`) a notification naming them and how they left, plus an
//! optional one-to-one message to each of them.
//!
//! Every send is recorded under its own `team#…` claim key after Tencent accepted it, so a
//! redelivered event sends only what was not sent yet. System notifications carry no `Random`
//! for Tencent to deduplicate: a send that succeeded while its record could not be written is
//! shown again when the event comes back. One-to-one messages carry a `MsgSeq` and `MsgRandom`
//! derived from the event, so such a copy is dropped by Tencent within its dedup window.
//!
//! A full team also makes a `Team Ready` event for the bus ([`crate::bus`]): group id, the
//! members when the callback lists them (`MemberList`), and the time; made on every delivery
//! with one id, so a redelivery repeats it rather than losing it.

use crate::bus::{BusEvent, TEAM_READY, stable_id};
use crate::event_worker::{EventError, EventHandler, parse};
use crate::msg::MsgElement;
use crate::store::Store;
use crate::tencent::{ChatApi, ForbidCallback, SendGroupSystemNotification, SendMsg};
use crate::webhook::events::{GroupAfterGroupFull, GroupAfterMemberExit, Member};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How players left, as Tencent's `ExitType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitHow {
    Quit,
    Kicked,
    /// A value Tencent may add later: still announced, as "left".
    Other,
}

impl ExitHow {
    pub fn parse(exit_type: Option<&str>) -> Self {
        match exit_type {
            Some("Quit") => ExitHow::Quit,
            Some("Kicked") => ExitHow::Kicked,
            _ => ExitHow::Other,
        }
    }

    /// The words for `{how}`, agreeing with the number of players.
    pub fn words(self, players: usize) -> &'static str {
        match (self, players) {
            (ExitHow::Quit, _) => "quit",
            (ExitHow::Kicked, 1) => "was kicked",
            (ExitHow::Kicked, _) => "were kicked",
            (ExitHow::Other, _) => "left",
        }
    }

    /// The words for `{how}` in the message to a player who left: "You {how} team {group}".
    pub fn words_to_player(self) -> &'static str {
        match self {
            ExitHow::Kicked => "were removed from",
            ExitHow::Quit | ExitHow::Other => "left",
        }
    }
}

/// The claim key of one send: `team#<kind>#<hash of what identifies it>`.
fn claim(kind: &str, seed: &str) -> (String, [u8; 32]) {
    let h: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    (format!("team#{kind}#{}", hex::encode(&h[..12])), h)
}

/// The players named in an exit, without blanks or repeats, in a stable order.
fn players(list: &[Member]) -> Vec<String> {
    let mut v: Vec<String> =
        list.iter().map(|m| m.member_account.trim().to_owned()).filter(|m| !m.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

fn require_group(group: &str) -> Result<(), EventError> {
    if group.trim().is_empty() {
        return Err(EventError::Malformed("GroupId is empty".into()));
    }
    Ok(())
}

/// The game-team function's service (both commands).
pub struct Teams {
    pub store: Arc<dyn Store>,
    pub chat: Arc<dyn ChatApi>,
    /// The notification when the team is full (`{group}`).
    pub full_text: String,
    /// The notification when players leave (`{members}`, `{how}`, `{group}`).
    pub exit_text: String,
    /// Who sends each player who left a one-to-one message; `None`: no message.
    pub exit_dm_from: Option<String>,
    /// That message (`{group}`, and `{how}`: `left` or `were removed from`).
    pub exit_dm_text: String,
    pub ttl_secs: u64,
}

impl Teams {
    async fn notify_once(&self, key: &str, group: &str, content: String) -> Result<bool, EventError> {
        if self.store.get_doc(key).await?.is_some() {
            return Ok(false);
        }
        let req = SendGroupSystemNotification {
            group_id: group.to_owned(),
            to_members_account: vec![],
            content,
            topic_id: None,
        };
        self.chat.send_group_system_notification(&req).await?;
        self.store.put_doc(key, "{}", Some(self.ttl_secs)).await?;
        Ok(true)
    }

    async fn full(&self, f: &GroupAfterGroupFull) -> Result<&'static str, EventError> {
        require_group(&f.group_id)?;
        // A team that fills again after someone left is a new event with a new EventTime.
        let (key, _) = claim("full", &format!("{}#{}", f.group_id, f.event_time.unwrap_or(0)));
        let text = self.full_text.replace("{group}", &f.group_id);
        Ok(if self.notify_once(&key, &f.group_id, text).await? { "team_full_notified" } else { "duplicate" })
    }

    async fn exit(&self, x: &GroupAfterMemberExit) -> Result<&'static str, EventError> {
        require_group(&x.group_id)?;
        // Community groups are servers and channels (and their threads), never game teams: the
        // callback comes for every group of the app.
        if x.group_type.as_deref() == Some("Community") {
            return Ok("not_a_team");
        }
        let left = players(&x.exit_member_list);
        if left.is_empty() {
            return Ok("no_members");
        }
        let how = ExitHow::parse(x.exit_type.as_deref());
        let seed = format!(
            "{}#{}#{}#{}",
            x.group_id,
            x.exit_type.as_deref().unwrap_or(""),
            left.join(","),
            x.event_time.unwrap_or(0)
        );
        let (key, _) = claim("exit", &seed);
        let text = self
            .exit_text
            .replace("{members}", &left.join(", "))
            .replace("{how}", how.words(left.len()))
            .replace("{group}", &x.group_id);
        let mut sent = self.notify_once(&key, &x.group_id, text).await?;
        if let Some(from) = &self.exit_dm_from {
            let text = self.exit_dm_text.replace("{how}", how.words_to_player()).replace("{group}", &x.group_id);
            for player in &left {
                let (key, h) = claim("dm", &format!("{seed}#{player}"));
                if self.store.get_doc(&key).await?.is_some() {
                    continue;
                }
                let req = SendMsg {
                    sync_other_machine: 2,
                    from_account: Some(from.clone()),
                    to_account: player.clone(),
                    msg_seq: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
                    msg_random: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
                    msg_life_time: None,
                    msg_body: vec![MsgElement::text(text.clone())],
                    cloud_custom_data: None,
                    forbid_callback_control: ForbidCallback::own_messages(),
                };
                self.chat.send_msg(&req).await?;
                self.store.put_doc(&key, "{}", Some(self.ttl_secs)).await?;
                sent = true;
            }
        }
        Ok(if sent { "team_exit_notified" } else { "duplicate" })
    }
}

/// The `Team Ready` event of a full team: its id is the same for every copy of the callback.
pub fn team_ready(f: &GroupAfterGroupFull, body: &serde_json::Value, now_ms: u64) -> BusEvent {
    let event_time = f.event_time.unwrap_or(0);
    // Tencent's callback carries no member list today; one that does is passed on.
    let members = body.get("MemberList").and_then(|v| v.as_array()).map(|list| {
        let list: Vec<Member> = list.iter().filter_map(|m| serde_json::from_value(m.clone()).ok()).collect();
        players(&list)
    });
    let mut fields = serde_json::json!({ "group_id": f.group_id, "event_time": f.event_time });
    if let (Some(members), Some(o)) = (members, fields.as_object_mut()) {
        o.insert("members".into(), members.into());
    }
    let id = stable_id(&[TEAM_READY, &f.group_id, &event_time.to_string()]);
    BusEvent::product(TEAM_READY, id, f.event_time.unwrap_or(now_ms), fields)
}

#[async_trait]
impl EventHandler for Teams {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        self.handle_and_tell(command, body, &mut Vec::new()).await
    }

    async fn handle_and_tell(
        &self,
        command: &str,
        body: &serde_json::Value,
        made: &mut Vec<BusEvent>,
    ) -> Result<&'static str, EventError> {
        match command {
            "Group.CallbackAfterGroupFull" => {
                let f: GroupAfterGroupFull = parse(body)?;
                let outcome = self.full(&f).await?;
                made.push(team_ready(&f, body, crate::store::now_ms()));
                Ok(outcome)
            }
            "Group.CallbackAfterMemberExit" => self.exit(&parse(body)?).await,
            other => Err(EventError::Malformed(format!("group-team-events got {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(m: &str) -> Member {
        Member { member_account: m.into() }
    }

    #[test]
    fn how_players_left_reads_right_for_one_and_several() {
        assert_eq!(ExitHow::parse(Some("Quit")).words(2), "quit");
        assert_eq!(ExitHow::parse(Some("Kicked")).words(1), "was kicked");
        assert_eq!(ExitHow::parse(Some("Kicked")).words(3), "were kicked");
        assert_eq!(ExitHow::parse(Some("Banned")).words(1), "left");
        assert_eq!(ExitHow::parse(None), ExitHow::Other);
        assert_eq!(ExitHow::Kicked.words_to_player(), "were removed from");
        assert_eq!(ExitHow::Quit.words_to_player(), "left");
    }

    #[test]
    fn players_are_named_once_in_a_stable_order_without_blanks() {
        let list = [member("zed"), member(" "), member("amy"), member("zed")];
        assert_eq!(players(&list), ["amy", "zed"]);
    }

    #[test]
    fn team_ready_names_the_group_its_members_when_listed_and_keeps_one_id() {
        let body = serde_json::json!({"GroupId": "@TGS#1", "EventTime": 1_700_000_000_123_u64,
            "MemberList": [{"Member_Account": "b"}, {"Member_Account": "a"}]});
        let f: GroupAfterGroupFull = parse(&body).unwrap_or_else(|e| panic!("{e}"));
        let e = team_ready(&f, &body, 5);
        assert_eq!((e.source.as_str(), e.detail_type.as_str()), ("tcbot", "Team Ready"));
        assert_eq!(e.detail["group_id"], "@TGS#1");
        assert_eq!(e.detail["members"], serde_json::json!(["a", "b"]));
        assert_eq!(e.detail["time"], 1_700_000_000_123_u64);
        assert_eq!(e.id(), team_ready(&f, &body, 99).id());
        let bare = serde_json::json!({"GroupId": "@TGS#1", "EventTime": 1});
        let f: GroupAfterGroupFull = parse(&bare).unwrap_or_else(|e| panic!("{e}"));
        assert!(team_ready(&f, &bare, 5).detail.get("members").is_none());
    }

    #[test]
    fn claim_keys_have_the_granted_prefix_and_differ_by_event() {
        let (a, _) = claim("full", "@TGS#1#1");
        let (b, _) = claim("full", "@TGS#1#2");
        assert!(a.starts_with("team#full#") && a != b, "{a} {b}");
    }
}
