//! NIM's side of the outbound port: one [`Sink`] per way NIM can show an answer.
//!
//! - `native_stream` ([`StreamSink`]): v2 `stream_message`, deltas numbered from 0, the first
//!   reply's `message_server_id` sent on every later call, `finish` once; a keep-alive before
//!   NIM's 30 s gap ends the stream. In teams only when the app has live stream delivery to all
//!   members (`TCBOT_NIM_TEAM_STREAMING`); elsewhere a team answer is sent once, complete, since
//!   live chunks would reach the asker alone (nim-protocol.md §3).
//! - `final` ([`SendSink`]): one v2 send of the complete answer. NIM cannot modify a sent
//!   message, so `modify` is served the same way.
//! - `robot_stream`: refused, NIM has none.
//!
//! Team answers mention the asker ([`AskerMention`]); every send turns message-copy routing
//! off, so our own answers do not come back to the router (which also ignores robot senders).

use super::api::{AskerMention, ConversationId, OutgoingText, SentMessage};
use super::client::{NimApi, NimError, STREAM_MAX_CHARS, STREAM_MAX_GAP, StreamWriter};
use super::jobs;
use crate::bot::job::Job;
use crate::bot::sink::{Limits, Outbound, Sink, SinkError, StreamMode};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// NIM advises about one stream call per 200 ms.
const STREAM_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// The most bytes of answer text one NIM message carries, the asker's mention included.
///
/// NIM allows 5000 characters per message (nim-protocol.md §3; whether it counts Unicode
/// characters or UTF-16 units is UNCONFIRMED), but the pump measures text in UTF-8 bytes. Every
/// character takes at least as many UTF-8 bytes as UTF-16 units (ASCII 1 and 1, the rest of the
/// BMP 2-3 and 1, beyond it 4 and 2), so a byte limit of 5000 can never let a message exceed 5000
/// characters in either count. It is conservative for CJK text (about 1666 characters a
/// message, the rest continued or cut by the overflow policy), which is the price of never
/// having NIM end a stream mid-answer. [`StreamWriter`] checks the UTF-16 count again.
pub const MESSAGE_MAX_BYTES: usize = STREAM_MAX_CHARS;

/// Opens NIM sinks.
pub struct NimOutbound {
    api: Arc<dyn NimApi>,
    /// The deployment's message size limit (`TCBOT_MAX_MESSAGE_BYTES`), below NIM's own.
    max_message_bytes: usize,
    /// Whether live stream chunks reach every team member (`TCBOT_NIM_TEAM_STREAMING`).
    team_streaming: bool,
}

impl NimOutbound {
    pub fn new(api: Arc<dyn NimApi>, max_message_bytes: usize, team_streaming: bool) -> Self {
        NimOutbound { api, max_message_bytes, team_streaming }
    }
}

impl Outbound for NimOutbound {
    fn open(&self, job: &Job, mode: StreamMode, _resume: Option<String>) -> Result<Box<dyn Sink>, SinkError> {
        // Nothing NIM opens can be resumed: a stream ends by itself after 30 s of silence, long
        // before a redelivery, and a single send leaves nothing open.
        let mention = job.in_group().then(|| AskerMention { accid: job.sender.clone(), display: job.sender.clone() });
        let prefix_bytes = mention.as_ref().map_or(0, |m| m.prefix().len());
        let base = Base {
            api: self.api.clone(),
            seed: job.key(),
            conversation: jobs::reply_conversation(job),
            mention,
            calls: 0,
            shown: false,
        };
        let max = self.max_message_bytes.min(MESSAGE_MAX_BYTES).saturating_sub(prefix_bytes);
        Ok(match mode {
            StreamMode::RobotStream => {
                return Err(SinkError::Refused { mode, reason: "NIM has no robot stream".into() });
            }
            StreamMode::NativeStream if job.in_group() && !self.team_streaming => {
                // Not a refusal: the robot streams one-to-one all the same (a refusal would be
                // remembered for the robot, not for teams).
                tracing::debug!("team streaming is off; the team answer is sent once, complete");
                Box::new(SendSink::new(base, max))
            }
            StreamMode::NativeStream => {
                Box::new(StreamSink { base, max, index: 0, writer: None, opened: false, bytes: 0, finished: false })
            }
            StreamMode::Modify | StreamMode::Final => Box::new(SendSink::new(base, max)),
        })
    }
}

