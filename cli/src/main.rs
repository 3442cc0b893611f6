//! `tcbot`: the admin CLI. One subcommand per noun, each in its own module; the settings are
//! the functions' own environment variables (or flags). Exit codes: 0 done, 1 the operation
//! failed (Tencent or AWS said no, a webhook was refused, a doctor check failed), 2 bad usage
//! or configuration (clap's usage errors included: an unknown flag never runs a command).

use clap::{CommandFactory, Parser, Subcommand};
use ctx::{Ctx, Fail, Settings};
use std::process::ExitCode;

mod completions;
mod conversation;
mod ctx;
mod dlq;
mod doctor;
mod draw;
mod moderation;
mod presence;
mod profile;
mod progress;
mod robot;
mod send;
mod stats;
mod usersig;

const MORE: &str = "\
Platforms:
  `profile`, `conversation` and `send` take --platform tencent|nim (default tencent): BOT is a
  Tencent robot (@RBT#...) or a NIM robot's accid, GROUP a Tencent group or a NIM team id (super
  teams: super:TEAMID). NIM account ids are lowercase (NIM lowercases them when it creates
  them), so they are taken in lowercase. For NIM, `send` POSTs a message copy with AppKey,
  CurTime, MD5 and CheckSum headers made with the secret's NimAppKey and NimAppSecret. The other
  commands are Tencent's only.

Settings are read from the same environment variables as the functions (TCBOT_SECRET_ID or
TCBOT_LOCAL_SECRET_FILE, TCBOT_TABLE_NAME, TCBOT_TENCENT_REGION or TCBOT_TENCENT_BASE_URL, …),
and the AWS SDK's own (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, …).

Exit codes: 0 done, 1 the operation failed, 2 bad usage or configuration.";

/// tcbot: administer the Tencent Cloud Chat (and NetEase NIM) chatbot backend
#[derive(Debug, Parser)]
#[command(name = "tcbot", version, after_long_help = MORE)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Usersig(usersig::Args),
    #[command(subcommand)]
    Robot(robot::Cmd),
    #[command(subcommand)]
    Profile(profile::Cmd),
    Send(send::Args),
    #[command(subcommand)]
    Conversation(conversation::Cmd),
    #[command(subcommand)]
    Moderation(moderation::Cmd),
    #[command(subcommand)]
    Draw(draw::Cmd),
    #[command(subcommand)]
    Stats(stats::Cmd),
    #[command(subcommand)]
    Presence(presence::Cmd),
    #[command(subcommand)]
    Dlq(dlq::Cmd),
    Doctor(doctor::Args),
    Completions(completions::Args),
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let Some(command) = cli.command else {
        // `tcbot` alone: the help, as `tcbot help`.
        Cli::command().print_long_help().map_err(ctx::op)?;
        return Ok(());
    };
    let ctx = Ctx::new(cli.settings);
    match &command {
        Command::Usersig(a) => usersig::run(&ctx, a).await,
        Command::Robot(c) => robot::run(&ctx, c).await,
        Command::Profile(c) => profile::run(&ctx, c).await,
        Command::Send(a) => send::run(&ctx, a).await,
        Command::Conversation(c) => conversation::run(&ctx, c).await,
        Command::Moderation(c) => moderation::run(&ctx, c).await,
        Command::Draw(c) => draw::run(&ctx, c).await,
        Command::Stats(c) => stats::run(&ctx, c).await,
        Command::Presence(c) => presence::run(&ctx, c).await,
        Command::Dlq(c) => dlq::run(&ctx, c).await,
        Command::Doctor(a) => doctor::run(&ctx, a).await,
        Command::Completions(a) => {
            completions::run(a);
            Ok(())
        }
    }
}

/// Whether a usage error is `--platform` given to a command that is Tencent's alone.
fn platform_misplaced(e: &clap::Error) -> bool {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    e.kind() == ErrorKind::UnknownArgument
        && matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a)) if a.starts_with("--platform"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version exit 0, usage errors 2; nothing runs.
            let _ = e.print();
            if platform_misplaced(&e) {
                eprintln!(
                    "note: --platform applies to `profile`, `conversation` and `send` only; this command is Tencent's"
                );
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Op(e)) => {
            eprintln!("tcbot: {e}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(e)) => {
            eprintln!("tcbot: {e}\nrun `tcbot help` (or the command with --help) for usage");
            ExitCode::from(2)
        }
    }
}
