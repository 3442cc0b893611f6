//! The NIM message-copy router: the public function behind `POST /nim`. It verifies a copy,
//! answers the console's `{}` check, drops everything not addressed to one of our robots, and
//! queues a neutral [`Job`] for the rest on the same FIFO queues as Tencent's router, with the
//! same group and deduplication ids ([`Job::ordering_key`], [`Job::key`]). Every request ends in
//! exactly one logged [`Outcome`].
//!
//! Unlike Tencent, NIM reads the HTTP status, not a body: a copy that is not ours, or not
//! authentic, gets a non-200 status and nothing is queued; everything else, including copies
//! that are ignored, gets 200 quickly (NIM's retries are UNCONFIRMED; a copy is treated as
//! delivered at least once, and the queue's deduplication id and the worker's reply record
//! answer it once).

use super::intake::{self, CopyEvent, CopyHeaders, IntakeLimits, KnownRobot, Rejection, Verified};
use super::jobs;
use crate::bot::arrivals::Arrivals;
use crate::bot::job::{Job, Platform};
use crate::keys;
use crate::queue::{Queue, QueueMessage, fifo_id};
use crate::router::{Outcome, RouterError};
use crate::secrets::SecretString;
use crate::store::Store;
use std::sync::Arc;

/// Everything the NIM router needs, built once per cold start.
pub struct NimRouter {
    /// This app's AppKey: a copy with another is refused.
    pub app_key: String,
    /// The AppSecret that signs copies.
    pub secret: SecretString,
    pub limits: IntakeLimits,
    /// Our robot accounts (`TCBOT_NIM_ROBOTS`).
    pub robots: Vec<KnownRobot>,
    pub queue: Arc<dyn Queue>,
    pub c2c_queue_url: String,
    pub group_queue_url: String,
    /// Where stop requests are kept (`stop#…`), busy marks read and inbox notes written.
    pub store: Arc<dyn Store>,
    /// Busy checks and inbox notes beside each queued message (none by default).
    pub arrivals: Arrivals,
}

/// A one-to-one message that stops the robot's answer in progress. NIM's own clients stop only
/// NetEase's model calls (protocol doc), so our robots take a word.
pub const STOP_WORD: &str = "/stop";

/// How long a stop request is kept: longer than any answer streams.
const STOP_TTL_SECS: u64 = 600;

/// The HTTP status of a refused copy: 413 when too large, 401 when it is not authentic (or
/// not this app's), so that a misconfigured console shows up as failed deliveries.
pub fn rejection_status(r: &Rejection) -> u16 {
    match r {
        Rejection::TooLarge { .. } => 413,
        Rejection::MissingHeader(_)
        | Rejection::WrongAppKey
        | Rejection::BadTime
        | Rejection::Stale { .. }
        | Rejection::Md5Mismatch
        | Rejection::ChecksumMismatch => 401,
    }
}

impl NimRouter {
    /// Handles one message-copy POST; `now_ms` is the current Unix time in milliseconds.
    /// Returns the HTTP status to answer and the outcome; an error only when our own queue
    /// failed (answered 500, so that NIM's retry, if any, can deliver the copy again).
    pub async fn handle(
        &self,
        headers: &CopyHeaders<'_>,
        body: &[u8],
        now_ms: u64,
        request_id: &str,
    ) -> Result<(u16, Outcome), RouterError> {
        let result = self.route(headers, body, now_ms, request_id).await;
        match &result {
            Ok((status, outcome)) => tracing::info!(
                request_id,
                platform = "nim",
                status,
                outcome = outcome.kind(),
                reason = reason(outcome),
                "message copy handled"
            ),
            Err(e) => {
                tracing::error!(request_id, platform = "nim", outcome = "error", error = %e, "message copy failed")
            }
        }
        result
    }

