//! `tcbot`: the admin CLI. Exit codes: 0 done, 1 the operation failed (Tencent or AWS said no,
//! a webhook was refused), 2 bad usage or configuration.

use shared::bot::job::Platform;
use shared::bot::profile::BotProfile;
use shared::config::TencentEndpoint;
use shared::keys;
use shared::secrets::AppSecrets;
use shared::store::{DynamoStore, Store};
use shared::tencent::client::RestOptions;
use shared::tencent::{CreateRobot, DeleteRobot, RestClient, usersig};
use shared::webhook::CallbackQuery;
use std::process::ExitCode;

mod dlq;

const HELP: &str = "tcbot: administer the Tencent Cloud Chat chatbot backend

USAGE
  tcbot usersig [--identifier ID] [--expire SECS]     print a UserSig (default: the admin, 1 day)
  tcbot robot create ID [--nick NAME] [--face-url URL] [--signature TEXT]
  tcbot robot list
  tcbot robot delete ID
  tcbot profile set BOT (--file PATH | --json JSON) [--platform P]
                                                       a bot's system prompt, model, window, quota, group scope
  tcbot profile show BOT [--platform P]
  tcbot send URL (--event FILE | --body FILE) [--command CMD] [--platform P]
                                                       sign a webhook (Tencent) or a message copy (NIM) as
                                                       the platform does and POST it to URL
  tcbot conversation show (--bot BOT --user USER | --group GROUP --bot BOT [--topic T] [--user MEMBER] | --id CONV)
                        [--platform P]
  tcbot conversation clear (same selectors)            also `conversation reset`
  tcbot moderation set (--app | --group GROUP) (--file PATH | --json JSON)
  tcbot moderation show (--app | --group GROUP)
  tcbot moderation test TEXT [--group GROUP]            the verdict the stored policies give TEXT
  tcbot draw open GROUP KEYWORD                        start a lucky draw in a group
  tcbot draw close GROUP [--winners N] [--seed SEED]   close it and pick winners (list and seed kept)
  tcbot draw show GROUP                                the draw, its entrants, seed and winners, re-checked
  tcbot stats group GROUP                              a group's counters
  tcbot stats user USER [--group GROUP]                a user's level inputs (all groups, or one)
  tcbot presence user USER                             online now?, total online time
  tcbot presence online                                users online in the app
  tcbot dlq list DLQ_URL [--max N]                     up to N (10) dead letters: job key and reason
  tcbot dlq redrive DLQ_URL QUEUE_URL [--park FILE]    send dead-lettered jobs back to be answered again

