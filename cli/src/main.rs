//! `tcbot`: the admin CLI. Exit codes: 0 done, 1 the operation failed (Tencent or AWS said no,
//! a webhook was refused), 2 bad usage or configuration.

use shared::bot::job::Job;
use shared::bot::profile::BotProfile;
use shared::config::TencentEndpoint;
use shared::queue::fifo_id;
use shared::secrets::AppSecrets;
use shared::store::{DynamoStore, Store};
use shared::tencent::client::RestOptions;
use shared::tencent::{CreateRobot, DeleteRobot, RestClient, usersig};
use shared::webhook::CallbackQuery;
use std::process::ExitCode;

const HELP: &str = "tcbot: administer the Tencent Cloud Chat chatbot backend

USAGE
  tcbot usersig [--identifier ID] [--expire SECS]     print a UserSig (default: the admin, 1 day)
  tcbot robot create ID [--nick NAME] [--face-url URL] [--signature TEXT]
  tcbot robot list
  tcbot robot delete ID
  tcbot profile set BOT (--file PATH | --json JSON)   a bot's system prompt, model, window, quota, group scope
  tcbot profile show BOT
  tcbot send URL (--event FILE | --body FILE) [--command CMD]
                                                       sign a webhook as Tencent does and POST it to URL
  tcbot conversation show (--bot BOT --user USER | --group GROUP --bot BOT [--topic T] | --id CONV)
  tcbot conversation clear (same selectors)
  tcbot dlq list DLQ_URL [--max N]
  tcbot dlq redrive DLQ_URL QUEUE_URL                  send dead-lettered jobs back to be answered again

CONFIGURATION (environment)
  TCBOT_SECRET_ID or TCBOT_LOCAL_SECRET_FILE   the app secret (SdkAppId, SecretKey, WebhookToken, …)
  TCBOT_TABLE_NAME                             the DynamoDB table (profile, conversation, dlq redrive)
  TCBOT_TENCENT_REGION or TCBOT_TENCENT_BASE_URL   Tencent's REST endpoint (default: singapore)
  AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, …  the standard AWS SDK settings
";

/// A failure, with the exit code it maps to.
#[derive(Debug)]
enum Fail {
    Usage(String),
    Op(String),
}

type Res<T> = Result<T, Fail>;

fn usage<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Usage(msg.into()))
}

fn op(e: impl std::fmt::Display) -> Fail {
    Fail::Op(e.to_string())
}

