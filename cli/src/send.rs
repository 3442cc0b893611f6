//! `tcbot send`: a webhook signed as Tencent signs it (or a message copy signed as NIM signs
//! it), POSTed to any URL. `doctor` signs its test webhooks with [`post_tencent`] too.

use crate::ctx::{Ctx, Fail, PlatformArg, Res, op, read_file, usage};
use shared::bot::job::Platform;
use shared::webhook::CallbackQuery;
use std::path::PathBuf;

/// Sign a webhook (Tencent) or a message copy (NIM) as the platform does and POST it to URL
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to POST it: the router's webhook URL, or any URL
    url: String,
    #[command(flatten)]
    what: What,
    /// Tencent: the CallbackCommand [default: the event's query string or the body's CallbackCommand]
    #[arg(long, value_name = "CMD")]
    command: Option<String>,
    #[command(flatten)]
    platform: PlatformArg,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct What {
    /// An event file: an API Gateway envelope from events/ (its body and query string), or JSON
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// A body file, sent as it is
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
}

/// The body to send: `--body FILE` as it is, or `--event FILE`'s `body` when the file is an
/// API Gateway envelope from `events/` (with its query string), else the file's JSON.
fn event_or_body(w: &What) -> Res<(String, Option<String>)> {
    match (&w.event, &w.body) {
        (Some(f), _) => {
            let v: serde_json::Value =
                serde_json::from_str(&read_file(f)?).map_err(|e| Fail::Usage(format!("{}: {e}", f.display())))?;
            // A NIM copy has a `body` field of its own (the text): an envelope is known by its
            // request context.
            let envelope = v.get("requestContext").is_some() || v.get("rawQueryString").is_some();
            match v.get("body").and_then(|b| b.as_str()).filter(|_| envelope) {
                Some(b) => Ok((b.to_owned(), v.get("rawQueryString").and_then(|q| q.as_str()).map(str::to_owned))),
                None => Ok((v.to_string(), None)),
            }
        }
        (None, Some(f)) => Ok((read_file(f)?, None)),
        (None, None) => usage("give the webhook with --event FILE or --body FILE"),
    }
}

pub async fn run(ctx: &Ctx, a: &Args) -> Res<()> {
    match a.platform.platform {
        Platform::Tencent => send_tencent(ctx, a).await,
        Platform::Nim if a.command.is_some() => {
            usage("unknown option --command with --platform nim: a NIM message copy has no command")
        }
        Platform::Nim => send_nim(ctx, a).await,
    }
}

/// An HTTP answer: status and text.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

impl Answer {
    /// Whether the router accepted the webhook: HTTP 2xx with `"ActionStatus":"OK"`.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status) && self.text.contains("\"ActionStatus\":\"OK\"")
    }
}

/// POSTs `body` to `url` as Tencent sends the webhook `command` of app `app`: the query string
/// with `SdkAppid`, `CallbackCommand`, and, with `token`, `RequestTime` (now) and `Sign`.
pub async fn post_tencent(url: &str, body: String, command: &str, app: u64, token: Option<&str>) -> Res<Answer> {
    let now = shared::store::now_secs() as i64;
    let q = CallbackQuery::encode(app, command, token.map(|t| (t, now)));
    let sep = if url.contains('?') { '&' } else { '?' };
    let res = reqwest::Client::new()
        .post(format!("{url}{sep}{q}"))
        .timeout(std::time::Duration::from_secs(30))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| op(e.without_url()))?;
    let status = res.status().as_u16();
    let text = res.text().await.map_err(op)?;
    Ok(Answer { status, text })
}

async fn send_tencent(ctx: &Ctx, a: &Args) -> Res<()> {
    let (body, query) = event_or_body(&a.what)?;
    let event_command = query.and_then(|q| CallbackQuery::parse(&q).command);
    let body_command = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("CallbackCommand").and_then(|c| c.as_str()).map(str::to_owned));
    let Some(command) = a.command.clone().or(event_command).or(body_command) else {
        return usage("the body has no CallbackCommand; give --command");
    };
    let s = ctx.webhook_secrets().await?;
    let token = s.webhook_token.as_ref().map(|t| t.expose().to_owned());
    let answer = post_tencent(&a.url, body, &command, s.sdk_app_id, token.as_deref()).await?;
    println!("HTTP {}: {}", answer.status, answer.text);
    if answer.accepted() { Ok(()) } else { Err(Fail::Op("the webhook was not accepted".into())) }
}

/// `send --platform nim`: POSTs a message copy to the URL as NIM does, with `AppKey`, `CurTime`
/// (now, in milliseconds), `MD5` of the body and `CheckSum = sha1(AppSecret + MD5 + CurTime)`.
/// Accepted when the URL answers 200 (the NIM router answers 200 to every authentic copy,
/// queued or ignored; the outcome is in its JSON).
async fn send_nim(ctx: &Ctx, a: &Args) -> Res<()> {
    use shared::nim::checksum::{body_md5, copy_checksum};
    let (body, _) = event_or_body(&a.what)?;
    let (app_key, secret) = ctx.nim_keys().await?;
    let md5 = body_md5(body.as_bytes());
    let cur_time = shared::store::now_ms().to_string();
    let checksum = copy_checksum(secret.expose(), &md5, &cur_time);
    let res = reqwest::Client::new()
        .post(&a.url)
        .header("AppKey", app_key)
        .header("CurTime", cur_time)
        .header("MD5", md5)
        .header("CheckSum", checksum)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| op(e.without_url()))?;
    let status = res.status();
    let text = res.text().await.map_err(op)?;
    println!("HTTP {status}: {text}");
    if status.as_u16() == 200 { Ok(()) } else { Err(Fail::Op("the message copy was not accepted".into())) }
}
