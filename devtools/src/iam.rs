//! The table permissions `template.yaml` grants, applied in tests: a [`GuardedStore`] refuses a
//! key outside the `dynamodb:LeadingKeys` prefixes granted to a function, as IAM would in AWS,
//! so every integration test also proves that the template grants what the code uses.

use async_trait::async_trait;
use serde_norway::Value;
use shared::store::{Store, StoreError, Turn};
use std::sync::Arc;

/// The stack template, parsed.
pub fn template() -> Result<Value, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_norway::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

/// The key prefixes (`stop#` for `stop#*`) that a function's policy allows on the table, from
/// its statements' `ForAllValues:StringLike` `dynamodb:LeadingKeys` conditions; `None` when the
/// function has no such condition.
pub fn leading_keys(template: &Value, function: &str) -> Option<Vec<String>> {
    let policies = template["Resources"][function]["Properties"]["Policies"].as_sequence()?;
    let mut prefixes: Vec<String> = policies
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|s| s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].as_sequence().cloned())
        .flatten()
        .filter_map(|k| k.as_str().map(|k| k.trim_end_matches('*').to_owned()))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    (!prefixes.is_empty()).then_some(prefixes)
}

/// A store that allows only the keys a function's template policy grants.
pub struct GuardedStore {
    function: String,
    prefixes: Vec<String>,
    inner: Arc<dyn Store>,
}

impl GuardedStore {
    /// Guards `inner` with the grants of `function` (a logical id in `template.yaml`).
    pub fn for_function(function: &str, inner: Arc<dyn Store>) -> Result<Self, String> {
        let prefixes = leading_keys(&template()?, function)
            .ok_or_else(|| format!("{function} has no dynamodb:LeadingKeys in template.yaml"))?;
        Ok(Self::new(function, prefixes, inner))
    }

    /// Guards `inner` with the given key prefixes (`stop#`), as granted to `name`.
    pub fn new(name: &str, prefixes: Vec<String>, inner: Arc<dyn Store>) -> Self {
        GuardedStore { function: name.to_owned(), prefixes, inner }
    }

    fn check(&self, op: &'static str, pk: &str) -> Result<(), StoreError> {
        if self.prefixes.iter().any(|p| pk.starts_with(p.as_str())) {
            return Ok(());
        }
        Err(StoreError {
            op,
            reason: format!("AccessDenied: {} may not use key {pk:?} (granted: {:?})", self.function, self.prefixes),
        })
    }
}

#[async_trait]
impl Store for GuardedStore {
    async fn claim(&self, key: &str, ttl: u64) -> Result<bool, StoreError> {
        self.check("claim", key)?;
        self.inner.claim(key, ttl).await
    }
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.check("release", key)?;
        self.inner.release(key).await
    }
    async fn put_doc(&self, key: &str, doc: &str, ttl: Option<u64>) -> Result<(), StoreError> {
        self.check("put_doc", key)?;
        self.inner.put_doc(key, doc, ttl).await
    }
    async fn put_doc_if(
        &self,
        key: &str,
        expected: Option<&str>,
        doc: &str,
        ttl: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.check("put_doc_if", key)?;
        self.inner.put_doc_if(key, expected, doc, ttl).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.check("get_doc", key)?;
        self.inner.get_doc(key).await
    }
    async fn delete_doc(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete_doc", key)?;
        self.inner.delete_doc(key).await
    }
    async fn append_turn(&self, conv: &str, turn: &Turn, ttl: u64) -> Result<(), StoreError> {
        self.check("append_turn", &shared::store::turns_key(conv))?;
        self.inner.append_turn(conv, turn, ttl).await
    }
    async fn recent_turns(&self, conv: &str, since: u64, limit: usize) -> Result<Vec<Turn>, StoreError> {
        self.check("recent_turns", &shared::store::turns_key(conv))?;
        self.inner.recent_turns(conv, since, limit).await
    }
    async fn clear_turns(&self, conv: &str) -> Result<usize, StoreError> {
        self.check("clear_turns", &shared::store::turns_key(conv))?;
        self.inner.clear_turns(conv).await
    }
    async fn incr(&self, key: &str, by: i64, ttl: Option<u64>) -> Result<i64, StoreError> {
        self.check("incr", key)?;
        self.inner.incr(key, by, ttl).await
    }
    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        self.check("counter", key)?;
        self.inner.counter(key).await
    }
    async fn count_once(&self, key: &str, member: &str, ttl: Option<u64>) -> Result<i64, StoreError> {
        self.check("count_once", key)?;
        self.inner.count_once(key, member, ttl).await
    }
}
