//! Discord-style threads and voice channels (Tencent's "Discord implementation guide"): the
//! relations Tencent does not keep, kept here.
//!
//! - **Registry.** A thread is a group of its own. When it is created
//!   (`Group.CallbackAfterCreateGroup`), its parent server (a Community group), channel (a
//!   topic of that server) and root message (a `MsgSeq` in that channel) are read from the
//!   group's custom data (`UserDefinedDataList`, the field names in [`ThreadSettings`]) and
//!   recorded under `thread#<thread>`, and the thread is listed in its server's index
//!   `thread#srv#<server>`.
//! - **Membership.** Every member of the server is then added to the thread, a page of
//!   `get_group_member_info` at a time, each page in one `add_group_member` call; the cursor is
//!   kept in `thread#sync#<thread>` after each page, so a retried function resumes where it
//!   stopped (adding a member twice is harmless). Joining a server adds the new members to all
//!   its threads; leaving it removes them (`Group.CallbackAfterMemberExit`).
//! - **Digests** ([`digest`]): each message in a thread counts once, by its `MsgSeq`, however
//!   often it is delivered, and the newest message is remembered; the root message's
//!   `CloudCustomData` shows both, edited at most once per window.
//! - **Voice channels.** Groups of a configured type, or with a configured custom field set,
//!   are voice channels; a user is in one at a time: joining a second removes them from the
//!   first (`voice#user#<user>` keeps the current one).
//! - **Read API** ([`api`]): `GET /threads?server=…[&channel=…]`.

pub mod api;
pub mod digest;

use crate::event_worker::{EventError, EventHandler, parse};
use crate::store::{Store, now_ms};
use crate::tencent::groups::{
    AddGroupMember, DeleteGroupMember, GetGroupMemberInfo, GroupApi, MAX_ADD_MEMBERS, MAX_DELETE_MEMBERS,
    MAX_MEMBER_PAGE, NewMember, PageAt,
};
use crate::webhook::events::Member;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use digest::{Digest, LastMessage, Scheduler, SqsScheduler};

/// How many member records are written at once.
const MEMBER_WRITES: usize = 16;

/// The command of a delayed digest edit, sent by this module to its own queue.
pub const FLUSH_COMMAND: &str = "Thread.FlushDigest";

/// Store keys, all under the `thread#` and `voice#` prefixes the template grants.
pub mod keys {
    /// A thread's registry entry.
    pub fn thread(thread: &str) -> String {
        format!("thread#{thread}")
    }
    /// A server's thread index.
    pub fn server(server: &str) -> String {
        format!("thread#srv#{server}")
    }
    /// The membership copy's cursor.
    pub fn sync(thread: &str) -> String {
        format!("thread#sync#{thread}")
    }
    /// A thread's digest.
    pub fn digest(thread: &str) -> String {
        format!("thread#digest#{thread}")
    }
    /// The messages counted in one bucket of a thread's `MsgSeq`s.
    pub fn seen(thread: &str, bucket: u64) -> String {
        format!("thread#seen#{thread}#{bucket}")
    }
    /// The coalescing window's claim: held while the root message may not be edited again.
    pub fn edit(thread: &str) -> String {
        format!("thread#edit#{thread}")
    }
    /// The claim of a pending delayed edit.
    pub fn flush(thread: &str) -> String {
        format!("thread#flush#{thread}")
    }
    /// The digest version last written to the root message.
    pub fn edited(thread: &str) -> String {
        format!("thread#edited#{thread}")
    }
    /// A member of a server that has threads: who may read its threads through the API.
    pub fn member(server: &str, user: &str) -> String {
        format!("thread#member#{server}#{user}")
    }
    /// A voice channel's marker.
    pub fn voice_channel(group: &str) -> String {
        format!("voice#chan#{group}")
    }
    /// A user's current voice channel.
    pub fn voice_user(user: &str) -> String {
        format!("voice#user#{user}")
    }
}

/// A bad `TCBOT_THREAD_*` or `TCBOT_VOICE_*` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadSettingsError {
    #[error("{name} must be {what}, got {value:?}")]
    Invalid { name: &'static str, what: &'static str, value: String },
}

