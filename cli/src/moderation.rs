//! `tcbot moderation`: the app's and the groups' moderation policies, validated and read by
//! `shared::moderation`'s own loader, so what is saved here the functions can use.

use crate::ctx::{Ctx, Fail, JsonSource, Res, op};
use shared::moderation::{Engine, Policy, Scope, load_policy, policy_keys, read_policy};
use shared::store::Store;

/// Set, show and try the moderation policies
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Validate and save a policy
    Set {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        source: JsonSource,
    },
    /// Show a saved policy
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// The verdict the saved policies give TEXT
    Test {
        /// The text to judge
        text: String,
        /// Judge it as a message in this group (the app's and the group's policies)
        #[arg(long)]
        group: Option<String>,
    },
}

/// Which policy: the app's or a group's.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The app's policy (judges one-to-one and group messages)
    #[arg(long)]
    app: bool,
    /// A group's policy (judges that group's messages)
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

impl Target {
    fn key(&self) -> String {
        match &self.group {
            Some(g) => Policy::group_key(g),
            None => Policy::app_key(),
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    let store = ctx.store().await?;
    match cmd {
        Cmd::Set { target, source } => {
            let key = target.key();
            let json = source.read()?;
            let n = load_policy(&key, &json).map_err(|e| Fail::Usage(format!("invalid policy: {e}")))?.rules();
            store.put_doc(&key, &json, None).await.map_err(op)?;
            println!("saved {key} with {n} rule(s); functions pick it up within a minute");
        }
        Cmd::Show { target } => {
            let key = target.key();
            println!("{}", store.get_doc(&key).await.map_err(op)?.unwrap_or_else(|| format!("{key}: no policy")));
        }
        Cmd::Test { text, group } => {
            let mut parts = Vec::new();
            for key in policy_keys(group.as_deref()) {
                parts.extend(read_policy(&store, &key).await.map_err(op)?.map(std::sync::Arc::new));
            }
            let scope = if group.is_some() { Scope::Group } else { Scope::C2c };
            let verdict = Engine::of(parts).judge(&[shared::msg::MsgElement::text(text)], scope);
            println!("{}", verdict.ack().to_json());
        }
    }
    Ok(())
}
