//! Presence (`State.StateChange`): online sessions and total online time per user, and the
//! number of users online in the app.
//!
//! Tolerant of what Tencent's events are like: a repeated Login keeps the session that was
//! already open, a Logout or Disconnect without a Login is ignored, an event older than the
//! last one applied for that user is ignored, and a redelivered event is claimed once.

use crate::event_worker::{EventError, EventHandler, parse};
use crate::store::Store;
use crate::webhook::events::StateChange;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The app-wide counter of users online.
pub const ONLINE_KEY: &str = "presence#online";

/// A user's presence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub online: bool,
    /// When the open session began, unix milliseconds.
    pub since_ms: u64,
    /// The time of the last event applied, unix milliseconds.
    pub last_event_ms: u64,
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
    pub ttl_secs: u64,
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
        if !self.store.claim(&format!("presence#seen#{user}#{action}#{at}"), self.ttl_secs).await? {
            return Ok("duplicate");
        }
        let mut p: UserPresence = match self.store.get_doc(&user_key(user)).await? {
            Some(doc) => serde_json::from_str(&doc).unwrap_or_default(),
            None => UserPresence::default(),
        };
        if at < p.last_event_ms {
            return Ok("stale");
        }
        p.last_event_ms = at;
        let outcome = match action.as_str() {
            "login" if p.online => "already_online",
            "login" => {
                p.online = true;
                p.since_ms = at;
                self.store.incr(ONLINE_KEY, 1, None).await?;
                "online"
            }
            "logout" | "disconnect" if p.online => {
                p.online = false;
                let session = at.saturating_sub(p.since_ms) as i64;
                self.store.incr(&total_key(user), session, None).await?;
                self.store.incr(ONLINE_KEY, -1, None).await?;
                "offline"
            }
            "logout" | "disconnect" => "already_offline",
            _ => return Ok("ignored"),
        };
        let doc = serde_json::to_string(&p).unwrap_or_default();
        self.store.put_doc(&user_key(user), &doc, None).await?;
        Ok(outcome)
    }
}
