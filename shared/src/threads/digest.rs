//! Thread digests: how many messages a thread has and which was the last, counted exactly once
//! per message, and shown on the thread's root message.
//!
//! **Exactly once.** A message is counted in the bucket of its `MsgSeq` (1000 seqs a bucket)
//! with the store's `count_once`, which gives the n-th distinct seq of a bucket the count n,
//! and the same n whenever that seq comes again. The digest keeps, per bucket, the largest n
//! seen, and its count is their sum: a redelivered message changes nothing, a message whose
//! digest update failed after it was counted sets the same n when it comes back, and messages
//! may arrive in any order. The last message is the one with the greatest (`MsgTime`, `MsgSeq`).
//!
//! **The root message** gets the digest in its `CloudCustomData` (`modify_group_msg`), which
//! replaces what the root message had there:
//!
//! ```json
//! {"thread": {"v": 1, "id": "@TGS#2thread", "count": 50,
//!             "last": {"from": "alice", "text": "see you then", "time": 1700000050, "seq": 150}}}
//! ```
//!
//! `time` is Tencent's `MsgTime` (unix seconds) and `text` the text elements joined, cut to
//! `TCBOT_THREAD_TEXT_CHARS` characters with `…` (`[image]`, `[custom]`, … for other messages).
//!
//! **Coalescing.** The root message is edited at most once per window (`TCBOT_THREAD_EDIT_WINDOW_SECS`):
//! the first message of a window claims it and edits at once; later ones in the window schedule
//! one delayed edit (a [`super::FLUSH_COMMAND`] record on the statistics queue, delayed past the
//! window), which reads the digest as it then is. An edit that Tencent answers with 20027 or
//! 20028 (20028: a concurrent modification, protocol doc §4.6; 20027 is named with it by the
//! issue this implements, its exact meaning UNCONFIRMED) is tried again a few times; one that
//! still fails frees the window and fails the record, for SQS to deliver again.

use super::{Threads, from_json, keys, read_json, to_json};
use crate::event_worker::{EventError, parse};
use crate::msg::{MsgElement, joined_text};
use crate::queue::QueueError;
use crate::store::now_ms;
use crate::tencent::groups::ModifyGroupMsgData;
use crate::webhook::events::GroupSendMsg;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `MsgSeq`s per counting bucket.
pub const BUCKET: u64 = 1000;
/// Tencent's codes for a modification that may succeed when tried again.
pub const MODIFY_RETRY_CODES: [i64; 2] = [20027, 20028];
/// Attempts of one root-message edit.
const EDIT_ATTEMPTS: u32 = 4;

/// The newest message of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMessage {
    pub from: String,
    pub text: String,
    /// `MsgTime`, unix seconds.
    pub time: u64,
    pub seq: u64,
}

/// A thread's digest as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub count: u64,
    /// Bucket (`MsgSeq / 1000`) → distinct messages counted in it.
    #[serde(default)]
    pub buckets: BTreeMap<u64, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastMessage>,
    /// Grows with every change, so that an edit knows whether the root already shows it.
    #[serde(default)]
    pub version: u64,
}

impl Digest {
    /// The digest with a message counted (its bucket at least `n`) and `last` considered;
    /// `None` when nothing changes.
    pub fn with(&self, bucket: u64, n: u64, last: &LastMessage) -> Option<Digest> {
        let mut d = self.clone();
        let slot = d.buckets.entry(bucket).or_insert(0);
        let counted = n > *slot;
        *slot = (*slot).max(n);
        let newer = d.last.as_ref().is_none_or(|l| (last.time, last.seq) > (l.time, l.seq));
        if newer {
            d.last = Some(last.clone());
        }
        if !counted && !newer {
            return None;
        }
        d.count = d.buckets.values().sum();
        d.version += 1;
        Some(d)
    }

    /// The root message's `CloudCustomData` (the module's documented shape).
    pub fn cloud_custom_data(&self, thread: &str) -> String {
        serde_json::json!({ "thread": { "v": 1, "id": thread, "count": self.count, "last": self.last } }).to_string()
    }
}

/// A message's text for a digest: its text elements, or the kind of message, cut to `chars`.
pub fn short_text(body: &[MsgElement], chars: usize) -> String {
    let text = joined_text(body).unwrap_or_else(|| match body.first() {
        Some(MsgElement::Custom(_)) => "[custom]".into(),
        Some(MsgElement::Other { msg_type, .. }) => {
            format!("[{}]", msg_type.trim_start_matches("TIM").trim_end_matches("Elem").to_ascii_lowercase())
        }
        _ => String::new(),
    });
    let text = text.trim();
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// Delays a root-message edit: the port of the flush queue.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Asks for a [`super::FLUSH_COMMAND`] for `thread` after `delay`.
    async fn flush_later(&self, thread: &str, delay: Duration) -> Result<(), QueueError>;
}

