//! The matching engine: a policy compiled into one Aho-Corasick automaton for its words and
//! one `RegexSet` for its patterns, searched over normalised text (every match, overlapping
//! ones too), and the masking of what matched. It knows text and byte ranges, not a chat
//! platform's messages.

use super::normalize::{normalize, skipped};
use super::policy::{Action, ClassifierFallback, Policy, PolicyError};
use super::verdict::Scope;
use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexSet};
use std::sync::Arc;

/// One policy, compiled: its words in one Aho-Corasick automaton, its patterns in one
/// `RegexSet`.
pub struct Compiled {
    words: Option<AhoCorasick>,
    word_rule: Vec<usize>,
    patterns: RegexSet,
    pattern_regex: Vec<Regex>,
    pattern_rule: Vec<usize>,
    actions: Vec<Action>,
    /// Bytes of the longest normalised word.
    longest_word: usize,
    /// The classifier's fallback when the policy asks the classifier.
    classify: Option<ClassifierFallback>,
    judge_custom: bool,
}

impl Compiled {
    /// Compiles one policy.
    pub fn new(policy: &Policy) -> Result<Compiled, PolicyError> {
        let (mut words, mut word_rule, mut pats, mut pattern_rule) = (vec![], vec![], vec![], vec![]);
        for (idx, r) in policy.rules.iter().enumerate() {
            if r.words.iter().all(|w| normalize(w).0.is_empty()) && r.patterns.is_empty() {
                return Err(PolicyError::Empty { rule: idx });
            }
            if let Action::RefuseWith { code, .. } = r.action
                && ![Scope::Group, Scope::C2c].iter().any(|s| s.custom_codes().contains(&code))
            {
                return Err(PolicyError::Code { rule: idx, code });
            }
            for w in &r.words {
                let n = normalize(w).0;
                if !n.is_empty() {
                    words.push(n);
                    word_rule.push(idx);
                }
            }
            for pat in &r.patterns {
                Regex::new(pat).map_err(|e| PolicyError::Pattern {
                    rule: idx,
                    pattern: pat.clone(),
                    why: e.to_string(),
                })?;
                pats.push(pat.clone());
                pattern_rule.push(idx);
            }
        }
        let words_ac = if words.is_empty() {
            None
        } else {
            Some(
                // Standard semantics, for overlapping search: every occurrence of every word.
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&words)
                    .map_err(|e| PolicyError::Build(e.to_string()))?,
            )
        };
        let longest_word = words.iter().map(String::len).max().unwrap_or(0);
        let patterns = RegexSet::new(&pats).map_err(|e| PolicyError::Build(e.to_string()))?;
        let pattern_regex = pats.iter().filter_map(|p| Regex::new(p).ok()).collect();
        Ok(Compiled {
            words: words_ac,
            word_rule,
            patterns,
            pattern_regex,
            pattern_rule,
            actions: policy.rules.iter().map(|r| r.action.clone()).collect(),
            longest_word,
            classify: policy.classify.then_some(policy.classifier_fallback),
            judge_custom: policy.judge_custom,
        })
    }

    /// How many rules the policy has.
    pub fn rules(&self) -> usize {
        self.actions.len()
    }

    /// The rules that match normalised text, as (action, normalised byte range) pairs.
    fn matches<'a>(&'a self, norm: &str, out: &mut Vec<(&'a Action, (usize, usize))>) {
        if let Some(ac) = &self.words {
            // All matches, overlapping ones too: in `坏人好`, both `坏人` and `人好`.
            for m in ac.find_overlapping_iter(norm) {
                out.push((&self.actions[self.word_rule[m.pattern().as_usize()]], (m.start(), m.end())));
            }
        }
        for i in self.patterns.matches(norm).iter() {
            for m in self.pattern_regex[i].find_iter(norm).filter(|m| !m.is_empty()) {
                out.push((&self.actions[self.pattern_rule[i]], (m.start(), m.end())));
            }
        }
    }
}

