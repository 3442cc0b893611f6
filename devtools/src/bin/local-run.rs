//! The local run: the real function binaries under `cargo lambda watch`, moto server for
//! DynamoDB, SQS and Secrets Manager, a poller playing the SQS event source mapping, the Tencent
//! REST emulator printing what the bot sends as it streams, and the LLM emulator (or a real LLM
//! when `LLM_BASE_URL` and `LLM_API_KEY` are set). Then you chat.
//!
//! ```text
//! local-run                      chat interactively as user1 with @RBT#001
//! local-run --say "hi" --say "/reset"   a scripted conversation; exit 0 when every line was answered
//! local-run --mode native_stream         answer in this stream mode (one-to-one and group)
//! local-run --platform nim               chat with the NetEase NIM robot `mybot` instead: signed
//!                                        message copies to nim-callback-router, answers through
//!                                        the NIM emulator
//! ```

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use devtools::aws::{Stack, create_stack, local_config};
use devtools::llm_emu::LlmEmulator;
use devtools::nim_emu::{CopyMessage, NimEmulator};
use devtools::tencent_emu::{Seen, TencentEmulator};
use shared::webhook::CallbackQuery;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::sync::broadcast::error::RecvError;

const APP_ID: u64 = 1_400_000_000;
const KEY: &str = "local-dev-secret-key";
const TOKEN: &str = "local-dev-token";
const BOT: &str = "@RBT#001";
const USER: &str = "user1";
const GROUP: &str = "@TGS#local-group";
const FUNCTIONS: [&str; 4] = ["callback-router", "nim-callback-router", "bot-c2c-message", "bot-group-message"];
const NIM_APP_KEY: &str = "local-nim-appkey";
const NIM_SECRET: &str = "local-nim-app-secret";
const NIM_ROBOT: &str = "mybot";
const NIM_NICK: &str = "MyBot";
const NIM_TEAM: &str = "10001";

fn say(msg: &str) {
    eprintln!("\x1b[2m[local] {msg}\x1b[0m");
}

struct Options {
    script: Vec<String>,
    answer_timeout: Duration,
    /// The stream mode asked for; `None`: the deployment's defaults (robot stream one-to-one,
    /// native stream in groups).
    mode: Option<String>,
    /// Chat with a NetEase NIM robot instead of a Tencent one.
    nim: bool,
    /// NIM: stream team answers live (the app's team streaming, `TCBOT_NIM_TEAM_STREAMING`).
    team_streaming: bool,
}

const MODES: [&str; 4] = ["robot_stream", "native_stream", "modify", "final"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PlatformArg {
    Tencent,
    Nim,
}

/// local-run: chat with the bot locally (the functions under cargo lambda watch, moto server,
/// the Tencent or NIM emulator, the LLM emulator or a real LLM)
#[derive(Debug, clap::Parser)]
#[command(name = "local-run", after_help = CHAT_HELP)]
struct Cli {
    /// A line of a scripted conversation (repeat the flag); then exit, 0 when every line was
    /// answered. Without it: an interactive chat
    #[arg(long = "say", value_name = "TEXT")]
    say: Vec<String>,
    /// Longest wait for one answer, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// The stream mode [default: robot stream one-to-one, native stream in groups; robot_stream
    /// falls back to modify in groups]; NIM: native_stream or final
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(MODES))]
    mode: Option<String>,
    /// Chat with the Tencent robot @RBT#001 or the NIM robot mybot
    #[arg(long, value_enum, default_value = "tencent")]
    platform: PlatformArg,
    /// NIM: stream team answers live (else sent once, complete)
    #[arg(long)]
    team_streaming: bool,
}

const CHAT_HELP: &str =
    "In the chat: plain text goes to the robot one-to-one; '@ TEXT' @-mentions it in a group (team);
/reset, /usage and /help are bot commands; /quit or Ctrl-C leaves.
Set LLM_BASE_URL, LLM_API_KEY (and LLM_MODEL) to use a real OpenAI-compatible LLM.";

