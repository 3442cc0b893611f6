//! The pump: LLM tokens in, chunks to a [`Sink`] out.
//!
//! The first chunk leaves as soon as the first text arrives. After that, text is coalesced and
//! sent when it reaches `max_chunk_bytes` or when `interval` has passed since the last send,
//! which keeps the REST call rate within Tencent's limits whatever the token rate. Before each
//! chunk the stop flag is checked. An answer that outgrows one message is cut or continued in a
//! new message, as configured.
//!
//! The last character received is always held back until more text comes, so the call that
//! finishes a message carries text: Tencent documents `Chunk` as required and says nothing of
//! an empty one (protocol doc §6).

use super::sink::{Sink, SinkError, StreamMode};
use super::texts::Texts;
use crate::config::{OverflowPolicy, StreamSettings};
use crate::llm::{Delta, DeltaStream, LlmError, Usage};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// What the pump asks of its caller while it runs.
#[async_trait]
pub trait Control: Send + Sync {
    /// Whether the user asked to stop the message `stream_id` (or any message in scope).
    async fn stop_requested(&self, stream_id: Option<&str>) -> bool;
    /// A message was opened in `mode`; record its id before anything else can fail.
    async fn opened(&self, stream_id: &str, mode: StreamMode);
}

/// How the answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Completed,
    Stopped,
    Truncated,
    /// The LLM failed mid-answer; the open message was finished with the apology.
    LlmFailed(LlmError),
    /// The answer was shown, but the call that finishes its message was refused: the user has
    /// the text, so it is neither apologised for nor answered again.
    Unfinished(String),
}

/// What the pump did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub end: End,
    /// The text the user was shown (without notices).
    pub text: String,
    pub usage: Option<Usage>,
    /// When the first chunk was sent.
    pub first_chunk_at: Option<Instant>,
    pub chunks: u32,
}

/// The pump's settings: the deployment's, which the sink's [`Limits`] narrow further (read on
/// every call, as a sink may fall back to another mode mid-way).
#[derive(Debug, Clone)]
pub struct PumpSettings {
    /// Longest a chunk waits after the last call before it is sent.
    pub interval: Duration,
    pub max_chunk_bytes: usize,
    pub max_message_bytes: usize,
    pub overflow: OverflowPolicy,
    /// When the last call before the pump was made (a placeholder), for pacing.
    pub last_call: Option<Instant>,
    /// Ends an answer the LLM failed to finish.
    pub apology: String,
    /// Ends an answer cut at the message size limit.
    pub truncated_notice: String,
}

impl PumpSettings {
    /// The settings of an answer in a robot's `texts`.
    pub fn from_stream(s: &StreamSettings, texts: &Texts) -> Self {
        PumpSettings {
            interval: s.interval,
            max_chunk_bytes: s.max_chunk_bytes.max(1),
            max_message_bytes: s.max_message_bytes,
            overflow: s.overflow,
            last_call: None,
            apology: texts.apology.clone(),
            truncated_notice: texts.truncated_notice.clone(),
        }
    }

    /// The bytes kept free in a message for the notice of a cut answer.
    fn truncate_room(&self) -> usize {
        NOTICE_GAP.len() + self.truncated_notice.len()
    }
}

/// What separates a notice or an apology from the answer it ends.
const NOTICE_GAP: &str = "\n\n";

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

enum Flow {
    Go,
    Done(End),
}

struct Pumper<'a> {
    sink: &'a mut dyn Sink,
    ctl: &'a dyn Control,
    cfg: &'a PumpSettings,
    stream_id: Option<String>,
    report: Report,
    /// A finishing call failed after text had been shown.
    unfinished: bool,
    /// When the sink was last called.
    last_call: Option<Instant>,
}

/// Where `buf` splits into what may be sent now and the last character, which is held back.
fn held_back(buf: &str) -> usize {
    buf.char_indices().next_back().map(|(i, _)| i).unwrap_or(0)
}

