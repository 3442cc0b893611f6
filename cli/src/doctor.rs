//! `tcbot doctor`: checks a deployment end to end and says what is wrong in plain words. Each
//! check prints PASS, FAIL or SKIP with a one-line reason; the exit code is 0 only when every
//! check passed (a skipped check is not a passed one: the run says how to give what it needs).
//! A check is skipped when the operator did not give what it needs (a URL), or when a check it
//! depends on failed (that one says why). Nothing a check does changes the
//! deployment: the Tencent calls read, the LLM is asked for one token, the test webhook is a
//! command the router acknowledges and ignores, and the queues are only counted.

use crate::ctx::{Ctx, Fail, Res};
use crate::send::post_tencent;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use futures_util::StreamExt;
use shared::bot::job::Platform;
use shared::config::{DEFAULT_LLM_API_STYLE, DEFAULT_LLM_BASE_URL, DEFAULT_LLM_MODEL};
use shared::llm::{ChatMessage, ChatRequest, Delta, Endpoint, Llm, LlmError, OpenAiClient, Timeouts};
use shared::secrets::AppSecrets;
use shared::tencent::RestClient;
use shared::tencent::client::RestOptions;
use std::time::Duration;

/// Check a deployment end to end: secret, Tencent, admin, robots, LLM, table, queues, webhook, DLQs
#[derive(Debug, clap::Args)]
#[command(after_long_help = DOCTOR_HELP)]
pub struct Args {
    /// Print the checks as one JSON object (for automation)
    #[arg(long)]
    json: bool,
    /// The router's webhook URL (the stack's WebhookUrl output); without it the webhook check is skipped
    #[arg(long, env = "TCBOT_WEBHOOK_URL", value_name = "URL")]
    webhook_url: Option<String>,
    /// The chatbot's one-to-one queue
    #[arg(long, env = "TCBOT_C2C_QUEUE_URL", value_name = "URL")]
    c2c_queue: Option<String>,
    /// The chatbot's group queue
    #[arg(long, env = "TCBOT_GROUP_QUEUE_URL", value_name = "URL")]
    group_queue: Option<String>,
    /// The statistics function's queue
    #[arg(long, env = "TCBOT_STATS_QUEUE_URL", value_name = "URL")]
    stats_queue: Option<String>,
    /// The presence function's queue
    #[arg(long, env = "TCBOT_PRESENCE_QUEUE_URL", value_name = "URL")]
    presence_queue: Option<String>,
    /// The group-created function's queue
    #[arg(long, env = "TCBOT_GROUP_CREATED_QUEUE_URL", value_name = "URL")]
    group_created_queue: Option<String>,
    /// The member-joined function's queue
    #[arg(long, env = "TCBOT_MEMBER_JOINED_QUEUE_URL", value_name = "URL")]
    member_joined_queue: Option<String>,
    /// The game-team function's queue
    #[arg(long, env = "TCBOT_TEAM_EVENTS_QUEUE_URL", value_name = "URL")]
    team_events_queue: Option<String>,
    /// A dead-letter queue that should be empty (repeat the flag, or a comma list in the variable)
    #[arg(long = "dlq", env = "TCBOT_DLQ_URLS", value_name = "URL", value_delimiter = ',')]
    dlqs: Vec<String>,
    /// The LLM's OpenAI-compatible base URL
    #[arg(long, env = "TCBOT_LLM_BASE_URL", value_name = "URL", default_value = DEFAULT_LLM_BASE_URL)]
    llm_base_url: String,
    /// The model the robots use
    #[arg(long, env = "TCBOT_LLM_MODEL", value_name = "MODEL", default_value = DEFAULT_LLM_MODEL)]
    llm_model: String,
    /// openai or azure
    #[arg(long, env = "TCBOT_LLM_API_STYLE", value_name = "STYLE", default_value = DEFAULT_LLM_API_STYLE)]
    llm_api_style: String,
}

