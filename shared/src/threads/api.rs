//! The read API: `GET /threads?server=…[&channel=…]` behind the same API Gateway JWT authorizer
//! as `POST /usersig`. It answers a server's threads (or one channel's) with their digests, and
//! the caller's current voice channel:
//!
//! ```json
//! {"server": "@TGS#_s", "channel": null,
//!  "threads": [{"thread": "@TGS#2t", "channel": "@TGS#_s@TOPIC#_c", "root_seq": 12, "name": "Plans",
//!               "created_at": 1700000000000, "count": 50,
//!               "last": {"from": "alice", "text": "see you", "time": 1700000050, "seq": 150}}],
//!  "voice": {"user": "alice", "channel": "@TGS#voice1"}}
//! ```
//!
//! The caller is the authorizer's claim (`TCBOT_APP_USERSIG_CLAIM`, `sub` by default) mapped to
//! a Tencent UserID by the UserSig endpoint's rule. Any signed-in user may list any server's
//! threads: IDs, names and digests are what every member of the server sees on the root
//! messages; the voice channel is only ever the caller's own.

use super::{Digest, IndexEntry, ServerIndex, ThreadInfo, VoiceState, keys};
use crate::store::Store;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The most threads one answer lists (oldest first); a server's index holds more only past
/// some thousands, which DynamoDB's 400 KB item would not hold anyway.
pub const MAX_THREADS: usize = 1000;

/// The read API's service.
pub struct ThreadsApi {
    pub store: Arc<dyn Store>,
    /// The JWT claim that names the caller.
    pub claim: String,
}

/// One thread in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadView {
    pub thread: String,
    pub channel: Option<String>,
    pub root_seq: Option<u64>,
    pub name: Option<String>,
    pub created_at: Option<u64>,
    pub count: u64,
    pub last: Option<super::LastMessage>,
}

/// The caller's voice channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoiceView {
    pub user: String,
    pub channel: Option<String>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub server: String,
    pub channel: Option<String>,
    pub threads: Vec<ThreadView>,
    pub voice: VoiceView,
}

/// Why a request was not answered. The text never echoes a claim's value.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the token has no {0} claim")]
    NoIdentity(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("only the server's members read its threads")]
    NotAMember,
    #[error("the threads could not be read")]
    Store(#[from] crate::store::StoreError),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NoIdentity(_) => 401,
            ApiError::BadRequest(_) => 400,
            ApiError::NotAMember => 403,
            ApiError::Store(_) => 500,
        }
    }
}

/// How many threads' documents the API reads at once.
const READS_AT_ONCE: usize = 16;

/// A group or topic ID as a query parameter: present, at most 128 bytes, no control characters.
fn group_param(name: &str, v: Option<&String>, required: bool) -> Result<Option<String>, ApiError> {
    let v = v.map(|s| s.trim()).filter(|s| !s.is_empty());
    match v {
        None if required => Err(ApiError::BadRequest(format!("the {name} parameter is required"))),
        None => Ok(None),
        Some(s) if s.len() > 128 || s.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(format!("the {name} parameter is not a group or topic ID")))
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn parse<T: serde::de::DeserializeOwned>(doc: Option<String>) -> Option<T> {
    doc.and_then(|d| serde_json::from_str(&d).ok())
}

impl ThreadsApi {
    /// The listing for the caller the authorizer's `claims` describe, with the query's
    /// `server` and optional `channel`.
    pub async fn list(
        &self,
        claims: &HashMap<String, String>,
        query: &HashMap<String, String>,
    ) -> Result<Listing, ApiError> {
        let identity = claims.get(&self.claim).filter(|v| !v.trim().is_empty());
        let user = crate::usersigs::user_id(identity.ok_or_else(|| ApiError::NoIdentity(self.claim.clone()))?);
        let server = group_param("server", query.get("server"), true)?.unwrap_or_default();
        let channel = group_param("channel", query.get("channel"), false)?;
        let index: ServerIndex = parse(self.store.get_doc(&keys::server(&server)).await?).unwrap_or_default();
        // A server's threads (names, last messages) are its members' to read. A server without
        // threads lists nothing, to anyone.
        if !index.threads.is_empty() && self.store.get_doc(&keys::member(&server, &user)).await?.is_none() {
            return Err(ApiError::NotAMember);
        }
        let wanted: Vec<&IndexEntry> =
            index.threads.iter().filter(|t| channel.is_none() || t.channel == channel).take(MAX_THREADS).collect();
        let mut threads = Vec::with_capacity(wanted.len());
        // Each thread's entry and digest, a few threads at a time (a large server lists many).
        let mut read = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(READS_AT_ONCE) {
            let docs = futures_util::future::join_all(chunk.iter().map(|entry| async move {
                let info = self.store.get_doc(&keys::thread(&entry.thread)).await?;
                let digest = self.store.get_doc(&keys::digest(&entry.thread)).await?;
                Ok::<_, crate::store::StoreError>((info, digest))
            }))
            .await;
            read.extend(chunk.iter().copied().zip(docs));
        }
        for (entry, docs) in read {
            let (info, digest) = docs?;
            let info: Option<ThreadInfo> = parse(info);
            let digest: Digest = parse(digest).unwrap_or_default();
            threads.push(ThreadView {
                thread: entry.thread.clone(),
                channel: entry.channel.clone(),
                root_seq: info.as_ref().and_then(|i| i.root_seq),
                name: info.as_ref().and_then(|i| i.name.clone()),
                created_at: info.as_ref().map(|i| i.created_at),
                count: digest.count,
                last: digest.last,
            });
        }
        let voice: VoiceState = parse(self.store.get_doc(&keys::voice_user(&user)).await?).unwrap_or_default();
        Ok(Listing { server, channel, threads, voice: VoiceView { user, channel: voice.channel } })
    }
}

/// The Lambda adapter: an API Gateway HTTP API request (JWT claims, query string) to a listing
/// (200) or an error (400, 401, 405, 500) as JSON.
pub async fn http_handler(
    service: &ThreadsApi,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let json = crate::lambda::json_response;
    if req.method() != lambda_http::http::Method::GET {
        return json(405, serde_json::json!({ "error": "only GET is served" }).to_string());
    }
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).map(|j| j.claims.clone()).unwrap_or_default()
        }
        _ => HashMap::new(),
    };
    let params = req.query_string_parameters();
    let query: HashMap<String, String> =
        ["server", "channel"].iter().filter_map(|k| params.first(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    let (status, body) = match service.list(&claims, &query).await {
        Ok(listing) => (200, serde_json::to_string(&listing).unwrap_or_default()),
        Err(e) => {
            if let ApiError::Store(inner) = &e {
                tracing::error!(outcome = "failed", error = %inner, "threads not listed");
            } else {
                tracing::warn!(outcome = "refused", reason = %e, "threads not listed");
            }
            (e.status(), serde_json::json!({ "error": e.to_string() }).to_string())
        }
    };
    json(status, body)
}
