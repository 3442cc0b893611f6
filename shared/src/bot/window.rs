//! The conversation window: which past turns go into the prompt.
//!
//! Three limits, as peer chatbot products expose them: the newest N turns, said within T
//! seconds, and within a token budget. When the window overflows, the oldest turns are dropped
//! in blocks and the start of the window is remembered, so that the prompt's prefix (the
//! byte-stable system prompt followed by the same old turns) stays the same across several
//! messages and providers' prompt caching keeps working.

use crate::store::{Store, StoreError, Turn};
use serde::{Deserialize, Serialize};

/// The window limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_turns: usize,
    pub max_age_secs: u64,
    pub token_budget: usize,
}

/// A rough token count: about four ASCII characters a token, one token per other character
/// (CJK text). Errs on the side of more tokens.
pub fn estimate_tokens(text: &str) -> usize {
    let (ascii, other) =
        text.chars().fold((0usize, 0usize), |(a, o), c| if c.is_ascii() { (a + 1, o) } else { (a, o + 1) });
    ascii.div_ceil(4) + other + 4
}

/// How many turns to drop from the front of `turns` (oldest first) so the rest fit: whole
/// blocks of `block` turns at a time.
pub fn trim_start(turns: &[Turn], limits: Limits, block: usize) -> usize {
    let block = block.max(1);
    let mut tokens: usize = turns.iter().map(|t| estimate_tokens(&t.text)).sum();
    let mut start = 0;
    while start < turns.len() && (turns.len() - start > limits.max_turns || tokens > limits.token_budget) {
        let end = (start + block).min(turns.len());
        tokens -= turns[start..end].iter().map(|t| estimate_tokens(&t.text)).sum::<usize>();
        start = end;
    }
    start
}

#[derive(Serialize, Deserialize)]
struct WindowStart {
    from_ms: u64,
}

fn start_key(conv: &str) -> String {
    crate::keys::window_start(conv)
}

/// Loads the window of `conv` at `now_ms`, moving its remembered start forward when it
/// overflowed.
pub async fn load(store: &dyn Store, conv: &str, limits: Limits, now_ms: u64) -> Result<Vec<Turn>, StoreError> {
    let block = (limits.max_turns / 2).max(2);
    let remembered = match store.get_doc(&start_key(conv)).await? {
        Some(doc) => serde_json::from_str::<WindowStart>(&doc).map(|w| w.from_ms).unwrap_or(0),
        None => 0,
    };
    let since = now_ms.saturating_sub(limits.max_age_secs.saturating_mul(1000)).max(remembered);
    let mut turns = store.recent_turns(conv, since, limits.max_turns + block).await?;
    let drop = trim_start(&turns, limits, block);
    if drop > 0 {
        let from_ms = turns.get(drop).map(|t| t.at_ms).unwrap_or(now_ms);
        let doc = serde_json::json!({ "from_ms": from_ms }).to_string();
        store.put_doc(&start_key(conv), &doc, None).await?;
        turns.drain(..drop);
    }
    Ok(turns)
}

/// Forgets a conversation (`/reset`).
pub async fn reset(store: &dyn Store, conv: &str) -> Result<(), StoreError> {
    store.clear_turns(conv).await?;
    store.delete_doc(&start_key(conv)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn turns(n: usize) -> Vec<Turn> {
        (0..n).map(|i| Turn { at_ms: i as u64, role: Role::User, speaker: None, text: "word ".repeat(4) }).collect()
    }

    #[test]
    fn overflow_drops_whole_blocks() {
        let limits = Limits { max_turns: 10, max_age_secs: 60, token_budget: 10_000 };
        assert_eq!(trim_start(&turns(10), limits, 5), 0);
        assert_eq!(trim_start(&turns(11), limits, 5), 5);
        assert_eq!(trim_start(&turns(15), limits, 5), 5);
        assert_eq!(trim_start(&turns(16), limits, 5), 10);
    }

    #[test]
    fn token_budget_trims_too() {
        let limits = Limits { max_turns: 100, max_age_secs: 60, token_budget: 30 };
        // Each turn is 20 ASCII chars: 5 + 4 = 9 tokens; 3 turns fit in 30.
        let start = trim_start(&turns(8), limits, 2);
        assert_eq!(start, 6);
    }

    #[tokio::test]
    async fn prefix_stays_stable_between_overflows() {
        let store = crate::store::MemoryStore::new();
        let limits = Limits { max_turns: 6, max_age_secs: 3600, token_budget: 10_000 };
        let now = crate::store::now_ms();
        let mut firsts = Vec::new();
        for i in 0..12u64 {
            let t = Turn { at_ms: now - 100_000 + i * 1000, role: Role::User, speaker: None, text: format!("t{i}") };
            store.append_turn("c", &t, 3600).await.ok();
            let w = load(&store, "c", limits, now).await.unwrap_or_default();
            assert!(w.len() <= 6);
            firsts.push(w.first().map(|t| t.text.clone()).unwrap_or_default());
        }
        // The first turn of the window changes only when a block is dropped, not every turn.
        let changes = firsts.windows(2).filter(|p| p[0] != p[1]).count();
        assert_eq!(changes, 2, "{firsts:?}");
        assert_eq!(firsts.last().map(String::as_str), Some("t6"));
    }
}