const DOCTOR_HELP: &str = "Checks, in order:
  secret    the app secret's fields (SdkAppId, SecretKey, an LLM key) and the WebhookToken
  tencent   a harmless REST call (the robot list) with the admin's UserSig
  admin     the admin account (AdminIdentifier) exists in the app
  robots    every Tencent robot with a profile in the table exists in Tencent
  llm       the LLM endpoint answers a one-token request with the configured model
  table     the DynamoDB table exists
  queues    the queues given (flags or the functions' TCBOT_*_QUEUE_URL) exist
  webhook   the webhook URL answers a signed test webhook with OK and a forged one with FAIL
  dlqs      the dead-letter queues given (--dlq, TCBOT_DLQ_URLS) are empty
Exit code 0 only when no check failed; 1 when one did.";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's outcome, with its reason in one line.
#[derive(Debug)]
struct Check {
    name: &'static str,
    status: Status,
    reason: String,
}

fn pass(name: &'static str, reason: impl Into<String>) -> Check {
    Check { name, status: Status::Pass, reason: reason.into() }
}
fn fail(name: &'static str, reason: impl Into<String>) -> Check {
    Check { name, status: Status::Fail, reason: reason.into() }
}
fn skip(name: &'static str, reason: impl Into<String>) -> Check {
    Check { name, status: Status::Skip, reason: reason.into() }
}

pub async fn run(ctx: &Ctx, a: &Args) -> Res<()> {
    let checks = checks(ctx, a).await;
    if a.json {
        let list: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "status": c.status.word(), "reason": c.reason}))
            .collect();
        let ok = checks.iter().all(|c| c.status == Status::Pass);
        println!("{}", serde_json::json!({"ok": ok, "checks": list}));
    } else {
        for c in &checks {
            println!("{}  {:<8} {}", c.status.word(), c.name, c.reason);
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    match (count(Status::Fail), count(Status::Skip)) {
        (0, 0) => Ok(()),
        (0, n) => {
            Err(Fail::Op(format!("{n} check(s) skipped: nothing failed, but the deployment is not fully checked")))
        }
        (n, _) => Err(Fail::Op(format!("{n} check(s) failed"))),
    }
}

async fn checks(ctx: &Ctx, a: &Args) -> Vec<Check> {
    let mut out = Vec::new();
    // The secret, which most checks need.
    let secret = ctx.secrets().await;
    let webhook_secret = match &secret {
        // The same secret, unless the router's has its own.
        Ok(app) if crate::ctx::set(&ctx.settings.webhook_secret_id).is_none() => Some(Ok(app.clone())),
        Ok(_) => Some(ctx.webhook_secrets().await),
        Err(_) => None,
    };
    out.push(check_secret(&secret, webhook_secret.as_ref()));
    let secret = secret.ok();

    // Tencent: the credentials, the admin, the robots.
    let rest = match &secret {
        None => None,
        Some(s) => match (ctx.tencent_endpoint(), s.require_secret_key()) {
            (Ok(endpoint), Ok(key)) => {
                // One attempt, briefly: a diagnosis should not wait out the functions' retries.
                let opts = RestOptions {
                    base_url: endpoint.0,
                    timeout: Duration::from_secs(10),
                    max_attempts: 1,
                    ..RestOptions::default()
                };
                Some(RestClient::new(
                    reqwest::Client::new(),
                    opts,
                    s.sdk_app_id,
                    s.admin_identifier.clone(),
                    key.clone(),
                ))
            }
            (Err(e), _) => {
                out.push(fail("tencent", e.to_string()));
                None
            }
            (_, Err(_)) => None,
        },
    };
    let robots = match &rest {
        None if out.iter().any(|c| c.name == "tencent") => None,
        None => {
            out.push(skip("tencent", "needs the secret's SdkAppId and SecretKey (see the secret check)"));
            None
        }
        Some(rest) => match rest.get_all_robots().await {
            Ok(r) => {
                out.push(pass(
                    "tencent",
                    format!("the REST API accepts the admin's UserSig ({} robot(s))", r.robot_account.len()),
                ));
                Some(r.robot_account)
            }
            Err(e) => {
                out.push(fail(
                    "tencent",
                    format!("Tencent refused the credentials (SdkAppId, SecretKey, AdminIdentifier, region): {e}"),
                ));
                None
            }
        },
    };
    out.push(match (&rest, &secret, &robots) {
        (Some(rest), Some(s), Some(_)) => check_admin(rest, &s.admin_identifier).await,
        _ => skip("admin", "needs a working Tencent REST call (see the tencent check)"),
    });
    out.push(match &robots {
        Some(robots) => check_robots(ctx, robots).await,
        None => skip("robots", "needs the robot list from Tencent (see the tencent check)"),
    });

    out.push(match &secret {
        Some(s) => check_llm(a, s).await,
        None => skip("llm", "needs the secret's LLM key (see the secret check)"),
    });
    out.push(check_table(ctx).await);
    out.push(check_queues(ctx, a).await);
    out.push(match webhook_secret {
        Some(Ok(ws)) => check_webhook(a, &ws).await,
        Some(Err(_)) | None => skip("webhook", "needs the webhook secret (see the secret check)"),
    });
    out.push(check_dlqs(ctx, a).await);
    out
}

fn check_secret(app: &Res<AppSecrets>, webhook: Option<&Res<AppSecrets>>) -> Check {
    let s = match app {
        Ok(s) => s,
        Err(Fail::Usage(e) | Fail::Op(e)) => return fail("secret", format!("the app secret cannot be read: {e}")),
    };
    let mut missing = Vec::new();
    if s.sdk_app_id == 0 {
        missing.push("SdkAppId");
    }
    if s.secret_key.is_empty() {
        missing.push("SecretKey");
    }
    if s.llm_api_key.as_ref().is_none_or(|k| k.is_empty()) && s.llm_api_keys.is_empty() {
        missing.push("LlmApiKey");
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("{} empty in {}", missing.join(", "), s.source));
    }
    match webhook {
        Some(Ok(w)) => {
            if w.webhook_token.as_ref().is_none_or(|t| t.is_empty()) {
                problems.push(format!(
                    "no WebhookToken in {} (the router refuses to start without one, unless unsigned webhooks are allowed)",
                    w.source
                ));
            }
            if w.sdk_app_id != s.sdk_app_id {
                problems.push(format!("the SdkAppId of {} is not the app secret's", w.source));
            }
        }
        Some(Err(Fail::Usage(e) | Fail::Op(e))) => problems.push(format!("the webhook secret cannot be read: {e}")),
        None => {}
    }
    if problems.is_empty() {
        pass(
            "secret",
            format!("app {}, admin {}, SecretKey, LLM key and WebhookToken set", s.sdk_app_id, s.admin_identifier),
        )
    } else {
        fail("secret", problems.join("; "))
    }
}

