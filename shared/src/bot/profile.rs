//! A robot's profile: system prompt, model and provider, conversation window, quota, group
//! scope, and the language and wording of its fixed texts. Stored as JSON under
//! `profile#<robot>`; every field is optional and falls back to the deployment's defaults
//! (`TCBOT_*` settings).

use super::context::GroupContext;
use super::sink::StreamMode;
use super::texts::{Language, TextOverrides, Texts};
use crate::config::{LlmDefaults, StreamSettings};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whose conversation a group answer continues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupScope {
    /// One conversation per group (and topic), each user turn labelled with its sender.
    #[default]
    Group,
    /// One conversation per member of the group.
    Member,
}

/// How long a group mention may wait for its turn, by default, before it is answered with the
/// `overloaded` text: five minutes.
pub const DEFAULT_MAX_WAIT_SECS: u64 = 300;

/// How a robot's answers are shown, per kind of conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamModes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<StreamMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<StreamMode>,
}

/// A profile as stored: fields left out take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `openai` or `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_style: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Which key of the secret's `LlmApiKeys` to use; the default `LlmApiKey` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The window: at most this many turns …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<usize>,
    /// … said within this many seconds …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// … within this many (estimated) tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<usize>,
    /// Messages a user may send this robot per day; 0 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_scope: Option<GroupScope>,
    /// The language of the fixed texts (`zh` or `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// Fixed texts worded for this robot, each replacing the text of its language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts: Option<TextOverrides>,
    /// How answers are shown: `{"direct": mode, "group": mode}`, modes `robot_stream`,
    /// `native_stream`, `modify`, `final`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_mode: Option<StreamModes>,
    /// Give the LLM the group's recent messages that did not mention the robot:
    /// `{"messages": N, "seconds": T}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_context: Option<GroupContext>,
    /// The model reads images: a message's images (from Tencent's own storage) go to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<bool>,
    /// A group mention that waited longer than this for its turn (a busy live room) gets the
    /// short `overloaded` reply instead of a late answer; 0 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_secs: Option<u64>,
    /// Messages a sender sends within this many milliseconds of each other are answered as one
    /// turn; 0 answers each on its own. The deployment's `TCBOT_BURST_WINDOW_MS` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_window_ms: Option<u64>,
}

/// A profile with every field decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub system_prompt: String,
    pub model: String,
    pub fallback_models: Vec<String>,
    pub base_url: String,
    pub api_style: String,
    pub api_version: Option<String>,
    pub api_key_name: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_turns: usize,
    pub max_age_secs: u64,
    pub token_budget: usize,
    pub daily_quota: u64,
    pub group_scope: GroupScope,
    pub texts: Texts,
    pub direct_mode: StreamMode,
    pub group_mode: StreamMode,
    pub group_context: Option<GroupContext>,
    pub vision: bool,
    pub max_wait_secs: u64,
    /// `None`: the deployment's burst window.
    pub burst_window: Option<Duration>,
}

impl BotProfile {
    /// The store key of a Tencent robot's profile.
    pub fn key(bot: &str) -> String {
        crate::keys::profile(crate::bot::job::Platform::Tencent, bot)
    }

    /// Fills what the profile leaves out from the defaults.
    pub fn resolve(self, d: &LlmDefaults, s: &StreamSettings) -> Resolved {
        let modes = self.stream_mode.unwrap_or_default();
        Resolved {
            system_prompt: self.system_prompt.unwrap_or_else(|| d.system_prompt.clone()),
            model: self.model.unwrap_or_else(|| d.model.clone()),
            fallback_models: self.fallback_models,
            base_url: self.base_url.unwrap_or_else(|| d.base_url.clone()),
            api_style: self.api_style.unwrap_or_else(|| d.api_style.clone()),
            api_version: self.api_version,
            api_key_name: self.api_key_name,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            max_turns: self.max_turns.unwrap_or(d.max_turns).max(1),
            max_age_secs: self.max_age_secs.unwrap_or(d.max_age_secs),
            token_budget: self.token_budget.unwrap_or(d.token_budget),
            daily_quota: self.daily_quota.unwrap_or(d.daily_quota),
            group_scope: self.group_scope.unwrap_or_default(),
            texts: Texts::of(self.language.unwrap_or(d.language)).overridden(self.texts.unwrap_or_default()),
            direct_mode: modes.direct.unwrap_or(s.direct_mode),
            group_mode: modes.group.unwrap_or(s.group_mode),
            group_context: self.group_context,
            vision: self.vision.unwrap_or(false),
            max_wait_secs: self.max_wait_secs.unwrap_or(DEFAULT_MAX_WAIT_SECS),
            burst_window: self.burst_window_ms.map(Duration::from_millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_may_override_texts_but_not_name_unknown_ones() {
        let ok = serde_json::from_str::<BotProfile>(r#"{"language": "zh", "texts": {"help": "Ask away."}}"#);
        assert!(ok.is_ok(), "{ok:?}");
        let typo = serde_json::from_str::<BotProfile>(r#"{"texts": {"hlep": "Ask away."}}"#);
        assert!(typo.is_err(), "{typo:?}");
    }
}
