//! `tcbot robot`: Tencent's robot accounts (`@RBT#…`).

use crate::ctx::{Ctx, Res, op};
use shared::tencent::{CreateRobot, DeleteRobot};

/// Create, list and delete Tencent robots
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create a robot account
    Create {
        /// The robot's UserID; it must start with @RBT#
        #[arg(value_parser = robot_id)]
        id: String,
        /// Its nickname
        #[arg(long, value_name = "NAME")]
        nick: Option<String>,
        /// Its avatar's URL
        #[arg(long, value_name = "URL")]
        face_url: Option<String>,
        /// Its signature line
        #[arg(long, value_name = "TEXT")]
        signature: Option<String>,
    },
    /// List the app's robots
    List,
    /// Delete a robot account
    Delete {
        /// The robot's UserID
        id: String,
    },
}

fn robot_id(s: &str) -> Result<String, String> {
    if s.starts_with("@RBT#") { Ok(s.to_owned()) } else { Err("a robot's UserID must start with @RBT#".into()) }
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    let rest = ctx.rest().await?;
    match cmd {
        Cmd::Create { id, nick, face_url, signature } => {
            let req = CreateRobot {
                user_id: id.clone(),
                nick: nick.clone(),
                face_url: face_url.clone(),
                self_signature: signature.clone(),
            };
            rest.create_robot(&req).await.map_err(op)?;
            println!("created robot {id}");
        }
        Cmd::List => {
            for r in rest.get_all_robots().await.map_err(op)?.robot_account {
                println!("{r}");
            }
        }
        Cmd::Delete { id } => {
            rest.delete_robot(&DeleteRobot { robot_account: id.clone() }).await.map_err(op)?;
            println!("deleted robot {id}");
        }
    }
    Ok(())
}