/// The SQS adapter: a record on the statistics queue, delayed with `DelaySeconds`.
pub struct SqsScheduler {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsScheduler {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        SqsScheduler { client, queue_url }
    }
}

#[async_trait]
impl Scheduler for SqsScheduler {
    async fn flush_later(&self, thread: &str, delay: Duration) -> Result<(), QueueError> {
        let body = serde_json::json!({
            "command": super::FLUSH_COMMAND,
            "request_id": format!("flush-{}", now_ms()),
            "body": { "GroupId": thread },
        });
        // SQS delays a message at most 15 minutes, in whole seconds.
        let secs = i32::try_from(delay.as_secs_f64().ceil().min(900.0) as u64).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body.to_string())
            .delay_seconds(secs)
            .send()
            .await
            .map_err(|e| QueueError {
                queue: self.queue_url.clone(),
                reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }
}

/// The body of a flush record.
#[derive(Deserialize)]
struct Flush {
    #[serde(rename = "GroupId")]
    group_id: String,
}

impl Threads {
    /// The window claim lasts a second longer than the window: claims expire on whole seconds,
    /// so this keeps two edits at least a full window apart.
    fn window_claim_secs(&self) -> u64 {
        self.settings.edit_window.as_secs().max(1) + 1
    }

    /// `Group.CallbackAfterSendMsg`: counts a thread's message and updates its root message.
    pub(super) async fn message(&self, body: &serde_json::Value) -> Result<Option<&'static str>, EventError> {
        let m: GroupSendMsg = parse(body)?;
        let Some(info) = self.thread(&m.group_id).await? else {
            return Ok(None);
        };
        let Some(seq) = m.msg_seq else {
            return Err(EventError::Malformed("MsgSeq is missing".into()));
        };
        let bucket = seq / BUCKET;
        let n = self.store.count_once(&keys::seen(&info.thread, bucket), &seq.to_string(), None).await?;
        let n = u64::try_from(n).unwrap_or(0);
        let last = LastMessage {
            from: m.from_account.clone(),
            text: short_text(&m.msg_body, self.settings.text_chars),
            time: m.msg_time.unwrap_or_else(|| now_ms() / 1000),
            seq,
        };
        let key = keys::digest(&info.thread);
        let mut changed = false;
        let mut done = false;
        for _ in 0..super::CAS_ATTEMPTS {
            let old = self.store.get_doc(&key).await?;
            let digest: Digest = match &old {
                Some(doc) => from_json(doc, &key)?,
                None => Digest::default(),
            };
            let Some(new) = digest.with(bucket, n, &last) else {
                done = true;
                break;
            };
            if self.store.put_doc_if(&key, old.as_deref(), &to_json(&new)?, None).await? {
                changed = true;
                done = true;
                break;
            }
        }
        if !done {
            return Err(EventError::Contended(key));
        }
        if info.root_seq.is_some() {
            self.update_root(&info.thread).await?;
        }
        Ok(Some(if changed { "thread_message_counted" } else { "duplicate" }))
    }

    /// Edits the root message now if the window is free, else makes sure one delayed edit is
    /// pending.
    async fn update_root(&self, thread: &str) -> Result<(), EventError> {
        let secs = self.window_claim_secs();
        if self.store.claim(&keys::edit(thread), secs).await? {
            return self.edit_root(thread).await;
        }
        if let Some(scheduler) = &self.scheduler
            && self.store.claim(&keys::flush(thread), secs).await?
            && let Err(e) = scheduler.flush_later(thread, Duration::from_secs(secs)).await
        {
            self.store.release(&keys::flush(thread)).await?;
            return Err(EventError::Malformed(format!("could not schedule the digest edit: {e}")));
        }
        Ok(())
    }