/// Why a function could not build the threads service at cold start.
#[derive(Debug, thiserror::Error)]
pub enum ThreadBootError {
    #[error(transparent)]
    Settings(#[from] ThreadSettingsError),
    #[error(transparent)]
    Boot(#[from] crate::boot::BootError),
}

/// What threads and voice channels are configured with (README "Threads").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSettings {
    /// The custom-data field naming a thread's server (`TCBOT_THREAD_SERVER_FIELD`).
    pub server_field: String,
    /// The custom-data field naming its channel, a topic ID (`TCBOT_THREAD_CHANNEL_FIELD`).
    pub channel_field: String,
    /// The custom-data field naming its root message's `MsgSeq` (`TCBOT_THREAD_ROOT_FIELD`).
    pub root_field: String,
    /// At most one root-message edit per thread in this window (`TCBOT_THREAD_EDIT_WINDOW_SECS`).
    pub edit_window: Duration,
    /// Where delayed edits are queued (`TCBOT_THREAD_FLUSH_QUEUE_URL`; the statistics queue).
    pub flush_queue_url: Option<String>,
    /// Members read per page and added per call when a thread is created (`TCBOT_THREAD_MEMBER_PAGE`).
    pub member_page: u32,
    /// How many characters of the last message a digest keeps (`TCBOT_THREAD_TEXT_CHARS`).
    pub text_chars: usize,
    /// The group type that marks voice channels (`TCBOT_VOICE_GROUP_TYPE`; none when unset).
    pub voice_group_type: Option<String>,
    /// The custom-data field that marks a voice channel when `1` or `true` (`TCBOT_VOICE_FIELD`).
    pub voice_field: String,
}

impl Default for ThreadSettings {
    fn default() -> Self {
        ThreadSettings {
            server_field: "thread_server".into(),
            channel_field: "thread_channel".into(),
            root_field: "thread_root".into(),
            edit_window: Duration::from_secs(5),
            flush_queue_url: None,
            member_page: 100,
            text_chars: 80,
            voice_group_type: None,
            voice_field: "voice".into(),
        }
    }
}

impl ThreadSettings {
    /// Reads the settings with `get` (the environment in functions), defaults for the unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ThreadSettingsError> {
        let d = ThreadSettings::default();
        let text = |name: &str, default: String| {
            get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).unwrap_or(default)
        };
        let number = |name: &'static str, what: &'static str, min: u64, max: u64, default: u64| match get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or(ThreadSettingsError::Invalid {
                name,
                what,
                value: v,
            }),
        };
        Ok(ThreadSettings {
            server_field: text("TCBOT_THREAD_SERVER_FIELD", d.server_field),
            channel_field: text("TCBOT_THREAD_CHANNEL_FIELD", d.channel_field),
            root_field: text("TCBOT_THREAD_ROOT_FIELD", d.root_field),
            edit_window: Duration::from_secs(number(
                "TCBOT_THREAD_EDIT_WINDOW_SECS",
                "whole seconds from 1 to 600",
                1,
                600,
                d.edit_window.as_secs(),
            )?),
            flush_queue_url: get("TCBOT_THREAD_FLUSH_QUEUE_URL").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            member_page: number(
                "TCBOT_THREAD_MEMBER_PAGE",
                "a page size from 1 to 200 (Tencent's limit)",
                1,
                u64::from(MAX_MEMBER_PAGE),
                u64::from(d.member_page),
            )? as u32,
            text_chars: number("TCBOT_THREAD_TEXT_CHARS", "a length from 1 to 1000", 1, 1000, d.text_chars as u64)?
                as usize,
            voice_group_type: get("TCBOT_VOICE_GROUP_TYPE").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            voice_field: text("TCBOT_VOICE_FIELD", d.voice_field),
        })
    }
}

/// A thread as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub thread: String,
    pub server: String,
    /// The channel (a topic ID of the server) the thread was started in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The `MsgSeq` of the message the thread was started from, in that channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was created, unix milliseconds.
    pub created_at: u64,
}

/// One thread in a server's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub thread: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A server's threads, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerIndex {
    pub threads: Vec<IndexEntry>,
}

/// Where the membership copy of a new thread stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    /// The next page; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<PageAt>,
    pub done: bool,
    pub pages: u64,
    /// Members Tencent reported as newly added.
    pub added: u64,
}

/// A user's current voice channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceState {
    #[serde(default)]
    pub channel: Option<String>,
    /// The event time of the join or exit that set it, unix milliseconds.
    pub since: u64,
}

