//! `tcbot profile`: a robot's profile (system prompt, model, window, quota, group scope), kept
//! in the table under `shared::keys::profile`.

use crate::ctx::{Ctx, Fail, JsonSource, PlatformArg, Res, op};
use shared::bot::profile::BotProfile;
use shared::keys;
use shared::selector::account_id;
use shared::store::Store;

/// Set or show a robot's profile
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Validate and save a profile (a misspelt field is refused)
    Set {
        /// The robot: a Tencent UserID (@RBT#…) or a NIM accid
        bot: String,
        #[command(flatten)]
        source: JsonSource,
        #[command(flatten)]
        platform: PlatformArg,
    },
    /// Show a robot's saved profile
    Show {
        /// The robot: a Tencent UserID (@RBT#…) or a NIM accid
        bot: String,
        #[command(flatten)]
        platform: PlatformArg,
    },
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    match cmd {
        Cmd::Set { bot, source, platform } => {
            let platform = platform.platform;
            let bot = account_id(platform, bot);
            let json = source.read()?;
            let profile: BotProfile =
                serde_json::from_str(&json).map_err(|e| Fail::Usage(format!("invalid profile: {e}")))?;
            let doc = serde_json::to_string(&profile).map_err(op)?;
            ctx.store().await?.put_doc(&keys::profile(platform, &bot), &doc, None).await.map_err(op)?;
            println!("profile of {} robot {bot} saved", platform.name());
        }
        Cmd::Show { bot, platform } => {
            let platform = platform.platform;
            let bot = account_id(platform, bot);
            match ctx.store().await?.get_doc(&keys::profile(platform, &bot)).await.map_err(op)? {
                Some(doc) => println!("{doc}"),
                None => println!("{bot} has no profile; the deployment's defaults apply"),
            }
        }
    }
    Ok(())
}
