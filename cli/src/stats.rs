//! `tcbot stats`: the counters the statistics function keeps.

use crate::ctx::{Ctx, Res, op};
use shared::stats::{KINDS, group_counter, user_counter};
use shared::store::Store;

/// Read the statistics counters
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// A group's counters
    Group {
        /// The group ID
        group: String,
    },
    /// A user's level inputs (all groups, or one)
    User {
        /// The user ID
        user: String,
        /// Only this group's
        #[arg(long)]
        group: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    let store = ctx.store().await?;
    for kind in KINDS {
        let key = match cmd {
            Cmd::Group { group } => group_counter(group, kind),
            Cmd::User { user, group } => user_counter(group.as_deref(), user, kind),
        };
        println!("{kind}: {}", store.counter(&key).await.map_err(op)?);
    }
    Ok(())
}