    async fn route(
        &self,
        headers: &CopyHeaders<'_>,
        body: &[u8],
        now_ms: u64,
        request_id: &str,
    ) -> Result<(u16, Outcome), RouterError> {
        match intake::verify(headers, body, &self.app_key, &self.secret, now_ms, &self.limits) {
            Ok(Verified::ConsoleProbe) => return Ok((200, Outcome::Ignored("console check of the URL".into()))),
            Ok(Verified::Copy) => {}
            // The console's check does nothing, so it is answered 200 even when it does not
            // verify (the copy CheckSum formula is UNCONFIRMED): the URL can be saved, and the
            // warning says why the copies that follow would be refused.
            Err(e) if intake::is_console_probe(body) => {
                tracing::warn!(
                    error = %e,
                    "the console's check of the URL does not verify; check NimAppKey/NimAppSecret: message copies signed alike will be refused"
                );
                return Ok((200, Outcome::Ignored(format!("console check of the URL (not verified: {e})"))));
            }
            Err(e) => return Ok((rejection_status(&e), Outcome::Rejected(e.to_string()))),
        }
        let copy = match intake::parse_copy(body) {
            Ok(CopyEvent::Message(m)) => m,
            Ok(CopyEvent::Other { event_type }) => {
                let what = event_type.unwrap_or_else(|| "none".into());
                // Only the type's first characters: it is the sender's text, if short.
                let what: String = what.chars().take(16).collect();
                return Ok((200, Outcome::Ignored(format!("event type {what:?} is not a conversation message"))));
            }
            Err(e) => return Ok((400, Outcome::Rejected(e.to_string()))),
        };
        let addressed = match intake::classify(&copy, &self.robots) {
            Ok(a) => a,
            Err(why) => return Ok((200, Outcome::Ignored(why.to_string()))),
        };
        tracing::info!(
            request_id,
            bot = %addressed.robot,
            msg_id = %addressed.msg_id_server,
            by = ?addressed.by,
            resent = addressed.resent,
            "message copy addressed to a robot"
        );
        let job = jobs::job(request_id, now_ms, &addressed);
        if !job.in_group() && job.text.trim().eq_ignore_ascii_case(STOP_WORD) {
            let scope = keys::direct_scope(Platform::Nim, &job.bot, &job.sender);
            let doc = serde_json::json!({ "at_ms": now_ms }).to_string();
            self.store.put_doc(&keys::stop(&scope, None), &doc, Some(STOP_TTL_SECS)).await?;
            return Ok((200, Outcome::StopRequested));
        }
        let queue_url = if job.in_group() { &self.group_queue_url } else { &self.c2c_queue_url };
        let (sent, ()) = tokio::join!(
            enqueue(self.queue.as_ref(), queue_url, &job),
            self.arrivals.note(self.store.as_ref(), self.queue.as_ref(), &job)
        );
        sent?;
        Ok((200, Outcome::Queued { jobs: 1 }))
    }
}

fn reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Rejected(r) | Outcome::Ignored(r) => r,
        _ => "",
    }
}

/// Queues a job as Tencent's router does: the FIFO group is its ordering key, the
/// deduplication id its key, so a copy NIM delivers again is dropped by SQS within 5 minutes
/// and by the worker's reply record after.
async fn enqueue(queue: &dyn Queue, queue_url: &str, job: &Job) -> Result<(), RouterError> {
    let msg = QueueMessage {
        body: serde_json::to_string(job).unwrap_or_default(),
        group_id: Some(fifo_id(&job.ordering_key())),
        dedup_id: Some(fifo_id(&job.key())),
    };
    queue.send(queue_url, &msg).await?;
    Ok(())
}

