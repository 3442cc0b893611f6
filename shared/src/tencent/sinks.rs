//! Tencent's side of the outbound port: one [`Sink`] type per stream mode.
//!
//! - `robot_stream` ([`RobotStreamSink`]): `openim_robot_http_svc/send_stream_msg`, one-to-one
//!   only. The first call opens the message and returns its `MsgKey`, later calls add text, the
//!   last has `Finish: 1`. TUIKit's chatbot bubble and stop button.
//! - `native_stream` ([`NativeStreamSink`]): `stream_msg/send_c2c_stream_msg` and
//!   `send_group_stream_msg` with a `TIMStreamElem` (protocol doc §6): 5 calls a second at
//!   most, a keep-alive before 15 s of silence, `TopicId` in topics.
//! - `modify` and `final` ([`SendModifySink`]): `sendmsg`/`send_group_msg`, then
//!   `modify_c2c_msg`/`modify_group_msg` with the text so far (every client); or one send when
//!   the answer is complete. Both can show a placeholder that the answer replaces.

use super::{
    ChatApi, ForbidCallback, GroupAt, ModifyC2cMsg, ModifyGroupMsg, RestError, SendC2cStreamMsg, SendGroupMsg,
    SendGroupStreamMsg, SendMsg, SendStreamMsg, StreamChunk, StreamElem,
};
use crate::bot::job::{Job, Place};
use crate::bot::sink::{Limits, Outbound, Sink, SinkError, StreamMode};
use crate::msg::MsgElement;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Tencent's documented message size is about 12 KB; the stream APIs allow more (128 KB for
/// native streams), but one chat bubble should stay readable: the deployment's
/// `TCBOT_MAX_MESSAGE_BYTES` applies below these.
const SEND_MAX_BYTES: usize = 12_000;
const NATIVE_MAX_BYTES: usize = 120 * 1024;
/// Native streams end by themselves after 15 s without a call (protocol doc §6).
const NATIVE_MAX_SILENCE: Duration = Duration::from_secs(15);
/// Native stream continuations: at most 5 a second.
const NATIVE_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Who an answer is for.
#[derive(Debug, Clone)]
enum Target {
    Direct { user: String },
    Group { group: String, topic: Option<String>, asker: String },
}

impl Target {
    fn of(job: &Job) -> Target {
        match &job.place {
            Place::Direct => Target::Direct { user: job.sender.clone() },
            Place::Group { id, .. } => Target::Group {
                group: id.clone(),
                topic: job.place.topic().map(str::to_owned),
                asker: job.sender.clone(),
            },
        }
    }
}

/// Opens Tencent sinks.
pub struct TencentOutbound {
    chat: Arc<dyn ChatApi>,
    /// The deployment's message size limit (`TCBOT_MAX_MESSAGE_BYTES`), below each mode's own.
    max_message_bytes: usize,
    /// Least time between two modifications of a message (`TCBOT_GROUP_MODIFY_INTERVAL_MS`,
    /// one a second by default, as Tencent's own bot paces them).
    modify_interval: Duration,
}

impl TencentOutbound {
    pub fn new(chat: Arc<dyn ChatApi>, max_message_bytes: usize, modify_interval: Duration) -> Self {
        TencentOutbound { chat, max_message_bytes, modify_interval }
    }
}

impl Outbound for TencentOutbound {
    fn open(&self, job: &Job, mode: StreamMode, resume: Option<String>) -> Result<Box<dyn Sink>, SinkError> {
        let target = Target::of(job);
        let base = Base { chat: self.chat.clone(), bot: job.bot.clone(), seed: job.key(), calls: 0, shown: false };
        Ok(match mode {
            StreamMode::RobotStream => {
                let Target::Direct { user } = target else {
                    return Err(SinkError::Refused {
                        mode,
                        reason: "the robot stream serves one-to-one chats only".into(),
                    });
                };
                let max = self.max_message_bytes.min(SEND_MAX_BYTES);
                Box::new(RobotStreamSink { base, user, msg_key: resume, bytes: 0, finished: false, max })
            }
            StreamMode::NativeStream => {
                let max = self.max_message_bytes.min(NATIVE_MAX_BYTES);
                Box::new(NativeStreamSink::new(base, target, max))
            }
            StreamMode::Modify | StreamMode::Final => Box::new(SendModifySink {
                base,
                target,
                streaming: mode == StreamMode::Modify,
                index: 0,
                msg_id: resume,
                text: String::new(),
                replace_placeholder: false,
                finished: false,
                max: self.max_message_bytes.min(SEND_MAX_BYTES),
                interval: self.modify_interval,
            }),
        })
    }
}

