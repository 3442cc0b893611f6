//! UserSigs for the app's users: `POST /usersig` behind an API Gateway JWT authorizer.
//!
//! Every Tencent Chat client logs in with a UserSig that must be made on a server. API Gateway
//! checks the caller's JWT (issuer, audience, expiry: the template's authorizer, so Cognito or any
//! OIDC provider works); this function maps one of its claims to a Tencent UserID and signs a
//! UserSig for it, never for a robot (`@RBT#…`, and every `@` account) or the admin.
//!
//! The UserID rule: a claim value of 1 to 32 letters, digits, `_` or `-` is the UserID as it is;
//! any other value (an e-mail, a UUID with other characters, a long subject) becomes `u_` and the
//! first 30 hex digits of its SHA-256, the same UserID every time, within Tencent's 32 bytes.
//!
//! Optionally (`TCBOT_APP_USERSIG_IMPORT=true`) the account is imported into Tencent Chat
//! (`account_import`) before its first UserSig is returned, and remembered under `acct#<UserID>`
//! so that each user is imported once: a failed import returns no UserSig (503, try again).

use crate::secrets::SecretString;
use crate::store::Store;
use crate::tencent::{ChatApi, usersig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Whether the deployment imports accounts (`TCBOT_APP_USERSIG_IMPORT=true`).
pub fn import_from_env() -> bool {
    std::env::var("TCBOT_APP_USERSIG_IMPORT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Imports each caller's account once, before its first UserSig.
pub struct AccountImport {
    pub chat: Arc<dyn ChatApi>,
    pub store: Arc<dyn Store>,
}

/// The store key that says an account was imported.
pub fn imported_key(user_id: &str) -> String {
    format!("acct#{user_id}")
}

/// The longest validity a deployment may configure: 180 days.
pub const MAX_TTL: Duration = Duration::from_secs(180 * 86_400);

/// Makes UserSigs for authenticated callers.
pub struct UserSigs {
    pub sdk_app_id: u64,
    pub key: SecretString,
    /// The app admin's identifier: never signed for a caller.
    pub admin: String,
    /// The JWT claim that identifies the caller (`sub` by default).
    pub claim: String,
    /// How long a UserSig is valid, at most [`MAX_TTL`].
    pub ttl: Duration,
    /// `Some`: import the account before its first UserSig.
    pub import: Option<AccountImport>,
}

/// The reply to a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    #[serde(rename = "SdkAppId")]
    pub sdk_app_id: u64,
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "UserSig")]
    pub user_sig: String,
    /// When it expires, unix seconds.
    #[serde(rename = "ExpireAt")]
    pub expire_at: u64,
}

/// Why no UserSig was made. The text names the claim, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the token has no {0} claim")]
    NoIdentity(String),
    #[error("UserSigs are not made for this account")]
    Reserved,
    #[error("the account could not be created in Tencent Chat; try again")]
    Import,
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::NoIdentity(_) => 401,
            Refused::Reserved => 403,
            Refused::Import => 503,
        }
    }
}

/// The Tencent UserID of an identity (the module's rule).
pub fn user_id(identity: &str) -> String {
    let plain = (1..=32).contains(&identity.len())
        && identity.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        return identity.to_owned();
    }
    format!("u_{}", &hex::encode(Sha256::digest(identity.as_bytes()))[..30])
}

impl UserSigs {
    /// A UserSig for the caller the authorizer's `claims` describe, at `now` (unix seconds).
    pub fn issue(&self, claims: &HashMap<String, String>, now: u64) -> Result<Issued, Refused> {
        let identity = claims.get(&self.claim).filter(|v| !v.trim().is_empty());
        let identity = identity.ok_or_else(|| Refused::NoIdentity(self.claim.clone()))?;
        let user_id = user_id(identity);
        // `user_id` never starts with `@` (not a plain UserID, so hashed): no robot or other
        // `@` account can be claimed; the admin is the one plain name refused.
        if user_id.eq_ignore_ascii_case(&self.admin) {
            return Err(Refused::Reserved);
        }
        let ttl = self.ttl.min(MAX_TTL).as_secs().max(1);
        let user_sig = usersig::generate(self.sdk_app_id, self.key.expose().as_bytes(), &user_id, ttl, now);
        Ok(Issued { sdk_app_id: self.sdk_app_id, user_id, user_sig, expire_at: now + ttl })
    }
}

