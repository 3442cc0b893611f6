//! Statistics after a group message is sent (`Group.CallbackAfterSendMsg`): per-group and
//! per-user counters of messages, likes and gifts (custom messages whose `Data` JSON names its
//! kind in a configurable field), online-only messages, and lucky draws.
//!
//! A draw is opened in a group with a keyword; while it is open, each user whose message
//! contains the keyword is entered, and the entries do not expire. Closing it keeps, with the
//! result, the entrants it drew from, the seed and the generator, so anyone can recompute the
//! draw from exactly that list. A user listed twice (a redelivered message) wins at most once.
//!
//! Each message is claimed by `GroupId`+`TopicId`+`MsgSeq` before it is counted, so a redelivered batch
//! changes no counter. (A crash between the claim and the counters under-counts that message;
//! it never counts twice.) A draw entry is made before that claim and is idempotent by itself,
//! so a failed entry is made again when the message is redelivered.

use crate::event_worker::{EventError, EventHandler, parse};
use crate::moderation::normalize;
use crate::msg::MsgElement;
use crate::store::{Role, Store, Turn, now_ms};
use crate::webhook::events::GroupSendMsg;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The counters kept for each group and each user.
pub const KINDS: [&str; 4] = ["messages", "likes", "gifts", "online_only"];

pub fn group_counter(group: &str, kind: &str) -> String {
    format!("stats#group#{group}#{kind}")
}

pub fn user_counter(group: Option<&str>, user: &str, kind: &str) -> String {
    match group {
        Some(g) => format!("stats#user#{g}#{user}#{kind}"),
        None => format!("stats#user#*#{user}#{kind}"),
    }
}

/// An open or closed lucky draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub id: String,
    pub keyword: String,
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub winners: Vec<String>,
    /// Closed: the distinct entrants the winners were drawn from, in entry order. They live in
    /// this document, so a draw holds some tens of thousands of them (DynamoDB's 400 KB item).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrants: Vec<String>,
    /// Closed: the [`GENERATOR`] that drew the winners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
}

/// The generator [`pick_winners`] implements, recorded with each closed draw so that a later
/// version can tell whether it can recompute one.
pub const GENERATOR: &str = "fastrand-2 wyrand, pick v1";

/// How long a draw entry is kept: a century, so that entries do not expire while a draw is open.
const ENTRY_TTL_SECS: u64 = 100 * 366 * 86_400;

impl Draw {
    pub fn key(group: &str) -> String {
        format!("draw#{group}")
    }
    /// Where entrants are listed, in the order they entered.
    pub fn entrants_log(group: &str, id: &str) -> String {
        format!("draw#{group}#{id}")
    }
}

/// Picks `n` distinct winners from `entrants` (in entry order; a user listed twice counts once)
/// with `seed`: the same inputs give the same winners, on any machine.
pub fn pick_winners(entrants: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut pool = distinct(entrants.iter().cloned());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    while out.len() < n && !pool.is_empty() {
        out.push(pool.remove(rng.usize(..pool.len())));
    }
    out
}

/// The first occurrence of each item, in order.
fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// The distinct entrants of a draw so far, in entry order.
pub async fn entrants(store: &dyn Store, group: &str, id: &str) -> Result<Vec<String>, crate::store::StoreError> {
    let turns = store.recent_turns(&Draw::entrants_log(group, id), 0, 100_000).await?;
    Ok(distinct(turns.into_iter().map(|t| t.text)))
}

/// The statistics function's service.
pub struct Stats {
    pub store: Arc<dyn Store>,
    /// The field of a custom element's `Data` JSON that names its kind.
    pub kind_field: String,
    pub ttl_secs: u64,
}

