//! Moderation of the bot's own answers, in-process, before any of their text is shown.
//!
//! The bot's sends skip the app's before-send callback (they carry `ForbidCallbackControl`),
//! and a streamed answer's later chunks never pass it anyway, so the LLM's text is judged here,
//! by the same policies and engine as the before-send function: masked words are shown masked,
//! and a refusing (or dropping) rule replaces the rest of the answer with the robot's refusal
//! text (`Texts::answer_refused`).
//! A policy's LLM classifier is not asked: an answer is judged as it streams.
//!
//! [`ModeratedSink`] sits between the pump and the real sink. The pump hands it deltas; it
//! keeps the whole answer, judges all of it on every push, and passes on only text that no
//! later delta can change. A word that is not matched yet needs at least one byte that has not
//! arrived, so it can only begin within the last `longest word - 1` bytes of the normalised
//! text (every occurrence of every word is found, overlapping ones too, so a new byte adds
//! matches and changes none found before): those bytes are held back, and so is a masked
//! match that reaches into them. A word split
//! across deltas, or spread over them with spaces, is thus never shown, not even in part.
//!
//! Two limits remain, both about text already finished:
//! - Patterns can match text of any length, so no hold-back covers every pattern. When a
//!   policy has patterns, the last [`PATTERN_WINDOW`] normalised bytes are held back too, and
//!   a masked match already there is held back whole: a pattern match longer than the window
//!   (`\d{100}`, `a.*b`) may have its beginning shown unmasked.
//! - An answer continued in a new message (`TCBOT_OVERFLOW_POLICY=continue`) finishes each
//!   message with all its text. A word cut at that boundary is masked in the new message, but
//!   its beginning is already in the finished one.

use super::sink::{Limits, Sink, SinkError, StreamMode};
use crate::config::ModerateAnswers;
use crate::moderation::{
    Action, Compiled, Engine, PolicyReadError, load_policy, mask, merge_spans, normalize, policy_keys,
};
use crate::store::Store;
use async_trait::async_trait;
use std::sync::Arc;

/// Normalised bytes held back when a policy has patterns: a phone number, an ID card number
/// or an e-mail address fits.
pub const PATTERN_WINDOW: usize = 64;

/// The compiled policies that judge an answer, read once per answer; `None` when answers are
/// not judged (the setting is off, or no policy applies).
///
/// An answer in a group is judged by the app's policy and the group's, as a member's message
/// in that group is; a one-to-one answer by the app's policy alone, as a C2C message is
/// (`moderation::policy_keys`).
pub async fn answer_engine(
    store: &dyn Store,
    setting: ModerateAnswers,
    group_id: Option<&str>,
    cache: &PolicyCache,
) -> Result<Option<Engine>, PolicyReadError> {
    if setting == ModerateAnswers::Off {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for key in policy_keys(group_id) {
        match cache.policy(store, &key).await {
            Ok(p) => parts.extend(p),
            // An invalid policy is skipped in `auto`; a store that cannot say whether a policy
            // exists fails the attempt (retried), never opening the answer unjudged.
            Err(e @ PolicyReadError::Invalid { .. }) if setting == ModerateAnswers::Auto => {
                tracing::error!(policy = %key, error = %e, "answer moderation skips this policy");
            }
            Err(e) => return Err(e),
        }
    }
    Ok((!parts.is_empty()).then(|| Engine::of(parts)))
}

/// The policies a worker compiled, each kept with the document it was compiled from: every
/// answer reads the documents (a changed policy applies to the next answer) but compiles one
/// again only when it changed. Compiling a large policy takes far longer than the read.
#[derive(Clone)]
pub struct PolicyCache(moka::future::Cache<String, (Arc<str>, Arc<Compiled>)>);

impl Default for PolicyCache {
    fn default() -> Self {
        PolicyCache(
            moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(std::time::Duration::from_secs(3_600))
                .build(),
        )
    }
}

impl PolicyCache {
    /// The policy stored under `key`, compiled (`None`: there is none).
    pub async fn policy(&self, store: &dyn Store, key: &str) -> Result<Option<Arc<Compiled>>, PolicyReadError> {
        let Some(doc) =
            store.get_doc(key).await.map_err(|source| PolicyReadError::Store { key: key.to_owned(), source })?
        else {
            return Ok(None);
        };
        if let Some((kept, compiled)) = self.0.get(key).await
            && *kept == *doc
        {
            return Ok(Some(compiled));
        }
        let compiled =
            Arc::new(load_policy(key, &doc).map_err(|error| PolicyReadError::Invalid { key: key.to_owned(), error })?);
        self.0.insert(key.to_owned(), (Arc::from(doc.as_str()), compiled.clone())).await;
        Ok(Some(compiled))
    }
}

/// A whole answer as judged: masked, or `refusal`. This is what the conversation remembers.
pub fn judge_answer(engine: &Engine, text: &str, refusal: &str) -> String {
    let found = engine.find(text);
    if found.iter().any(|(action, _)| action.blocks()) {
        return refusal.to_owned();
    }
    mask(text, masked_spans(&found))
}

/// The masked matches' byte ranges, merged ([`merge_spans`]: disjoint and sorted).
fn masked_spans(found: &[(&Action, (usize, usize))]) -> Vec<(usize, usize)> {
    merge_spans(found.iter().filter(|(a, _)| **a == Action::Mask).map(|(_, span)| *span).collect())
}

/// A [`Sink`] that judges the text before passing it on to `inner`.
pub struct ModeratedSink<'a> {
    inner: &'a mut dyn Sink,
    engine: &'a Engine,
    /// Shown in place of a refused answer.
    refusal: &'a str,
    max_message_bytes: usize,
    /// Normalised bytes at the end of the answer that are not passed on yet.
    hold: usize,
    /// The answer so far, as the LLM wrote it (every message of it).
    text: String,
    /// How much of `text` has been passed on.
    passed: usize,
    masked: bool,
    refused: bool,
}