impl UserSigs {
    /// [`UserSigs::issue`], with the account imported first when the deployment imports
    /// accounts and this one is not recorded as imported yet.
    pub async fn issue_imported(&self, claims: &HashMap<String, String>, now: u64) -> Result<Issued, Refused> {
        let issued = self.issue(claims, now)?;
        if let Some(import) = &self.import {
            let key = imported_key(&issued.user_id);
            let known = import.store.get_doc(&key).await.map_err(|e| {
                tracing::error!(error = %e, "could not read whether the account was imported");
                Refused::Import
            })?;
            if known.is_none() {
                import.chat.account_import(&issued.user_id).await.map_err(|e| {
                    tracing::error!(error = %e, "account_import failed");
                    Refused::Import
                })?;
                // A failed write only means the next UserSig imports again, which is harmless.
                let doc = serde_json::json!({ "imported_at": now }).to_string();
                if let Err(e) = import.store.put_doc(&key, &doc, None).await {
                    tracing::warn!(error = %e, "could not record the imported account");
                }
                tracing::info!(outcome = "imported", "account imported");
            }
        }
        Ok(issued)
    }
}

/// The Lambda adapter: the authorizer's claims from an API Gateway HTTP API request, the
/// UserSig (200) or a refusal (401, 403) as JSON.
pub async fn http_handler(
    service: &UserSigs,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).map(|j| j.claims.clone()).unwrap_or_default()
        }
        _ => HashMap::new(),
    };
    let (status, body) = match service.issue_imported(&claims, crate::store::now_secs()).await {
        Ok(issued) => (200, serde_json::to_string(&issued).unwrap_or_default()),
        Err(e) => {
            tracing::warn!(outcome = "refused", reason = %e, "no UserSig");
            (e.status(), serde_json::json!({ "error": e.to_string() }).to_string())
        }
    };
    crate::lambda::json_response(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> UserSigs {
        UserSigs {
            sdk_app_id: 1_400_000_000,
            key: SecretString::new("k"),
            admin: "administrator".into(),
            claim: "sub".into(),
            ttl: Duration::from_secs(86_400),
            import: None,
        }
    }

    fn claims(sub: &str) -> HashMap<String, String> {
        HashMap::from([("sub".to_owned(), sub.to_owned())])
    }

    #[test]
    fn a_caller_gets_a_usersig_for_their_own_user_id_that_verifies() {
        let s = service();
        let issued = s.issue(&claims("alice_01"), 1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((issued.user_id.as_str(), issued.expire_at), ("alice_01", 1_700_086_400));
        let v = usersig::verify(1_400_000_000, b"k", "alice_01", &issued.user_sig, 1_700_000_100);
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn other_identities_map_to_a_stable_hashed_user_id_within_32_bytes() {
        let a = user_id("alice@example.com");
        assert_eq!(a, user_id("alice@example.com"));
        assert!(a.starts_with("u_") && a.len() == 32, "{a}");
        assert_ne!(a, user_id("bob@example.com"));
        assert_eq!(user_id(&"x".repeat(32)), "x".repeat(32));
        assert!(user_id(&"x".repeat(33)).starts_with("u_"));
    }

    #[test]
    fn robots_the_admin_and_tokens_without_the_claim_are_refused() {
        let s = service();
        assert_eq!(s.issue(&claims("administrator"), 1), Err(Refused::Reserved));
        assert_eq!(s.issue(&claims("Administrator"), 1), Err(Refused::Reserved));
        // "@RBT#x" is not a plain UserID, so it maps to a hashed one: no robot can be claimed.
        assert!(s.issue(&claims("@RBT#x"), 1).is_ok_and(|i| i.user_id.starts_with("u_")));
        assert_eq!(s.issue(&HashMap::new(), 1), Err(Refused::NoIdentity("sub".into())));
        assert_eq!(s.issue(&claims("  "), 1).map_err(|e| e.status()), Err(401));
    }

    #[test]
    fn the_validity_is_capped() {
        let s = UserSigs { ttl: Duration::from_secs(10 * 365 * 86_400), ..service() };
        let issued = s.issue(&claims("a"), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issued.expire_at, MAX_TTL.as_secs());
    }
}