async fn check_admin(rest: &RestClient, admin: &str) -> Check {
    match rest.account_check(&[admin]).await {
        Ok(r) if r.result_item.iter().any(|i| i.user_id == admin && i.exists()) => {
            pass("admin", format!("the admin account {admin} exists"))
        }
        Ok(_) => fail(
            "admin",
            format!("the admin account {admin} does not exist in the app: set AdminIdentifier to the app's admin"),
        ),
        Err(e) => fail("admin", format!("could not check the admin account {admin}: {e}")),
    }
}

/// The Tencent robots that have a profile in the table.
async fn profiled_robots(ctx: &Ctx) -> Res<Vec<String>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let table = ctx.table()?.to_owned();
    let ddb = aws_sdk_dynamodb::Client::new(ctx.aws().await);
    let mut bots = Vec::new();
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S(shared::keys::profile(Platform::Tencent, "")))
            .projection_expression("pk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| Fail::Op(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
        for item in out.items() {
            if let Some(AttributeValue::S(pk)) = item.get("pk")
                && let Some((Platform::Tencent, bot)) = shared::keys::profile_owner(pk)
            {
                bots.push(bot.to_owned());
            }
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(bots);
        }
    }
}

async fn check_robots(ctx: &Ctx, in_tencent: &[String]) -> Check {
    let bots = match profiled_robots(ctx).await {
        Ok(b) => b,
        Err(Fail::Usage(e)) => return skip("robots", e),
        Err(Fail::Op(e)) => return fail("robots", format!("could not read the profiles in the table: {e}")),
    };
    let missing: Vec<&str> = bots.iter().filter(|b| !in_tencent.contains(b)).map(String::as_str).collect();
    match (bots.len(), missing.is_empty()) {
        (0, _) => pass("robots", "no Tencent robot has a profile in the table"),
        (n, true) => pass("robots", format!("all {n} robot(s) with a profile exist in Tencent")),
        (_, false) => fail(
            "robots",
            format!(
                "robot(s) with a profile but not in Tencent: {} (create them with `tcbot robot create`)",
                missing.join(", ")
            ),
        ),
    }
}

