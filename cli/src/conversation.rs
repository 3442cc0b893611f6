//! `tcbot conversation`: what a robot remembers of a conversation, shown or forgotten. The
//! selectors are `shared::selector`'s, so the id is the one the workers use.

use crate::ctx::{Ctx, Fail, PlatformArg, Res, op};
use shared::selector::ConversationSelector;
use shared::store::Store;

/// Show or clear what a robot remembers of a conversation
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Show a conversation's remembered turns
    Show(Selector),
    /// Forget a conversation (the robot starts afresh)
    #[command(visible_alias = "reset")]
    Clear(Selector),
}

/// Which conversation: --bot and --user (one-to-one), --bot and --group [--topic] (the group's),
/// --bot, --group and --user (a member's own, for robots with group_scope member), or --id.
#[derive(Debug, clap::Args)]
pub struct Selector {
    /// The robot: a Tencent UserID (@RBT#…) or a NIM accid
    #[arg(long)]
    bot: Option<String>,
    /// The user (one-to-one), or the member (in a group)
    #[arg(long)]
    user: Option<String>,
    /// The group: a Tencent group ID or a NIM team id (super teams: super:TEAMID)
    #[arg(long)]
    group: Option<String>,
    /// A Tencent Community topic in the group
    #[arg(long)]
    topic: Option<String>,
    /// A stored conversation id, as it is
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    platform: PlatformArg,
}

impl Selector {
    fn conversation_id(&self) -> Res<String> {
        ConversationSelector {
            platform: self.platform.platform,
            bot: self.bot.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            id: self.id.clone(),
        }
        .conversation_id()
        .map_err(|e| Fail::Usage(e.to_string()))
    }
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    match cmd {
        Cmd::Show(sel) => {
            let conv = sel.conversation_id()?;
            let turns = ctx.store().await?.recent_turns(&conv, 0, 1000).await.map_err(op)?;
            if turns.is_empty() {
                println!("{conv}: no turns");
            }
            for t in turns {
                let who = t.speaker.clone().unwrap_or_else(|| format!("{:?}", t.role).to_lowercase());
                println!("{} {who}: {}", t.at_ms, t.text);
            }
        }
        Cmd::Clear(sel) => {
            let conv = sel.conversation_id()?;
            shared::bot::window::reset(&ctx.store().await?, &conv).await.map_err(op)?;
            println!("{conv}: cleared");
        }
    }
    Ok(())
}