/// `Group.CallbackAfterCreateGroup` as far as threads read it, with the group's custom data.
#[derive(Debug, Clone, Deserialize)]
struct CreatedGroup {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Type", default)]
    group_type: Option<String>,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "UserDefinedDataList", default)]
    user_defined_data_list: Vec<KeyValue>,
    #[serde(rename = "EventTime", default, deserialize_with = "crate::lenient::opt_u64_lenient")]
    event_time: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct KeyValue {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// A join or exit, as far as threads and voice channels read them.
#[derive(Debug, Clone, Deserialize)]
struct MembersChanged {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Type", default)]
    group_type: Option<String>,
    #[serde(rename = "NewMemberList", default)]
    new_member_list: Vec<Member>,
    #[serde(rename = "ExitMemberList", default)]
    exit_member_list: Vec<Member>,
    #[serde(rename = "EventTime", default, deserialize_with = "crate::lenient::opt_u64_lenient")]
    event_time: Option<u64>,
}

/// Whether a group is a Community group by its ID (`@TGS#_…`): those page members by `Next`.
pub fn is_community(group: &str) -> bool {
    group.starts_with("@TGS#_")
}

/// The accounts listed, trimmed, without blanks or repeats, in order.
fn accounts(list: &[Member]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .map(|m| m.member_account.trim().to_owned())
        .filter(|m| !m.is_empty() && seen.insert(m.clone()))
        .collect()
}

/// How many times a compare-and-set update is tried before the event is left to SQS.
const CAS_ATTEMPTS: usize = 8;
/// The most member pages one creation reads (200 × 100 000 members is far past any group).
const MAX_PAGES: u64 = 100_000;

/// The threads and voice channels service, shared by the group event functions.
pub struct Threads {
    pub store: Arc<dyn Store>,
    pub groups: Arc<dyn GroupApi>,
    /// Where delayed root-message edits are queued; `None`: edits only when a window is free,
    /// so the last messages of a burst may not reach the root message.
    pub scheduler: Option<Arc<dyn Scheduler>>,
    pub settings: ThreadSettings,
}

impl Threads {
    /// The service as a function builds it at cold start: its store, the admin REST client,
    /// and the SQS scheduler when a flush queue is set.
    pub fn from_boot(boot: &crate::boot::Boot) -> Result<Self, ThreadBootError> {
        let settings = ThreadSettings::from_lookup(|k| std::env::var(k).ok())?;
        let scheduler = settings
            .flush_queue_url
            .clone()
            .map(|url| Arc::new(SqsScheduler::new(aws_sdk_sqs::Client::new(&boot.aws), url)) as Arc<dyn Scheduler>);
        Ok(Threads { store: boot.store(), groups: boot.rest()?, scheduler, settings })
    }

    /// A thread's registry entry.
    pub async fn thread(&self, thread: &str) -> Result<Option<ThreadInfo>, EventError> {
        read_json(self.store.as_ref(), &keys::thread(thread)).await
    }

    fn is_voice(&self, group_type: Option<&str>, data: &HashMap<String, String>) -> bool {
        let by_type = matches!((&self.settings.voice_group_type, group_type), (Some(t), Some(g)) if t == g);
        let by_field = data
            .get(&self.settings.voice_field)
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        by_type || by_field
    }

    async fn is_voice_channel(&self, group: &str, group_type: Option<&str>) -> Result<bool, EventError> {
        if self.is_voice(group_type, &HashMap::new()) {
            return Ok(true);
        }
        Ok(self.store.get_doc(&keys::voice_channel(group)).await?.is_some())
    }

    /// `Group.CallbackAfterCreateGroup`: registers voice channels and threads, and copies a
    /// new thread's server members into it.
    async fn created(&self, body: &serde_json::Value) -> Result<Option<&'static str>, EventError> {
        let g: CreatedGroup = parse(body)?;
        if g.group_id.trim().is_empty() {
            return Err(EventError::Malformed("GroupId is empty".into()));
        }
        let data: HashMap<String, String> =
            g.user_defined_data_list.iter().map(|kv| (kv.key.clone(), kv.value.trim().to_owned())).collect();
        let mut outcome = None;
        if self.is_voice(g.group_type.as_deref(), &data) {
            self.store.put_doc(&keys::voice_channel(&g.group_id), "{}", None).await?;
            outcome = Some("voice_channel_registered");
        }
        let Some(server) = data.get(&self.settings.server_field).filter(|s| !s.is_empty()) else {
            return Ok(outcome);
        };
        if *server == g.group_id {
            return Err(EventError::Malformed("a thread cannot be its own server".into()));
        }
        let root_seq = match data.get(&self.settings.root_field).filter(|s| !s.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                EventError::Malformed(format!("custom field {} is not a MsgSeq", self.settings.root_field))
            })?),
        };
        let info = ThreadInfo {
            thread: g.group_id.clone(),
            server: server.clone(),
            channel: data.get(&self.settings.channel_field).filter(|s| !s.is_empty()).cloned(),
            root_seq,
            name: g.name.clone(),
            created_at: g.event_time.unwrap_or_else(now_ms),
        };
        // The first registration stands: a redelivered event finds it and carries on.
        let doc = to_json(&info)?;
        let info = if self.store.put_doc_if(&keys::thread(&info.thread), None, &doc, None).await? {
            info
        } else {
            self.thread(&info.thread).await?.unwrap_or(info)
        };
        self.index(&info).await?;
        self.copy_members(&info).await?;
        Ok(Some("thread_registered"))
    }

    /// Lists a thread in its server's index (once).
    async fn index(&self, info: &ThreadInfo) -> Result<(), EventError> {
        let key = keys::server(&info.server);
        for _ in 0..CAS_ATTEMPTS {
            let old = self.store.get_doc(&key).await?;
            let mut index: ServerIndex = match &old {
                Some(doc) => from_json(doc, &key)?,
                None => ServerIndex::default(),
            };
            if index.threads.iter().any(|t| t.thread == info.thread) {
                return Ok(());
            }
            index.threads.push(IndexEntry { thread: info.thread.clone(), channel: info.channel.clone() });
            if self.store.put_doc_if(&key, old.as_deref(), &to_json(&index)?, None).await? {
                return Ok(());
            }
        }
        Err(EventError::Contended(key))
    }

    /// Adds every member of the server to the thread, page by page, keeping the cursor after
    /// each page so that a retry resumes there.
    async fn copy_members(&self, info: &ThreadInfo) -> Result<(), EventError> {
        let key = keys::sync(&info.thread);
        let mut cur: SyncCursor = read_json(self.store.as_ref(), &key).await?.unwrap_or_default();
        let community = is_community(&info.server);
        while !cur.done {
            if cur.pages >= MAX_PAGES {
                return Err(EventError::Malformed(format!("{} has more than {MAX_PAGES} member pages", info.server)));
            }
            let req = GetGroupMemberInfo::page(&info.server, community, cur.at.as_ref(), self.settings.member_page);
            let page = self.groups.get_group_member_info(&req).await?;
            let members: Vec<String> =
                page.member_list.iter().map(|m| m.member_account.trim().to_owned()).filter(|m| !m.is_empty()).collect();
            cur.added += self.add(&info.thread, &members).await?;
            self.record_members(&info.server, &members).await?;
            let got = page.member_list.len() as u64;
            let next = if community {
                page.next.filter(|n| !n.is_empty()).map(PageAt::Next)
            } else {
                let offset = match cur.at {
                    Some(PageAt::Offset(o)) => o,
                    _ => 0,
                };
                (got >= u64::from(req.limit)).then_some(PageAt::Offset(offset + got))
            };
            cur.pages += 1;
            cur.done = next.is_none();
            cur.at = next;
            self.store.put_doc(&key, &to_json(&cur)?, None).await?;
        }
        tracing::info!(thread = %info.thread, server = %info.server, pages = cur.pages, added = cur.added, "thread members copied");
        Ok(())
    }

    /// Records `members` as members of `server`, for the read API (a few writes at a time).
    async fn record_members(&self, server: &str, members: &[String]) -> Result<(), EventError> {
        for chunk in members.chunks(MEMBER_WRITES) {
            let keys: Vec<String> = chunk.iter().map(|m| keys::member(server, m)).collect();
            let puts = keys.iter().map(|k| self.store.put_doc(k, "{}", None));
            for written in futures_util::future::join_all(puts).await {
                written?;
            }
        }
        Ok(())
    }

    /// Forgets `members` as members of `server`.
    async fn forget_members(&self, server: &str, members: &[String]) -> Result<(), EventError> {
        for m in members {
            self.store.delete_doc(&keys::member(server, m)).await?;
        }
        Ok(())
    }

    /// Adds `members` to `group` in calls of at most 300; returns how many were newly added.
    async fn add(&self, group: &str, members: &[String]) -> Result<u64, EventError> {
        let mut added = 0;
        for chunk in members.chunks(MAX_ADD_MEMBERS) {
            let req = AddGroupMember {
                group_id: group.to_owned(),
                silence: 1,
                member_list: chunk.iter().map(|m| NewMember { member_account: m.clone() }).collect(),
            };
            let reply = self.groups.add_group_member(&req).await?;
            added += reply.member_list.iter().filter(|r| r.result == 1).count() as u64;
        }
        Ok(added)
    }

    /// Removes `members` from `group` in calls of at most 100.
    async fn remove(&self, group: &str, members: &[String]) -> Result<(), EventError> {
        for chunk in members.chunks(MAX_DELETE_MEMBERS) {
            let req =
                DeleteGroupMember { group_id: group.to_owned(), silence: 1, member_to_del_account: chunk.to_vec() };
            self.groups.delete_group_member(&req).await?;
        }
        Ok(())
    }

    async fn server_threads(&self, server: &str) -> Result<Vec<IndexEntry>, EventError> {
        let index: Option<ServerIndex> = read_json(self.store.as_ref(), &keys::server(server)).await?;
        Ok(index.map(|i| i.threads).unwrap_or_default())
    }

    /// `Group.CallbackAfterNewMemberJoin`: new server members join its threads; a voice
    /// channel's new members leave their previous one.
    async fn joined(&self, body: &serde_json::Value) -> Result<Option<&'static str>, EventError> {
        let j: MembersChanged = parse(body)?;
        let members = accounts(&j.new_member_list);
        if members.is_empty() {
            return Ok(None);
        }
        let mut outcome = None;
        let at = j.event_time.unwrap_or_else(now_ms);
        if self.is_voice_channel(&j.group_id, j.group_type.as_deref()).await? {
            for user in &members {
                self.voice_join(&j.group_id, user, at).await?;
            }
            outcome = Some("voice_joined");
        }
        let threads = self.server_threads(&j.group_id).await?;
        for t in &threads {
            self.add(&t.thread, &members).await?;
        }
        if !threads.is_empty() {
            self.record_members(&j.group_id, &members).await?;
            outcome = Some("added_to_threads");
        }
        Ok(outcome)
    }

    /// `Group.CallbackAfterMemberExit`: those who left a server leave its threads; leaving a
    /// voice channel clears it as the user's current one.
    async fn exited(&self, body: &serde_json::Value) -> Result<Option<&'static str>, EventError> {
        let x: MembersChanged = parse(body)?;
        let members = accounts(&x.exit_member_list);
        if members.is_empty() {
            return Ok(None);
        }
        let mut outcome = None;
        let at = x.event_time.unwrap_or_else(now_ms);
        if self.is_voice_channel(&x.group_id, x.group_type.as_deref()).await? {
            for user in &members {
                self.voice_exit(&x.group_id, user, at).await?;
            }
            outcome = Some("voice_left");
        }
        let threads = self.server_threads(&x.group_id).await?;
        if !threads.is_empty() {
            // First: a leaver no longer reads the server's threads, even if a removal fails.
            self.forget_members(&x.group_id, &members).await?;
        }
        for t in &threads {
            self.remove(&t.thread, &members).await?;
        }
        if !threads.is_empty() {
            outcome = Some("removed_from_threads");
        }
        Ok(outcome)
    }

    /// `user` joined the voice channel `channel` at `at`: they leave the one they were in. A
    /// join older than the current channel's (events come out of order) loses: the user is
    /// taken out of `channel` instead.
    pub async fn voice_join(&self, channel: &str, user: &str, at: u64) -> Result<(), EventError> {
        let key = keys::voice_user(user);
        for _ in 0..CAS_ATTEMPTS {
            let old = self.store.get_doc(&key).await?;
            let state: VoiceState = match &old {
                Some(doc) => from_json(doc, &key)?,
                None => VoiceState::default(),
            };
            match &state.channel {
                Some(c) if c == channel => return Ok(()),
                Some(_) if state.since > at => {
                    self.remove(channel, &[user.to_owned()]).await?;
                    return Ok(());
                }
                // Out of the old one first: were the record written first and the removal
                // failed, a redelivery would find the user already "in" the new channel.
                Some(previous) => self.remove(previous, &[user.to_owned()]).await?,
                None => {}
            }
            let new = VoiceState { channel: Some(channel.to_owned()), since: at };
            if self.store.put_doc_if(&key, old.as_deref(), &to_json(&new)?, None).await? {
                return Ok(());
            }
        }
        Err(EventError::Contended(key))
    }

    /// `user` left the voice channel `channel` at `at`.
    pub async fn voice_exit(&self, channel: &str, user: &str, at: u64) -> Result<(), EventError> {
        let key = keys::voice_user(user);
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = self.store.get_doc(&key).await? else {
                return Ok(());
            };
            let state: VoiceState = from_json(&old, &key)?;
            if state.channel.as_deref() != Some(channel) || state.since > at {
                return Ok(());
            }
            let new = VoiceState { channel: None, since: at };
            if self.store.put_doc_if(&key, Some(&old), &to_json(&new)?, None).await? {
                return Ok(());
            }
        }
        Err(EventError::Contended(key))
    }

    /// Handles a command; `None` when it concerns no thread and no voice channel.
    pub async fn handle_event(
        &self,
        command: &str,
        body: &serde_json::Value,
    ) -> Result<Option<&'static str>, EventError> {
        match command {
            "Group.CallbackAfterCreateGroup" => self.created(body).await,
            "Group.CallbackAfterNewMemberJoin" => self.joined(body).await,
            "Group.CallbackAfterMemberExit" => self.exited(body).await,
            "Group.CallbackAfterSendMsg" => self.message(body).await,
            FLUSH_COMMAND => self.flush(body).await,
            // Another service's command (a full game team): nothing for threads to do.
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl EventHandler for Threads {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        Ok(self.handle_event(command, body).await?.unwrap_or("not_a_thread"))
    }
}

