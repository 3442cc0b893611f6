//! Falling back to the next stream mode when the platform refuses one.
//!
//! [`FallbackSink`] opens the answer in the preferred mode and, when the platform refuses that
//! mode on its first call ([`SinkError::Refused`]: nothing was shown), opens the next one
//! ([`StreamMode::fallback`]) and repeats the same call there. The pump never knows: it reads the
//! sink's limits on every call. Refused modes are reported, so the worker can skip them for that
//! robot for a while.

use super::job::Job;
use super::sink::{Limits, Outbound, Sink, SinkError, StreamMode};
use async_trait::async_trait;

/// A sink that falls back to the next mode when its mode is refused.
pub struct FallbackSink<'a> {
    outbound: &'a dyn Outbound,
    job: &'a Job,
    inner: Box<dyn Sink>,
    refused: Vec<StreamMode>,
}

impl<'a> FallbackSink<'a> {
    /// Opens the answer to `job` in the first of `mode` and its fallbacks that is not in `skip`
    /// and that the outbound can open (`final` is never skipped). `resume` goes to the first sink
    /// opened.
    pub fn open(
        outbound: &'a dyn Outbound,
        job: &'a Job,
        mode: StreamMode,
        skip: &[StreamMode],
        resume: Option<String>,
    ) -> Result<Self, SinkError> {
        let mut refused = Vec::new();
        let mut next = Some(mode);
        while let Some(m) = next {
            if skip.contains(&m) && m.fallback().is_some() {
                next = m.fallback();
                continue;
            }
            match outbound.open(job, m, resume.clone()) {
                Ok(inner) => return Ok(FallbackSink { outbound, job, inner, refused }),
                Err(SinkError::Refused { .. }) if m.fallback().is_some() => {
                    refused.push(m);
                    next = m.fallback();
                }
                Err(e) => return Err(e),
            }
        }
        Err(SinkError::Failed { reason: "no stream mode can serve this answer".into(), retryable: false })
    }

    /// The modes the platform refused for this answer.
    pub fn refused(&self) -> &[StreamMode] {
        &self.refused
    }

    /// Moves to the next mode after `e`, if `e` is a refusal and there is one.
    fn fall_back(&mut self, e: SinkError) -> Result<(), SinkError> {
        let SinkError::Refused { mode, reason } = &e else {
            return Err(e);
        };
        let Some(next) = mode.fallback() else {
            return Err(e);
        };
        tracing::warn!(refused = %mode, next = %next, reason = %reason, "stream mode refused; falling back");
        self.refused.push(*mode);
        self.inner = self.outbound.open(self.job, next, None)?;
        Ok(())
    }
}

