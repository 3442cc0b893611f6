//! Storage: one port ([`Store`]) with a DynamoDB adapter and an in-memory adapter, held to the
//! same contract by one test suite.
//!
//! Everything lives in one table (single-table design) keyed by `pk` and `sk`; items that should
//! expire carry `expires_at` (unix seconds), which reads filter on because neither DynamoDB (not
//! promptly) nor the local emulator (never) deletes expired items.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;

/// A storage failure. Carries the operation and the cause; never an item's content.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("store {op} failed: {reason}")]
pub struct StoreError {
    pub op: &'static str,
    pub reason: String,
}

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// When the turn was said, unix milliseconds.
    pub at_ms: u64,
    pub role: Role,
    /// The user who said it, in group conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    pub text: String,
}

/// The most text a stored turn keeps, in bytes: far below DynamoDB's 400 KB item limit, and
/// more than a conversation window would put in a prompt.
pub const MAX_TURN_TEXT_BYTES: usize = 64 * 1024;

/// What ends the text of a turn that was cut to fit.
pub const TRUNCATED_MARK: &str = "…";

/// A turn's text as both stores keep it: cut at a character boundary and marked with
/// [`TRUNCATED_MARK`] when longer than [`MAX_TURN_TEXT_BYTES`], so that storing an answer
/// already delivered cannot fail for its size.
pub fn stored_text(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_TURN_TEXT_BYTES {
        return Cow::Borrowed(text);
    }
    let cut = text.floor_char_boundary(MAX_TURN_TEXT_BYTES - TRUNCATED_MARK.len());
    Cow::Owned(format!("{}{TRUNCATED_MARK}", &text[..cut]))
}

/// The storage port.
#[async_trait]
pub trait Store: Send + Sync {
    /// Claims `key` for `ttl_secs`: true for the one caller that claimed it, false for every
    /// other caller until it expires.
    async fn claim(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError>;
    /// Gives a claim back, so that a retry can claim it again.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
    /// Stores a small JSON document under `key`, for `ttl_secs` or for good.
    async fn put_doc(&self, key: &str, doc: &str, ttl_secs: Option<u64>) -> Result<(), StoreError>;
    /// Stores `doc` under `key` only if the document there still reads `expected` (`None`: no
    /// live document), in one atomic write: the compare-and-set of a read-modify-write update.
    /// Returns false, and writes nothing, when another writer changed the document first.
    async fn put_doc_if(
        &self,
        key: &str,
        expected: Option<&str>,
        doc: &str,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// Reads a document, unless it has expired.
    async fn get_doc(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Deletes a document or a claim.
    async fn delete_doc(&self, key: &str) -> Result<(), StoreError>;
    /// Appends a turn to a conversation, its text as [`stored_text`] gives it.
    async fn append_turn(&self, conv: &str, turn: &Turn, ttl_secs: u64) -> Result<(), StoreError>;
    /// The newest `limit` turns said at or after `since_ms`, oldest first.
    async fn recent_turns(&self, conv: &str, since_ms: u64, limit: usize) -> Result<Vec<Turn>, StoreError>;
    /// Forgets a conversation; returns how many turns were removed.
    async fn clear_turns(&self, conv: &str) -> Result<usize, StoreError>;
    /// Adds `by` to a counter atomically and returns the new value. A TTL, when given, is set
    /// when the counter is created and not extended after.
    async fn incr(&self, key: &str, by: i64, ttl_secs: Option<u64>) -> Result<i64, StoreError>;
    /// A counter's value; 0 when it does not exist or has expired.
    async fn counter(&self, key: &str) -> Result<i64, StoreError>;
    /// Counts `member` once in the counter `key`, in one atomic write, and returns the count it
    /// got: `n` for the n-th member counted, and the same `n` whenever the same member is
    /// counted again, however much the counter has grown since. A TTL, when given, is set when
    /// the counter is created.
    async fn count_once(&self, key: &str, member: &str, ttl_secs: Option<u64>) -> Result<i64, StoreError>;
}

/// The attribute name under which a counter remembers one member's count: short, fixed
/// length and free of characters DynamoDB attribute paths treat specially.
pub fn member_attr(member: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("m_{}", hex::encode(&Sha256::digest(member.as_bytes())[..12]))
}

/// The partition key under which a conversation's turns are stored.
pub fn turns_key(conv: &str) -> String {
    crate::keys::turns(conv)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_text_fits_should_keep_it_and_when_not_should_cut_at_a_char_boundary() {
        let fits = "é".repeat(MAX_TURN_TEXT_BYTES / 2);
        assert_eq!(stored_text(&fits), fits);
        let long = format!("a{fits}");
        let stored = stored_text(&long);
        assert_eq!(stored.len(), MAX_TURN_TEXT_BYTES, "one 'a', then whole 'é's, then the mark");
        assert!(stored.ends_with(TRUNCATED_MARK) && long.starts_with(stored.trim_end_matches(TRUNCATED_MARK)));
    }
}
