//! One worker for every platform: the outbound port that sends each answer through the
//! platform its job came from.
//!
//! [`PlatformOutbound`] holds one [`Outbound`] per configured platform and chooses by
//! [`Job::platform`]; a job of a platform this deployment does not serve fails clearly, never
//! through another platform's API.
//!
//! It also applies a platform's own default where the worker asks NIM for `robot_stream`: the
//! worker's mode comes from the robot's profile or from the deployment's `TCBOT_*_STREAM_MODE`,
//! whose one-to-one default (`robot_stream`) is Tencent's chatbot stream. NIM has no such
//! stream, and the fallback after it (`modify`, then `final`) would never stream, so for a NIM
//! job `robot_stream` stands for NIM's default of the place: `TCBOT_NIM_DIRECT_STREAM_MODE`
//! one-to-one, `native_stream` in teams (which NIM's outbound streams only where the app has
//! team streaming, else sends once). Only `robot_stream` is translated: no mode's fallback is
//! `robot_stream`, so a mode refused later cannot be translated back into itself.

use crate::bot::job::{Job, Place, Platform};
use crate::bot::sink::{Outbound, Sink, SinkError, StreamMode};
use std::sync::Arc;

/// The outbound port of a deployment that serves one platform or both.
pub struct PlatformOutbound {
    pub tencent: Option<Arc<dyn Outbound>>,
    pub nim: Option<Arc<dyn Outbound>>,
    /// NIM's one-to-one mode when the worker asks for `robot_stream` (`native_stream` or
    /// `final`).
    pub nim_direct_mode: StreamMode,
}

impl PlatformOutbound {
    /// Serves Tencent only, as before NIM existed.
    pub fn tencent(outbound: Arc<dyn Outbound>) -> Self {
        PlatformOutbound { tencent: Some(outbound), nim: None, nim_direct_mode: StreamMode::NativeStream }
    }

    /// The mode NIM is asked for when the worker asks for `mode`.
    fn nim_mode(&self, job: &Job, mode: StreamMode) -> StreamMode {
        match (mode, &job.place) {
            (StreamMode::RobotStream, Place::Direct) => self.nim_direct_mode,
            (StreamMode::RobotStream, Place::Group { .. }) => StreamMode::NativeStream,
            (other, _) => other,
        }
    }
}

impl Outbound for PlatformOutbound {
    fn open(&self, job: &Job, mode: StreamMode, resume: Option<String>) -> Result<Box<dyn Sink>, SinkError> {
        let (outbound, mode) = match job.platform {
            Platform::Tencent => (self.tencent.as_ref(), mode),
            Platform::Nim => (self.nim.as_ref(), self.nim_mode(job, mode)),
        };
        match outbound {
            Some(o) => o.open(job, mode, resume),
            None => Err(SinkError::Failed {
                reason: format!(
                    "this deployment does not serve {} robots (its secret has no keys for that platform)",
                    job.platform.name()
                ),
                retryable: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::testing::job;
    use crate::bot::sink::testing::RecordingSink;
    use std::sync::Mutex;

    /// Records which modes it was asked to open.
    #[derive(Default)]
    struct Named(Mutex<Vec<StreamMode>>);

    impl Outbound for Named {
        fn open(&self, _: &Job, mode: StreamMode, _: Option<String>) -> Result<Box<dyn Sink>, SinkError> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(mode);
            Ok(Box::new(RecordingSink::default()))
        }
    }

    fn asked(o: &Named) -> Vec<StreamMode> {
        o.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[test]
    fn each_job_goes_to_its_platform_and_tencent_modes_are_untouched() {
        let (t, n) = (Arc::new(Named::default()), Arc::new(Named::default()));
        let out = PlatformOutbound {
            tencent: Some(t.clone()),
            nim: Some(n.clone()),
            nim_direct_mode: StreamMode::NativeStream,
        };
        let tencent = job("@RBT#a", "ann", None, "1", "hi");
        let mut nim = tencent.clone();
        nim.platform = Platform::Nim;
        for mode in [StreamMode::RobotStream, StreamMode::Modify] {
            assert!(out.open(&tencent, mode, None).is_ok());
            assert!(out.open(&nim, mode, None).is_ok());
        }
        assert_eq!(asked(&t), [StreamMode::RobotStream, StreamMode::Modify]);
        assert_eq!(asked(&n), [StreamMode::NativeStream, StreamMode::Modify], "robot_stream is NIM's default");
        let mut team = nim.clone();
        team.place = Place::Group { id: "9".into(), topic: None };
        let final_direct = PlatformOutbound { nim_direct_mode: StreamMode::Final, ..out };
        assert!(final_direct.open(&team, StreamMode::RobotStream, None).is_ok());
        assert!(final_direct.open(&nim, StreamMode::RobotStream, None).is_ok());
        assert!(final_direct.open(&nim, StreamMode::NativeStream, None).is_ok());
        assert_eq!(asked(&n)[2..], [StreamMode::NativeStream, StreamMode::Final, StreamMode::NativeStream]);
    }

    #[test]
    fn a_platform_that_is_not_configured_fails_clearly_and_for_good() {
        let out = PlatformOutbound::tencent(Arc::new(Named::default()));
        let mut nim = job("mybot", "ann", None, "1", "hi");
        nim.platform = Platform::Nim;
        let err = out.open(&nim, StreamMode::Final, None).err();
        assert!(
            matches!(&err, Some(SinkError::Failed { retryable: false, reason }) if reason.contains("does not serve nim robots")),
            "{err:?}"
        );
        let none = PlatformOutbound { tencent: None, ..out };
        let tencent = job("@RBT#a", "ann", None, "1", "hi");
        assert!(matches!(
            none.open(&tencent, StreamMode::Final, None),
            Err(SinkError::Failed { retryable: false, .. })
        ));
    }
}