impl Pumper<'_> {
    /// The most bytes the current message may carry: the deployment's limit or the sink's,
    /// whichever is lower, but always room for a notice and some text.
    fn max_message_bytes(&self) -> usize {
        let limit = self.cfg.max_message_bytes.min(self.sink.limits().max_bytes);
        limit.max(self.cfg.truncate_room() + 16)
    }

    /// Longest a chunk waits after the last call.
    fn interval(&self) -> Duration {
        self.cfg.interval.max(self.sink.limits().min_interval)
    }

    /// When the open message needs a call to stay open, if it does.
    fn silent_until(&self) -> Option<Instant> {
        let gap = self.sink.limits().max_silence?.mul_f64(0.6);
        self.last_call.filter(|_| self.sink.is_open()).map(|at| at + gap)
    }

    /// Waits until the sink may take another call.
    async fn pace(&mut self) {
        if let Some(at) = self.last_call {
            tokio::time::sleep_until(at + self.sink.limits().min_interval).await;
        }
        self.last_call = Some(Instant::now());
    }

    async fn push(&mut self, text: &str, finish: bool) -> Result<(), SinkError> {
        let shown = self.sink.shown();
        self.pace().await;
        let opened = match self.sink.push(text, finish).await {
            Ok(opened) => opened,
            Err(e) => {
                self.unfinished = finish && shown;
                return Err(e);
            }
        };
        self.report.chunks += 1;
        self.report.first_chunk_at.get_or_insert_with(Instant::now);
        if let Some(id) = opened {
            self.ctl.opened(&id, self.sink.mode()).await;
            self.stream_id = Some(id);
        }
        Ok(())
    }

    /// Sends `text`, applying the message size limit.
    async fn send(&mut self, mut text: String, finish: bool) -> Result<Flow, SinkError> {
        loop {
            // With truncation, room for the notice is always kept free.
            let limit = match self.cfg.overflow {
                OverflowPolicy::Truncate => self.max_message_bytes().saturating_sub(self.cfg.truncate_room()),
                OverflowPolicy::Continue => self.max_message_bytes(),
            };
            let room = limit.saturating_sub(self.sink.message_bytes());
            if text.len() <= room {
                if !text.is_empty() || finish {
                    self.report.text.push_str(&text);
                    self.push(&text, finish).await?;
                }
                return Ok(Flow::Go);
            }
            match self.cfg.overflow {
                OverflowPolicy::Truncate => {
                    let cut = floor_boundary(&text, room);
                    self.report.text.push_str(&text[..cut]);
                    let last = format!("{}{NOTICE_GAP}{}", &text[..cut], self.cfg.truncated_notice);
                    self.push(&last, true).await?;
                    return Ok(Flow::Done(End::Truncated));
                }
                OverflowPolicy::Continue => {
                    let cut = floor_boundary(&text, room);
                    let rest = text.split_off(cut);
                    self.report.text.push_str(&text);
                    self.push(&text, true).await?;
                    self.sink.next_message();
                    self.stream_id = None;
                    text = rest;
                }
            }
        }
    }
}

/// Streams `first` and then `rest` into `sink` until the LLM finishes, the user stops it, or the
/// message size policy ends it. A REST failure is returned as an error with the sink possibly
/// open, except on a finishing call after text was shown ([`End::Unfinished`]); an LLM failure
/// mid-answer finishes the message with the apology.
pub async fn pump(
    first: String,
    rest: DeltaStream,
    sink: &mut dyn Sink,
    ctl: &dyn Control,
    cfg: &PumpSettings,
) -> Result<Report, SinkError> {
    let mut p = Pumper {
        sink,
        ctl,
        cfg,
        stream_id: None,
        report: Report { end: End::Completed, text: String::new(), usage: None, first_chunk_at: None, chunks: 0 },
        unfinished: false,
        last_call: cfg.last_call,
    };
    match run(&mut p, first, rest).await {
        Ok(()) => Ok(p.report),
        Err(e) if p.unfinished => {
            tracing::warn!(error = %e, "the call finishing the answer was refused; the user has the text");
            p.report.end = End::Unfinished(e.to_string());
            Ok(p.report)
        }
        Err(e) => Err(e),
    }
}

