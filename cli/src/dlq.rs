//! `tcbot dlq list|redrive`: read a chatbot dead-letter queue, and send its jobs back to be
//! answered again. The record format is `shared::bot::dead_letter`'s.
//!
//! An unreadable record has no job to send back, and it cannot stay where it is: kept hidden
//! in a FIFO queue it holds up every record of its group behind it, made visible again it is
//! read again on every pass, and sent to the same DLQ it would loop. So it is parked: appended
//! as one JSON line to a file the operator names (or `tcbot-dlq-parked.jsonl`), forced to disk,
//! and only then deleted from the DLQ. A file needs nothing created beforehand, is read with
//! any editor, and keeps the record whole for a fix by hand.

use crate::ctx::{Ctx, Res, op};
use crate::progress::Progress;
use aws_sdk_sqs::error::DisplayErrorContext;
use shared::bot::dead_letter::{DeadLetter, Unreadable};
use shared::queue::{Queue, QueueError, SqsQueue};
use shared::store::{DynamoStore, Store, StoreError};
use std::io::Write;

/// Where unreadable records are parked unless `--park FILE` says otherwise.
const DEFAULT_PARK: &str = "tcbot-dlq-parked.jsonl";
/// How long the receive that finds the DLQ empty waits. Any long poll asks every SQS server,
/// so an empty answer means empty (a short poll samples some); records are returned at once.
const WAIT_SECS: i32 = 2;
/// How long the records of one receive stay hidden while they are handled: ample for ten.
const HANDLE_SECS: i32 = 120;

/// Why a redrive stopped. Every record it had not settled stays in the DLQ.
#[derive(Debug, thiserror::Error)]
enum RedriveError {
    #[error("could not read the DLQ: {0}")]
    Receive(String),
    #[error("SQS returned a message without an id or receipt handle")]
    NoHandle,
    #[error("could not forget the answer to {key}: {source}")]
    Forget { key: String, source: StoreError },
    #[error("could not send {key} back: {source}")]
    SendBack { key: String, source: QueueError },
    #[error("could not park message {id} in {path}: {source}")]
    Park { id: String, path: String, source: std::io::Error },
    #[error("message {id} was {done} but could not be deleted from the DLQ: {reason}")]
    Delete { id: String, done: &'static str, reason: String },
}

/// Read a chatbot dead-letter queue, and send its jobs back to be answered again
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Show up to N dead letters (job key and reason), leaving them in the queue
    List {
        /// The dead-letter queue's URL
        dlq_url: String,
        /// How many to show (SQS returns at most 10 at a time)
        #[arg(long, value_name = "N", default_value_t = 10)]
        max: i32,
    },
    /// Send every dead-lettered job back to be answered again, until the DLQ is empty
    #[command(after_long_help = REDRIVE_HELP)]
    Redrive {
        /// The dead-letter queue's URL
        dlq_url: String,
        /// The queue to send the jobs back to (the DLQ's own work queue)
        queue_url: String,
        /// Where unreadable records are appended, one JSON line each
        #[arg(long, value_name = "FILE", default_value = DEFAULT_PARK)]
        park: String,
    },
}

const REDRIVE_HELP: &str = "Each job goes back in its conversation's FIFO group and is deleted from the DLQ only once
sent. An unreadable record has no job to send back and cannot stay (in a FIFO queue it would
hold up the records of its group behind it): it is parked, appended to FILE as one JSON line
with message_id, error and body (the body may hold a user's message; a new file is readable by
its owner only), then deleted from the DLQ. It prints exact counts: redriven N, parked N, left N
(read but kept in the DLQ by an error, exit code 1). On a terminal it shows its progress on
stderr.";

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    match cmd {
        Cmd::List { dlq_url, max } => list(ctx, dlq_url, *max).await,
        Cmd::Redrive { dlq_url, queue_url, park } => redrive(ctx, dlq_url, queue_url, park).await,
    }
}

/// What a redrive did with the records it read; every count is exact.
#[derive(Debug, Default)]
struct Tally {
    /// Sent back to the work queue and deleted from the DLQ.
    redriven: usize,
    /// Written to the park file and deleted from the DLQ.
    parked: usize,
    /// Read but not settled, because an error stopped the run: still in the DLQ.
    left: usize,
}

