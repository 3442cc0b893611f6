//! The in-memory store: the same contract as DynamoDB, for unit tests and benchmarks.

use super::{Store, StoreError, Turn, now_secs, stored_text};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A conversation's turns by (time, insertion order), each with its expiry.
type Turns = BTreeMap<(u64, u64), (Turn, u64)>;

#[derive(Default)]
struct Inner {
    docs: HashMap<String, (String, Option<u64>)>,
    counters: HashMap<String, (i64, Option<u64>)>,
    members: HashMap<(String, String), i64>,
    turns: HashMap<String, Turns>,
    seq: u64,
}

/// A [`Store`] in process memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|e| e > now)
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut g = self.lock();
        match g.docs.get(key) {
            Some((_, exp)) if live(*exp, now) => Ok(false),
            _ => {
                g.docs.insert(key.to_owned(), (String::new(), Some(now + ttl_secs)));
                Ok(true)
            }
        }
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.lock().docs.remove(key);
        Ok(())
    }

    async fn put_doc(&self, key: &str, doc: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let exp = ttl_secs.map(|t| now_secs() + t);
        self.lock().docs.insert(key.to_owned(), (doc.to_owned(), exp));
        Ok(())
    }

    async fn put_doc_if(
        &self,
        key: &str,
        expected: Option<&str>,
        doc: &str,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut g = self.lock();
        if g.docs.get(key).filter(|(_, e)| live(*e, now)).map(|(d, _)| d.as_str()) != expected {
            return Ok(false);
        }
        g.docs.insert(key.to_owned(), (doc.to_owned(), ttl_secs.map(|t| now + t)));
        Ok(true)
    }

    async fn get_doc(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = now_secs();
        Ok(self.lock().docs.get(key).filter(|(_, e)| live(*e, now)).map(|(d, _)| d.clone()))
    }

    async fn delete_doc(&self, key: &str) -> Result<(), StoreError> {
        self.lock().docs.remove(key);
        Ok(())
    }

    async fn append_turn(&self, conv: &str, turn: &Turn, ttl_secs: u64) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.seq += 1;
        let seq = g.seq;
        let turn = Turn { text: stored_text(&turn.text).into_owned(), ..turn.clone() };
        g.turns.entry(conv.to_owned()).or_default().insert((turn.at_ms, seq), (turn, now_secs() + ttl_secs));
        Ok(())
    }

    async fn recent_turns(&self, conv: &str, since_ms: u64, limit: usize) -> Result<Vec<Turn>, StoreError> {
        let now = now_secs();
        let g = self.lock();
        let Some(turns) = g.turns.get(conv) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Turn> = turns
            .range((since_ms, 0)..)
            .rev()
            .filter(|(_, (_, exp))| *exp > now)
            .take(limit)
            .map(|(_, (t, _))| t.clone())
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn clear_turns(&self, conv: &str) -> Result<usize, StoreError> {
        Ok(self.lock().turns.remove(conv).map(|t| t.len()).unwrap_or(0))
    }

    async fn incr(&self, key: &str, by: i64, ttl_secs: Option<u64>) -> Result<i64, StoreError> {
        let now = now_secs();
        let mut g = self.lock();
        let entry = g.counters.entry(key.to_owned()).or_insert((0, ttl_secs.map(|t| now + t)));
        if !live(entry.1, now) {
            *entry = (0, ttl_secs.map(|t| now + t));
        }
        entry.0 += by;
        Ok(entry.0)
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        let now = now_secs();
        Ok(self.lock().counters.get(key).filter(|(_, e)| live(*e, now)).map(|(v, _)| *v).unwrap_or(0))
    }

    async fn count_once(&self, key: &str, member: &str, ttl_secs: Option<u64>) -> Result<i64, StoreError> {
        let now = now_secs();
        let mut g = self.lock();
        if let Some(n) = g.members.get(&(key.to_owned(), member.to_owned())) {
            return Ok(*n);
        }
        let entry = g.counters.entry(key.to_owned()).or_insert((0, ttl_secs.map(|t| now + t)));
        entry.0 += 1;
        let n = entry.0;
        g.members.insert((key.to_owned(), member.to_owned()), n);
        Ok(n)
    }
}