    /// A delayed edit: edits if the window is free, else waits for the next one.
    pub(super) async fn flush(&self, body: &serde_json::Value) -> Result<Option<&'static str>, EventError> {
        let f: Flush = parse(body)?;
        if self.thread(&f.group_id).await?.is_none() {
            return Ok(None);
        }
        let secs = self.window_claim_secs();
        if self.store.claim(&keys::edit(&f.group_id), secs).await? {
            self.edit_root(&f.group_id).await?;
            return Ok(Some("thread_root_edited"));
        }
        if let Some(scheduler) = &self.scheduler {
            scheduler
                .flush_later(&f.group_id, Duration::from_secs(secs))
                .await
                .map_err(|e| EventError::Malformed(format!("could not schedule the digest edit: {e}")))?;
        }
        Ok(Some("thread_root_edit_deferred"))
    }

    /// Writes the digest to the root message, unless it already shows this version. Called
    /// with the window claimed; a failure frees it.
    async fn edit_root(&self, thread: &str) -> Result<(), EventError> {
        let result = self.try_edit_root(thread).await;
        if result.is_err() {
            self.store.release(&keys::edit(thread)).await?;
        }
        result
    }

    async fn try_edit_root(&self, thread: &str) -> Result<(), EventError> {
        let Some(info) = self.thread(thread).await? else {
            return Ok(());
        };
        let Some(root_seq) = info.root_seq else {
            return Ok(());
        };
        let Some(digest) = read_json::<Digest>(self.store.as_ref(), &keys::digest(thread)).await? else {
            return Ok(());
        };
        let edited: Option<u64> = read_json(self.store.as_ref(), &keys::edited(thread)).await?;
        if edited.is_some_and(|v| v >= digest.version) {
            return Ok(());
        }
        let req = ModifyGroupMsgData {
            group_id: info.server.clone(),
            msg_seq: root_seq,
            cloud_custom_data: digest.cloud_custom_data(thread),
            topic_id: info.channel.clone(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.groups.modify_group_msg_data(&req).await {
                Ok(()) => break,
                Err(e) if attempt < EDIT_ATTEMPTS && e.code().is_some_and(|c| MODIFY_RETRY_CODES.contains(&c)) => {
                    tracing::info!(thread, attempt, error = %e, "root message edit retried");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.set_edited(thread, digest.version).await?;
        tracing::info!(thread, count = digest.count, version = digest.version, "thread root message edited");
        // A message counted while the edit was in flight (an edit may outlast its window): one
        // more edit after the window, so the root does not stay behind.
        let now: Option<Digest> = read_json(self.store.as_ref(), &keys::digest(thread)).await?;
        if now.is_some_and(|d| d.version > digest.version)
            && let Some(scheduler) = &self.scheduler
        {
            let secs = self.window_claim_secs();
            if self.store.claim(&keys::flush(thread), secs).await?
                && let Err(e) = scheduler.flush_later(thread, Duration::from_secs(secs)).await
            {
                self.store.release(&keys::flush(thread)).await?;
                tracing::warn!(thread, error = %e, "could not schedule the next digest edit; the next message brings it");
            }
        }
        Ok(())
    }

    /// Records that the root shows digest `version`, never lowering it: of two edits that
    /// overlapped, the older one finishing last does not make the root look older than it is.
    pub(super) async fn set_edited(&self, thread: &str, version: u64) -> Result<(), EventError> {
        let key = keys::edited(thread);
        for _ in 0..super::CAS_ATTEMPTS {
            let old = self.store.get_doc(&key).await?;
            if old.as_deref().and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|v| v >= version) {
                return Ok(());
            }
            if self.store.put_doc_if(&key, old.as_deref(), &version.to_string(), None).await? {
                return Ok(());
            }
        }
        Err(EventError::Contended(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(seq: u64, time: u64) -> LastMessage {
        LastMessage { from: "a".into(), text: "t".into(), time, seq }
    }

    #[test]
    fn a_message_counts_once_in_any_order_and_the_newest_is_last() {
        let d = Digest::default().with(0, 1, &last(5, 100)).unwrap_or_default();
        let d = d.with(0, 2, &last(3, 90)).unwrap_or_default();
        assert_eq!((d.count, d.last.as_ref().map(|l| l.seq)), (2, Some(5)));
        // The same message again (same n, not newer): nothing changes.
        assert_eq!(d.with(0, 2, &last(3, 90)), None);
        let d2 = d.with(1, 1, &last(1001, 200)).unwrap_or_default();
        assert_eq!((d2.count, d2.version), (3, d.version + 1));
    }

    #[test]
    fn short_text_is_cut_with_a_mark_and_names_other_kinds() {
        let body = vec![MsgElement::text("héllo wörld, this is long")];
        assert_eq!(short_text(&body, 8), "héllo w…");
        assert_eq!(short_text(&body, 100), "héllo wörld, this is long");
        let img = vec![MsgElement::Other { msg_type: "TIMImageElem".into(), content: serde_json::json!({}) }];
        assert_eq!(short_text(&img, 10), "[image]");
    }

    #[test]
    fn cloud_custom_data_has_the_documented_shape() {
        let d = Digest::default().with(0, 1, &last(7, 1_700_000_000)).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&d.cloud_custom_data("@TGS#t")).unwrap_or_default();
        assert_eq!(v["thread"]["v"], 1);
        assert_eq!(v["thread"]["id"], "@TGS#t");
        assert_eq!(v["thread"]["count"], 1);
        assert_eq!(
            v["thread"]["last"],
            serde_json::json!({"from": "a", "text": "t", "time": 1_700_000_000u64, "seq": 7})
        );
    }
}