/// A function's own service with threads beside it: each event goes to both (threads after),
/// except the digest flushes, which only threads know, and members joining a thread, which are
/// the members this module adds (no welcome into threads).
pub struct WithThreads<H> {
    pub inner: H,
    pub threads: Threads,
}

#[async_trait]
impl<H: EventHandler> EventHandler for WithThreads<H> {
    async fn handle(&self, command: &str, body: &serde_json::Value) -> Result<&'static str, EventError> {
        self.handle_and_tell(command, body, &mut Vec::new()).await
    }

    /// The wrapped service's events for the bus (team ready, …) pass through.
    async fn handle_and_tell(
        &self,
        command: &str,
        body: &serde_json::Value,
        made: &mut Vec<crate::bus::BusEvent>,
    ) -> Result<&'static str, EventError> {
        if command == FLUSH_COMMAND {
            return self.threads.handle(command, body).await;
        }
        if command == "Group.CallbackAfterNewMemberJoin"
            && let Some(group) = body.get("GroupId").and_then(|g| g.as_str())
            && self.threads.thread(group).await?.is_some()
        {
            return Ok("thread_member_added");
        }
        // Members leave threads and voice channels because this code removed them: not a game
        // team's member exit for the wrapped service to announce.
        let group = body.get("GroupId").and_then(|g| g.as_str()).unwrap_or_default();
        let group_type = body.get("Type").and_then(|g| g.as_str());
        if command == "Group.CallbackAfterMemberExit"
            && !group.is_empty()
            && (self.threads.thread(group).await?.is_some() || self.threads.is_voice_channel(group, group_type).await?)
        {
            return Ok(self.threads.handle_event(command, body).await?.unwrap_or("thread_member_left"));
        }
        let outcome = self.inner.handle_and_tell(command, body, made).await?;
        Ok(self.threads.handle_event(command, body).await?.unwrap_or(outcome))
    }
}

/// Reads a JSON document; a document that is not the expected JSON is an error naming the key.
pub async fn read_json<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<T>, EventError> {
    match store.get_doc(key).await? {
        None => Ok(None),
        Some(doc) => from_json(&doc, key).map(Some),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(doc: &str, key: &str) -> Result<T, EventError> {
    serde_json::from_str(doc).map_err(|e| {
        EventError::Malformed(format!("stored {key} is unreadable: {}", crate::redact::JsonError::from(e)))
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String, EventError> {
    serde_json::to_string(v).map_err(|e| EventError::Malformed(format!("could not encode a document: {e}")))
}

#[cfg(test)]
mod tests;