impl Stats {
    fn kinds(&self, m: &GroupSendMsg) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        for el in &m.msg_body {
            match el {
                MsgElement::Custom(c) => {
                    let kind = c
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                        .and_then(|v| v.get(&self.kind_field).and_then(|k| k.as_str()).map(str::to_owned));
                    match kind.as_deref() {
                        Some("like") => kinds.push("likes"),
                        Some("gift") => kinds.push("gifts"),
                        _ => kinds.push("messages"),
                    }
                }
                _ => kinds.push("messages"),
            }
        }
        kinds.sort_unstable();
        kinds.dedup();
        if m.online_only_flag == Some(1) {
            kinds.push("online_only");
        }
        kinds
    }

    async fn count(&self, m: &GroupSendMsg) -> Result<(), EventError> {
        for kind in self.kinds(m) {
            self.store.incr(&group_counter(&m.group_id, kind), 1, None).await?;
            self.store.incr(&user_counter(Some(&m.group_id), &m.from_account, kind), 1, None).await?;
            self.store.incr(&user_counter(None, &m.from_account, kind), 1, None).await?;
        }
        Ok(())
    }

    async fn enter_draw(&self, m: &GroupSendMsg) -> Result<(), EventError> {
        let Some(doc) = self.store.get_doc(&Draw::key(&m.group_id)).await? else {
            return Ok(());
        };
        let Ok(draw) = serde_json::from_str::<Draw>(&doc) else {
            return Ok(());
        };
        let text = crate::msg::joined_text(&m.msg_body).unwrap_or_default();
        if !draw.open || !normalize(&text).0.contains(&normalize(&draw.keyword).0) {
            return Ok(());
        }
        // Entered, then marked: a crash between the two lists the user twice, which the draw
        // reads as once; a mark before the entry could lose it.
        let mark = format!("draw#{}#{}#entrant#{}", m.group_id, draw.id, m.from_account);
        if self.store.get_doc(&mark).await?.is_some() {
            return Ok(());
        }
        let t = Turn { at_ms: now_ms(), role: Role::User, speaker: None, text: m.from_account.clone() };
        self.store.append_turn(&Draw::entrants_log(&m.group_id, &draw.id), &t, ENTRY_TTL_SECS).await?;
        self.store.put_doc(&mark, "{}", None).await?;
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Stats {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        if command != "Group.CallbackAfterSendMsg" {
            return Err(EventError::Malformed(format!("statistics got {command}")));
        }
        let m: GroupSendMsg = parse(body)?;
        let Some(seq) = m.msg_seq else {
            return Err(EventError::Malformed("MsgSeq is missing".into()));
        };
        // MsgSeq is numbered per topic in a topic-enabled Community (protocol doc §6).
        let seen = match m.topic_id.as_deref().filter(|t| !t.is_empty()) {
            None => format!("stats#seen#{}#{seq}", m.group_id),
            Some(topic) => format!("stats#seen#{}#{topic}#{seq}", m.group_id),
        };
        self.enter_draw(&m).await?;
        if !self.store.claim(&seen, self.ttl_secs).await? {
            return Ok("duplicate");
        }
        self.count(&m).await?;
        // Counted once, logged once: for robots that read the group's context.
        let text = crate::msg::joined_text(&m.msg_body).unwrap_or_default();
        let topic = m.topic_id.as_deref().filter(|t| !t.is_empty());
        // MsgTime has seconds only; MsgSeq orders the messages of one second (it grows per group
        // or topic), so the log keeps the group's order whatever order the queue delivers in.
        let at_ms = m.msg_time.map_or_else(now_ms, |t| t * 1000 + seq % 1000);
        crate::bot::context::record(self.store.as_ref(), &m.group_id, topic, &m.from_account, &text, at_ms).await?;
        Ok("counted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_are_reproducible_from_the_seed() {
        let people: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let a = pick_winners(&people, 3, 42);
        assert_eq!(a, pick_winners(&people, 3, 42));
        assert_ne!(a, pick_winners(&people, 3, 43));
        assert_eq!(a.len(), 3);
        assert_eq!(pick_winners(&people[..2], 5, 1).len(), 2);
    }

    #[test]
    fn when_a_user_is_listed_twice_should_win_at_most_once() {
        let people: Vec<String> = ["ann", "ann", "bob", "ann"].map(String::from).to_vec();
        for seed in 0..20 {
            let mut w = pick_winners(&people, 3, seed);
            w.sort();
            assert_eq!(w, ["ann", "bob"], "seed {seed}");
        }
    }
}
