//! `tcbot presence`: who is online, as the presence function records it.

use crate::ctx::{Ctx, Res, op};
use shared::presence::{ONLINE_KEY, UserPresence, total_key, user_key};
use shared::store::Store;

/// Read the online state
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Whether a user is online now, and their total online time
    User {
        /// The user ID
        user: String,
    },
    /// How many users are online in the app
    Online,
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    let store = ctx.store().await?;
    match cmd {
        Cmd::User { user } => {
            let p: UserPresence = match store.get_doc(&user_key(user)).await.map_err(op)? {
                Some(doc) => serde_json::from_str(&doc).map_err(op)?,
                None => UserPresence::default(),
            };
            let total = store.counter(&total_key(user)).await.map_err(op)?;
            println!("online: {}", p.online);
            println!("online time: {} s (closed sessions)", total / 1000);
        }
        Cmd::Online => println!("{}", store.counter(ONLINE_KEY).await.map_err(op)?),
    }
    Ok(())
}
