//! The conversation an operator names: a robot and a user, a robot in a group (topic), a
//! member's own conversation with a robot there, or a conversation id as stored. The admin CLI
//! reads these selectors; the ids are [`crate::keys`]'s, so what the CLI shows or resets is what
//! the workers remember.

use crate::bot::job::Platform;
use crate::keys;

/// An account id as `platform` keys it. NIM lowercases an account id when it creates the account
/// (nim-protocol.md), so a NIM robot or user is named by its lowercase id, as the NIM router
/// names them in jobs; Tencent's ids are kept as given.
pub fn account_id(platform: Platform, id: &str) -> String {
    match platform {
        Platform::Tencent => id.to_owned(),
        Platform::Nim => id.to_ascii_lowercase(),
    }
}

/// The parts of a conversation selector, each as the operator gave it (or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationSelector {
    pub platform: Platform,
    pub bot: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub topic: Option<String>,
    /// A stored conversation id, used as given.
    pub id: Option<String>,
}

/// Why a selector names no conversation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("--id names the conversation alone; leave out --bot, --user, --group and --topic")]
    IdWithOthers,
    #[error("--topic is for Tencent Community topics; NIM teams have none")]
    NimTopic,
    #[error("name the conversation: --bot and --user, --bot and --group (--topic, --user), or --id")]
    Incomplete,
}

impl ConversationSelector {
    /// The conversation id the selector names, as the workers key it.
    pub fn conversation_id(&self) -> Result<String, SelectorError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|v| !v.is_empty())
        }
        let topic = given(&self.topic);
        if let Some(id) = given(&self.id) {
            if self.bot.is_some() || self.user.is_some() || self.group.is_some() || self.topic.is_some() {
                return Err(SelectorError::IdWithOthers);
            }
            return Ok(id.to_owned());
        }
        if self.platform == Platform::Nim && topic.is_some() {
            return Err(SelectorError::NimTopic);
        }
        let account = |v: &Option<String>| given(v).map(|id| account_id(self.platform, id));
        match (account(&self.bot), account(&self.user), given(&self.group)) {
            (Some(bot), Some(user), None) if topic.is_none() => Ok(keys::direct_scope(self.platform, &bot, &user)),
            (Some(bot), member, Some(group)) => {
                Ok(keys::group_conversation(self.platform, group, topic, &bot, member.as_deref()))
            }
            _ => Err(SelectorError::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(platform: Platform, parts: [Option<&str>; 5]) -> ConversationSelector {
        let [bot, user, group, topic, id] = parts.map(|p| p.map(str::to_owned));
        ConversationSelector { platform, bot, user, group, topic, id }
    }

    #[test]
    fn each_selector_names_the_workers_conversation() {
        let t = Platform::Tencent;
        let cases = [
            (sel(t, [Some("@RBT#1"), Some("ann"), None, None, None]), keys::direct_scope(t, "@RBT#1", "ann")),
            (
                sel(t, [Some("@RBT#1"), None, Some("@TGS#_g"), Some("t"), None]),
                keys::group_conversation(t, "@TGS#_g", Some("t"), "@RBT#1", None),
            ),
            (
                sel(t, [Some("@RBT#1"), Some("ann"), Some("@TGS#g"), None, None]),
                keys::group_conversation(t, "@TGS#g", None, "@RBT#1", Some("ann")),
            ),
            (sel(t, [None, None, None, None, Some("c2c#a#b")]), "c2c#a#b".to_owned()),
            (
                sel(Platform::Nim, [Some("MyBot"), Some("Alice"), None, None, None]),
                keys::direct_scope(Platform::Nim, "mybot", "alice"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.conversation_id(), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn an_incomplete_or_contradictory_selector_is_refused() {
        let t = Platform::Tencent;
        assert_eq!(sel(t, [None; 5]).conversation_id(), Err(SelectorError::Incomplete));
        assert_eq!(sel(t, [Some("b"), None, None, None, None]).conversation_id(), Err(SelectorError::Incomplete));
        assert_eq!(
            sel(t, [Some("b"), Some("u"), None, Some("t"), None]).conversation_id(),
            Err(SelectorError::Incomplete),
            "a topic belongs to a group"
        );
        assert_eq!(
            sel(t, [Some("a"), None, None, None, Some("c2c#a#b")]).conversation_id(),
            Err(SelectorError::IdWithOthers)
        );
        assert_eq!(
            sel(Platform::Nim, [Some("b"), None, Some("1"), Some("t"), None]).conversation_id(),
            Err(SelectorError::NimTopic)
        );
    }
}