impl<'a> ModeratedSink<'a> {
    /// Judges what goes to `inner` with `engine`, compiled once for the whole answer; a refused
    /// answer ends with `refusal`.
    pub fn new(inner: &'a mut dyn Sink, engine: &'a Engine, refusal: &'a str, max_message_bytes: usize) -> Self {
        let words = engine.longest_word().saturating_sub(1);
        let hold = if engine.has_patterns() { words.max(PATTERN_WINDOW) } else { words };
        ModeratedSink {
            inner,
            engine,
            refusal,
            max_message_bytes,
            hold,
            text: String::new(),
            passed: 0,
            masked: false,
            refused: false,
        }
    }

    /// Where the text that no later delta can change ends: before the held-back bytes, and
    /// before a masked match that reaches into them.
    fn settled(&self, masks: &[(usize, usize)]) -> usize {
        let (norm, map) = normalize(&self.text);
        let mut end = match norm.len().checked_sub(self.hold) {
            Some(keep) if keep < norm.len() => map[keep].0,
            Some(_) => self.text.len(),
            None => 0,
        };
        // The masks are merged, so one can reach across `end` at most.
        if let Some(&(start, _)) = masks.iter().find(|&&(s, e)| s < end && end < e) {
            end = start;
        }
        end.max(self.passed)
    }

    /// Ends the answer with the refusal. What was shown of a streamed message stays (a robot
    /// stream cannot be taken back); when nothing of the message has reached the user, the
    /// refusal is the whole message.
    async fn refuse(&mut self) -> Result<Option<String>, SinkError> {
        self.refused = true;
        tracing::info!(verdict = "refuse", "answer refused by moderation");
        let mut text = format!("\n\n{}", self.refusal);
        if !self.inner.is_open() || self.inner.message_bytes() + text.len() > self.max_message_bytes {
            // Also drops text a group answer sent once at the end has buffered but not sent.
            self.inner.next_message();
            text = self.refusal.to_owned();
        }
        self.inner.push(&text, true).await
    }
}

