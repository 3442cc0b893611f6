//! The before-send moderation service: policies read from the store, compiled once per
//! version and kept, judged, the classifier asked, and the fallback applied.

use super::classifier::{ClassifierError, classify};
use super::engine::{Compiled, Engine};
use super::policy::{ClassifierFallback, PolicyReadError, load_policy, policy_keys, read_doc};
use super::verdict::{Scope, Verdict};
use crate::llm::{Endpoint, Llm};
use crate::msg::MsgElement;
use crate::webhook::Ack;
use sha2::Digest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a compiled policy is kept unused before it is dropped, and how many are kept.
const COMPILED_IDLE: Duration = Duration::from_secs(3600);
const COMPILED_MAX: u64 = 1_000;

/// A policy document's version: its SHA-256, so that a changed policy is compiled anew.
type Version = [u8; 32];

/// The moderation function's service: policies from the store, compiled and cached, the
/// optional classifier, and the fallback verdict.
///
/// Two kept caches (`moka`), both by store key: `read` holds what each key held when last
/// read, for `cache_ttl` (so a changed policy applies within it); `compiled` holds the last
/// compiled policy of each key with its version, so that re-reading an unchanged document
/// does not compile it again.
pub struct Moderator {
    pub store: Arc<dyn crate::store::Store>,
    pub llm: Option<(Arc<dyn Llm>, Endpoint, String)>,
    pub classifier_deadline: Duration,
    /// Applied when a policy cannot be read or used and no good version of it is kept (and
    /// by the router when this function fails or is late). A classifier that gives no
    /// verdict has its own fallback, in its policy.
    pub fallback: Verdict,
    pub cache_ttl: Duration,
    read: moka::future::Cache<String, Option<Arc<Compiled>>>,
    compiled: moka::future::Cache<String, (Version, Arc<Compiled>)>,
    compiles: AtomicU64,
}

impl Moderator {
    pub fn new(
        store: Arc<dyn crate::store::Store>,
        llm: Option<(Arc<dyn Llm>, Endpoint, String)>,
        classifier_deadline: Duration,
        fallback: Verdict,
        cache_ttl: Duration,
    ) -> Self {
        let read = moka::future::Cache::builder().time_to_live(cache_ttl).max_capacity(COMPILED_MAX).build();
        let compiled = moka::future::Cache::builder().time_to_idle(COMPILED_IDLE).max_capacity(COMPILED_MAX).build();
        Moderator { store, llm, classifier_deadline, fallback, cache_ttl, read, compiled, compiles: AtomicU64::new(0) }
    }

    /// How many times this moderator compiled a policy.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The compiled policy stored under `key` (`None` when there is none), from the cache or
    /// the store.
    async fn policy(&self, key: &str) -> Result<Option<Arc<Compiled>>, Arc<PolicyReadError>> {
        self.read.try_get_with_by_ref(key, self.load(key)).await
    }

    /// Reads the policy under `key` and compiles it, unless its version is compiled already.
    /// A policy that cannot be read or used is replaced by the last good one while it is kept.
    async fn load(&self, key: &str) -> Result<Option<Arc<Compiled>>, PolicyReadError> {
        let last = self.compiled.get(key).await;
        match (self.load_version(key, last.as_ref()).await, last) {
            (Err(e), Some((_, good))) => {
                tracing::error!(policy = key, error = %e, "moderation policy unusable; the last good one applies");
                Ok(Some(good))
            }
            (loaded, _) => loaded,
        }
    }

    async fn load_version(
        &self,
        key: &str,
        last: Option<&(Version, Arc<Compiled>)>,
    ) -> Result<Option<Arc<Compiled>>, PolicyReadError> {
        let Some(doc) = read_doc(self.store.as_ref(), key).await? else {
            self.compiled.invalidate(key).await;
            return Ok(None);
        };
        let version: Version = sha2::Sha256::digest(doc.as_bytes()).into();
        if let Some((v, c)) = last
            && *v == version
        {
            return Ok(Some(c.clone()));
        }
        let c = load_policy(key, &doc).map_err(|error| PolicyReadError::Invalid { key: key.to_owned(), error })?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(c);
        self.compiled.insert(key.to_owned(), (version, c.clone())).await;
        Ok(Some(c))
    }

    /// Judges one before-send webhook body.
    pub async fn moderate(&self, scope: Scope, group_id: Option<&str>, body: &[MsgElement]) -> Verdict {
        let mut parts = Vec::new();
        for key in policy_keys(group_id) {
            match self.policy(&key).await {
                Ok(p) => parts.extend(p),
                // Never "no rules": a policy that cannot be used (and has no last good
                // version) gives the configured fallback.
                Err(e) => {
                    tracing::error!(policy = key, error = %e, fallback = self.fallback.kind(), "moderation policy unusable; fallback verdict");
                    return self.fallback.clone();
                }
            }
        }
        let engine = Engine::of(parts);
        let verdict = engine.judge(body, scope);
        let Some(fallback) = engine.classifier_fallback() else {
            return verdict;
        };
        if matches!(verdict, Verdict::Refuse { .. } | Verdict::Drop) {
            return verdict;
        }
        let Some(text) = engine.text(body) else {
            return verdict;
        };
        let refuse = Verdict::Refuse { code: 1, text: String::new() };
        let asked = match &self.llm {
            Some((llm, endpoint, model)) => {
                classify(llm.as_ref(), endpoint.clone(), model, &text, self.classifier_deadline).await
            }
            None => Err(ClassifierError::NotConfigured),
        };
        match (asked, fallback) {
            (Ok(true), _) => refuse,
            (Ok(false), _) => verdict,
            (Err(e), fallback) => {
                tracing::warn!(error = %e, fallback = ?fallback, "classifier gave no verdict; its fallback applies");
                if fallback == ClassifierFallback::Refuse { refuse } else { verdict }
            }
        }
    }

