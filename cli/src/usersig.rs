//! `tcbot usersig`: a UserSig for an account of the app, signed with the app's SecretKey.

use crate::ctx::{Ctx, Res, op};
use shared::tencent::usersig;

/// Print a UserSig (default: the admin's, valid one day)
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account to sign for [default: the secret's AdminIdentifier]
    #[arg(long, value_name = "ID")]
    identifier: Option<String>,
    /// How long it is valid, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    expire: u64,
}

pub async fn run(ctx: &Ctx, a: &Args) -> Res<()> {
    let s = ctx.secrets().await?;
    let id = a.identifier.clone().unwrap_or_else(|| s.admin_identifier.clone());
    let key = s.require_secret_key().map_err(op)?;
    println!("{}", usersig::generate(s.sdk_app_id, key.expose().as_bytes(), &id, a.expire, shared::store::now_secs()));
    Ok(())
}