/// What every Tencent sink keeps.
struct Base {
    chat: Arc<dyn ChatApi>,
    bot: String,
    /// Seed of the stable `Random`/`MsgSeq` of each message, so a retried send is deduplicated.
    seed: String,
    calls: u32,
    shown: bool,
}

impl Base {
    /// A number stable for the `index`-th message of this answer.
    fn stable(&self, index: u32) -> u32 {
        let h = Sha256::digest(format!("{}#{index}", self.seed).as_bytes());
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    /// Accounts for a call and turns its error into the domain's: a refusal when it is the
    /// answer's first call and Tencent certainly refused it (an error code that is not worth
    /// retrying), so that another mode may be tried.
    fn settle<T>(&mut self, mode: StreamMode, r: Result<T, RestError>) -> Result<T, SinkError> {
        let first = self.calls == 0;
        self.calls += 1;
        match r {
            Ok(v) => {
                self.shown = true;
                Ok(v)
            }
            Err(e) => {
                if !e.certainly_not_applied() {
                    self.shown = true;
                }
                Err(match e {
                    RestError::Tencent { .. } if first && !e.is_retryable() => {
                        SinkError::Refused { mode, reason: e.to_string() }
                    }
                    _ => SinkError::Failed { retryable: e.is_retryable(), reason: e.to_string() },
                })
            }
        }
    }
}

/// The one-to-one robot stream.
pub struct RobotStreamSink {
    base: Base,
    user: String,
    msg_key: Option<String>,
    bytes: usize,
    finished: bool,
    max: usize,
}

#[async_trait]
impl Sink for RobotStreamSink {
    fn mode(&self) -> StreamMode {
        StreamMode::RobotStream
    }
    fn limits(&self) -> Limits {
        Limits {
            min_interval: Duration::ZERO,
            max_bytes: self.max,
            max_silence: None,
            resumable: true,
            replaces: false,
        }
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        // Tencent documents `Chunk` as required and says nothing of an empty one (protocol doc
        // §6): the pump holds text back so that a finishing call carries some.
        let req = SendStreamMsg {
            from_account: self.base.bot.clone(),
            to_account: self.user.clone(),
            chunk: delta.to_owned(),
            msg_key: self.msg_key.clone(),
            finish: finish.then_some(1),
        };
        let r = self.base.chat.send_stream_msg(&req).await;
        let reply = self.base.settle(StreamMode::RobotStream, r)?;
        self.bytes += delta.len();
        self.finished = finish;
        if self.msg_key.is_none() {
            self.msg_key = reply.msg_key.clone();
            return Ok(reply.msg_key.or_else(|| Some(String::new())));
        }
        Ok(None)
    }
    fn message_bytes(&self) -> usize {
        self.bytes
    }
    fn is_open(&self) -> bool {
        self.msg_key.is_some() && !self.finished
    }
    fn next_message(&mut self) {
        self.msg_key = None;
        self.bytes = 0;
        self.finished = false;
    }
    fn shown(&self) -> bool {
        self.base.shown
    }
    fn calls(&self) -> u32 {
        self.base.calls
    }
}

/// Send-then-modify (`streaming`), or one send at the end; either may open with a placeholder
/// that the answer replaces.
pub struct SendModifySink {
    base: Base,
    target: Target,
    streaming: bool,
    /// Which message of the answer this is (answers longer than one message).
    index: u32,
    /// The open message: the C2C `MsgKey`, or the group `MsgSeq`.
    msg_id: Option<String>,
    text: String,
    /// The open message shows the placeholder, not answer text.
    replace_placeholder: bool,
    finished: bool,
    max: usize,
    interval: Duration,
}

impl SendModifySink {
    fn mode(&self) -> StreamMode {
        if self.streaming { StreamMode::Modify } else { StreamMode::Final }
    }

    fn body(&self, text: &str) -> Vec<MsgElement> {
        match &self.target {
            // The @ mark in the text pairs with the first GroupAtInfo entry.
            Target::Group { asker, .. } => vec![MsgElement::text(format!("@{asker} {text}"))],
            Target::Direct { .. } => vec![MsgElement::text(text)],
        }
    }