async fn check_llm(a: &Args, s: &AppSecrets) -> Check {
    let req = ChatRequest {
        endpoint: Endpoint {
            base_url: a.llm_base_url.trim_end_matches('/').to_owned(),
            api_style: a.llm_api_style.clone(),
            api_version: None,
            api_key: s.llm_key(None).cloned(),
        },
        model: a.llm_model.clone(),
        messages: vec![ChatMessage::new("user", "Say OK.")],
        temperature: None,
        max_tokens: Some(1),
    };
    let timeouts = Timeouts {
        first_token: Duration::from_secs(20),
        idle: Duration::from_secs(10),
        total: Duration::from_secs(30),
    };
    let where_ = format!("model {} at {}", a.llm_model, req.endpoint.base_url);
    let llm = OpenAiClient::new(reqwest::Client::new());
    let mut stream = match llm.stream(&req, timeouts).await {
        Ok(s) => s,
        Err(e) => return fail("llm", format!("{where_}: {}", llm_reason(&e))),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(Delta::Text(t)) if !t.is_empty() => return pass("llm", format!("{where_} answered")),
            Ok(_) => {}
            Err(e) => return fail("llm", format!("{where_}: {}", llm_reason(&e))),
        }
    }
    // A reasoning model may spend its one token thinking: it answered all the same.
    pass("llm", format!("{where_} answered (no text within one token)"))
}

fn llm_reason(e: &LlmError) -> String {
    match e {
        LlmError::Http { status: 401 | 403, .. } => format!("{e} (is LlmApiKey right for this endpoint?)"),
        LlmError::Http { status: 404, .. } => format!("{e} (does the model exist at this base URL?)"),
        _ => e.to_string(),
    }
}