/// What every NIM sink keeps.
struct Base {
    api: Arc<dyn NimApi>,
    /// The job key, from which each message's `message_client_id` is derived.
    seed: String,
    conversation: ConversationId,
    mention: Option<AskerMention>,
    calls: u32,
    shown: bool,
}

impl Base {
    /// The `message_client_id` of the `index`-th message of the answer, which opens with
    /// `first`: derived from the job key, so a call NIM is sent again carries the same id, and
    /// from the opening text, so that a recovery's apology (a new message at the same index,
    /// after an attempt that died) is not taken for the stream that attempt left (NIM's handling
    /// of a repeated client id is UNCONFIRMED).
    fn client_id(&self, index: u32, first: &str) -> String {
        let h = Sha256::digest(format!("{}#{index}#{first}", self.seed).as_bytes());
        format!("tcbot-{}", hex::encode(&h[..16]))
    }

    /// Accounts for a call and turns its error into the domain's. A stream's first call that
    /// NIM certainly refused for good (403 no permission, 414, …) is a refusal of the mode, so
    /// the answer falls back to one send; anything else is a failure, retryable or not.
    fn settle(&mut self, mode: StreamMode, r: Result<SentMessage, NimError>) -> Result<SentMessage, SinkError> {
        let first = self.calls == 0;
        self.calls += 1;
        match r {
            Ok(sent) => {
                self.shown = true;
                Ok(sent)
            }
            Err(e) => {
                if !e.certainly_not_applied() {
                    self.shown = true;
                }
                let refused = mode == StreamMode::NativeStream
                    && first
                    && matches!(e, NimError::Nim { .. })
                    && e.certainly_not_applied()
                    && !e.is_retryable();
                Err(if refused {
                    SinkError::Refused { mode, reason: e.to_string() }
                } else {
                    SinkError::Failed { retryable: e.is_retryable(), reason: e.to_string() }
                })
            }
        }
    }
}

/// The id the worker records for an opened message: NIM's, else ours.
fn opened_id(sent: &SentMessage, client_id: String) -> String {
    sent.server_id.clone().filter(|s| !s.is_empty()).unwrap_or(client_id)
}

/// A NIM stream message (`stream_message`), one-to-one or in a team with live delivery.
pub struct StreamSink {
    base: Base,
    max: usize,
    /// Which message of the answer this is (answers longer than one message).
    index: u32,
    writer: Option<StreamWriter>,
    /// The open message's first chunk was accepted.
    opened: bool,
    bytes: usize,
    finished: bool,
}

#[async_trait]
impl Sink for StreamSink {
    fn mode(&self) -> StreamMode {
        StreamMode::NativeStream
    }
    fn limits(&self) -> Limits {
        Limits {
            min_interval: STREAM_MIN_INTERVAL,
            max_bytes: self.max,
            max_silence: Some(STREAM_MAX_GAP),
            resumable: false,
            replaces: false,
        }
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let client_id = self.base.client_id(self.index, delta);
                let w = StreamWriter::new(self.base.conversation.clone(), client_id, self.base.mention.clone(), false);
                self.writer.insert(w)
            }
        };
        let api = self.base.api.as_ref();
        let r = if finish { writer.finish(api, delta, Vec::new()).await } else { writer.push(api, delta).await };
        let client_id = writer.client_id().to_owned();
        let sent = self.base.settle(StreamMode::NativeStream, r)?;
        self.bytes += delta.len();
        self.finished = finish;
        if self.opened {
            return Ok(None);
        }
        self.opened = true;
        Ok(Some(opened_id(&sent, client_id)))
    }
    async fn keep_alive(&mut self) -> Result<(), SinkError> {
        // An empty delta keeps the stream open without adding text (accepted by the emulator;
        // UNCONFIRMED on NIM, whose doc says nothing of empty chunks).
        if let Some(w) = self.writer.as_mut().filter(|_| self.opened && !self.finished) {
            let r = w.push(self.base.api.as_ref(), "").await;
            self.base.settle(StreamMode::NativeStream, r)?;
        }
        Ok(())
    }
    fn message_bytes(&self) -> usize {
        self.bytes
    }
    fn is_open(&self) -> bool {
        self.opened && !self.finished
    }
    fn next_message(&mut self) {
        self.writer = None;
        self.opened = false;
        self.bytes = 0;
        self.finished = false;
        self.index += 1;
    }
    fn shown(&self) -> bool {
        self.base.shown
    }
    fn calls(&self) -> u32 {
        self.base.calls
    }
}