async fn run(p: &mut Pumper<'_>, first: String, rest: DeltaStream) -> Result<(), SinkError> {
    let cfg = p.cfg;
    // A stream polled after its end may panic; fused, it keeps answering `None`.
    let mut rest = rest.fuse();
    let mut buf = first;
    // The first text goes out at once (but for its last character): time to first chunk is
    // what the user feels.
    let cut = held_back(&buf);
    if cut > 0 {
        let held = buf.split_off(cut);
        if let Flow::Done(end) = p.send(std::mem::replace(&mut buf, held), false).await? {
            p.report.end = end;
            return Ok(());
        }
    }
    let mut last_send = Instant::now();
    loop {
        let deadline = last_send + p.interval();
        let silent_until = p.silent_until();
        let flush_now = tokio::select! {
            item = rest.next() => match item {
                Some(Ok(Delta::Text(t))) => {
                    buf.push_str(&t);
                    buf.len() >= cfg.max_chunk_bytes
                }
                Some(Ok(Delta::Usage(u))) => {
                    p.report.usage = Some(u);
                    false
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "LLM failed mid-answer");
                    let text = format!("{buf}{NOTICE_GAP}{}", cfg.apology);
                    p.report.text.push_str(&buf);
                    if p.sink.message_bytes() + text.len() <= p.max_message_bytes() || !p.sink.is_open() {
                        p.push(&text, true).await?;
                    } else {
                        p.push(&cfg.apology, true).await?;
                    }
                    p.report.end = End::LlmFailed(e);
                    return Ok(());
                }
                None => {
                    let text = std::mem::take(&mut buf);
                    if let Flow::Done(end) = p.send(text, true).await? {
                        p.report.end = end;
                    }
                    return Ok(());
                }
            },
            _ = tokio::time::sleep_until(deadline), if held_back(&buf) > 0 => true,
            // The LLM is silent (a reasoning model thinking mid-answer): keep the message open.
            _ = tokio::time::sleep_until(silent_until.unwrap_or(deadline)), if silent_until.is_some() => {
                p.pace().await;
                p.sink.keep_alive().await?;
                false
            }
        };
        if flush_now {
            if p.ctl.stop_requested(p.stream_id.as_deref()).await {
                let text = std::mem::take(&mut buf);
                p.send(text, true).await?;
                p.report.end = End::Stopped;
                return Ok(());
            }
            let cut = held_back(&buf);
            if cut == 0 {
                continue;
            }
            let held = buf.split_off(cut);
            if let Flow::Done(end) = p.send(std::mem::replace(&mut buf, held), false).await? {
                p.report.end = end;
                return Ok(());
            }
            last_send = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::sink::testing::RecordingSink;
    use std::sync::Mutex;

    struct Ctl {
        stop: bool,
        opened: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Control for Ctl {
        async fn stop_requested(&self, _: Option<&str>) -> bool {
            self.stop
        }
        async fn opened(&self, id: &str, _: StreamMode) {
            self.opened.lock().map(|mut v| v.push(id.to_owned())).ok();
        }
    }

    fn deltas(parts: &[&str]) -> DeltaStream {
        let v: Vec<Result<Delta, LlmError>> = parts.iter().map(|p| Ok(Delta::Text(p.to_string()))).collect();
        Box::pin(futures_util::stream::iter(v))
    }

    fn cfg(max_msg: usize, overflow: OverflowPolicy) -> PumpSettings {
        let texts = Texts::en();
        PumpSettings {
            interval: Duration::from_millis(50),
            max_chunk_bytes: 8,
            max_message_bytes: max_msg,
            overflow,
            last_call: None,
            apology: texts.apology,
            truncated_notice: texts.truncated_notice,
        }
    }

    #[tokio::test]
    async fn chunks_join_to_the_answer_and_finish_once() {
        let mut sink = RecordingSink::default();
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let r = pump(
            "He".into(),
            deltas(&["llo", ", wor", "ld", "!"]),
            &mut sink,
            &ctl,
            &cfg(1000, OverflowPolicy::Truncate),
        )
        .await;
        let r = r.map_err(|e| e.to_string());
        assert_eq!(r.as_ref().map(|r| r.end.clone()), Ok(End::Completed));
        let joined: String = sink.pushes.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(joined, "Hello, world!");
        assert_eq!(sink.pushes.iter().filter(|(_, f)| *f).count(), 1);
        assert_eq!(sink.pushes.first(), Some(&("H".to_owned(), false)), "the last character is held back");
        assert_eq!(ctl.opened.lock().map(|v| v.len()).unwrap_or(0), 1);
    }

    #[tokio::test]
    async fn overflow_truncates_or_continues() {
        let long: Vec<String> = (0..20).map(|i| format!("{i:02}-abcdefg ")).collect();
        let parts: Vec<&str> = long.iter().map(String::as_str).collect();
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink::default();
        let r = pump("x".into(), deltas(&parts), &mut sink, &ctl, &cfg(100, OverflowPolicy::Truncate)).await;
        assert_eq!(r.map(|r| r.end).ok(), Some(End::Truncated));
        assert!(
            sink.pushes
                .last()
                .is_some_and(|(d, f)| *f && d.ends_with(&format!("\n\n{}", Texts::en().truncated_notice)))
        );
        assert!(sink.bytes <= 100);

        let mut sink = RecordingSink::default();
        let r = pump("x".into(), deltas(&parts), &mut sink, &ctl, &cfg(100, OverflowPolicy::Continue)).await;
        assert_eq!(r.as_ref().map(|r| r.end.clone()).ok(), Some(End::Completed));
        let finishes = sink.pushes.iter().filter(|(_, f)| *f).count();
        assert_eq!(finishes, 3, "201 bytes in messages of at most 100 make three messages");
        let joined: String = sink.pushes.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(joined, format!("x{}", long.concat()));
    }

    #[tokio::test]
    async fn stop_flag_finishes_early() {
        let ctl = Ctl { stop: true, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink::default();
        let r =
            pump("a".into(), deltas(&["bbbbbbbbbb", "c", "d"]), &mut sink, &ctl, &cfg(1000, OverflowPolicy::Truncate))
                .await;
        assert_eq!(r.map(|r| r.end).ok(), Some(End::Stopped));
        assert_eq!(sink.pushes.last().map(|p| p.1), Some(true));
        let joined: String = sink.pushes.iter().map(|(d, _)| d.as_str()).collect();
        assert!(!joined.contains('d'));
    }

    #[tokio::test]
    async fn the_finishing_push_carries_text_when_the_answer_ends_on_a_chunk_boundary() {
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink::default();
        // Every delta fills a chunk (8 bytes) by itself, so each is flushed on arrival.
        let r = pump(
            "12345678".into(),
            deltas(&["abcdefgh", "ABCDEFGH"]),
            &mut sink,
            &ctl,
            &cfg(1000, OverflowPolicy::Truncate),
        )
        .await;
        assert_eq!(r.map(|r| r.end).ok(), Some(End::Completed));
        let last = sink.pushes.last().cloned().unwrap_or_default();
        assert!(last.1 && !last.0.is_empty(), "{:?}", sink.pushes);
        assert!(sink.pushes.iter().all(|(d, _)| !d.is_empty()), "{:?}", sink.pushes);
        let joined: String = sink.pushes.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(joined, "12345678abcdefghABCDEFGH");
    }

    #[tokio::test]
    async fn a_refused_finishing_push_after_shown_text_ends_unfinished_not_failed() {
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink { refuse_finish: true, ..RecordingSink::default() };
        let r = pump("Hello".into(), deltas(&[" there"]), &mut sink, &ctl, &cfg(1000, OverflowPolicy::Truncate)).await;
        assert!(matches!(r.map(|r| r.end), Ok(End::Unfinished(_))));
        // Refused before anything was shown, it is an error the caller may retry.
        let mut sink = RecordingSink { refuse_finish: true, ..RecordingSink::default() };
        let r = pump("H".into(), deltas(&[]), &mut sink, &ctl, &cfg(1000, OverflowPolicy::Truncate)).await;
        assert!(r.is_err());
    }
}