/// Positional arguments and `--flag value` options.
struct Args {
    pos: Vec<String>,
    opts: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: Vec<String>) -> Res<Args> {
        let mut a = Args { pos: Vec::new(), opts: Vec::new() };
        let mut it = raw.into_iter();
        while let Some(x) = it.next() {
            if let Some(name) = x.strip_prefix("--") {
                let Some(v) = it.next() else {
                    return usage(format!("--{name} needs a value"));
                };
                a.opts.push((name.to_owned(), v));
            } else {
                a.pos.push(x);
            }
        }
        Ok(a)
    }
    fn opt(&self, name: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn pos(&self, i: usize, what: &str) -> Res<&str> {
        self.pos.get(i).map(String::as_str).ok_or_else(|| Fail::Usage(format!("missing {what}")))
    }
    fn check(&self, allowed: &[&str]) -> Res<()> {
        match self.opts.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => usage(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

async fn secrets(cfg: &aws_config::SdkConfig) -> Res<AppSecrets> {
    if let Some(path) = env("TCBOT_LOCAL_SECRET_FILE") {
        return AppSecrets::from_file(&path).map_err(op);
    }
    let Some(id) = env("TCBOT_SECRET_ID") else {
        return usage("set TCBOT_SECRET_ID (or TCBOT_LOCAL_SECRET_FILE) to the app secret");
    };
    AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(cfg), &id).await.map_err(op)
}

async fn store(cfg: &aws_config::SdkConfig) -> Res<DynamoStore> {
    let Some(table) = env("TCBOT_TABLE_NAME") else {
        return usage("set TCBOT_TABLE_NAME to the stack's table");
    };
    Ok(DynamoStore::new(aws_sdk_dynamodb::Client::new(cfg), table))
}

async fn rest(cfg: &aws_config::SdkConfig) -> Res<RestClient> {
    let s = secrets(cfg).await?;
    let base = match env("TCBOT_TENCENT_BASE_URL") {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => {
            TencentEndpoint::for_region(&env("TCBOT_TENCENT_REGION").unwrap_or_else(|| "singapore".into()))
                .map_err(|e| Fail::Usage(format!("TCBOT_TENCENT_REGION: {e}")))?
                .0
        }
    };
    let opts = RestOptions { base_url: base, ..RestOptions::default() };
    Ok(RestClient::new(reqwest::Client::new(), opts, s.sdk_app_id, s.admin_identifier.clone(), s.secret_key.clone()))
}

fn conversation_id(a: &Args) -> Res<String> {
    if let Some(id) = a.opt("id") {
        return Ok(id.to_owned());
    }
    match (a.opt("bot"), a.opt("user"), a.opt("group")) {
        (Some(bot), Some(user), None) => Ok(format!("c2c#{bot}#{user}")),
        (Some(bot), None, Some(group)) => Ok(format!("grp#{group}#{}#{bot}", a.opt("topic").unwrap_or(""))),
        (Some(bot), Some(user), Some(group)) => {
            Ok(format!("grp#{group}#{}#{bot}#{user}", a.opt("topic").unwrap_or("")))
        }
        _ => usage("name the conversation: --bot and --user, --bot and --group, or --id"),
    }
}

fn read_file(path: &str) -> Res<String> {
    std::fs::read_to_string(path).map_err(|e| Fail::Usage(format!("{path}: {e}")))
}

async fn run(raw: Vec<String>) -> Res<()> {
    let a = Args::parse(raw)?;
    let words: Vec<&str> = a.pos.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        [] | ["help"] => {
            print!("{HELP}");
            Ok(())
        }
        ["usersig", ..] => {
            a.check(&["identifier", "expire"])?;
            let s = secrets(&aws().await).await?;
            let id = a.opt("identifier").unwrap_or(&s.admin_identifier).to_owned();
            let expire: u64 =
                a.opt("expire").unwrap_or("86400").parse().map_err(|_| Fail::Usage("--expire takes seconds".into()))?;
            let sig = usersig::generate(
                s.sdk_app_id,
                s.secret_key.expose().as_bytes(),
                &id,
                expire,
                shared::store::now_secs(),
            );
            println!("{sig}");
            Ok(())
        }
        ["robot", "create"] => {
            a.check(&["nick", "face-url", "signature"])?;
            let id = a.pos(2, "the robot's UserID (it must start with @RBT#)")?;
            if !id.starts_with("@RBT#") {
                return usage("a robot's UserID must start with @RBT#");
            }
            let req = CreateRobot {
                user_id: id.to_owned(),
                nick: a.opt("nick").map(str::to_owned),
                face_url: a.opt("face-url").map(str::to_owned),
                self_signature: a.opt("signature").map(str::to_owned),
            };
            rest(&aws().await).await?.create_robot(&req).await.map_err(op)?;
            println!("created robot {id}");
            Ok(())
        }
        ["robot", "list"] => {
            a.check(&[])?;
            let robots = rest(&aws().await).await?.get_all_robots().await.map_err(op)?;
            for r in robots.robot_account {
                println!("{r}");
            }
            Ok(())
        }
        ["robot", "delete"] => {
            a.check(&[])?;
            let id = a.pos(2, "the robot's UserID")?;
            rest(&aws().await).await?.delete_robot(&DeleteRobot { robot_account: id.to_owned() }).await.map_err(op)?;
            println!("deleted robot {id}");
            Ok(())
        }
        ["profile", "set"] => {
            a.check(&["file", "json"])?;
            let bot = a.pos(2, "the robot's UserID")?;
            let json = match (a.opt("file"), a.opt("json")) {
                (Some(f), None) => read_file(f)?,
                (None, Some(j)) => j.to_owned(),
                _ => return usage("give the profile with --file PATH or --json JSON"),
            };
            let profile: BotProfile =
                serde_json::from_str(&json).map_err(|e| Fail::Usage(format!("invalid profile: {e}")))?;
            let doc = serde_json::to_string(&profile).map_err(op)?;
            store(&aws().await).await?.put_doc(&BotProfile::key(bot), &doc, None).await.map_err(op)?;
            println!("profile of {bot} saved");
            Ok(())
        }
        ["profile", "show"] => {
            a.check(&[])?;
            let bot = a.pos(2, "the robot's UserID")?;
            match store(&aws().await).await?.get_doc(&BotProfile::key(bot)).await.map_err(op)? {
                Some(doc) => println!("{doc}"),
                None => println!("{bot} has no profile; the deployment's defaults apply"),
            }
            Ok(())
        }
        ["send", ..] => {
            a.check(&["event", "body", "command"])?;
            let url = a.pos(1, "the webhook URL")?;
            send(url, &a).await
        }
        ["conversation", "show"] => {
            let conv = conversation_id(&a)?;
            let turns = store(&aws().await).await?.recent_turns(&conv, 0, 1000).await.map_err(op)?;
            if turns.is_empty() {
                println!("{conv}: no turns");
            }
            for t in turns {
                let who = t.speaker.clone().unwrap_or_else(|| format!("{:?}", t.role).to_lowercase());
                println!("{} {who}: {}", t.at_ms, t.text);
            }
            Ok(())
        }
        ["conversation", "clear"] => {
            let conv = conversation_id(&a)?;
            shared::bot::window::reset(&store(&aws().await).await?, &conv).await.map_err(op)?;
            println!("{conv}: cleared");
            Ok(())
        }
        ["dlq", "list"] => {
            a.check(&["max"])?;
            let dlq = a.pos(2, "the dead-letter queue URL")?;
            let max: i32 =
                a.opt("max").unwrap_or("10").parse().map_err(|_| Fail::Usage("--max takes a number".into()))?;
            let sqs = aws_sdk_sqs::Client::new(&aws().await);
            let out = sqs
                .receive_message()
                .queue_url(dlq)
                .max_number_of_messages(max.clamp(1, 10))
                .visibility_timeout(0)
                .send()
                .await
                .map_err(|e| op(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            let msgs = out.messages.unwrap_or_default();
            println!("{} message(s)", msgs.len());
            for m in msgs {
                let (job, reason) = unwrap_dead_letter(m.body().unwrap_or_default());
                let key = job.as_ref().map(Job::key).unwrap_or_else(|| "(unreadable job)".into());
                println!(
                    "{key}  reason: {}",
                    reason.unwrap_or_else(|| "redriven by SQS after too many receives".into())
                );
            }
            Ok(())
        }
        ["dlq", "redrive"] => {
            a.check(&[])?;
            let dlq = a.pos(2, "the dead-letter queue URL")?;
            let queue = a.pos(3, "the queue URL to send the jobs back to")?;
            redrive(dlq, queue).await
        }
        _ => usage(format!("unknown command {:?}; run `tcbot help`", a.pos.join(" "))),
    }
}

/// A DLQ body is either our own record `{"reason", "job": "<job JSON>"}` or, when SQS moved it
/// after too many receives, the job itself.
fn unwrap_dead_letter(body: &str) -> (Option<Job>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match v.get("job").and_then(|j| j.as_str()) {
        Some(job) => (serde_json::from_str(job).ok(), v.get("reason").and_then(|r| r.as_str()).map(str::to_owned)),
        None => (serde_json::from_str(body).ok(), None),
    }
}

async fn redrive(dlq: &str, queue: &str) -> Res<()> {
    let cfg = aws().await;
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let store = store(&cfg).await?;
    let mut moved = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| op(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let (Some(job), _) = unwrap_dead_letter(m.body().unwrap_or_default()) else {
                eprintln!("skipping an unreadable message {}", m.message_id().unwrap_or_default());
                continue;
            };
            // Forget that it was answered (with the apology), so the worker answers it again.
            store.delete_doc(&format!("reply#{}", job.key())).await.map_err(op)?;
            let body = serde_json::to_string(&job).map_err(op)?;
            sqs.send_message()
                .queue_url(queue)
                .message_body(body)
                .message_group_id(fifo_id(&job.ordering_key()))
                .message_deduplication_id(fifo_id(&format!("{}#redrive#{}", job.key(), shared::store::now_ms())))
                .send()
                .await
                .map_err(|e| op(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            sqs.delete_message()
                .queue_url(dlq)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| op(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            moved += 1;
        }
    }
    println!("redrove {moved} job(s)");
    Ok(())
}

async fn send(url: &str, a: &Args) -> Res<()> {
    let (body, event_command) = match (a.opt("event"), a.opt("body")) {
        (Some(f), None) => {
            let v: serde_json::Value =
                serde_json::from_str(&read_file(f)?).map_err(|e| Fail::Usage(format!("{f}: {e}")))?;
            // An API Gateway envelope from events/, or a bare Tencent body.
            match (v.get("body").and_then(|b| b.as_str()), v.get("rawQueryString").and_then(|q| q.as_str())) {
                (Some(b), Some(q)) => (b.to_owned(), CallbackQuery::parse(q).command),
                _ => (v.to_string(), None),
            }
        }
        (None, Some(f)) => (read_file(f)?, None),
        _ => return usage("give the webhook with --event FILE or --body FILE"),
    };
    let body_command = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("CallbackCommand").and_then(|c| c.as_str()).map(str::to_owned));
    let Some(command) = a.opt("command").map(str::to_owned).or(event_command).or(body_command) else {
        return usage("the body has no CallbackCommand; give --command");
    };
    let s = secrets(&aws().await).await?;
    let token = s.webhook_token.as_ref().map(|t| t.expose().to_owned());
    let now = shared::store::now_secs() as i64;
    let q = CallbackQuery::encode(s.sdk_app_id, &command, token.as_deref().map(|t| (t, now)));
    let sep = if url.contains('?') { '&' } else { '?' };
    let res = reqwest::Client::new()
        .post(format!("{url}{sep}{q}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| op(e.without_url()))?;
    let status = res.status();
    let text = res.text().await.map_err(op)?;
    println!("HTTP {status}: {text}");
    let ok = status.is_success() && text.contains("\"ActionStatus\":\"OK\"");
    if ok { Ok(()) } else { Err(Fail::Op("the webhook was not accepted".into())) }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Op(e)) => {
            eprintln!("tcbot: {e}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(e)) => {
            eprintln!("tcbot: {e}\nrun `tcbot help` for usage");
            ExitCode::from(2)
        }
    }
}