/// The flags, parsed by clap (usage errors exit 2, `--help` prints the help), then checked
/// against each other.
fn parse_args() -> Result<Options, String> {
    let cli = <Cli as clap::Parser>::parse();
    let o = Options {
        script: cli.say,
        answer_timeout: Duration::from_secs(cli.timeout),
        mode: cli.mode,
        nim: cli.platform == PlatformArg::Nim,
        team_streaming: cli.team_streaming,
    };
    if o.nim && o.mode.as_deref().is_some_and(|m| m != "native_stream" && m != "final") {
        return Err("NIM answers in native_stream or final (it has no robot stream and cannot modify)".into());
    }
    if o.team_streaming && !o.nim {
        return Err("--team-streaming is a NIM setting: add --platform nim".into());
    }
    Ok(o)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

async fn wait_listening(port: u16, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

struct Local {
    http: reqwest::Client,
    invoke: String,
    stack: Stack,
    tencent: TencentEmulator,
    /// Set when chatting with the NIM robot.
    nim: Option<NimEmulator>,
    seq: AtomicU64,
}

impl Local {
    async fn send_webhook(&self, command: &str, body: serde_json::Value) -> Result<String, String> {
        let now = shared::store::now_secs() as i64;
        let q = CallbackQuery::encode(APP_ID, command, Some((TOKEN, now)));
        let url = format!("{}/lambda-url/callback-router/webhook?{q}", self.invoke);
        let res = self.http.post(url).json(&body).send().await.map_err(|e| e.to_string())?;
        res.text().await.map_err(|e| e.to_string())
    }

    /// Sends one chat line; `Ok(Err(why))` when the router refused it.
    async fn send_line(&self, line: &str) -> Result<Result<(), String>, String> {
        if let Some(nim) = &self.nim {
            return self.nim_line(nim, line).await;
        }
        let ack = self.chat_line(line).await?;
        Ok(if ack.contains("\"ActionStatus\":\"OK\"") { Ok(()) } else { Err(ack) })
    }

    /// A line as NIM's message copy: one-to-one to the robot, or a team message mentioning it.
    async fn nim_line(&self, nim: &NimEmulator, line: &str) -> Result<Result<(), String>, String> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n:06}", shared::store::now_secs());
        let msg = match line.strip_prefix('@') {
            Some(text) => CopyMessage::team(USER, NIM_TEAM, &format!("@{NIM_NICK} {}", text.trim()), &id)
                .mention(NIM_ROBOT, &format!("@{NIM_NICK}")),
            None => CopyMessage::person(USER, NIM_ROBOT, line, &id),
        };
        let url = format!("{}/lambda-url/nim-callback-router/nim", self.invoke);
        let res = nim.post_copy(&url, &msg.body()).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let text = res.text().await.map_err(|e| e.to_string())?;
        Ok(if status.is_success() && text.contains("\"queued\"") { Ok(()) } else { Err(format!("{status}: {text}")) })
    }

    async fn chat_line(&self, line: &str) -> Result<String, String> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let t = shared::store::now_secs();
        if let Some(text) = line.strip_prefix('@') {
            let body = serde_json::json!({
                "CallbackCommand": "Bot.OnGroupMessage", "GroupId": GROUP, "Type": "Public",
                "From_Account": USER, "Operator_Account": USER, "Random": n, "MsgSeq": n, "MsgTime": t,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("@{BOT} {}", text.trim())}}],
                "AtRobots_Account": [BOT], "EventTime": t * 1000
            });
            self.send_webhook("Bot.OnGroupMessage", body).await
        } else {
            let body = serde_json::json!({
                "CallbackCommand": "Bot.OnC2CMessage", "From_Account": USER, "To_Account": BOT,
                "MsgSeq": n, "MsgRandom": n * 7 + 1, "MsgTime": t, "MsgKey": format!("{n}_{}_{t}", n * 7 + 1),
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": line}}], "EventTime": t * 1000
            });
            self.send_webhook("Bot.OnC2CMessage", body).await
        }
    }
}