#[async_trait]
impl Sink for FallbackSink<'_> {
    fn mode(&self) -> StreamMode {
        self.inner.mode()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
        loop {
            match self.inner.push(delta, finish).await {
                Err(e @ SinkError::Refused { .. }) => self.fall_back(e)?,
                other => return other,
            }
        }
    }
    async fn placeholder(&mut self, text: &str) -> Result<Option<String>, SinkError> {
        loop {
            match self.inner.placeholder(text).await {
                Err(e @ SinkError::Refused { .. }) => self.fall_back(e)?,
                other => return other,
            }
        }
    }
    async fn keep_alive(&mut self) -> Result<(), SinkError> {
        self.inner.keep_alive().await
    }
    fn message_bytes(&self) -> usize {
        self.inner.message_bytes()
    }
    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
    fn next_message(&mut self) {
        self.inner.next_message()
    }
    fn shown(&self) -> bool {
        self.inner.shown()
    }
    fn calls(&self) -> u32 {
        self.inner.calls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::testing::job;
    use crate::bot::sink::testing::RecordingSink;
    use std::sync::{Arc, Mutex};

    /// An outbound whose sinks refuse the modes in `refuse` on their first call (or, in
    /// `closed`, at opening), and record what every sink was given.
    #[derive(Default)]
    struct Scripted {
        refuse: Vec<StreamMode>,
        closed: Vec<StreamMode>,
        pushes: Arc<Mutex<Vec<(StreamMode, String)>>>,
    }

    struct ScriptedSink {
        mode: StreamMode,
        refuse: bool,
        inner: RecordingSink,
        pushes: Arc<Mutex<Vec<(StreamMode, String)>>>,
    }

    #[async_trait]
    impl Sink for ScriptedSink {
        fn mode(&self) -> StreamMode {
            self.mode
        }
        fn limits(&self) -> Limits {
            self.inner.limits
        }
        async fn push(&mut self, delta: &str, finish: bool) -> Result<Option<String>, SinkError> {
            if self.refuse {
                return Err(SinkError::Refused { mode: self.mode, reason: "not enabled".into() });
            }
            self.pushes.lock().map(|mut p| p.push((self.mode, delta.to_owned()))).ok();
            self.inner.push(delta, finish).await
        }
        fn message_bytes(&self) -> usize {
            self.inner.message_bytes()
        }
        fn is_open(&self) -> bool {
            self.inner.is_open()
        }
        fn next_message(&mut self) {
            self.inner.next_message()
        }
        fn shown(&self) -> bool {
            Sink::shown(&self.inner)
        }
        fn calls(&self) -> u32 {
            self.inner.calls()
        }
    }

    impl Outbound for Scripted {
        fn open(&self, _: &Job, mode: StreamMode, _: Option<String>) -> Result<Box<dyn Sink>, SinkError> {
            if self.closed.contains(&mode) {
                return Err(SinkError::Refused { mode, reason: "not here".into() });
            }
            Ok(Box::new(ScriptedSink {
                mode,
                refuse: self.refuse.contains(&mode),
                inner: RecordingSink::default(),
                pushes: self.pushes.clone(),
            }))
        }
    }

    #[tokio::test]
    async fn a_refused_native_stream_falls_back_to_modify_once_showing_nothing_twice() {
        let out = Scripted { refuse: vec![StreamMode::NativeStream], ..Scripted::default() };
        let j = job("@RBT#a", "ann", Some(("@TGS#g", None)), "1", "hi");
        let mut sink =
            FallbackSink::open(&out, &j, StreamMode::NativeStream, &[], None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sink.mode(), StreamMode::NativeStream);
        for (delta, finish) in [("Hel", false), ("lo", false), ("!", true)] {
            let r = sink.push(delta, finish).await;
            assert!(r.is_ok(), "{r:?}");
        }
        assert_eq!(sink.mode(), StreamMode::Modify);
        assert_eq!(sink.refused(), [StreamMode::NativeStream]);
        let pushes = out.pushes.lock().map(|p| p.clone()).unwrap_or_default();
        let shown: String = pushes.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(shown, "Hello!", "each piece shown once, in the mode that took it");
        assert!(pushes.iter().all(|(m, _)| *m == StreamMode::Modify), "{pushes:?}");
    }

    #[tokio::test]
    async fn modes_refused_lately_or_unable_to_serve_the_place_are_skipped_but_final_never_is() {
        let out = Scripted { closed: vec![StreamMode::RobotStream], ..Scripted::default() };
        let j = job("@RBT#a", "ann", Some(("@TGS#g", None)), "1", "hi");
        let sink = FallbackSink::open(&out, &j, StreamMode::RobotStream, &[], None);
        assert_eq!(
            sink.as_ref().map(|s| (s.mode(), s.refused().to_vec())).ok(),
            Some((StreamMode::Modify, vec![StreamMode::RobotStream]))
        );
        let skip = [StreamMode::NativeStream, StreamMode::Modify, StreamMode::Final];
        let sink = FallbackSink::open(&out, &j, StreamMode::NativeStream, &skip, None);
        assert_eq!(sink.map(|s| s.mode()).ok(), Some(StreamMode::Final));
        // Every mode refused: the error of the last, with nothing shown.
        let all = Scripted {
            refuse: vec![StreamMode::NativeStream, StreamMode::Modify, StreamMode::Final],
            ..Scripted::default()
        };
        let mut sink =
            FallbackSink::open(&all, &j, StreamMode::NativeStream, &[], None).unwrap_or_else(|e| panic!("{e}"));
        let r = sink.push("Hello", true).await;
        assert!(matches!(r, Err(SinkError::Refused { mode: StreamMode::Final, .. })), "{r:?}");
        assert!(!sink.shown());
        assert_eq!(sink.refused(), [StreamMode::NativeStream, StreamMode::Modify]);
    }
}
