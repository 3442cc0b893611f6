//! Policies: the rules an app or a group sets, as stored under `modpolicy#app` and
//! `modpolicy#group#<id>`, and the one check (parse and compile) that every reader shares.

use super::engine::Compiled;
use super::verdict::Scope;
use serde::{Deserialize, Serialize};

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Deliver (the match is only logged).
    Allow,
    /// Refuse: the sender gets Tencent's refusal error (group 10016, C2C 20006).
    Refuse,
    /// Refuse with a code and text passed to the sender: group codes 10100–10200, C2C codes
    /// 120001–130000 (protocol doc §6). A command whose range the code is not in gets the
    /// plain refusal (an app policy judges both); a group policy may hold group codes only.
    RefuseWith { code: i64, text: String },
    /// Deliver nothing but tell the sender it was sent (`ErrorCode` 2, groups and C2C alike:
    /// protocol doc §6).
    Drop,
    /// Replace the matched text with `*` and deliver the rewritten body.
    Mask,
}

impl Action {
    /// Whether the rule keeps the text from being shown (refuse, refuse with a text, drop).
    pub fn blocks(&self) -> bool {
        matches!(self, Action::Refuse | Action::RefuseWith { .. } | Action::Drop)
    }

    pub(super) fn severity(&self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Mask => 1,
            Action::Drop => 2,
            Action::Refuse | Action::RefuseWith { .. } => 3,
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub words: Vec<String>,
    /// Regular expressions, matched against the normalised text.
    #[serde(default)]
    pub patterns: Vec<String>,
    pub action: Action,
}

/// A moderation policy, as stored and as edited with `tcbot moderation set`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Ask the LLM too, when no rule refused or dropped the message.
    #[serde(default)]
    pub classify: bool,
    /// What a classifier that fails, is late or answers neither ALLOW nor BLOCK decides.
    #[serde(default)]
    pub classifier_fallback: ClassifierFallback,
    /// Judge the text of custom elements too (`TIMCustomElem` `Desc` and `Data`), which
    /// clients may display. A masked match there is masked in place, so JSON in `Data` stays
    /// JSON unless a word spans its quotes.
    #[serde(default)]
    pub judge_custom: bool,
}

/// The verdict when the classifier gives none. Refuse by default, so that a message cannot
/// be let through by making the classifier fail (padding it past the deadline, say).
/// Ordered from the strictest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierFallback {
    #[default]
    Refuse,
    /// The rules' verdict stands.
    Allow,
}

const GROUP_KEY_PREFIX: &str = "modpolicy#group#";

impl Policy {
    pub fn app_key() -> String {
        "modpolicy#app".into()
    }
    pub fn group_key(group_id: &str) -> String {
        format!("{GROUP_KEY_PREFIX}{group_id}")
    }
}

/// The keys of the policies that judge a message: the app's, and for a group message the
/// group's too.
pub fn policy_keys(group_id: Option<&str>) -> Vec<String> {
    let mut keys = vec![Policy::app_key()];
    keys.extend(group_id.map(Policy::group_key));
    keys
}

/// Why a policy document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPolicy {
    /// Not a policy (the JSON error's category and position only: it could quote the policy).
    #[error("{0}")]
    Json(#[from] crate::redact::JsonError),
    #[error(transparent)]
    Rules(#[from] PolicyError),
}

/// Parses and compiles the policy document stored (or to be stored) under `key`. This is the
/// one check that the moderation functions, the answer moderation and `tcbot moderation set`
/// share, so that a policy the CLI stores is one the functions can use. A group's policy
/// judges only group messages, so its custom refusal codes must be group codes.
pub fn load_policy(key: &str, doc: &str) -> Result<Compiled, InvalidPolicy> {
    let policy: Policy = serde_json::from_str(doc).map_err(crate::redact::JsonError::from)?;
    if key.starts_with(GROUP_KEY_PREFIX) {
        for (rule, r) in policy.rules.iter().enumerate() {
            if let Action::RefuseWith { code, .. } = r.action
                && !Scope::Group.custom_codes().contains(&code)
            {
                return Err(PolicyError::GroupCode { rule, code }.into());
            }
        }
    }
    Ok(Compiled::new(&policy)?)
}

/// A stored policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyReadError {
    #[error("could not read the moderation policy {key}: {source}")]
    Store { key: String, source: crate::store::StoreError },
    #[error("the moderation policy {key} is invalid: {error}")]
    Invalid { key: String, error: InvalidPolicy },
}