/// The Lambda adapter: API Gateway HTTP API request in, the status (and a small JSON body
/// naming the outcome, for people testing the URL) out.
pub async fn http_handler(
    router: &NimRouter,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    let request_id = crate::lambda::request_id(&req);
    let headers = CopyHeaders::from_http(req.headers());
    let body: &[u8] = req.body().as_ref();
    let started = std::time::Instant::now();
    let (status, outcome) = router.handle(&headers, body, crate::store::now_ms(), &request_id).await?;
    crate::observe::Metrics::new("nim-router")
        .dim("Outcome", outcome.kind())
        .value("AckMs", started.elapsed().as_secs_f64() * 1000.0, "Milliseconds")
        .value("Copies", 1.0, "Count")
        .emit();
    let reply = serde_json::json!({"outcome": outcome.kind(), "reason": reason(&outcome)});
    crate::lambda::json_response(status, reply.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nim::checksum::{body_md5, copy_checksum};
    use crate::queue::QueueError;
    use std::sync::Mutex;
    use std::time::Duration;

    const KEY: &str = "appkey-0001";
    const SECRET: &str = "c0d4e5f6a7b8";
    const NOW_MS: u64 = 1_700_000_000_000;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, QueueMessage)>>);

    #[async_trait::async_trait]
    impl Queue for Recorded {
        async fn send(&self, url: &str, msg: &QueueMessage) -> Result<(), QueueError> {
            if url == "broken" {
                return Err(QueueError { queue: url.into(), reason: "down".into() });
            }
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push((url.to_owned(), msg.clone()));
            Ok(())
        }
        async fn retry_after(&self, _: &str, _: &str, _: Duration) -> Result<(), QueueError> {
            Ok(())
        }
    }

    fn router(queue: Arc<Recorded>) -> NimRouter {
        NimRouter {
            app_key: KEY.into(),
            secret: SecretString::new(SECRET),
            limits: IntakeLimits::default(),
            robots: vec![KnownRobot { accid: "mybot".into(), nickname: Some("MyBot".into()) }],
            queue,
            c2c_queue_url: "c2c".into(),
            group_queue_url: "group".into(),
            store: Arc::new(crate::store::MemoryStore::new()),
            arrivals: Arrivals::default(),
        }
    }

    async fn post(r: &NimRouter, body: &str, secret: &str) -> (u16, Outcome) {
        let (t, md5) = (NOW_MS.to_string(), body_md5(body.as_bytes()));
        let sum = copy_checksum(secret, &md5, &t);
        let h = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
        r.handle(&h, body.as_bytes(), NOW_MS, "req").await.unwrap_or_else(|e| panic!("{e}"))
    }

    fn person(to: &str, text: &str, id: &str) -> String {
        serde_json::json!({"eventType": "1", "convType": "PERSON", "to": to, "fromAccount": "alice",
            "fromClientType": "IOS", "msgType": "TEXT", "body": text, "msgidServer": id})
        .to_string()
    }

    #[tokio::test]
    async fn an_addressed_copy_is_queued_once_per_delivery_with_the_job_key_as_dedup_id() {
        let q = Arc::new(Recorded::default());
        let r = router(q.clone());
        let body = person("mybot", "hello", "42");
        assert_eq!(post(&r, &body, SECRET).await, (200, Outcome::Queued { jobs: 1 }));
        assert_eq!(post(&r, &body, SECRET).await, (200, Outcome::Queued { jobs: 1 }));
        let sent = q.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], sent[1], "a copy delivered again is the same message: SQS drops it");
        let (url, msg) = &sent[0];
        let job = Job::decode(&msg.body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((url.as_str(), job.text.as_str(), job.msg_id.as_str()), ("c2c", "hello", "42"));
        assert_eq!(msg.dedup_id, Some(fifo_id(&job.key())));
        assert_eq!(msg.group_id, Some(fifo_id(&job.ordering_key())));
        let team = serde_json::json!({"eventType": "1", "convType": "TEAM", "to": "99", "fromAccount": "bob",
            "msgType": "TEXT", "body": "@MyBot hi", "msgidServer": "43"});
        assert_eq!(post(&r, &team.to_string(), SECRET).await, (200, Outcome::Queued { jobs: 1 }));
        assert_eq!(
            q.0.lock().unwrap_or_else(|p| p.into_inner()).last().map(|(u, _)| u.clone()).as_deref(),
            Some("group")
        );
    }

    #[tokio::test]
    async fn the_console_check_is_answered_200_and_queues_nothing_even_unverified() {
        let q = Arc::new(Recorded::default());
        let r = router(q.clone());
        assert_eq!(post(&r, "{}", SECRET).await, (200, Outcome::Ignored("console check of the URL".into())));
        let (status, outcome) = post(&r, "{}", "another-secret").await;
        assert_eq!((status, outcome.kind()), (200, "ignored"));
        assert!(q.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    }

    #[tokio::test]
    async fn copies_not_for_a_robot_are_ignored_and_bad_ones_refused_without_queueing() {
        let q = Arc::new(Recorded::default());
        let r = router(q.clone());
        assert_eq!(
            post(&r, &person("carol", "hi", "1"), SECRET).await.1,
            Outcome::Ignored("the receiver is not a robot".into())
        );
        let other = r#"{"eventType":"2","accid":"alice"}"#;
        assert_eq!(post(&r, other, SECRET).await.0, 200);
        // Forged: signed with another secret.
        let (status, outcome) = post(&r, &person("mybot", "hi", "2"), "forged").await;
        assert_eq!((status, outcome), (401, Outcome::Rejected("CheckSum does not match".into())));
        // Authentic junk.
        let (status, outcome) = post(&r, "not json", SECRET).await;
        assert_eq!((status, outcome.kind()), (400, "rejected"));
        // No headers at all.
        let bare = r.handle(&CopyHeaders::default(), b"{\"eventType\":\"1\"}", NOW_MS, "r").await;
        assert_eq!(bare.ok().map(|(s, _)| s), Some(401));
        // Too large: refused before anything is hashed.
        let small =
            NimRouter { limits: IntakeLimits { max_body_bytes: 8, ..IntakeLimits::default() }, ..router(q.clone()) };
        assert_eq!(post(&small, &person("mybot", "hi", "3"), SECRET).await.0, 413);
        assert!(q.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    }

    #[tokio::test]
    async fn a_queue_failure_is_an_error_so_the_copy_can_come_again() {
        let r = NimRouter { c2c_queue_url: "broken".into(), ..router(Arc::new(Recorded::default())) };
        let (t, body) = (NOW_MS.to_string(), person("mybot", "hello", "42"));
        let md5 = body_md5(body.as_bytes());
        let sum = copy_checksum(SECRET, &md5, &t);
        let h = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
        assert!(matches!(r.handle(&h, body.as_bytes(), NOW_MS, "r").await, Err(RouterError::Queue(_))));
    }
}