    /// The function's handler: a before-send webhook body in, the ack out.
    pub async fn handle(&self, body: &serde_json::Value) -> Ack {
        use crate::webhook::events::{Command, WebhookEvent};
        let name = body.get("CallbackCommand").and_then(|c| c.as_str()).unwrap_or_default();
        let bytes = body.to_string();
        let verdict = match WebhookEvent::parse(&Command::parse(name), bytes.as_bytes()) {
            Ok(WebhookEvent::GroupBeforeSendMsg(m)) => {
                self.moderate(Scope::Group, Some(&m.group_id), &m.msg_body).await
            }
            Ok(WebhookEvent::C2cBeforeSendMsg(m)) => self.moderate(Scope::C2c, None, &m.msg_body).await,
            Ok(_) => return Ack::fail(format!("{name} is not a before-send command")),
            Err(e) => return Ack::fail(e.to_string()),
        };
        tracing::info!(command = name, verdict = verdict.kind(), "moderated");
        verdict.ack()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::{Policy, text};

    fn moderator(store: &std::sync::Arc<crate::store::MemoryStore>, fallback: Verdict, ttl: Duration) -> Moderator {
        Moderator::new(store.clone(), None, Duration::from_millis(100), fallback, ttl)
    }

    async fn put(store: &crate::store::MemoryStore, key: &str, doc: &str) {
        use crate::store::Store;
        store.put_doc(key, doc, None).await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_policy_is_compiled_once_not_per_message_and_a_changed_one_anew() {
        let store = std::sync::Arc::new(crate::store::MemoryStore::new());
        put(&store, &Policy::app_key(), r#"{"rules":[{"words":["bad"],"action":{"kind":"mask"}}]}"#).await;
        put(&store, &Policy::group_key("g"), r#"{"rules":[{"words":["scam"],"action":{"kind":"refuse"}}]}"#).await;
        // The store is read for every message (no read cache), yet an unchanged policy is not
        // compiled again.
        let m = moderator(&store, Verdict::Allow, Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(m.moderate(Scope::Group, Some("g"), &text("so bad")).await, Verdict::Rewrite(text("so ***")));
            assert_eq!(m.moderate(Scope::C2c, None, &text("a scam")).await, Verdict::Allow);
        }
        assert_eq!(m.compiles(), 2, "the app's policy and the group's, once each");
        put(&store, &Policy::app_key(), r#"{"rules":[{"words":["good"],"action":{"kind":"mask"}}]}"#).await;
        assert_eq!(
            m.moderate(Scope::C2c, None, &text("so bad, so good")).await,
            Verdict::Rewrite(text("so bad, so ****"))
        );
        assert_eq!(m.compiles(), 3, "the changed policy compiled anew");
    }

    const NOT_JSON: &str = "{not json";

    const BAD_PATTERN: &str = r#"{"rules":[{"patterns":["("],"action":{"kind":"refuse"}}]}"#;

    #[tokio::test]
    async fn an_unusable_policy_without_a_good_one_gives_the_fallback_not_no_rules() {
        let store = std::sync::Arc::new(crate::store::MemoryStore::new());
        let refuse = Verdict::Refuse { code: 1, text: String::new() };
        let m = moderator(&store, refuse.clone(), Duration::ZERO);
        for bad in [NOT_JSON, BAD_PATTERN] {
            put(&store, &Policy::app_key(), bad).await;
            assert_eq!(m.moderate(Scope::C2c, None, &text("hello")).await, refuse, "{bad}");
        }
        // A group whose own policy never was usable: the fallback, though the app's is fine.
        put(&store, &Policy::app_key(), r#"{"rules":[{"words":["bad"],"action":{"kind":"mask"}}]}"#).await;
        put(&store, &Policy::group_key("g"), NOT_JSON).await;
        assert_eq!(m.moderate(Scope::Group, Some("g"), &text("hello")).await, refuse);
    }

    #[tokio::test]
    async fn an_unusable_policy_keeps_the_last_good_one() {
        let store = std::sync::Arc::new(crate::store::MemoryStore::new());
        let m = moderator(&store, Verdict::Refuse { code: 1, text: String::new() }, Duration::ZERO);
        put(&store, &Policy::app_key(), r#"{"rules":[{"words":["bad"],"action":{"kind":"mask"}}]}"#).await;
        assert_eq!(m.moderate(Scope::C2c, None, &text("so bad")).await, Verdict::Rewrite(text("so ***")));
        for bad in [NOT_JSON, BAD_PATTERN] {
            put(&store, &Policy::app_key(), bad).await;
            let v = m.moderate(Scope::C2c, None, &text("so bad")).await;
            assert_eq!(v, Verdict::Rewrite(text("so ***")), "{bad}");
        }
        assert_eq!(m.compiles(), 1);
    }
}