impl PolicyReadError {
    /// Whether asking again later may succeed (the store failed, not the policy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PolicyReadError::Store { .. })
    }
}

pub(super) async fn read_doc(store: &dyn crate::store::Store, key: &str) -> Result<Option<String>, PolicyReadError> {
    store.get_doc(key).await.map_err(|source| PolicyReadError::Store { key: key.to_owned(), source })
}

/// Reads and compiles the policy stored under `key`; `Ok(None)` when there is none.
pub async fn read_policy(store: &dyn crate::store::Store, key: &str) -> Result<Option<Compiled>, PolicyReadError> {
    let doc = read_doc(store, key).await?;
    doc.map(|d| load_policy(key, &d))
        .transpose()
        .map_err(|error| PolicyReadError::Invalid { key: key.to_owned(), error })
}

/// A policy that cannot be compiled.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("rule {rule}: pattern {pattern:?} is not a valid regular expression: {why}")]
    Pattern { rule: usize, pattern: String, why: String },
    #[error("rule {rule}: custom refusal code {code} is outside 10100-10200 (group) and 120001-130000 (C2C)")]
    Code { rule: usize, code: i64 },
    #[error("rule {rule}: a group policy's custom refusal code must be in 10100-10200, not {code}")]
    GroupCode { rule: usize, code: i64 },
    #[error("rule {rule}: a rule needs at least one word or pattern")]
    Empty { rule: usize },
    #[error("the automaton could not be built: {0}")]
    Build(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::{Engine, Verdict};
    use crate::moderation::{policy, text};

    #[test]
    fn custom_refusal_codes_are_checked_for_the_command_a_policy_judges() {
        let doc = |code: i64| {
            format!(r#"{{"rules":[{{"words":["x"],"action":{{"kind":"refuse_with","code":{code},"text":"no"}}}}]}}"#)
        };
        let (app, group) = (Policy::app_key(), Policy::group_key("g"));
        // The app's policy judges both commands; a group's only group messages.
        for code in [10_100, 10_200, 120_001, 130_000] {
            assert!(load_policy(&app, &doc(code)).is_ok(), "{code}");
        }
        for code in [10_100, 10_200] {
            assert!(load_policy(&group, &doc(code)).is_ok(), "{code}");
        }
        for code in [120_001, 130_000] {
            let r = load_policy(&group, &doc(code)).map(|_| ());
            assert!(matches!(r, Err(InvalidPolicy::Rules(PolicyError::GroupCode { rule: 0, .. }))), "{code}: {r:?}");
        }
        for code in [10_099, 10_201, 120_000, 130_001, 1, 2] {
            assert!(load_policy(&app, &doc(code)).is_err(), "{code}");
        }
        // Each command gets the codes of its own range; another range's code, a plain refusal.
        let p = policy(vec![
            (vec!["g"], vec![], Action::RefuseWith { code: 10_150, text: "group".into() }),
            (vec!["c"], vec![], Action::RefuseWith { code: 125_000, text: "c2c".into() }),
        ]);
        let e = Engine::compile(&[p]).unwrap_or_else(|e| panic!("{e}"));
        let plain = Verdict::Refuse { code: 1, text: String::new() };
        assert_eq!(e.judge(&text("g"), Scope::Group), Verdict::Refuse { code: 10_150, text: "group".into() });
        assert_eq!(e.judge(&text("g"), Scope::C2c), plain);
        assert_eq!(e.judge(&text("c"), Scope::C2c), Verdict::Refuse { code: 125_000, text: "c2c".into() });
        assert_eq!(e.judge(&text("c"), Scope::Group), plain);
    }
}