    async fn send(&mut self, text: &str) -> Result<String, SinkError> {
        let body = self.body(text);
        let random = self.base.stable(self.index);
        let mode = self.mode();
        match &self.target {
            Target::Direct { user } => {
                let req = SendMsg {
                    sync_other_machine: 2,
                    from_account: Some(self.base.bot.clone()),
                    to_account: user.clone(),
                    msg_seq: self.base.stable(self.index + 1_000_000),
                    msg_random: random,
                    msg_life_time: None,
                    msg_body: body,
                    cloud_custom_data: None,
                    forbid_callback_control: ForbidCallback::own_messages(),
                };
                let r = self.base.chat.send_msg(&req).await;
                let reply = self.base.settle(mode, r)?;
                Ok(reply.msg_key.unwrap_or_default())
            }
            Target::Group { group, topic, asker } => {
                let req = SendGroupMsg {
                    group_id: group.clone(),
                    random,
                    from_account: Some(self.base.bot.clone()),
                    msg_body: body,
                    topic_id: topic.clone(),
                    group_at_info: vec![GroupAt { group_at_all_flag: 0, group_at_account: Some(asker.clone()) }],
                    cloud_custom_data: None,
                    forbid_callback_control: ForbidCallback::own_messages(),
                };
                let r = self.base.chat.send_group_msg(&req).await;
                let reply = self.base.settle(mode, r)?;
                Ok(reply.msg_seq.unwrap_or(0).to_string())
            }
        }
    }

    async fn modify(&mut self, id: &str, text: &str) -> Result<(), SinkError> {
        let body = self.body(text);
        let mode = self.mode();
        let r = match &self.target {
            Target::Direct { user } => {
                let req = ModifyC2cMsg {
                    from_account: self.base.bot.clone(),
                    to_account: user.clone(),
                    msg_key: id.to_owned(),
                    msg_body: body,
                };
                self.base.chat.modify_c2c_msg(&req).await
            }
            Target::Group { group, topic, .. } => {
                let Ok(msg_seq) = id.parse() else {
                    return Err(SinkError::Failed { reason: format!("not a group MsgSeq: {id:?}"), retryable: false });
                };
                let req = ModifyGroupMsg { group_id: group.clone(), msg_seq, msg_body: body, topic_id: topic.clone() };
                self.base.chat.modify_group_msg(&req).await
            }
        };
        self.base.settle(mode, r)
    }
}

#[async_trait]
impl Sink for SendModifySink {
    fn mode(&self) -> StreamMode {
        SendModifySink::mode(self)
    }
    fn limits(&self) -> Limits {
        let min_interval = if self.streaming { self.interval } else { Duration::ZERO };
        Limits { min_interval, max_bytes: self.max, max_silence: None, resumable: true, replaces: true }
    }
    async fn placeholder(&mut self, text: &str) -> Result<Option<String>, SinkError> {
        if self.msg_id.is_some() {
            return Ok(None);
        }
        let id = self.send(text).await?;
        self.msg_id = Some(id.clone());
        self.replace_placeholder = true;
        Ok(Some(id))
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        self.text.push_str(delta);
        self.finished = finish;
        if !self.streaming && !finish {
            return Ok(None);
        }
        let text = self.text.clone();
        match self.msg_id.clone() {
            None => {
                let id = self.send(&text).await?;
                self.msg_id = Some(id.clone());
                Ok(Some(id))
            }
            Some(id) => {
                // A modification replaces the whole body; nothing new, nothing to replace.
                if !delta.is_empty() || self.replace_placeholder {
                    self.modify(&id, &text).await?;
                    self.replace_placeholder = false;
                }
                Ok(None)
            }
        }
    }
    fn message_bytes(&self) -> usize {
        self.text.len()
    }
    fn is_open(&self) -> bool {
        self.msg_id.is_some() && !self.finished
    }
    fn next_message(&mut self) {
        self.msg_id = None;
        self.text.clear();
        self.finished = false;
        self.replace_placeholder = false;
        self.index += 1;
    }
    fn shown(&self) -> bool {
        self.base.shown
    }
    fn calls(&self) -> u32 {
        self.base.calls
    }
}

/// The native `TIMStreamElem` stream, one-to-one or in a group (topic).
pub struct NativeStreamSink {
    base: Base,
    target: Target,
    max: usize,
    index: u32,
    stream_id: Option<String>,
    /// Chunks sent in the open stream (their `Index` counts from 1).
    chunk: u32,
    /// The Markdown of the open stream so far.
    text: String,
    bytes: usize,
    finished: bool,
}

impl NativeStreamSink {
    fn new(base: Base, target: Target, max: usize) -> Self {
        NativeStreamSink {
            base,
            target,
            max,
            index: 0,
            stream_id: None,
            chunk: 0,
            text: String::new(),
            bytes: 0,
            finished: false,
        }
    }

