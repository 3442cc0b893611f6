//! Moderation before a message is delivered (`Group.CallbackBeforeSendMsg`,
//! `C2C.CallbackBeforeSendMsg`).
//!
//! A policy is a list of rules, each a set of words and patterns with an action: allow, refuse,
//! refuse with a custom code and text, silently drop, or mask the matched text and deliver the
//! rewritten body. Matching ignores case, full-width/half-width forms, spacing and invisible
//! characters, so `b a d`, `ＢＡＤ`, `b\u{200B}ad` and `bad` match alike. A policy's words go
//! into one Aho-Corasick automaton and its patterns into one `RegexSet`, so a verdict costs one
//! pass over the text per policy however many rules there are. Policies live in the store
//! (`modpolicy#app`, `modpolicy#group#<id>`), both apply, and the most severe verdict wins.
//! Each is compiled once per version and kept; one that cannot be read or used keeps its last
//! good version, or else gives the configured fallback. An optional LLM classifier runs under
//! a hard deadline; when it gives no verdict, its policy's own fallback (refuse by default)
//! applies. The chatbot judges its own answers in-process with the same policies and engine
//! (`bot::moderated`).
//!
//! The parts, each a module: `policy` (policy types, keys, loading and validation),
//! `normalize`, `engine` (compiled policies, matching, masking: nothing Tencent-specific but
//! the refusal-code check), `classifier`, `verdict` (Tencent's message bodies and
//! before-send replies) and `moderator` (the service with its caches). Everything is
//! re-exported here, so callers use `shared::moderation::…` whatever the module.

mod classifier;
mod engine;
mod moderator;
mod normalize;
mod policy;
mod verdict;

pub use classifier::{CLASSIFIER_MAX_CHARS, ClassifierError, classify};
pub use engine::{Compiled, Engine, mask, merge_spans};
pub use moderator::Moderator;
pub use normalize::{normalize, skipped};
pub use policy::{
    Action, ClassifierFallback, InvalidPolicy, Policy, PolicyError, PolicyReadError, Rule, load_policy, policy_keys,
    read_policy,
};
pub use verdict::{Scope, Verdict};

#[cfg(test)]
use crate::msg::MsgElement;

#[cfg(test)]
pub(crate) fn policy(rules: Vec<(Vec<&str>, Vec<&str>, Action)>) -> Policy {
    Policy {
        rules: rules
            .into_iter()
            .map(|(w, p, action)| Rule {
                words: w.into_iter().map(str::to_owned).collect(),
                patterns: p.into_iter().map(str::to_owned).collect(),
                action,
            })
            .collect(),
        ..Policy::default()
    }
}

#[cfg(test)]
pub(crate) fn text(s: &str) -> Vec<MsgElement> {
    vec![MsgElement::text(s)]
}
