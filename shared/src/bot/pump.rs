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

use super::markdown;
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
    /// The current message's text as sent, for choosing where to cut it.
    message: String,
    /// What the next message starts with: the line reopening a code block the last one closed.
    reopen: String,
}

/// Text held back once a message nears its limit, so that where it is cut can be chosen from
/// this much text (a paragraph's end, a list item's) rather than wherever the limit falls.
const CUT_LOOKAHEAD: usize = 512;

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
        let text = if self.reopen.is_empty() { text.to_owned() } else { format!("{}{text}", self.reopen) };
        let opened = match self.sink.push(&text, finish).await {
            Ok(opened) => opened,
            Err(e) => {
                self.unfinished = finish && shown;
                return Err(e);
            }
        };
        self.reopen.clear();
        self.message.push_str(&text);
        self.report.chunks += 1;
        self.report.first_chunk_at.get_or_insert_with(Instant::now);
        if let Some(id) = opened {
            self.ctl.opened(&id, self.sink.mode()).await;
            self.stream_id = Some(id);
        }
        Ok(())
    }

    /// The bytes the current message may still take.
    fn room(&self) -> usize {
        // With truncation, room for the notice is always kept free.
        let limit = match self.cfg.overflow {
            OverflowPolicy::Truncate => self.max_message_bytes().saturating_sub(self.cfg.truncate_room()),
            OverflowPolicy::Continue => self.max_message_bytes(),
        };
        limit.saturating_sub(self.sink.message_bytes() + self.reopen.len())
    }

    /// Whether `pending` more bytes bring the message close enough to its limit that text
    /// should be held back for a good cut.
    fn near_limit(&self, pending: usize) -> bool {
        pending + CUT_LOOKAHEAD > self.room()
    }

    /// Ends the current message with as much of `text` (more than fits) as the Markdown allows
    /// (a block's end before a line's, a line's before a word's): a code block cut in two is
    /// closed here and reopened in the next message, and a truncated answer's notice follows a
    /// complete block. Returns what is left for the next message (nothing when truncated).
    async fn end_message(&mut self, mut text: String) -> Result<(Flow, String), SinkError> {
        let room = self.room();
        // What the message holds, counting the line that will reopen a code block.
        let sent = format!("{}{}", self.message, self.reopen);
        match self.cfg.overflow {
            OverflowPolicy::Truncate => {
                let c = markdown::truncate_message(&sent, &text, room);
                let take = floor_boundary(&text, c.take);
                self.report.text.push_str(&text[..take]);
                let last = format!("{}{}{NOTICE_GAP}{}", &text[..take], c.close, self.cfg.truncated_notice);
                self.push(&last, true).await?;
                Ok((Flow::Done(End::Truncated), String::new()))
            }
            OverflowPolicy::Continue => {
                let c = markdown::break_message(&sent, &text, room);
                let mut take = floor_boundary(&text, c.take);
                if take == 0 && c.close.is_empty() {
                    // A finishing call carries text (protocol doc §6): at least the best cut.
                    take = markdown::cut(&text, room.max(1)).max(text.chars().next().map_or(0, char::len_utf8));
                }
                let rest = text.split_off(take);
                self.report.text.push_str(&text);
                self.push(&format!("{text}{}", c.close), true).await?;
                self.sink.next_message();
                self.message.clear();
                self.stream_id = None;
                self.reopen = c.reopen;
                Ok((Flow::Go, rest))
            }
        }
    }

    /// Sends `text`, applying the message size limit ([`Self::end_message`]).
    async fn send(&mut self, mut text: String, finish: bool) -> Result<Flow, SinkError> {
        loop {
            if text.len() <= self.room() {
                if !text.is_empty() || finish {
                    self.report.text.push_str(&text);
                    self.push(&text, finish).await?;
                }
                return Ok(Flow::Go);
            }
            match self.end_message(text).await? {
                (Flow::Go, rest) => text = rest,
                (done, _) => return Ok(done),
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
        message: String::new(),
        reopen: String::new(),
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
        // Near the message's limit, text waits until it outgrows the room, so the cut can be
        // chosen from enough of it.
        let holding = p.near_limit(buf.len()) && buf.len() <= p.room();
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
            _ = tokio::time::sleep_until(deadline), if held_back(&buf) > 0 && !holding => true,
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
            if buf.len() > p.room() {
                // The message is full: it ends where the Markdown allows, the rest waits.
                let (flow, rest) = p.end_message(std::mem::take(&mut buf)).await?;
                if let Flow::Done(end) = flow {
                    p.report.end = end;
                    return Ok(());
                }
                buf = rest;
                last_send = Instant::now();
                continue;
            }
            let cut = held_back(&buf);
            if cut == 0 || p.near_limit(buf.len()) {
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

    /// Deltas of about `n` bytes each, as an LLM streams them.
    fn pieces(text: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in text.chars() {
            cur.push(c);
            if cur.len() >= n {
                out.push(std::mem::take(&mut cur));
            }
        }
        out.push(cur);
        out.retain(|p| !p.is_empty());
        out
    }

    /// The messages a sink received: the pushes joined, cut after each finishing push.
    fn messages(sink: &RecordingSink) -> Vec<String> {
        let mut out = vec![String::new()];
        for (d, finish) in &sink.pushes {
            if let Some(m) = out.last_mut() {
                m.push_str(d);
            }
            if *finish {
                out.push(String::new());
            }
        }
        out.retain(|m| !m.is_empty());
        out
    }

    fn fences_balanced(m: &str) -> bool {
        m.lines().filter(|l| l.trim_start().starts_with("```")).count() % 2 == 0
    }

    #[tokio::test]
    async fn a_long_answer_continues_at_block_boundaries_and_a_cut_code_block_is_reopened() {
        let para = "Rust keeps memory safe without a garbage collector. ".repeat(4);
        let code = (0..30).map(|i| format!("let x{i} = {i};\n")).collect::<String>();
        let answer = format!("{para}\n\n{para}\n\n```rust\n{code}```\n\n{para}");
        let parts = pieces(&answer, 7);
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink::default();
        let cfg = PumpSettings { max_chunk_bytes: 40, ..cfg(300, OverflowPolicy::Continue) };
        let r = pump(String::new(), deltas(&refs), &mut sink, &ctl, &cfg).await;
        let report = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.text, answer, "the report keeps the answer as written");
        let msgs = messages(&sink);
        assert!(msgs.len() >= 3, "{msgs:#?}");
        for m in &msgs {
            assert!(m.len() <= 300, "{} bytes: {m:?}", m.len());
            assert!(fences_balanced(m), "unbalanced fences in {m:?}");
        }
        // Messages end at a block or line, never inside a word.
        for m in &msgs[..msgs.len() - 1] {
            assert!(m.ends_with('\n') || m.ends_with("```") || m.ends_with(". "), "cut mid-block: {m:?}");
        }
        // What the user reads, without the added fence lines, is the answer.
        // (A message ends with the closing "```"; the next starts with "```rust" and a newline.)
        let joined: String = msgs.concat().replace("``````rust\n", "");
        assert_eq!(joined, answer);
    }

    #[tokio::test]
    async fn a_truncated_answer_ends_after_a_complete_paragraph_before_its_notice() {
        let answer = "First paragraph, complete.\n\nSecond paragraph that goes on and on and on and will not fit in the message at all.";
        let parts = pieces(answer, 5);
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ctl = Ctl { stop: false, opened: Mutex::new(vec![]) };
        let mut sink = RecordingSink::default();
        let notice = Texts::en().truncated_notice;
        let max = "First paragraph, complete.\n\nSecond paragraph".len() + 2 + notice.len();
        let r = pump(String::new(), deltas(&refs), &mut sink, &ctl, &cfg(max, OverflowPolicy::Truncate)).await;
        assert_eq!(r.map(|r| r.end).ok(), Some(End::Truncated));
        assert_eq!(sink.shown(), format!("First paragraph, complete.\n\n{notice}"));
    }
}