    /// One call of the stream: the first opens it and returns its `StreamMsgID`, every later
    /// one sends it back; `Index` counts from 1 per stream.
    async fn call(&mut self, markdown: &str, last: bool) -> Result<Option<String>, SinkError> {
        let index = self.chunk + 1;
        self.text.push_str(markdown);
        let elem = StreamElem {
            // What clients older than the stream element show. Tencent documents it on the
            // stream's calls without saying which one old clients keep (UNCONFIRMED): each call
            // carries the text so far, so whichever is kept is the most complete.
            compatible_text: self.text.clone(),
            chunks: vec![StreamChunk::data(index, markdown, last)],
            stream_msg_id: self.stream_id.clone(),
        };
        let random = self.base.stable(self.index);
        let r = match &self.target {
            Target::Direct { user } => {
                let req = SendC2cStreamMsg {
                    sync_other_machine: 2,
                    from_account: self.base.bot.clone(),
                    to_account: user.clone(),
                    msg_seq: self.base.stable(self.index + 1_000_000),
                    msg_random: random,
                    msg_body: elem.into_body(),
                };
                self.base.chat.send_c2c_stream_msg(&req).await
            }
            Target::Group { group, topic, .. } => {
                let req = SendGroupStreamMsg {
                    group_id: group.clone(),
                    msg_random: random,
                    from_account: self.base.bot.clone(),
                    msg_body: elem.into_body(),
                    cloud_custom_data: None,
                    topic_id: topic.clone(),
                };
                self.base.chat.send_group_stream_msg(&req).await
            }
        };
        let reply = match self.base.settle(StreamMode::NativeStream, r) {
            Ok(reply) => reply,
            Err(e) => {
                self.text.truncate(self.text.len() - markdown.len());
                return Err(e);
            }
        };
        self.chunk = index;
        if self.stream_id.is_none() {
            // Without an id the stream cannot be continued; Tencent documents it in every first
            // reply.
            let id = reply.stream_msg_id.filter(|id| !id.is_empty()).ok_or_else(|| SinkError::Failed {
                reason: "send_stream_msg(native): the reply has no StreamMsgID".into(),
                retryable: false,
            })?;
            self.stream_id = Some(id.clone());
            return Ok(Some(id));
        }
        Ok(None)
    }
}

#[async_trait]
impl Sink for NativeStreamSink {
    fn mode(&self) -> StreamMode {
        StreamMode::NativeStream
    }
    fn limits(&self) -> Limits {
        Limits {
            min_interval: NATIVE_MIN_INTERVAL,
            max_bytes: self.max,
            max_silence: Some(NATIVE_MAX_SILENCE),
            // A crashed attempt's stream has ended by itself (15 s) long before the retry.
            resumable: false,
            replaces: false,
        }
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        let opened = self.call(delta, finish).await?;
        self.bytes += delta.len();
        self.finished = finish;
        Ok(opened)
    }
    async fn keep_alive(&mut self) -> Result<(), SinkError> {
        if self.stream_id.is_some() && !self.finished {
            self.call("", false).await?;
        }
        Ok(())
    }
    fn message_bytes(&self) -> usize {
        self.bytes
    }
    fn is_open(&self) -> bool {
        self.stream_id.is_some() && !self.finished
    }
    fn next_message(&mut self) {
        self.stream_id = None;
        self.chunk = 0;
        self.text.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::testing::job;
    use crate::tencent::*;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    /// Tencent's REST API in process: records each call as (command, request JSON) and refuses
    /// the commands in `refuse` with an error code, or times them out when in `time_out`.
    #[derive(Default)]
    struct Api {
        calls: Mutex<Vec<(&'static str, Value)>>,
        refuse: Vec<&'static str>,
        time_out: Vec<&'static str>,
    }

    impl Api {
        fn record<T: serde::Serialize>(&self, call: &'static str, req: &T) -> Result<(), RestError> {
            self.calls.lock().map(|mut c| c.push((call, serde_json::to_value(req).unwrap_or_default()))).ok();
            if self.refuse.contains(&call) {
                return Err(RestError::Tencent { call, code: 80_001, info: "not enabled".into() });
            }
            if self.time_out.contains(&call) {
                return Err(RestError::Timeout { call });
            }
            Ok(())
        }
        fn calls(&self) -> Vec<(&'static str, Value)> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl ChatApi for Api {
        async fn send_msg(&self, req: &SendMsg) -> Result<SendMsgReply, RestError> {
            self.record("sendmsg", req)?;
            Ok(SendMsgReply { msg_key: Some("k1".into()), ..SendMsgReply::default() })
        }
        async fn send_stream_msg(&self, req: &SendStreamMsg) -> Result<SendStreamMsgReply, RestError> {
            self.record("send_stream_msg", req)?;
            Ok(SendStreamMsgReply { msg_key: Some("mk".into()) })
        }
        async fn send_group_msg(&self, req: &SendGroupMsg) -> Result<SendGroupMsgReply, RestError> {
            self.record("send_group_msg", req)?;
            Ok(SendGroupMsgReply { msg_time: None, msg_seq: Some(42) })
        }
        async fn send_c2c_stream_msg(&self, req: &SendC2cStreamMsg) -> Result<StreamMsgReply, RestError> {
            self.record("send_c2c_stream_msg", req)?;
            Ok(StreamMsgReply { stream_msg_id: Some("s1".into()) })
        }
        async fn send_group_stream_msg(&self, req: &SendGroupStreamMsg) -> Result<StreamMsgReply, RestError> {
            self.record("send_group_stream_msg", req)?;
            Ok(StreamMsgReply { stream_msg_id: Some("s1".into()) })
        }
        async fn modify_c2c_msg(&self, req: &ModifyC2cMsg) -> Result<(), RestError> {
            self.record("modify_c2c_msg", req)
        }
        async fn modify_group_msg(&self, req: &ModifyGroupMsg) -> Result<(), RestError> {
            self.record("modify_group_msg", req)
        }
        async fn create_topic(&self, req: &CreateTopic) -> Result<CreateTopicReply, RestError> {
            self.record("create_topic", req)?;
            Ok(CreateTopicReply::default())
        }
    }

    fn open(api: &Arc<Api>, group: bool, mode: StreamMode) -> Result<Box<dyn Sink>, SinkError> {
        let place = group.then_some(("@TGS#g", Some("t1")));
        let j = job("@RBT#a", "ann", place, "7", "hi");
        TencentOutbound::new(api.clone(), 12_000, Duration::from_secs(1)).open(&j, mode, None)
    }

    fn sink(api: &Arc<Api>, group: bool, mode: StreamMode) -> Box<dyn Sink> {
        open(api, group, mode).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn the_robot_stream_opens_continues_and_finishes_by_its_msg_key() {
        let api = Arc::new(Api::default());
        let mut s = sink(&api, false, StreamMode::RobotStream);
        assert_eq!(s.push("Hel", false).await, Ok(Some("mk".into())));
        assert_eq!(s.push("lo", true).await, Ok(None));
        let calls = api.calls();
        assert_eq!(calls[0].1, json!({"From_Account": "@RBT#a", "To_Account": "ann", "Chunk": "Hel"}));
        assert_eq!(calls[1].1["MsgKey"], "mk");
        assert_eq!(calls[1].1["Finish"], 1);
        assert!(s.shown() && !s.is_open());
        // The robot stream is one-to-one only.
        assert!(matches!(open(&api, true, StreamMode::RobotStream), Err(SinkError::Refused { .. })));
    }

    #[tokio::test]
    async fn the_native_stream_numbers_chunks_from_1_sends_its_id_back_and_keeps_alive() {
        let api = Arc::new(Api::default());
        let mut s = sink(&api, true, StreamMode::NativeStream);
        assert_eq!(s.limits().min_interval, Duration::from_millis(200));
        assert_eq!(s.limits().max_silence, Some(Duration::from_secs(15)));
        assert_eq!(s.push("Hel", false).await, Ok(Some("s1".into())));
        assert_eq!(s.keep_alive().await, Ok(()));
        assert_eq!(s.push("lo", true).await, Ok(None));
        let calls = api.calls();
        let chunk = |i: usize| calls[i].1["MsgBody"][0]["MsgContent"].clone();
        assert!(calls.iter().all(|(c, _)| *c == "send_group_stream_msg"), "{calls:?}");
        assert_eq!(calls[0].1["TopicId"], "t1");
        assert_eq!(chunk(0)["StreamMsgID"], Value::Null, "absent on the first call");
        assert_eq!(chunk(0)["Chunks"][0], json!({"EventType": "data", "Index": 1, "Markdown": "Hel", "IsLast": false}));
        assert_eq!(chunk(1)["Chunks"][0], json!({"EventType": "data", "Index": 2, "Markdown": "", "IsLast": false}));
        assert_eq!(chunk(2)["Chunks"][0], json!({"EventType": "data", "Index": 3, "Markdown": "lo", "IsLast": true}));
        assert_eq!((chunk(1)["StreamMsgID"].clone(), chunk(2)["StreamMsgID"].clone()), (json!("s1"), json!("s1")));
        assert_eq!(chunk(2)["CompatibleText"], "Hello", "old clients get the text so far");
        // No keep-alive for a finished stream.
        assert_eq!(s.keep_alive().await, Ok(()));
        assert_eq!(api.calls().len(), 3);
    }

    #[tokio::test]
    async fn a_refused_first_call_is_a_refusal_of_the_mode_with_nothing_shown_a_timeout_is_not() {
        let api = Arc::new(Api { refuse: vec!["send_c2c_stream_msg"], ..Api::default() });
        let mut s = sink(&api, false, StreamMode::NativeStream);
        let r = s.push("Hi", false).await;
        assert!(matches!(r, Err(SinkError::Refused { mode: StreamMode::NativeStream, .. })), "{r:?}");
        assert!(!s.shown());
        let api = Arc::new(Api { time_out: vec!["send_c2c_stream_msg"], ..Api::default() });
        let mut s = sink(&api, false, StreamMode::NativeStream);
        let r = s.push("Hi", false).await;
        assert!(matches!(r, Err(SinkError::Failed { retryable: true, .. })), "{r:?}");
        assert!(s.shown(), "a timed-out call may have reached the user");
    }

    #[tokio::test]
    async fn modify_replaces_a_placeholder_and_then_the_text_so_far_with_the_asker_mentioned() {
        let api = Arc::new(Api::default());
        let mut s = sink(&api, true, StreamMode::Modify);
        assert!(s.limits().replaces);
        assert_eq!(s.placeholder("thinking…").await, Ok(Some("42".into())));
        assert_eq!(s.push("Hi", false).await, Ok(None));
        assert_eq!(s.push("!", true).await, Ok(None));
        let texts: Vec<(&str, Value)> =
            api.calls().into_iter().map(|(c, v)| (c, v["MsgBody"][0]["MsgContent"]["Text"].clone())).collect();
        assert_eq!(
            texts,
            [
                ("send_group_msg", json!("@ann thinking…")),
                ("modify_group_msg", json!("@ann Hi")),
                ("modify_group_msg", json!("@ann Hi!")),
            ]
        );
        assert_eq!(api.calls()[1].1["MsgSeq"], 42);
        assert_eq!(api.calls()[0].1["GroupAtInfo"][0]["GroupAt_Account"], "ann");
    }

    #[tokio::test]
    async fn final_sends_once_at_the_end_and_retries_keep_their_random() {
        let api = Arc::new(Api::default());
        let mut s = sink(&api, false, StreamMode::Final);
        assert_eq!(s.push("Hel", false).await, Ok(None));
        assert!(api.calls().is_empty() && !s.shown());
        assert_eq!(s.push("lo", true).await, Ok(Some("k1".into())));
        let calls = api.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1["MsgBody"][0]["MsgContent"]["Text"], "Hello");
        assert_eq!(
            calls[0].1["ForbidCallbackControl"],
            json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"])
        );
        // A retry of the same answer sends the same MsgRandom/MsgSeq: Tencent drops the repeat.
        let mut again = sink(&api, false, StreamMode::Final);
        assert!(again.push("Hello", true).await.is_ok());
        let calls = api.calls();
        assert_eq!(
            (calls[0].1["MsgRandom"].clone(), calls[0].1["MsgSeq"].clone()),
            (calls[1].1["MsgRandom"].clone(), calls[1].1["MsgSeq"].clone())
        );
    }
}