async fn check_table(ctx: &Ctx) -> Check {
    let table = match ctx.table() {
        Ok(t) => t.to_owned(),
        Err(Fail::Usage(e) | Fail::Op(e)) => return skip("table", e),
    };
    let ddb = aws_sdk_dynamodb::Client::new(ctx.aws().await);
    match ddb.describe_table().table_name(&table).send().await {
        Ok(out) => {
            let status = out.table().and_then(|t| t.table_status()).map(|s| s.as_str().to_owned());
            match status.as_deref() {
                Some("ACTIVE") => pass("table", format!("{table} exists and is active")),
                other => fail("table", format!("{table} is {}", other.unwrap_or("in an unknown state"))),
            }
        }
        Err(e) => {
            fail("table", format!("{table} cannot be described: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
        }
    }
}

fn queues(a: &Args) -> Vec<(&'static str, &str)> {
    [
        ("c2c", &a.c2c_queue),
        ("group", &a.group_queue),
        ("stats", &a.stats_queue),
        ("presence", &a.presence_queue),
        ("group-created", &a.group_created_queue),
        ("member-joined", &a.member_joined_queue),
        ("team-events", &a.team_events_queue),
    ]
    .into_iter()
    .filter_map(|(name, url)| Some((name, url.as_deref().map(str::trim).filter(|u| !u.is_empty())?)))
    .collect()
}

/// The queue's visible, in-flight and delayed message counts.
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::ApproximateNumberOfMessages)
        .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(Attr::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let attrs = out.attributes.unwrap_or_default();
    Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}

async fn check_queues(ctx: &Ctx, a: &Args) -> Check {
    let queues = queues(a);
    if queues.is_empty() {
        return skip("queues", "no queue URL given (--c2c-queue, --group-queue, … or TCBOT_*_QUEUE_URL)");
    }
    let sqs = aws_sdk_sqs::Client::new(ctx.aws().await);
    let mut missing = Vec::new();
    for (name, url) in &queues {
        if let Err(e) = depth(&sqs, url).await {
            missing.push(format!("{name} ({url}): {e}"));
        }
    }
    if missing.is_empty() {
        let names: Vec<&str> = queues.iter().map(|(n, _)| *n).collect();
        pass("queues", format!("{} exist", names.join(", ")))
    } else {
        fail("queues", format!("cannot be read: {}", missing.join("; ")))
    }
}

/// The body of the test webhooks: a command the router acknowledges with OK and ignores.
const TEST_COMMAND: &str = "Tcbot.Doctor";

async fn check_webhook(a: &Args, s: &AppSecrets) -> Check {
    let Some(url) = a.webhook_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return skip("webhook", "no webhook URL given (--webhook-url or TCBOT_WEBHOOK_URL: the stack's WebhookUrl)");
    };
    let Some(token) = s.webhook_token.as_ref().filter(|t| !t.is_empty()) else {
        return fail("webhook", format!("{} has no WebhookToken to sign the test webhook with", s.source));
    };
    let body = serde_json::json!({ "CallbackCommand": TEST_COMMAND }).to_string();
    match post_tencent(url, body.clone(), TEST_COMMAND, s.sdk_app_id, Some(token.expose())).await {
        Ok(answer) if answer.accepted() => {}
        Ok(answer) => {
            return fail(
                "webhook",
                format!(
                    "a webhook signed with the secret's WebhookToken was refused (HTTP {}: {}): is the token the router's and the console's?",
                    answer.status,
                    one_line(&answer.text)
                ),
            );
        }
        Err(Fail::Usage(e) | Fail::Op(e)) => return fail("webhook", format!("{url} cannot be reached: {e}")),
    }
    // Forged: signed with a token that is not the secret's.
    let forged = format!("forged-{}", fastrand_token());
    match post_tencent(url, body, TEST_COMMAND, s.sdk_app_id, Some(&forged)).await {
        Ok(answer) if answer.accepted() => fail(
            "webhook",
            "a forged webhook was accepted: the router does not check signatures (TCBOT_ALLOW_UNSIGNED?)",
        ),
        Ok(_) => pass("webhook", "a signed test webhook was accepted and a forged one refused"),
        Err(Fail::Usage(e) | Fail::Op(e)) => fail("webhook", format!("{url} cannot be reached: {e}")),
    }
}

/// A token no secret holds: the clock's nanoseconds.
fn fastrand_token() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1)
}

/// The first 200 characters of `text`, on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect()
}

async fn check_dlqs(ctx: &Ctx, a: &Args) -> Check {
    let dlqs: Vec<&str> = a.dlqs.iter().map(|u| u.trim()).filter(|u| !u.is_empty()).collect();
    if dlqs.is_empty() {
        return skip("dlqs", "no dead-letter queue given (--dlq URL or TCBOT_DLQ_URLS)");
    }
    let sqs = aws_sdk_sqs::Client::new(ctx.aws().await);
    let mut problems = Vec::new();
    for url in &dlqs {
        match depth(&sqs, url).await {
            Ok(0) => {}
            Ok(n) => problems.push(format!("{url} holds {n} message(s) (see `tcbot dlq list`)")),
            Err(e) => problems.push(format!("{url} cannot be read: {e}")),
        }
    }
    if problems.is_empty() {
        pass("dlqs", format!("{} dead-letter queue(s) empty", dlqs.len()))
    } else {
        fail("dlqs", problems.join("; "))
    }
}