#[async_trait]
impl Sink for ModeratedSink<'_> {
    fn mode(&self) -> StreamMode {
        self.inner.mode()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn keep_alive(&mut self) -> Result<(), SinkError> {
        self.inner.keep_alive().await
    }
    fn shown(&self) -> bool {
        self.inner.shown()
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        if self.refused {
            // The answer is over for the user; the pump may still be reading the LLM.
            return Ok(None);
        }
        self.text.push_str(delta);
        let found = self.engine.find(&self.text);
        if found.iter().any(|(action, _)| action.blocks()) {
            return self.refuse().await;
        }
        let masks = masked_spans(&found);
        let end = if finish { self.text.len() } else { self.settled(&masks) };
        if end == self.passed && !finish {
            return Ok(None);
        }
        let from = self.passed;
        let spans: Vec<(usize, usize)> = masks
            .iter()
            .map(|&(s, e)| (s.max(from), e.min(end)))
            .filter(|(s, e)| s < e)
            .map(|(s, e)| (s - from, e - from))
            .collect();
        if !spans.is_empty() && !self.masked {
            self.masked = true;
            tracing::info!(verdict = "mask", "answer masked by moderation");
        }
        let out = mask(&self.text[from..end], spans);
        let opened = self.inner.push(&out, finish).await?;
        self.passed = end;
        Ok(opened)
    }
    fn message_bytes(&self) -> usize {
        // Held-back text counts: it will be in this message, and masking never makes text
        // longer. After a refusal nothing more is added anywhere, and a size that stayed over
        // the limit would make the pump start new messages for ever.
        if self.refused { 0 } else { self.inner.message_bytes() + (self.text.len() - self.passed) }
    }
    fn is_open(&self) -> bool {
        !self.refused && self.inner.is_open()
    }
    fn next_message(&mut self) {
        if !self.refused {
            self.inner.next_message();
        }
    }
    fn calls(&self) -> u32 {
        self.inner.calls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::sink::testing::RecordingSink;
    use crate::moderation::{Policy, Rule};
    use crate::store::MemoryStore;
    use crate::tencent::*;
    use std::sync::{Arc, Mutex};

    /// The refusal the sinks under test are given.
    const REFUSED: &str = "(refused)";

    fn engine(rules: &[(&[&str], &[&str], Action)]) -> Engine {
        let rules = rules
            .iter()
            .map(|(w, p, action)| Rule {
                words: w.iter().map(|s| s.to_string()).collect(),
                patterns: p.iter().map(|s| s.to_string()).collect(),
                action: action.clone(),
            })
            .collect();
        Engine::compile(&[Policy { rules, ..Policy::default() }]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Pushes `parts` as the pump would, the last one finishing, checking on every call that
    /// what the user has is a prefix of `want`. Returns what the user was shown.
    async fn stream(engine: &Engine, parts: &[&str], want: &str) -> String {
        let mut rec = RecordingSink { prefix_of: Some(want.to_owned()), ..RecordingSink::default() };
        let mut sink = ModeratedSink::new(&mut rec, engine, REFUSED, 12_000);
        for (i, part) in parts.iter().enumerate() {
            let r = sink.push(part, i + 1 == parts.len()).await;
            assert!(r.is_ok(), "{r:?}");
        }
        rec.shown()
    }

    /// Every way of cutting `text` into three deltas, cut at character boundaries.
    fn splits(text: &str) -> Vec<[&str; 3]> {
        let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let mut out = Vec::new();
        for (n, &a) in cuts.iter().enumerate() {
            for &b in &cuts[n..] {
                out.push([&text[..a], &text[a..b], &text[b..]]);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_masked_word_split_at_any_point_never_reaches_the_sink_unmasked() {
        let e = engine(&[(&["badword", "bad"], &[], Action::Mask), (&["hello"], &[], Action::Allow)]);
        let cases = [
            ("say badword now, hello", "say ******* now, hello"),
            ("a b a d w o r d!", "a *******!"),
            ("ＢＡＤ and Bad", "*** and ***"),
            ("bad", "***"),
        ];
        for (text, want) in cases {
            assert_eq!(judge_answer(&e, text, REFUSED), want);
            for parts in splits(text) {
                assert_eq!(stream(&e, &parts, want).await, want, "{parts:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_pattern_split_across_deltas_is_masked() {
        let e = engine(&[(&[], &[r"\d{11}"], Action::Mask)]);
        let (text, want) = ("call 13800138000 now", "call *********** now");
        for parts in splits(text) {
            assert_eq!(stream(&e, &parts, want).await, want, "{parts:?}");
        }
    }

    #[tokio::test]
    async fn text_is_passed_on_while_the_answer_streams() {
        let e = engine(&[(&["bad"], &[], Action::Mask)]);
        let mut rec = RecordingSink::default();
        let mut sink = ModeratedSink::new(&mut rec, &e, REFUSED, 12_000);
        let r = sink.push("Hello there, this is fine", false).await;
        assert_eq!(r.ok().flatten().as_deref(), Some("m0"), "the first call passed on opens the message");
        assert_eq!(sink.message_bytes(), "Hello there, this is fine".len(), "held-back text counts");
        assert_eq!(sink.calls(), 1);
        assert_eq!(rec.shown(), "Hello there, this is fi", "only the last two bytes are held back");
    }

    #[tokio::test]
    async fn a_refusing_word_ends_the_answer_with_the_refusal_and_no_piece_of_it_is_shown() {
        let e = engine(&[(&["scam"], &[], Action::Refuse), (&["spam"], &[], Action::Drop)]);
        for word in ["scam", "spam"] {
            let mut rec = RecordingSink::default();
            let mut sink = ModeratedSink::new(&mut rec, &e, REFUSED, 12_000);
            let parts = ["This part is fine. And this s", &word[1..], " is not.", " More text."];
            for (i, part) in parts.iter().enumerate() {
                assert!(sink.push(part, i + 1 == parts.len()).await.is_ok());
            }
            assert_eq!((sink.is_open(), sink.message_bytes()), (false, 0), "the answer is over");
            sink.next_message();
            let pushes = rec.pushes.clone();
            assert_eq!(pushes.last(), Some(&(format!("\n\n{REFUSED}"), true)), "{pushes:?}");
            assert_eq!(pushes.iter().filter(|(_, f)| *f).count(), 1, "{pushes:?}");
            // "scam" is 4 bytes: the 3 before the end are held back, so not even its "s" is shown.
            assert_eq!(rec.shown(), format!("This part is fine. And th\n\n{REFUSED}"));
            assert_eq!(judge_answer(&e, &parts.concat(), REFUSED), REFUSED);
        }
        // Refused before anything was shown: the refusal is the whole message.
        let mut rec = RecordingSink::default();
        let mut sink = ModeratedSink::new(&mut rec, &e, REFUSED, 12_000);
        assert!(sink.push("Scam", false).await.is_ok());
        assert_eq!(rec.pushes, [(REFUSED.to_owned(), true)]);
    }

    /// The group API, recording the text of each message sent.
    #[derive(Default)]
    struct Group(Mutex<Vec<String>>);

    #[async_trait]
    impl ChatApi for Group {
        async fn send_msg(&self, _: &SendMsg) -> Result<SendMsgReply, RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn send_stream_msg(&self, _: &SendStreamMsg) -> Result<SendStreamMsgReply, RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn send_group_msg(&self, req: &SendGroupMsg) -> Result<SendGroupMsgReply, RestError> {
            let text = crate::msg::joined_text(&req.msg_body).unwrap_or_default();
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(text);
            Ok(SendGroupMsgReply { msg_time: None, msg_seq: Some(1) })
        }
        async fn send_c2c_stream_msg(&self, _: &SendC2cStreamMsg) -> Result<StreamMsgReply, RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn send_group_stream_msg(&self, _: &SendGroupStreamMsg) -> Result<StreamMsgReply, RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn modify_c2c_msg(&self, _: &ModifyC2cMsg) -> Result<(), RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn modify_group_msg(&self, _: &ModifyGroupMsg) -> Result<(), RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
        async fn create_topic(&self, _: &CreateTopic) -> Result<CreateTopicReply, RestError> {
            Err(RestError::Timeout { call: "unused" })
        }
    }

    #[tokio::test]
    async fn a_refusal_replaces_the_whole_of_a_group_answer_sent_once_at_the_end() {
        let e = engine(&[(&["scam"], &[], Action::Refuse)]);
        let api = Arc::new(Group::default());
        let job = crate::bot::job::testing::job("@RBT#1", "ann", Some(("@TGS#g", None)), "1", "hi");
        let outbound = crate::tencent::sinks::TencentOutbound::new(api.clone(), 12_000, std::time::Duration::ZERO);
        let mut group = crate::bot::sink::Outbound::open(&outbound, &job, StreamMode::Final, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sink = ModeratedSink::new(group.as_mut(), &e, REFUSED, 12_000);
        for (part, finish) in [("Fine text first, then a sc", false), ("am", false), (" and more.", true)] {
            assert!(sink.push(part, finish).await.is_ok());
        }
        let sent = api.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(sent, [format!("@ann {REFUSED}")]);
    }

    #[tokio::test]
    async fn a_policy_is_compiled_again_only_when_its_document_changes() {
        let store = MemoryStore::new();
        let cache = PolicyCache::default();
        let key = Policy::app_key();
        let put = |word: &str| {
            let doc = format!(r#"{{"rules":[{{"words":["{word}"],"action":{{"kind":"mask"}}}}]}}"#);
            let (store, key) = (&store, key.clone());
            async move { store.put_doc(&key, &doc, None).await.unwrap_or_else(|e| panic!("{e}")) }
        };
        assert!(matches!(cache.policy(&store, &key).await, Ok(None)));
        put("apple").await;
        let first = cache.policy(&store, &key).await.ok().flatten().unwrap_or_else(|| panic!("no policy"));
        let again = cache.policy(&store, &key).await.ok().flatten().unwrap_or_else(|| panic!("no policy"));
        assert!(Arc::ptr_eq(&first, &again), "the same document: the same compiled policy");
        put("grape").await;
        let changed = cache.policy(&store, &key).await.ok().flatten().unwrap_or_else(|| panic!("no policy"));
        assert!(!Arc::ptr_eq(&first, &changed), "a changed document is compiled again");
        let engine = Engine::of(vec![changed]);
        assert_eq!(judge_answer(&engine, "apple grape", REFUSED), "apple *****");
        store.delete_doc(&key).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cache.policy(&store, &key).await, Ok(None)), "a deleted policy no longer judges");
    }

    #[tokio::test]
    async fn answers_are_judged_by_the_app_policy_and_in_a_group_by_the_groups_too() {
        let store = MemoryStore::new();
        let put = |key: String, word: &str| {
            let doc = format!(r#"{{"rules":[{{"words":["{word}"],"action":{{"kind":"mask"}}}}]}}"#);
            let store = &store;
            async move { store.put_doc(&key, &doc, None).await.unwrap_or_else(|e| panic!("{e}")) }
        };
        use ModerateAnswers::{Auto, Off, On};
        assert!(
            matches!(answer_engine(&store, Auto, Some("g"), &PolicyCache::default()).await, Ok(None)),
            "no policy, nothing to judge"
        );
        put(Policy::app_key(), "apple").await;
        put(Policy::group_key("g"), "grape").await;
        let judged = |e: Option<Engine>| e.map(|e| judge_answer(&e, "apple grape", REFUSED));
        let c2c = answer_engine(&store, Auto, None, &PolicyCache::default()).await.map(judged);
        assert_eq!(c2c.ok().flatten().as_deref(), Some("***** grape"));
        let group = answer_engine(&store, Auto, Some("g"), &PolicyCache::default()).await.map(judged);
        assert_eq!(group.ok().flatten().as_deref(), Some("***** *****"));
        assert!(matches!(answer_engine(&store, Off, Some("g"), &PolicyCache::default()).await, Ok(None)));
        // An invalid policy: skipped in auto, an error (not worth retrying) when required.
        store.put_doc(&Policy::group_key("g"), "{not json", None).await.unwrap_or_else(|e| panic!("{e}"));
        let auto = answer_engine(&store, Auto, Some("g"), &PolicyCache::default()).await.map(judged);
        assert_eq!(auto.ok().flatten().as_deref(), Some("***** grape"));
        let on = answer_engine(&store, On, Some("g"), &PolicyCache::default()).await;
        assert!(on.as_ref().is_err_and(|e| !e.is_retryable()), "{:?}", on.map(|e| e.is_some()));
    }
}