/// Plays the SQS event source mapping for one queue: poll, invoke the function through
/// cargo-lambda's Invoke API, settle the batch.
async fn poll_forever(local: Arc<Local>, sqs: aws_sdk_sqs::Client, queue: String, function: &'static str) {
    loop {
        let handler = |ev: SqsEvent| {
            let url = format!("{}/2015-03-31/functions/{function}/invocations", local.invoke);
            let http = local.http.clone();
            async move {
                let res = http.post(url).json(&ev).send().await.map_err(|e| e.to_string())?;
                let status = res.status();
                let text = res.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{function} answered {status}: {text}"));
                }
                serde_json::from_str::<SqsBatchResponse>(&text).map_err(|e| format!("{function}: {e}: {text}"))
            }
        };
        if let Err(e) = devtools::esm::poll_once(&sqs, &queue, 1, 1, handler).await {
            say(&format!("poller for {function}: {e}"));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Prints what the bot sends, live, and reports when an answer is complete.
async fn print_answers(mut rx: tokio::sync::broadcast::Receiver<Seen>, done: tokio::sync::mpsc::UnboundedSender<()>) {
    let mut open_streams = std::collections::HashSet::<String>::new();
    let mut group_shown = std::collections::HashMap::<u64, String>::new();
    let mut out = std::io::stdout();
    loop {
        match rx.recv().await {
            Ok(Seen::StreamChunk { msg_key, from, to, chunk, finish }) => {
                if open_streams.insert(msg_key.clone()) {
                    let _ = write!(out, "\x1b[1;36m{from} → {to}:\x1b[0m ");
                }
                let _ = write!(out, "{chunk}");
                let _ = out.flush();
                if finish {
                    let _ = writeln!(out);
                    open_streams.remove(&msg_key);
                    let _ = done.send(());
                }
            }
            Ok(Seen::C2cMessage { from, to, text }) => {
                // Sent once (`final`) or as the start of a `modify` answer; `wait_answer` tells
                // when it stops changing.
                let _ = writeln!(out, "\x1b[1;36m{from} → {to}:\x1b[0m {text}");
            }
            Ok(Seen::GroupMessage { group_id, msg_seq, text, .. }) => {
                let shown = group_shown.entry(msg_seq).or_insert_with(|| {
                    let _ = write!(out, "\x1b[1;35m{BOT} in {group_id}:\x1b[0m ");
                    String::new()
                });
                match text.strip_prefix(shown.as_str()) {
                    // The message grew: print what is new.
                    Some(new) => {
                        let _ = write!(out, "{new}");
                    }
                    // The message was replaced (the placeholder by the answer): print it again.
                    None => {
                        let _ = write!(out, "\n\x1b[1;35m{BOT} in {group_id} (replaced):\x1b[0m {text}");
                    }
                }
                let _ = out.flush();
                *shown = text;
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// Prints what the robot sends through the NIM emulator, live, and reports when an answer is
/// complete (a stream's finishing chunk, or a message sent whole).
async fn print_nim_answers(
    mut rx: tokio::sync::broadcast::Receiver<devtools::nim_emu::Seen>,
    done: tokio::sync::mpsc::UnboundedSender<()>,
) {
    use devtools::nim_emu::Seen as Nim;
    let mut out = std::io::stdout();
    let who = |conversation_id: &str| match conversation_id.split('|').collect::<Vec<_>>()[..] {
        [from, "1", to] => format!("{from} → {to}"),
        [from, _, team] => format!("{from} in team {team}"),
        _ => conversation_id.to_owned(),
    };
    loop {
        match rx.recv().await {
            Ok(Nim::Chunk { conversation_id, index, delta, finish, .. }) => {
                if index == 0 {
                    let _ = write!(out, "\x1b[1;36m{}:\x1b[0m ", who(&conversation_id));
                }
                let _ = write!(out, "{delta}");
                let _ = out.flush();
                if finish {
                    let _ = writeln!(out);
                    let _ = done.send(());
                }
            }
            Ok(Nim::Message { conversation_id, text, .. }) => {
                let _ = writeln!(out, "\x1b[1;36m{}:\x1b[0m {text}", who(&conversation_id));
                let _ = done.send(());
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// Waits for a complete NIM answer; returns the mode that answered, from the calls NIM saw.
async fn wait_nim_answer(
    done: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    nim: &NimEmulator,
    limit: Duration,
) -> Option<&'static str> {
    let before = nim.state.calls().len();
    tokio::time::timeout(limit, done.recv()).await.ok()??;
    let calls = nim.state.calls();
    let streamed = calls[before.min(calls.len())..].iter().any(|c| c.endpoint == devtools::nim_emu::Endpoint::Stream);
    Some(if streamed { "native_stream" } else { "final" })
}

/// Waits for a complete answer on the platform chatted with.
async fn wait_any_answer(
    done: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    local: &Local,
    limit: Duration,
) -> Option<&'static str> {
    match &local.nim {
        Some(nim) => wait_nim_answer(done, nim, limit).await,
        None => wait_answer(done, &local.tencent, limit).await,
    }
}

/// Waits for a complete answer: a stream's finishing chunk, or, for answers sent by
/// `sendmsg`/`send_group_msg` and modified (which have no finish marker), no new call to Tencent
/// for a while after the first. Returns the mode that answered, from the calls Tencent saw.
async fn wait_answer(
    done: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    tencent: &TencentEmulator,
    limit: Duration,
) -> Option<&'static str> {
    let before = tencent.state.calls().len();
    let settled = async {
        let mut seen = before;
        let mut stable_since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = tencent.state.calls().len();
            if now != seen {
                seen = now;
                stable_since = tokio::time::Instant::now();
            } else if now > before && stable_since.elapsed() > Duration::from_millis(2500) {
                return;
            }
        }
    };
    let answered = tokio::time::timeout(limit, async {
        tokio::select! {
            _ = done.recv() => {}
            _ = settled => println!(),
        }
    })
    .await;
    answered.ok()?;
    let calls = tencent.state.calls();
    let paths: Vec<&str> = calls[before.min(calls.len())..].iter().map(|c| c.path.as_str()).collect();
    Some(mode_of(&paths))
}

/// Reports a complete answer: its mode, and, for a one-to-one answer that was modified (whose
/// modifications the emulator does not print as they happen), its final text.
fn answered(tencent: &TencentEmulator, mode: &str, line: &str) {
    if mode == "modify"
        && !line.starts_with('@')
        && let Some((from, to, text)) = tencent.state.c2c_messages().pop()
    {
        println!("\x1b[1;36m{from} → {to} (as modified):\x1b[0m {text}");
    }
    say(&format!("answered in {mode}"));
}

/// The stream mode an answer was given in, from the REST calls it made.
fn mode_of(paths: &[&str]) -> &'static str {
    let used = |p: &str| paths.iter().any(|c| c.contains(p) && !c.is_empty());
    if used("openim_robot_http_svc/send_stream_msg") {
        "robot_stream"
    } else if used("stream_msg/send_") && !used("modify") && !used("sendmsg") && !used("send_group_msg") {
        "native_stream"
    } else if used("modify_") {
        "modify"
    } else {
        "final"
    }
}

async fn start_functions(port: u16, env: &[(String, String)]) -> Result<Child, String> {
    say("building the function binaries (debug; the first build takes a few minutes)…");
    let status = Command::new("cargo")
        .args(["build", "--quiet"])
        .args(FUNCTIONS.iter().flat_map(|f| ["-p", f]))
        .status()
        .await
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("building the functions failed".into());
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "watch",
        "--ignore-changes",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        &port.to_string(),
    ]);
    for (k, v) in env {
        cmd.arg("--env-var").arg(format!("{k}={v}"));
    }
    let log = std::fs::File::create(".local/cargo-lambda-watch.log").map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?)).stderr(Stdio::from(log)).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cargo lambda watch: {e} (pip install cargo-lambda)"))?;
    if !wait_listening(port, Duration::from_secs(60)).await {
        return Err("cargo lambda watch did not start; see .local/cargo-lambda-watch.log".into());
    }
    Ok(child)
}

async fn run() -> Result<bool, String> {
    let opts = parse_args()?;
    std::fs::create_dir_all(".local").map_err(|e| e.to_string())?;
    say("starting moto server (DynamoDB, SQS, Secrets Manager)…");
    let moto = devtools::moto::moto_threaded()?;
    let aws = local_config(&moto.endpoint).await;
    let tencent = TencentEmulator::start(APP_ID, KEY).await.map_err(|e| e.to_string())?;
    say(&format!("Tencent Chat REST emulator on {}", tencent.base_url()));
    let nim = match opts.nim {
        true => {
            let emu = NimEmulator::start(NIM_APP_KEY, NIM_SECRET).await.map_err(|e| e.to_string())?;
            say(&format!("NetEase NIM REST emulator on {} (robot {NIM_ROBOT}, nickname {NIM_NICK})", emu.base_url()));
            Some(emu)
        }
        false => None,
    };
    let (llm_base, llm_key, llm_model, _llm) = match (std::env::var("LLM_BASE_URL"), std::env::var("LLM_API_KEY")) {
        (Ok(base), Ok(key)) => {
            let model = std::env::var("LLM_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            say(&format!("using the real LLM at {base}, model {model}"));
            (base, key, model, None)
        }
        _ => {
            let emu = LlmEmulator::start(Some("local-llm-key".into()), Duration::from_millis(40))
                .await
                .map_err(|e| e.to_string())?;
            // A model thinks before its first token: long enough for the placeholder to show in
            // the modes that can replace it.
            emu.state.set_first_token_delay(Duration::from_millis(1_200));
            say(&format!("LLM emulator on {} (set LLM_BASE_URL and LLM_API_KEY for a real one)", emu.base_url()));
            (emu.base_url(), "local-llm-key".to_owned(), "emulated".to_owned(), Some(emu))
        }
    };
    let secret = serde_json::json!({
        "SdkAppId": APP_ID, "SecretKey": KEY, "AdminIdentifier": "administrator",
        "WebhookToken": TOKEN, "LlmApiKey": llm_key,
        "NimAppKey": NIM_APP_KEY, "NimAppSecret": NIM_SECRET,
    })
    .to_string();
    let prefix = format!("local{}", std::process::id());
    let stack = create_stack(&aws, &prefix, &secret).await?;
    say(&format!("created table {}, FIFO queues with DLQs, secret {}", stack.table, stack.secret_id));
    let port = free_port().map_err(|e| e.to_string())?;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("RUST_LOG", "info"),
        ("TCBOT_TABLE_NAME", &stack.table),
        ("TCBOT_SECRET_ID", &stack.secret_id),
        ("TCBOT_TENCENT_BASE_URL", &tencent.base_url()),
        ("TCBOT_C2C_QUEUE_URL", &stack.c2c_queue),
        ("TCBOT_GROUP_QUEUE_URL", &stack.group_queue),
        // Locally both workers share the C2C dead-letter queue (one environment for all).
        ("TCBOT_DLQ_URL", &stack.c2c_dlq),
        ("TCBOT_LLM_BASE_URL", &llm_base),
        ("TCBOT_LLM_MODEL", &llm_model),
        ("TCBOT_DAILY_QUOTA", "0"),
        // A slow first token shows the placeholder (in the modes that can replace it) soon.
        ("TCBOT_PLACEHOLDER_AFTER_MS", "700"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(opts.mode.iter().flat_map(|m| {
        [("TCBOT_DIRECT_STREAM_MODE".to_owned(), m.clone()), ("TCBOT_GROUP_STREAM_MODE".to_owned(), m.clone())]
    }))
    .chain(nim.iter().flat_map(|emu| {
        [
            ("TCBOT_NIM_BASE_URL".to_owned(), emu.base_url()),
            ("TCBOT_NIM_ROBOTS".to_owned(), format!("{NIM_ROBOT}:{NIM_NICK}")),
            ("TCBOT_NIM_TEAM_STREAMING".to_owned(), opts.team_streaming.to_string()),
        ]
    }))
    .chain(opts.mode.iter().filter(|_| opts.nim).map(|m| ("TCBOT_NIM_DIRECT_STREAM_MODE".to_owned(), m.clone())))
    .collect();
    say(&format!(
        "stream mode: {}",
        opts.mode.as_deref().unwrap_or(if opts.nim {
            "native_stream one-to-one, in teams final unless --team-streaming (NIM's defaults)"
        } else {
            "robot_stream one-to-one, native_stream in groups (the defaults)"
        })
    ));
    let _watch = start_functions(port, &env).await?;
    say(&format!("functions under cargo lambda watch on 127.0.0.1:{port} (log: .local/cargo-lambda-watch.log)"));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let local = Arc::new(Local {
        http: reqwest::Client::new(),
        invoke: format!("http://127.0.0.1:{port}"),
        stack,
        tencent,
        nim,
        seq: AtomicU64::new(1),
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    match &local.nim {
        Some(nim) => tokio::spawn(print_nim_answers(nim.state.subscribe(), done_tx)),
        None => tokio::spawn(print_answers(local.tencent.state.subscribe(), done_tx)),
    };
    let robot = if local.nim.is_some() { NIM_ROBOT } else { BOT };
    tokio::spawn(poll_forever(local.clone(), sqs.clone(), local.stack.c2c_queue.clone(), "bot-c2c-message"));
    tokio::spawn(poll_forever(local.clone(), sqs.clone(), local.stack.group_queue.clone(), "bot-group-message"));

    if !opts.script.is_empty() {
        let mut ok = true;
        for line in &opts.script {
            println!("\x1b[1m{USER}:\x1b[0m {line}");
            if let Err(why) = local.send_line(line).await? {
                say(&format!("the router refused the message: {why}"));
                ok = false;
                break;
            }
            match wait_any_answer(&mut done_rx, &local, opts.answer_timeout).await {
                Some(mode) => answered(&local.tencent, mode, line),
                None => {
                    say("no complete answer in time");
                    ok = false;
                    break;
                }
            }
        }
        let dlq = devtools::esm::depth(&sqs, &local.stack.c2c_dlq).await.map(|(v, i)| v + i).unwrap_or(0);
        if dlq > 0 {
            say(&format!("{dlq} message(s) ended in the dead-letter queue"));
            ok = false;
        }
        return Ok(ok);
    }

    println!(
        "\nChat with {robot} as {USER}. Plain text: one-to-one. '@ text': @-mention in a group.\n/reset forgets the conversation, /usage, /help, /quit or Ctrl-C to leave.\n"
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("\x1b[1m{USER}>\x1b[0m ");
        let _ = std::io::stdout().flush();
        let line = tokio::select! {
            l = lines.next_line() => l.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        let line = line.trim().to_owned();
        match line.as_str() {
            "" => continue,
            "/quit" | "/exit" => break,
            _ => {}
        }
        if let Err(why) = local.send_line(&line).await? {
            say(&format!("the router refused the message: {why}"));
            continue;
        }
        tokio::select! {
            done = wait_any_answer(&mut done_rx, &local, opts.answer_timeout) => match done {
                Some(mode) => answered(&local.tencent, mode, &line),
                None => say("no complete answer in time; see .local/cargo-lambda-watch.log"),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    say("stopping (cargo lambda watch, emulators and moto server stop with this process)");
    Ok(true)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("local-run: {e}");
            std::process::exit(2);
        }
    }
}