PLATFORMS
  --platform tencent|nim (default tencent) chooses the chat platform of a robot profile, a
  conversation or a signed test callback: BOT is a Tencent robot (@RBT#...) or a NIM robot's
  accid, GROUP a Tencent group or a NIM team id (super teams: super:TEAMID). NIM account ids
  are lowercase (NIM lowercases them when it creates them), so they are taken in lowercase. For NIM, `send`
  POSTs a message copy with AppKey, CurTime, MD5 and CheckSum headers made with the secret's
  NimAppKey and NimAppSecret. The other commands are Tencent's only.

DEAD LETTERS
  redrive reads the DLQ until it is empty and sends each job back in its conversation's FIFO
  group, deleting it from the DLQ only once sent. An unreadable record has no job to send back
  and cannot stay (in a FIFO queue it would hold up the records of its group behind it): it is
  parked, appended to FILE (default tcbot-dlq-parked.jsonl) as one JSON line with message_id,
  error and body, then deleted from the DLQ. The body may hold a user's message. It prints
  exact counts: redriven N, parked N, left N (read but kept in the DLQ by an error, exit 1).

CONFIGURATION (environment)
  TCBOT_SECRET_ID or TCBOT_LOCAL_SECRET_FILE   the app secret (SdkAppId, SecretKey, …)
  TCBOT_WEBHOOK_SECRET_ID                      the router's webhook secret, for `send`
                                               (default: the WebhookToken of the app secret)
  TCBOT_NIM_SECRET_ID                          the NIM secret (NimAppKey, NimAppSecret), for
                                               `send --platform nim` (default: the app secret's)
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
                // Flags that take no value.
                if name == "app" {
                    a.opts.push((name.to_owned(), "true".to_owned()));
                    continue;
                }
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
            Some((k, _)) if k == "platform" => {
                usage("--platform applies to `profile`, `conversation` and `send` only; this command is Tencent's")
            }
            Some((k, _)) => usage(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
    /// An account id as `platform` keys it: NIM lowercases account ids when it creates them, so
    /// a NIM robot or user is named by its lowercase id (as the NIM router names them in jobs).
    fn account(&self, platform: Platform, id: &str) -> String {
        match platform {
            Platform::Tencent => id.to_owned(),
            Platform::Nim => id.to_ascii_lowercase(),
        }
    }
    /// The chat platform `--platform` names (Tencent when absent).
    fn platform(&self) -> Res<Platform> {
        match self.opt("platform") {
            None | Some("tencent") => Ok(Platform::Tencent),
            Some("nim") => Ok(Platform::Nim),
            Some(other) => usage(format!("unknown platform {other:?}: --platform takes tencent or nim")),
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
    Ok(RestClient::new(
        reqwest::Client::new(),
        opts,
        s.sdk_app_id,
        s.admin_identifier.clone(),
        s.require_secret_key().map_err(op)?.clone(),
    ))
}

/// The conversation the selectors name, as the workers key it (`shared::keys`): a robot's
/// one-to-one conversation with a user, a group's (topic's) with the robot, or with `--user`
/// too a member's own in a group (robots with `group_scope` member); or `--id` as given.
fn conversation_id(a: &Args) -> Res<String> {
    a.check(&["bot", "user", "group", "topic", "id", "platform"])?;
    let platform = a.platform()?;
    if let Some(id) = a.opt("id") {
        if a.opts.iter().any(|(k, _)| !["id", "platform"].contains(&k.as_str())) {
            return usage("--id names the conversation alone; leave out --bot, --user, --group and --topic");
        }
        return Ok(id.to_owned());
    }
    let topic = a.opt("topic").filter(|t| !t.is_empty());
    if platform == Platform::Nim && topic.is_some() {
        return usage("--topic is for Tencent Community topics; NIM teams have none");
    }
    let account = |id: Option<&str>| id.map(|id| a.account(platform, id));
    match (account(a.opt("bot")), account(a.opt("user")), a.opt("group")) {
        (Some(bot), Some(user), None) if topic.is_none() => Ok(keys::direct_scope(platform, &bot, &user)),
        (Some(bot), member, Some(group)) => {
            Ok(keys::group_conversation(platform, group, topic, &bot, member.as_deref()))
        }
        _ => usage("name the conversation: --bot and --user, --bot and --group (--topic, --user), or --id"),
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
                s.require_secret_key().map_err(op)?.expose().as_bytes(),
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
            a.check(&["file", "json", "platform"])?;
            let platform = a.platform()?;
            let bot = a.account(platform, a.pos(2, "the robot's UserID (Tencent) or accid (NIM)")?);
            let json = match (a.opt("file"), a.opt("json")) {
                (Some(f), None) => read_file(f)?,
                (None, Some(j)) => j.to_owned(),
                _ => return usage("give the profile with --file PATH or --json JSON"),
            };
            let profile: BotProfile =
                serde_json::from_str(&json).map_err(|e| Fail::Usage(format!("invalid profile: {e}")))?;
            let doc = serde_json::to_string(&profile).map_err(op)?;
            store(&aws().await).await?.put_doc(&keys::profile(platform, &bot), &doc, None).await.map_err(op)?;
            println!("profile of {} robot {bot} saved", platform.name());
            Ok(())
        }
        ["profile", "show"] => {
            a.check(&["platform"])?;
            let platform = a.platform()?;
            let bot = a.account(platform, a.pos(2, "the robot's UserID (Tencent) or accid (NIM)")?);
            match store(&aws().await).await?.get_doc(&keys::profile(platform, &bot)).await.map_err(op)? {
                Some(doc) => println!("{doc}"),
                None => println!("{bot} has no profile; the deployment's defaults apply"),
            }
            Ok(())
        }
        ["send", ..] => {
            let url = a.pos(1, "the webhook URL")?;
            match a.platform()? {
                Platform::Tencent => {
                    a.check(&["event", "body", "command", "platform"])?;
                    send(url, &a).await
                }
                Platform::Nim => {
                    a.check(&["event", "body", "platform"])?;
                    send_nim(url, &a).await
                }
            }
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
        ["conversation", "clear" | "reset"] => {
            let conv = conversation_id(&a)?;
            shared::bot::window::reset(&store(&aws().await).await?, &conv).await.map_err(op)?;
            println!("{conv}: cleared");
            Ok(())
        }
        ["dlq", "list"] => dlq::list(&a).await,
        ["dlq", "redrive"] => dlq::redrive(&a).await,
        ["moderation", verb] => moderation(verb, &a).await,
        ["draw", verb] => draw(verb, &a).await,
        ["stats", "group"] => {
            a.check(&[])?;
            let group = a.pos(2, "the group ID")?;
            let store = store(&aws().await).await?;
            for kind in shared::stats::KINDS {
                println!("{kind}: {}", store.counter(&shared::stats::group_counter(group, kind)).await.map_err(op)?);
            }
            Ok(())
        }
        ["stats", "user"] => {
            a.check(&["group"])?;
            let user = a.pos(2, "the user ID")?;
            let store = store(&aws().await).await?;
            for kind in shared::stats::KINDS {
                let n = store.counter(&shared::stats::user_counter(a.opt("group"), user, kind)).await.map_err(op)?;
                println!("{kind}: {n}");
            }
            Ok(())
        }
        ["presence", "user"] => {
            a.check(&[])?;
            let user = a.pos(2, "the user ID")?;
            let store = store(&aws().await).await?;
            let p: shared::presence::UserPresence =
                match store.get_doc(&shared::presence::user_key(user)).await.map_err(op)? {
                    Some(doc) => serde_json::from_str(&doc).map_err(op)?,
                    None => Default::default(),
                };
            let total = store.counter(&shared::presence::total_key(user)).await.map_err(op)?;
            println!("online: {}", p.online);
            println!("online time: {} s (closed sessions)", total / 1000);
            Ok(())
        }
        ["presence", "online"] => {
            a.check(&[])?;
            let n = store(&aws().await).await?.counter(shared::presence::ONLINE_KEY).await.map_err(op)?;
            println!("{n}");
            Ok(())
        }
        _ => usage(format!("unknown command {:?}; run `tcbot help`", a.pos.join(" "))),
    }
}

fn policy_key(a: &Args) -> Res<String> {
    match (a.opt("group"), a.opt("app").is_some()) {
        (Some(g), false) => Ok(shared::moderation::Policy::group_key(g)),
        (None, true) => Ok(shared::moderation::Policy::app_key()),
        _ => usage("choose the policy: --app or --group GROUP"),
    }
}

async fn moderation(verb: &str, a: &Args) -> Res<()> {
    use shared::moderation::{Engine, Scope, load_policy, read_policy};
    let store = store(&aws().await).await?;
    match verb {
        "set" => {
            a.check(&["app", "group", "file", "json"])?;
            let key = policy_key(a)?;
            let json = match (a.opt("file"), a.opt("json")) {
                (Some(f), None) => read_file(f)?,
                (None, Some(j)) => j.to_owned(),
                _ => return usage("give the policy with --file PATH or --json JSON"),
            };
            // The functions' own check: what is stored here, they can use.
            let n = load_policy(&key, &json).map_err(|e| Fail::Usage(format!("invalid policy: {e}")))?.rules();
            store.put_doc(&key, &json, None).await.map_err(op)?;
            println!("saved {key} with {n} rule(s); functions pick it up within a minute");
            Ok(())
        }
        "show" => {
            a.check(&["app", "group"])?;
            let key = policy_key(a)?;
            println!("{}", store.get_doc(&key).await.map_err(op)?.unwrap_or_else(|| format!("{key}: no policy")));
            Ok(())
        }
        "test" => {
            a.check(&["group"])?;
            let text = a.pos(2, "the text to judge")?;
            let mut parts = Vec::new();
            for key in shared::moderation::policy_keys(a.opt("group")) {
                parts.extend(read_policy(&store, &key).await.map_err(op)?.map(std::sync::Arc::new));
            }
            let engine = Engine::of(parts);
            let scope = if a.opt("group").is_some() { Scope::Group } else { Scope::C2c };
            let verdict = engine.judge(&[shared::msg::MsgElement::text(text)], scope);
            println!("{}", verdict.ack().to_json());
            Ok(())
        }
        _ => usage(format!("unknown command moderation {verb}")),
    }
}

async fn draw(verb: &str, a: &Args) -> Res<()> {
    use shared::stats::{Draw, GENERATOR, entrants, pick_winners};
    let group = a.pos(2, "the group ID")?;
    let store = store(&aws().await).await?;
    let current = match store.get_doc(&Draw::key(group)).await.map_err(op)? {
        Some(doc) => Some(serde_json::from_str::<Draw>(&doc).map_err(op)?),
        None => None,
    };
    let save = |d: &Draw| serde_json::to_string(d).unwrap_or_default();
    match verb {
        "open" => {
            a.check(&[])?;
            let keyword = a.pos(3, "the keyword")?;
            if current.as_ref().is_some_and(|d| d.open) {
                return Err(Fail::Op(format!("a draw is already open in {group}; close it first")));
            }
            let d = Draw {
                id: shared::store::now_ms().to_string(),
                keyword: keyword.to_owned(),
                open: true,
                seed: None,
                winners: vec![],
                entrants: vec![],
                generator: None,
            };
            store.put_doc(&Draw::key(group), &save(&d), None).await.map_err(op)?;
            println!("draw {} open in {group}: messages containing {keyword:?} enter", d.id);
            Ok(())
        }
        "close" => {
            a.check(&["winners", "seed"])?;
            let Some(mut d) = current.filter(|d| d.open) else {
                return Err(Fail::Op(format!("no open draw in {group}")));
            };
            let n: usize =
                a.opt("winners").unwrap_or("1").parse().map_err(|_| Fail::Usage("--winners takes a number".into()))?;
            let seed: u64 = match a.opt("seed") {
                Some(s) => s.parse().map_err(|_| Fail::Usage("--seed takes a number".into()))?,
                None => fastrand_seed(),
            };
            d.entrants = entrants(&store, group, &d.id).await.map_err(op)?;
            d.open = false;
            d.seed = Some(seed);
            d.generator = Some(GENERATOR.to_owned());
            d.winners = pick_winners(&d.entrants, n, seed);
            store.put_doc(&Draw::key(group), &save(&d), None).await.map_err(op)?;
            println!("draw {} closed: {} entrant(s), seed {seed}", d.id, d.entrants.len());
            for w in &d.winners {
                println!("winner: {w}");
            }
            Ok(())
        }
        "show" => {
            a.check(&[])?;
            let Some(d) = current else { return Err(Fail::Op(format!("no draw in {group}"))) };
            // A closed draw is shown with the list it drew from (draws closed before that was
            // kept show today's list).
            let people = match &d.generator {
                Some(_) => d.entrants.clone(),
                None => entrants(&store, group, &d.id).await.map_err(op)?,
            };
            println!("draw {} keyword {:?} {}", d.id, d.keyword, if d.open { "open" } else { "closed" });
            println!("entrants ({}): {}", people.len(), people.join(", "));
            if let Some(seed) = d.seed {
                println!("seed: {seed}");
                println!("generator: {}", d.generator.as_deref().unwrap_or("unrecorded"));
                println!("winners: {}", d.winners.join(", "));
                let check = match d.generator.as_deref() {
                    Some(GENERATOR) if pick_winners(&people, d.winners.len(), seed) == d.winners => "same winners",
                    Some(GENERATOR) => "DIFFERENT winners",
                    _ => "not possible with this generator",
                };
                println!("re-check: {check}");
            }
            Ok(())
        }
        _ => usage(format!("unknown command draw {verb}")),
    }
}

/// A seed for a draw when none is given: the clock's nanoseconds, recorded with the result.
fn fastrand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
}

/// The body to send: `--body FILE` as it is, or `--event FILE`'s `body` when the file is an
/// API Gateway envelope from `events/` (with its query string), else the file's JSON.
fn event_or_body(a: &Args) -> Res<(String, Option<String>)> {
    match (a.opt("event"), a.opt("body")) {
        (Some(f), None) => {
            let v: serde_json::Value =
                serde_json::from_str(&read_file(f)?).map_err(|e| Fail::Usage(format!("{f}: {e}")))?;
            // A NIM copy has a `body` field of its own (the text): an envelope is known by its
            // request context.
            let envelope = v.get("requestContext").is_some() || v.get("rawQueryString").is_some();
            match v.get("body").and_then(|b| b.as_str()).filter(|_| envelope) {
                Some(b) => Ok((b.to_owned(), v.get("rawQueryString").and_then(|q| q.as_str()).map(str::to_owned))),
                None => Ok((v.to_string(), None)),
            }
        }
        (None, Some(f)) => Ok((read_file(f)?, None)),
        _ => usage("give the webhook with --event FILE or --body FILE"),
    }
}

/// The NIM AppKey and AppSecret: from `TCBOT_NIM_SECRET_ID` (the NIM secret, which the NIM
/// router reads) when set, else from the app secret (or local secret file), as the workers do.
async fn nim_keys(cfg: &aws_config::SdkConfig) -> Res<(String, shared::secrets::SecretString)> {
    let s = match env("TCBOT_NIM_SECRET_ID") {
        Some(id) => AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(cfg), &id).await.map_err(op)?,
        None => secrets(cfg).await?,
    };
    let (key, secret) = s.require_nim().map_err(|e| {
        Fail::Usage(format!("{e}: put NimAppKey and NimAppSecret in the secret, or set TCBOT_NIM_SECRET_ID"))
    })?;
    Ok((key.to_owned(), secret.clone()))
}

/// `send --platform nim`: POSTs a message copy to `url` as NIM does, with `AppKey`, `CurTime`
/// (now, in milliseconds), `MD5` of the body and `CheckSum = sha1(AppSecret + MD5 + CurTime)`.
/// Accepted when the URL answers 200 (the NIM router answers 200 to every authentic copy,
/// queued or ignored; the outcome is in its JSON).
async fn send_nim(url: &str, a: &Args) -> Res<()> {
    use shared::nim::checksum::{body_md5, copy_checksum};
    let (body, _) = event_or_body(a)?;
    let (app_key, secret) = nim_keys(&aws().await).await?;
    let md5 = body_md5(body.as_bytes());
    let cur_time = shared::store::now_ms().to_string();
    let checksum = copy_checksum(secret.expose(), &md5, &cur_time);
    let res = reqwest::Client::new()
        .post(url)
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

async fn send(url: &str, a: &Args) -> Res<()> {
    let (body, query) = event_or_body(a)?;
    let event_command = query.and_then(|q| CallbackQuery::parse(&q).command);
    let body_command = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("CallbackCommand").and_then(|c| c.as_str()).map(str::to_owned));
    let Some(command) = a.opt("command").map(str::to_owned).or(event_command).or(body_command) else {
        return usage("the body has no CallbackCommand; give --command");
    };
    let cfg = aws().await;
    let s = match env("TCBOT_WEBHOOK_SECRET_ID") {
        Some(id) => AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(&cfg), &id).await.map_err(op)?,
        None => secrets(&cfg).await?,
    };
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
