//! Where an answer goes: the ways of putting streamed text in front of the user.
//!
//! - C2C: the robot streaming API `openim_robot_http_svc/send_stream_msg`: the first call opens
//!   the message and returns its `MsgKey`, later calls add text, the last has `Finish: 1`.
//! - Group, streaming: `send_group_msg` with an @ of the asker, then `modify_group_msg` with the
//!   text so far (send-then-modify; `send_stream_msg` is C2C only).
//! - Group, not streaming: one `send_group_msg` when the answer is complete.

use crate::msg::MsgElement;
use crate::tencent::{ChatApi, ForbidCallback, GroupAt, ModifyGroupMsg, RestError, SendGroupMsg, SendStreamMsg};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// An answer's way to the user.
#[async_trait]
pub trait Sink: Send {
    /// Adds `delta` to the current message, finishing it when `finish`. Returns the id of the
    /// message when this call opened it (the C2C `MsgKey`, the group `MsgSeq`), so the caller
    /// can record it before anything else can fail.
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, RestError>;
    /// Bytes of text in the current message.
    fn message_bytes(&self) -> usize;
    /// Whether a message is open (started and not finished).
    fn is_open(&self) -> bool;
    /// After a finished message, starts the next one (answers longer than one message).
    fn next_message(&mut self);
    /// REST calls made so far.
    fn calls(&self) -> u32;
}

/// The C2C robot stream.
pub struct C2cStreamSink {
    chat: Arc<dyn ChatApi>,
    bot: String,
    user: String,
    msg_key: Option<String>,
    bytes: usize,
    finished: bool,
    calls: u32,
}

impl C2cStreamSink {
    /// A sink for a new answer, or for continuing the stream `msg_key` already opened.
    pub fn new(chat: Arc<dyn ChatApi>, bot: &str, user: &str, msg_key: Option<String>) -> Self {
        C2cStreamSink { chat, bot: bot.to_owned(), user: user.to_owned(), msg_key, bytes: 0, finished: false, calls: 0 }
    }
}

#[async_trait]
impl Sink for C2cStreamSink {
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, RestError> {
        // UNCONFIRMED whether Tencent accepts an empty Chunk with Finish: 1 (protocol doc, open
        // question 2); an empty delta is sent only to finish, which is the one case it must.
        let req = SendStreamMsg {
            from_account: self.bot.clone(),
            to_account: self.user.clone(),
            chunk: delta.to_owned(),
            msg_key: self.msg_key.clone(),
            finish: finish.then_some(1),
        };
        self.calls += 1;
        let reply = self.chat.send_stream_msg(&req).await?;
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
    fn calls(&self) -> u32 {
        self.calls
    }
}

/// A group answer, by send-then-modify or by one send at the end.
pub struct GroupSink {
    chat: Arc<dyn ChatApi>,
    bot: String,
    group_id: String,
    topic_id: Option<String>,
    asker: String,
    streaming: bool,
    /// Seed of the stable `Random` of each message, so a retried send is deduplicated.
    seed: String,
    index: u32,
    msg_seq: Option<u64>,
    text: String,
    finished: bool,
    calls: u32,
}

impl GroupSink {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chat: Arc<dyn ChatApi>,
        bot: &str,
        group_id: &str,
        topic_id: Option<String>,
        asker: &str,
        streaming: bool,
        seed: &str,
        msg_seq: Option<u64>,
    ) -> Self {
        GroupSink {
            chat,
            bot: bot.to_owned(),
            group_id: group_id.to_owned(),
            topic_id,
            asker: asker.to_owned(),
            streaming,
            seed: seed.to_owned(),
            index: 0,
            msg_seq,
            text: String::new(),
            finished: false,
            calls: 0,
        }
    }

    fn body(&self) -> Vec<MsgElement> {
        // The @ mark in the text pairs with the first GroupAtInfo entry.
        vec![MsgElement::text(format!("@{} {}", self.asker, self.text))]
    }

    fn random(&self) -> u32 {
        let h = Sha256::digest(format!("{}#{}", self.seed, self.index).as_bytes());
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    async fn send(&mut self) -> Result<u64, RestError> {
        let req = SendGroupMsg {
            group_id: self.group_id.clone(),
            random: self.random(),
            from_account: Some(self.bot.clone()),
            msg_body: self.body(),
            topic_id: self.topic_id.clone(),
            group_at_info: vec![GroupAt { group_at_all_flag: 0, group_at_account: Some(self.asker.clone()) }],
            cloud_custom_data: None,
            forbid_callback_control: ForbidCallback::own_messages(),
        };
        self.calls += 1;
        let reply = self.chat.send_group_msg(&req).await?;
        Ok(reply.msg_seq.unwrap_or(0))
    }
}

#[async_trait]
impl Sink for GroupSink {
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, RestError> {
        self.text.push_str(delta);
        self.finished = finish;
        if !self.streaming {
            if finish {
                self.send().await?;
            }
            return Ok(None);
        }
        match self.msg_seq {
            None => {
                let seq = self.send().await?;
                self.msg_seq = Some(seq);
                Ok(Some(seq.to_string()))
            }
            Some(seq) => {
                if !delta.is_empty() {
                    let req = ModifyGroupMsg {
                        group_id: self.group_id.clone(),
                        msg_seq: seq,
                        msg_body: self.body(),
                        topic_id: self.topic_id.clone(),
                    };
                    self.calls += 1;
                    self.chat.modify_group_msg(&req).await?;
                }
                Ok(None)
            }
        }
    }
    fn message_bytes(&self) -> usize {
        self.text.len()
    }
    fn is_open(&self) -> bool {
        self.msg_seq.is_some() && !self.finished
    }
    fn next_message(&mut self) {
        self.msg_seq = None;
        self.text.clear();
        self.finished = false;
        self.index += 1;
    }
    fn calls(&self) -> u32 {
        self.calls
    }
}

/// In-process test doubles of the [`Sink`] port.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A sink that records every push; it can refuse finishing calls, and, given `prefix_of`,
    /// checks on every call that what the user has is a prefix of that text.
    #[derive(Default)]
    pub struct RecordingSink {
        pub pushes: Vec<(String, bool)>,
        pub bytes: usize,
        pub open: bool,
        pub refuse_finish: bool,
        pub prefix_of: Option<String>,
    }

    impl RecordingSink {
        /// Everything pushed, joined: what the user was shown.
        pub fn shown(&self) -> String {
            self.pushes.iter().map(|(d, _)| d.as_str()).collect()
        }
    }

    #[async_trait]
    impl Sink for RecordingSink {
        async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, RestError> {
            if finish && self.refuse_finish {
                return Err(RestError::Tencent { call: "test", code: 90001, info: "refused".into() });
            }
            let opened = (!self.open).then(|| format!("m{}", self.pushes.len()));
            self.open = !finish;
            self.bytes += delta.len();
            self.pushes.push((delta.to_owned(), finish));
            if let Some(want) = &self.prefix_of {
                let shown = self.shown();
                assert!(want.starts_with(&shown), "shown {shown:?}, not a prefix of {want:?}");
            }
            Ok(opened)
        }
        fn message_bytes(&self) -> usize {
            self.bytes
        }
        fn is_open(&self) -> bool {
            self.open
        }
        fn next_message(&mut self) {
            self.bytes = 0;
            self.open = false;
        }
        fn calls(&self) -> u32 {
            self.pushes.len() as u32
        }
    }
}