/// The compiled policies that judge a message (the app's, and in a group the group's).
#[derive(Clone, Default)]
pub struct Engine {
    parts: Vec<Arc<Compiled>>,
}

impl Engine {
    /// Compiles policies, each on its own.
    pub fn compile(policies: &[Policy]) -> Result<Engine, PolicyError> {
        let parts = policies.iter().map(|p| Compiled::new(p).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(Engine { parts })
    }

    /// Policies compiled before (and kept, see [`Moderator`]).
    pub fn of(parts: Vec<Arc<Compiled>>) -> Engine {
        Engine { parts }
    }

    /// When a policy asks the LLM classifier too, what decides if it gives no verdict: refuse
    /// when any such policy says so.
    pub fn classifier_fallback(&self) -> Option<ClassifierFallback> {
        self.parts.iter().filter_map(|p| p.classify).min()
    }

    /// Bytes of the longest word, normalised (0 without words).
    pub fn longest_word(&self) -> usize {
        self.parts.iter().map(|p| p.longest_word).max().unwrap_or(0)
    }

    /// Whether any rule has patterns (whose matches have no length limit).
    pub fn has_patterns(&self) -> bool {
        self.parts.iter().any(|p| !p.pattern_rule.is_empty())
    }

    /// Every match in `text`: the action of its rule and the byte range of `text` it covers.
    pub fn find(&self, text: &str) -> Vec<(&Action, (usize, usize))> {
        self.find_in(text, false)
    }

    /// [`Engine::find`], by the policies that judge custom elements only when `custom`.
    pub(super) fn find_in(&self, text: &str, custom: bool) -> Vec<(&Action, (usize, usize))> {
        let (norm, map) = normalize(text);
        let mut out = Vec::new();
        for p in self.parts.iter().filter(|p| p.judge_custom || !custom) {
            p.matches(&norm, &mut out);
        }
        out.into_iter().map(|(action, (s, e))| (action, (map[s].0, map[e - 1].1))).collect()
    }

    /// Whether a policy judges the text of custom elements too.
    pub(super) fn judges_custom(&self) -> bool {
        self.parts.iter().any(|p| p.judge_custom)
    }
}

/// Byte ranges sorted and merged where they overlap or touch, so that they are disjoint.
pub fn merge_spans(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `text` with every byte range of `spans` (merged first) replaced by one `*` per visible
/// (not [`skipped`]) character of it.
pub fn mask(text: &str, spans: Vec<(usize, usize)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in merge_spans(spans) {
        if s >= e || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        out.push_str(&text[at..s]);
        out.extend(text[s..e].chars().filter(|c| !skipped(*c)).map(|_| '*'));
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::policy;

    #[test]
    fn bad_policies_are_refused_with_reasons() {
        let bad_pattern = policy(vec![(vec![], vec!["("], Action::Refuse)]);
        assert!(matches!(Engine::compile(&[bad_pattern]), Err(PolicyError::Pattern { rule: 0, .. })));
        let bad_code = policy(vec![(vec!["x"], vec![], Action::RefuseWith { code: 5, text: String::new() })]);
        assert_eq!(Engine::compile(&[bad_code]).err(), Some(PolicyError::Code { rule: 0, code: 5 }));
        let empty = policy(vec![(vec![" "], vec![], Action::Refuse)]);
        assert_eq!(Engine::compile(&[empty]).err(), Some(PolicyError::Empty { rule: 0 }));
    }

    #[test]
    fn overlapping_masks_are_masked_once() {
        assert_eq!(merge_spans(vec![(2, 5), (7, 8), (1, 4), (5, 6)]), vec![(1, 6), (7, 8)]);
        assert_eq!(mask("abcdef", vec![(2, 5), (1, 4)]), "a****f");
        assert_eq!(mask("ＢＡＤ day", vec![(0, 9), (3, 13)]), "******");
        assert_eq!(mask("a b", vec![]), "a b");
    }
}
