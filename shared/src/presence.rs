//! Presence (`State.StateChange`): online sessions and total online time per user, and the
//! number of users online in the app.
//!
//! Events come from a standard queue to several Lambda instances at once, so one user's events
//! may be handled concurrently and in any order. Each event is a step of the user's presence
//! document, written with a compare-and-set ([`Store::put_doc_if`]) and tried again when another
//! event got there first; the counters change only after the step was written. The rules:
//! - An event no newer than the last one applied changes nothing (which also drops repeats),
//!   except a late Login that opens the session a Logout already closed: that session counts.
//! - A repeated Login keeps the session that was already open; a Logout or Disconnect without a
//!   Login is remembered as the end of a session whose Login may still come.
//!
//! A failure between the document and the counters loses that change of the counters; it
//! never applies one twice.

use crate::event_worker::{EventError, EventHandler, parse};
use crate::store::Store;
use crate::webhook::events::StateChange;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The app-wide counter of users online.
pub const ONLINE_KEY: &str = "presence#online";

/// How many times an event is tried against a document that other events keep changing before
/// it is handed back to the queue.
const ATTEMPTS: usize = 20;

/// A user's presence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub online: bool,
    /// When the open session began (online) or the last one ended (offline), unix milliseconds.
    pub since_ms: u64,
    /// The time of the last event applied, unix milliseconds.
    pub last_event_ms: u64,
    /// Offline: the first Logout or Disconnect since `since_ms` that ended no known session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_end_ms: Option<u64>,
}

/// What one event does to a user's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The document to write; `None` when nothing changes.
    pub next: Option<UserPresence>,
    /// +1, -1 or 0 to the online count.
    pub online: i64,
    /// A session that ended, milliseconds.
    pub session_ms: u64,
    pub outcome: &'static str,
}

impl UserPresence {
    /// The step that `action` (lower case) at `at` takes from this presence.
    pub fn step(&self, action: &str, at: u64) -> Step {
        let mut next = self.clone();
        let step = |next, online, session_ms, outcome| Step { next, online, session_ms, outcome };
        let login = action == "login";
        if !login && action != "logout" && action != "disconnect" {
            return step(None, 0, 0, "ignored");
        }
        if at <= self.last_event_ms {
            return match self.unmatched_end_ms {
                Some(end) if login && !self.online && self.since_ms <= at && at < end => {
                    next.unmatched_end_ms = None;
                    next.since_ms = end;
                    step(Some(next), 0, end - at, "late_session")
                }
                _ => step(None, 0, 0, "stale"),
            };
        }
        next.last_event_ms = at;
        match (login, self.online) {
            (true, true) => step(Some(next), 0, 0, "already_online"),
            (true, false) => {
                next = UserPresence { online: true, since_ms: at, last_event_ms: at, unmatched_end_ms: None };
                step(Some(next), 1, 0, "online")
            }
            (false, true) => {
                next = UserPresence { online: false, since_ms: at, last_event_ms: at, unmatched_end_ms: None };
                step(Some(next), -1, at.saturating_sub(self.since_ms), "offline")
            }
            (false, false) => {
                next.unmatched_end_ms = Some(self.unmatched_end_ms.unwrap_or(at));
                step(Some(next), 0, 0, "already_offline")
            }
        }
    }
}

pub fn user_key(user: &str) -> String {
    format!("presence#user#{user}")
}

/// Total online time of a user, milliseconds.
pub fn total_key(user: &str) -> String {
    format!("presence#total_ms#{user}")
}

/// The presence function's service.
pub struct Presence {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl EventHandler for Presence {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        if command != "State.StateChange" {
            return Err(EventError::Malformed(format!("presence got {command}")));
        }
        let ev: StateChange = parse(body)?;
        let user = &ev.info.to_account;
        let at = ev.event_time.unwrap_or_else(crate::store::now_ms);
        let action = ev.info.action.to_ascii_lowercase();
        let key = user_key(user);
        for _ in 0..ATTEMPTS {
            let old = self.store.get_doc(&key).await?;
            let p: UserPresence = old.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
            let step = p.step(&action, at);
            let Some(next) = &step.next else {
                return Ok(step.outcome);
            };
            let doc = serde_json::to_string(next).unwrap_or_default();
            if !self.store.put_doc_if(&key, old.as_deref(), &doc, None).await? {
                continue;
            }
            if step.session_ms > 0 {
                self.store.incr(&total_key(user), step.session_ms as i64, None).await?;
            }
            if step.online != 0 {
                self.store.incr(ONLINE_KEY, step.online, None).await?;
            }
            return Ok(step.outcome);
        }
        Err(EventError::Contended(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(&str, u64)]) -> (UserPresence, i64, u64) {
        let (mut p, mut online, mut total) = (UserPresence::default(), 0, 0);
        for (action, at) in events {
            let s = p.step(action, *at);
            online += s.online;
            total += s.session_ms;
            p = s.next.unwrap_or(p);
        }
        (p, online, total)
    }

    #[test]
    fn a_login_logout_pair_counts_the_same_in_either_order_and_when_repeated() {
        let pair = [("login", 1_000), ("logout", 61_000)];
        for events in [vec![pair[0], pair[1]], vec![pair[1], pair[0]], vec![pair[1], pair[0], pair[1], pair[0]]] {
            let (p, online, total) = run(&events);
            assert_eq!((p.online, online, total), (false, 0, 60_000), "{events:?}");
        }
    }

    #[test]
    fn a_late_login_before_the_last_session_ended_is_stale() {
        let (_, online, total) = run(&[("login", 1_000), ("logout", 61_000), ("logout", 80_000), ("login", 500)]);
        assert_eq!((online, total), (0, 60_000));
        let (_, _, total) = run(&[("logout", 61_000), ("disconnect", 62_000), ("login", 1_000)]);
        assert_eq!(total, 60_000, "the first end of a session ends it");
    }
}
