//! Where an answer goes: the outbound port.
//!
//! The worker holds an [`Outbound`], which opens a [`Sink`] for one answer in one
//! [`StreamMode`]. Platforms implement both in their adapters (`tencent::sinks`); the domain sees
//! only what a sink declares ([`Limits`]) and what it reports ([`SinkError`], [`Sink::shown`]).

use super::job::Job;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How an answer is put in front of the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    /// The platform's robot stream (Tencent `send_stream_msg`: one-to-one only; TUIKit's chatbot
    /// bubble with its stop button).
    RobotStream,
    /// The platform's native stream message (Tencent `TIMStreamElem`, NIM stream messages).
    NativeStream,
    /// Send, then modify the message with the text so far (every client).
    Modify,
    /// One message when the answer is complete.
    Final,
}

impl StreamMode {
    pub fn name(self) -> &'static str {
        match self {
            StreamMode::RobotStream => "robot_stream",
            StreamMode::NativeStream => "native_stream",
            StreamMode::Modify => "modify",
            StreamMode::Final => "final",
        }
    }

    /// The mode tried when the platform refuses this one.
    pub fn fallback(self) -> Option<StreamMode> {
        match self {
            StreamMode::RobotStream | StreamMode::NativeStream => Some(StreamMode::Modify),
            StreamMode::Modify => Some(StreamMode::Final),
            StreamMode::Final => None,
        }
    }

    pub fn parse(s: &str) -> Option<StreamMode> {
        [StreamMode::RobotStream, StreamMode::NativeStream, StreamMode::Modify, StreamMode::Final]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

impl std::str::FromStr for StreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StreamMode::parse(s).ok_or_else(|| "expected robot_stream, native_stream, modify or final".to_owned())
    }
}

impl std::fmt::Display for StreamMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a sink can take; the pump obeys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Least time between two calls on one message.
    pub min_interval: Duration,
    /// Most bytes of text one message may carry.
    pub max_bytes: usize,
    /// An open message ends by itself after this much silence: a call (a keep-alive when there
    /// is no text) must come sooner.
    pub max_silence: Option<Duration>,
    /// Whether a message left open by a crashed attempt can be finished by its id.
    pub resumable: bool,
    /// Whether each call replaces the message's text (so a placeholder can be shown first and
    /// replaced by the answer).
    pub replaces: bool,
}

/// A sink's failure, in the domain's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The platform refused this mode on the answer's first call: nothing was shown, and
    /// another mode may work.
    #[error("{mode} refused: {reason}")]
    Refused { mode: StreamMode, reason: String },
    /// A call failed.
    #[error("{reason}")]
    Failed { reason: String, retryable: bool },
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Failed { retryable: true, .. })
    }
}

/// An answer's way to the user, in one mode.
#[async_trait]
pub trait Sink: Send {
    fn mode(&self) -> StreamMode;
    fn limits(&self) -> Limits;
    /// Adds `delta` to the current message, finishing it when `finish`. Returns the id of the
    /// message when this call opened it, so the caller can record it before anything else can
    /// fail.
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError>;
    /// Opens the message with `text`, which the first push replaces. Only where
    /// [`Limits::replaces`]; elsewhere it does nothing and returns `None`.
    async fn placeholder(&mut self, _text: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    /// Keeps an open message from ending by itself while no text comes.
    async fn keep_alive(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Bytes of text in the current message.
    fn message_bytes(&self) -> usize;
    /// Whether a message is open (started and not finished).
    fn is_open(&self) -> bool;
    /// After a finished message, starts the next one (answers longer than one message).
    fn next_message(&mut self);
    /// Whether the user may have seen anything of this answer: a call was made that the platform
    /// did not certainly refuse.
    fn shown(&self) -> bool;
    /// Calls made so far.
    fn calls(&self) -> u32;
}

/// Opens sinks: the platform side of the seam.
pub trait Outbound: Send + Sync {
    /// A sink for the answer to `job` in `mode`; `resume` is the id of a message an earlier
    /// attempt opened. An error when the mode cannot serve the job's place at all (a robot stream
    /// in a group).
    fn open(&self, job: &Job, mode: StreamMode, resume: Option<String>) -> Result<Box<dyn Sink>, SinkError>;
}

/// In-process test doubles of the outbound port.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A sink that records every push; it can refuse finishing calls, and, given `prefix_of`,
    /// checks on every call that what the user has is a prefix of that text.
    pub struct RecordingSink {
        pub pushes: Vec<(String, bool)>,
        pub keep_alives: u32,
        pub bytes: usize,
        pub open: bool,
        pub refuse_finish: bool,
        pub prefix_of: Option<String>,
        pub limits: Limits,
    }

    impl Default for RecordingSink {
        fn default() -> Self {
            RecordingSink {
                pushes: vec![],
                keep_alives: 0,
                bytes: 0,
                open: false,
                refuse_finish: false,
                prefix_of: None,
                limits: Limits {
                    min_interval: Duration::ZERO,
                    max_bytes: usize::MAX,
                    max_silence: None,
                    resumable: true,
                    replaces: false,
                },
            }
        }
    }

    impl RecordingSink {
        /// Everything pushed, joined: what the user was shown.
        pub fn shown(&self) -> String {
            self.pushes.iter().map(|(d, _)| d.as_str()).collect()
        }
    }

    #[async_trait]
    impl Sink for RecordingSink {
        fn mode(&self) -> StreamMode {
            StreamMode::RobotStream
        }
        fn limits(&self) -> Limits {
            self.limits
        }
        async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
            if finish && self.refuse_finish {
                return Err(SinkError::Failed { reason: "refused".into(), retryable: false });
            }
            let opened = (!self.open).then(|| format!("m{}", self.pushes.len()));
            self.open = !finish;
            self.bytes += delta.len();
            self.pushes.push((delta.to_owned(), finish));
            if let Some(want) = &self.prefix_of {
                let shown = RecordingSink::shown(self);
                assert!(want.starts_with(&shown), "shown {shown:?}, not a prefix of {want:?}");
            }
            Ok(opened)
        }
        async fn keep_alive(&mut self) -> Result<(), SinkError> {
            self.keep_alives += 1;
            Ok(())
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
        fn shown(&self) -> bool {
            !self.pushes.is_empty()
        }
        fn calls(&self) -> u32 {
            self.pushes.len() as u32 + self.keep_alives
        }
    }
}