/// `tcbot dlq list DLQ_URL [--max N]`: up to N records, each with its job's key and reason,
/// left in the queue.
async fn list(ctx: &Ctx, dlq: &str, max: i32) -> Res<()> {
    let sqs = aws_sdk_sqs::Client::new(ctx.aws().await);
    let out = sqs
        .receive_message()
        .queue_url(dlq)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(0)
        .send()
        .await
        .map_err(|e| op(DisplayErrorContext(e)))?;
    let msgs = out.messages.unwrap_or_default();
    println!("{} message(s)", msgs.len());
    for m in msgs {
        match DeadLetter::parse(m.body().unwrap_or_default()) {
            Ok(d) => {
                let reason = d.reason.as_deref().unwrap_or("moved by SQS after too many receives");
                println!("{}  reason: {reason}", d.job.key());
            }
            Err(e) => println!("(unreadable) message {}: {e}", m.message_id().unwrap_or_default()),
        }
    }
    Ok(())
}

/// `tcbot dlq redrive DLQ_URL QUEUE_URL [--park FILE]`: until the DLQ is empty, sends every
/// readable job back and parks every unreadable record, then prints the counts (also when an
/// error stops it).
async fn redrive(ctx: &Ctx, dlq: &str, queue: &str, park: &str) -> Res<()> {
    let sqs = aws_sdk_sqs::Client::new(ctx.aws().await);
    let store = ctx.store().await?;
    let run = Redrive { sqs: sqs.clone(), queue: SqsQueue::new(sqs), store, dlq, to: queue, park };
    let mut tally = Tally::default();
    let mut progress = Progress::stderr();
    let result = run.all(&mut tally, &mut progress).await;
    progress.clear();
    println!("redriven {}, parked {}, left {}", tally.redriven, tally.parked, tally.left);
    if tally.parked > 0 {
        let path = std::fs::canonicalize(park).map_or_else(|_| park.to_owned(), |p| p.display().to_string());
        println!("parked records appended to {path} (one JSON line each: message_id, error, body)");
    }
    result.map_err(op)
}

struct Redrive<'a> {
    sqs: aws_sdk_sqs::Client,
    queue: SqsQueue,
    store: DynamoStore,
    dlq: &'a str,
    to: &'a str,
    park: &'a str,
}

impl Redrive<'_> {
    async fn all(&self, tally: &mut Tally, progress: &mut Progress) -> Result<(), RedriveError> {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(self.dlq)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECS)
                .visibility_timeout(HANDLE_SECS)
                .send()
                .await
                .map_err(|e| RedriveError::Receive(DisplayErrorContext(e).to_string()))?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                return Ok(());
            }
            tally.left += msgs.len();
            // In the order received, which in a FIFO queue is each group's order; an error
            // stops here, so nothing overtakes a record left behind.
            for m in &msgs {
                let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                    return Err(RedriveError::NoHandle);
                };
                let body = m.body().unwrap_or_default();
                let parked = match DeadLetter::parse(body) {
                    Ok(d) => {
                        self.send_back(&d, id).await?;
                        false
                    }
                    Err(why) => {
                        self.park_one(id, &why, body)?;
                        true
                    }
                };
                // Deleted only once it is safe elsewhere. Should this fail, a rerun within
                // SQS's 5-minute window sends no second copy (the send's dedup id names this
                // DLQ message); a parked record would be appended again.
                self.sqs.delete_message().queue_url(self.dlq).receipt_handle(handle).send().await.map_err(|e| {
                    let done = if parked { "parked" } else { "sent back" };
                    RedriveError::Delete { id: id.to_owned(), done, reason: DisplayErrorContext(e).to_string() }
                })?;
                if parked {
                    tally.parked += 1;
                } else {
                    tally.redriven += 1;
                }
                tally.left -= 1;
                progress.show(&format!("redriven {}, parked {}…", tally.redriven, tally.parked));
            }
        }
    }

    async fn send_back(&self, d: &DeadLetter, dlq_message_id: &str) -> Result<(), RedriveError> {
        let key = d.job.key();
        // Forget that it was answered (with the apology), so the worker answers it again. Before
        // the send: after it, the worker could read the old record first and skip the job.
        let reply = shared::keys::reply_of_key(&key);
        self.store.delete_doc(&reply).await.map_err(|source| RedriveError::Forget { key: key.clone(), source })?;
        self.queue
            .send(self.to, &d.redrive_message(dlq_message_id))
            .await
            .map_err(|source| RedriveError::SendBack { key, source })
    }

    fn park_one(&self, id: &str, why: &Unreadable, body: &str) -> Result<(), RedriveError> {
        let line = serde_json::json!({ "message_id": id, "error": why.to_string(), "body": body });
        append_synced(self.park, &line.to_string()).map_err(|source| RedriveError::Park {
            id: id.to_owned(),
            path: self.park.to_owned(),
            source,
        })
    }
}

/// Appends `line` to the file at `path` and forces it to disk. A parked body may hold a user's
/// message, so a new file is readable by its owner only.
fn append_synced(path: &str, line: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{line}")?;
    f.sync_data()
}