/// One send of the complete text (`final`, and `modify`, which NIM cannot do).
pub struct SendSink {
    base: Base,
    max: usize,
    index: u32,
    /// The text of the current message, sent when it finishes.
    text: String,
    finished: bool,
}

impl SendSink {
    fn new(base: Base, max: usize) -> Self {
        SendSink { base, max, index: 0, text: String::new(), finished: false }
    }
}

#[async_trait]
impl Sink for SendSink {
    fn mode(&self) -> StreamMode {
        StreamMode::Final
    }
    fn limits(&self) -> Limits {
        // No placeholder (`replaces`): NIM cannot replace a sent message.
        Limits {
            min_interval: Duration::ZERO,
            max_bytes: self.max,
            max_silence: None,
            resumable: true,
            replaces: false,
        }
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        if self.finished {
            return Err(SinkError::Failed { reason: "the message was already sent".into(), retryable: false });
        }
        self.text.push_str(delta);
        if !finish {
            return Ok(None);
        }
        if self.text.trim().is_empty() {
            // NIM refuses an empty text; there is nothing to show.
            self.finished = true;
            return Ok(None);
        }
        let client_id = self.base.client_id(self.index, &self.text);
        let msg = OutgoingText {
            conversation: self.base.conversation.clone(),
            text: self.text.clone(),
            client_id: client_id.clone(),
            mention: self.base.mention.clone(),
            route: false,
        };
        let r = self.base.api.send_text(&msg).await;
        // Finished only once sent: after a failure the text is still pending, and an apology
        // pushed next is sent with it.
        let sent = self.base.settle(StreamMode::Final, r)?;
        self.finished = true;
        Ok(Some(opened_id(&sent, client_id)))
    }
    fn message_bytes(&self) -> usize {
        self.text.len()
    }
    fn is_open(&self) -> bool {
        !self.text.is_empty() && !self.finished
    }
    fn next_message(&mut self) {
        self.text.clear();
        self.finished = false;
        self.index += 1;
    }
    fn shown(&self) -> bool {
        self.base.shown
    }
    fn calls(&self) -> u32 {
        self.base.calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::{JOB_VERSION, Place, Platform};
    use crate::nim::api::StreamChunk;
    use std::sync::Mutex;

    /// Records calls; answers each with a server id, or with the scripted errors first.
    #[derive(Default)]
    struct Api {
        chunks: Mutex<Vec<StreamChunk>>,
        sends: Mutex<Vec<OutgoingText>>,
        errors: Mutex<Vec<NimError>>,
    }

    impl Api {
        fn fail_next(&self, e: NimError) {
            self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
        }
        fn error(&self) -> Option<NimError> {
            self.errors.lock().unwrap_or_else(|p| p.into_inner()).pop()
        }
        fn chunks(&self) -> Vec<StreamChunk> {
            self.chunks.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
        fn sends(&self) -> Vec<OutgoingText> {
            self.sends.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
    }

    #[async_trait]
    impl NimApi for Api {
        async fn send_text(&self, msg: &OutgoingText) -> Result<SentMessage, NimError> {
            if let Some(e) = self.error() {
                return Err(e);
            }
            self.sends.lock().unwrap_or_else(|p| p.into_inner()).push(msg.clone());
            Ok(SentMessage { server_id: Some("700".into()), client_id: Some(msg.client_id.clone()) })
        }
        async fn stream_chunk(&self, chunk: &StreamChunk) -> Result<SentMessage, NimError> {
            if let Some(e) = self.error() {
                return Err(e);
            }
            self.chunks.lock().unwrap_or_else(|p| p.into_inner()).push(chunk.clone());
            Ok(SentMessage { server_id: Some("900".into()), client_id: Some(chunk.client_id.clone()) })
        }
    }

    fn job(group: Option<&str>) -> Job {
        Job {
            v: JOB_VERSION,
            platform: Platform::Nim,
            request_id: "r".into(),
            received_ms: 1,
            bot: "mybot".into(),
            sender: "alice".into(),
            place: group.map_or(Place::Direct, |g| Place::Group { id: g.into(), topic: None }),
            msg_id: "42".into(),
            text: "hi".into(),
            parts: vec![],
            per_member: false,
        }
    }

    fn open(out: &NimOutbound, j: &Job, mode: StreamMode) -> Box<dyn Sink> {
        out.open(j, mode, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_one_to_one_stream_numbers_deltas_from_zero_and_finishes_once_unrouted() {
        let api = Arc::new(Api::default());
        let out = NimOutbound::new(api.clone(), 12_000, false);
        let j = job(None);
        let mut sink = open(&out, &j, StreamMode::NativeStream);
        assert_eq!(sink.mode(), StreamMode::NativeStream);
        let l = sink.limits();
        assert_eq!((l.max_bytes, l.max_silence, l.resumable, l.replaces), (5000, Some(STREAM_MAX_GAP), false, false));
        assert_eq!(sink.push("Hel", false).await, Ok(Some("900".into())));
        assert!(sink.is_open());
        sink.keep_alive().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sink.push("lo", true).await, Ok(None));
        assert!(!sink.is_open());
        assert!(sink.push("again", true).await.is_err(), "a finished stream takes no more");
        let chunks = api.chunks();
        let seen: Vec<_> =
            chunks.iter().map(|c| (c.index, c.delta.as_str(), c.finish, c.server_id.as_deref(), c.route)).collect();
        assert_eq!(
            seen,
            [(0, "Hel", false, None, false), (1, "", false, Some("900"), false), (2, "lo", true, Some("900"), false)]
        );
        assert_eq!(chunks[0].conversation.wire(), "mybot|1|alice");
        assert!(chunks.iter().all(|c| c.client_id == chunks[0].client_id && c.mention.is_none()));
        // Derived from the job: the same answer gets the same id, another message another.
        let mut again = open(&out, &j, StreamMode::NativeStream);
        again.push("Hel", false).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api.chunks()[3].client_id, chunks[0].client_id);
        again.push("!", true).await.unwrap_or_else(|e| panic!("{e}"));
        again.next_message();
        again.push("Hel", true).await.unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(api.chunks()[5].client_id, chunks[0].client_id);
        assert_eq!(api.chunks()[5].index, 0, "a new message counts from 0 again");
    }

    #[tokio::test]
    async fn team_answers_are_sent_once_with_the_asker_mentioned_unless_team_streaming_is_on() {
        let api = Arc::new(Api::default());
        let j = job(Some("2837465"));
        let off = NimOutbound::new(api.clone(), 12_000, false);
        let mut sink = open(&off, &j, StreamMode::NativeStream);
        assert_eq!(sink.mode(), StreamMode::Final);
        assert_eq!(sink.limits().max_bytes, 5000 - "@alice ".len());
        assert_eq!(sink.push("X is ", false).await, Ok(None));
        assert!(api.sends().is_empty(), "nothing is sent before the answer is complete");
        assert_eq!(sink.push("Y.", true).await, Ok(Some("700".into())));
        let sends = api.sends();
        assert_eq!(sends.len(), 1);
        let s = &sends[0];
        assert_eq!((s.conversation.wire().as_str(), s.text.as_str(), s.route), ("mybot|2|2837465", "X is Y.", false));
        assert_eq!(s.mention, Some(AskerMention { accid: "alice".into(), display: "alice".into() }));
        let on = NimOutbound::new(api.clone(), 12_000, true);
        let mut sink = open(&on, &j, StreamMode::NativeStream);
        assert_eq!(sink.mode(), StreamMode::NativeStream);
        sink.push("Hi", true).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(api.chunks()[0].mention.is_some());
        // Modify is one send; the robot stream is refused.
        assert_eq!(open(&on, &j, StreamMode::Modify).mode(), StreamMode::Final);
        assert!(matches!(
            out_err(&on, &job(None), StreamMode::RobotStream),
            Some(SinkError::Refused { mode: StreamMode::RobotStream, .. })
        ));
    }

    fn out_err(out: &NimOutbound, j: &Job, mode: StreamMode) -> Option<SinkError> {
        out.open(j, mode, None).err()
    }

    #[tokio::test]
    async fn a_stream_refused_for_good_on_its_first_call_is_a_refusal_else_a_failure() {
        let api = Arc::new(Api::default());
        let out = NimOutbound::new(api.clone(), 12_000, false);
        api.fail_next(NimError::Nim { call: "stream_message", code: 403, desc: "no permission".into() });
        let mut sink = open(&out, &job(None), StreamMode::NativeStream);
        let r = sink.push("Hi", false).await;
        assert!(matches!(r, Err(SinkError::Refused { mode: StreamMode::NativeStream, .. })), "{r:?}");
        assert!(!sink.shown() && !sink.is_open());
        // Rate limited after the client's own retries: retryable, nothing shown.
        api.fail_next(NimError::Nim { call: "stream_message", code: 416, desc: String::new() });
        let mut sink = open(&out, &job(None), StreamMode::NativeStream);
        let r = sink.push("Hi", false).await;
        assert!(matches!(&r, Err(e) if e.is_retryable()), "{r:?}");
        assert!(!sink.shown());
        // A timeout may have been applied: shown, not a refusal.
        api.fail_next(NimError::Timeout { call: "stream_message" });
        let mut sink = open(&out, &job(None), StreamMode::NativeStream);
        assert!(matches!(sink.push("Hi", false).await, Err(SinkError::Failed { retryable: true, .. })));
        assert!(sink.shown());
        // A failed single send keeps its text for the apology that follows.
        api.fail_next(NimError::Http { call: "send_message", status: 502 });
        let mut sink = open(&out, &job(None), StreamMode::Final);
        assert!(matches!(sink.push("Half an answer", true).await, Err(SinkError::Failed { .. })));
        assert!(sink.is_open());
        sink.push("\n\nSorry.", true).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api.sends().last().map(|s| s.text.clone()).as_deref(), Some("Half an answer\n\nSorry."));
    }

    #[tokio::test]
    async fn a_recovery_apology_does_not_reuse_the_client_id_of_the_stream_it_follows() {
        let api = Arc::new(Api::default());
        let out = NimOutbound::new(api.clone(), 12_000, false);
        let j = job(None);
        open(&out, &j, StreamMode::NativeStream).push("The answer", false).await.unwrap_or_else(|e| panic!("{e}"));
        open(&out, &j, StreamMode::NativeStream).push("Sorry.", true).await.unwrap_or_else(|e| panic!("{e}"));
        let chunks = api.chunks();
        assert_ne!(chunks[0].client_id, chunks[1].client_id);
        assert!(chunks.iter().all(|c| c.client_id.starts_with("tcbot-") && c.client_id.len() == 38));
    }

    #[test]
    fn the_byte_limit_keeps_any_text_under_5000_characters() {
        for s in ["a", "é", "中", "😀"] {
            assert!(s.len() >= s.encode_utf16().count() && s.len() >= s.chars().count(), "{s}");
        }
        let deployment_lower = NimOutbound::new(Arc::new(Api::default()), 1000, false);
        let sink = open(&deployment_lower, &job(None), StreamMode::NativeStream);
        assert_eq!(sink.limits().max_bytes, 1000);
    }
}
