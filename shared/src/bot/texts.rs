//! The fixed texts a robot sends: replies to commands, notices and apologies. There is a
//! built-in set per [`Language`]; the deployment chooses the default language
//! (`TCBOT_LANGUAGE`), and a robot's profile may choose another and override any text
//! ([`TextOverrides`]).

use super::job::Part;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A language with a built-in set of texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Simplified Chinese.
    Zh,
    En,
}

impl FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zh" => Ok(Self::Zh),
            "en" => Ok(Self::En),
            _ => Err("expected zh or en".into()),
        }
    }
}

/// Every fixed text a robot sends. Internal errors and which moderation rule matched never
/// reach the user: they see one of these instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// The reply to `/help`.
    pub help: String,
    /// The reply to `/reset`.
    pub reset_done: String,
    /// The reply to a message over the daily quota; `{limit}` is the quota ([`Texts::quota_reply`]).
    pub quota_reached: String,
    /// The reply to `/usage`: `{used}` messages used today, `{left}` left ([`Texts::usage_reply`]).
    pub usage: String,
    /// The reply to `/usage` when the robot has no daily quota.
    pub usage_unlimited: String,
    /// The reply to a message without text; `{what}` names what it held
    /// ([`Texts::text_only_reply`]).
    pub text_only: String,
    /// Shown when an answer could not be produced or was cut.
    pub apology: String,
    /// Shown after an answer cut at the message size limit.
    pub truncated_notice: String,
    /// Shown in place of an answer a moderation policy refuses.
    pub answer_refused: String,
    /// The placeholder shown while an answer is being prepared (`modify` and `final` modes).
    pub thinking: String,
    /// Told to a message that waits behind the answer in progress (a busy check); empty: never.
    pub busy: String,
    /// The reply to a group mention that waited longer than the robot's `max_wait_secs`.
    pub overloaded: String,
    /// The language of the built-in set these texts came from (names of message kinds).
    pub language: Language,
}

impl Texts {
    /// The built-in texts of `language`.
    pub fn of(language: Language) -> Texts {
        match language {
            Language::Zh => Texts::zh(),
            Language::En => Texts::en(),
        }
    }

    /// The built-in English texts.
    pub fn en() -> Texts {
        Texts {
            help: "I'm an AI assistant. Write to me in plain text and I'll answer.\n\
                   /reset - forget our conversation so far\n\
                   /usage - see how many messages you have left today\n\
                   /help - show this help"
                .into(),
            reset_done: "Done: I've forgotten our conversation. What shall we talk about?".into(),
            quota_reached: "You've reached today's limit of {limit} messages with me. Please come back tomorrow."
                .into(),
            usage: "Messages today: {used} used, {left} left.".into(),
            usage_unlimited: "There is no daily limit on messages with me.".into(),
            text_only: "I can only read text for now, not {what}. Please write your question in words.".into(),
            apology: "Sorry, something went wrong on my side. Please try again in a moment.".into(),
            truncated_notice: "(The answer was too long and has been cut here.)".into(),
            answer_refused: "I can't answer that.".into(),
            thinking: "thinking…".into(),
            busy: "I'll answer this next.".into(),
            overloaded: "Too many questions at once, sorry. Please ask me again in a moment.".into(),
            language: Language::En,
        }
    }

    /// The built-in Chinese texts.
    pub fn zh() -> Texts {
        Texts {
            help: "我是 AI 助手，直接发文字给我，我就会回答。\n\
                   /reset - 忘掉我们之前的对话\n\
                   /usage - 查看今天还能发几条消息\n\
                   /help - 显示本帮助"
                .into(),
            reset_done: "好的，之前的对话我已经忘了。想聊点什么？".into(),
            quota_reached: "今天和我的对话已达上限（{limit} 条），请明天再来。".into(),
            usage: "今天已用 {used} 条消息，还剩 {left} 条。".into(),
            usage_unlimited: "和我聊天没有每日条数限制。".into(),
            text_only: "我暂时只能看懂文字，看不懂{what}。请用文字写下你的问题。".into(),
            apology: "抱歉，我这边出了点问题，请稍后再试。".into(),
            truncated_notice: "（回答太长，到这里就截断了。）".into(),
            answer_refused: "这个问题我无法回答。".into(),
            thinking: "思考中…".into(),
            busy: "这条我接下来就回答。".into(),
            overloaded: "同时提问的人太多了，抱歉。请稍后再问我一次。".into(),
            language: Language::Zh,
        }
    }

    /// These texts with each text that `o` sets replaced.
    pub fn overridden(self, o: TextOverrides) -> Texts {
        Texts {
            help: o.help.unwrap_or(self.help),
            reset_done: o.reset_done.unwrap_or(self.reset_done),
            quota_reached: o.quota_reached.unwrap_or(self.quota_reached),
            usage: o.usage.unwrap_or(self.usage),
            usage_unlimited: o.usage_unlimited.unwrap_or(self.usage_unlimited),
            text_only: o.text_only.unwrap_or(self.text_only),
            apology: o.apology.unwrap_or(self.apology),
            truncated_notice: o.truncated_notice.unwrap_or(self.truncated_notice),
            answer_refused: o.answer_refused.unwrap_or(self.answer_refused),
            thinking: o.thinking.unwrap_or(self.thinking),
            busy: o.busy.unwrap_or(self.busy),
            overloaded: o.overloaded.unwrap_or(self.overloaded),
            language: self.language,
        }
    }

    /// The reply to a message without text that held `parts`: the kinds received, named in
    /// the texts' language.
    pub fn text_only_reply(&self, parts: &[Part]) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for p in parts {
            let what = match p {
                Part::Image { .. } => "image",
                Part::Other { what } => what.as_str(),
            };
            let name = kind_name(self.language, what);
            if !kinds.contains(&name) {
                kinds.push(name);
            }
        }
        let joined = match (self.language, kinds.is_empty()) {
            (Language::En, true) => "that message".to_owned(),
            (Language::Zh, true) => "这条消息".to_owned(),
            (Language::En, false) => kinds.join(" or "),
            (Language::Zh, false) => kinds.join("或"),
        };
        self.text_only.replace("{what}", &joined)
    }

    /// The reply to a message over a daily quota of `limit`.
    pub fn quota_reply(&self, limit: u64) -> String {
        self.quota_reached.replace("{limit}", &limit.to_string())
    }

    /// The reply to `/usage`: `used` of a daily quota of `limit` (0: no limit). Messages over
    /// the quota are counted too, but were not answered, so they are not shown as used.
    pub fn usage_reply(&self, used: u64, limit: u64) -> String {
        if limit == 0 {
            return self.usage_unlimited.clone();
        }
        let used = used.min(limit);
        self.usage.replace("{used}", &used.to_string()).replace("{left}", &(limit - used).to_string())
    }
}

/// A profile's own texts: each field set replaces the built-in text of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_done: Option<String>,
    /// May name the quota as `{limit}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_reached: Option<String>,
    /// May name `{used}` and `{left}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_unlimited: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_only: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apology: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_notice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_refused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overloaded: Option<String>,
}

/// A message kind's name in `language` (the intake's neutral names: `tencent::intake`,
/// `nim::jobs`).
fn kind_name(language: Language, what: &str) -> &'static str {
    let (en, zh) = match what {
        "image" => ("images", "图片"),
        "voice" => ("voice messages", "语音"),
        "file" => ("files", "文件"),
        "video" => ("videos", "视频"),
        "location" => ("locations", "位置"),
        "sticker" => ("stickers", "表情"),
        "forwarded messages" => ("forwarded messages", "合并转发的消息"),
        "custom" => ("custom messages", "自定义消息"),
        _ => ("that kind of message", "这类消息"),
    };
    match language {
        Language::En => en,
        Language::Zh => zh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_text_names_the_limit_in_either_language() {
        assert!(Texts::en().quota_reply(5).contains("limit of 5 messages"));
        assert!(Texts::zh().quota_reply(5).contains("（5 条）"));
    }

    #[test]
    fn usage_says_used_and_left_never_more_than_the_quota_and_no_limit_without_one() {
        let en = Texts::en();
        assert_eq!(en.usage_reply(2, 5), "Messages today: 2 used, 3 left.");
        assert_eq!(en.usage_reply(7, 5), "Messages today: 5 used, 0 left.", "refused messages are not used");
        assert_eq!(en.usage_reply(3, 0), en.usage_unlimited);
        assert_eq!(Texts::zh().usage_reply(2, 5), "今天已用 2 条消息，还剩 3 条。");
    }

    #[test]
    fn an_override_replaces_one_text_and_keeps_the_others() {
        let o = TextOverrides { help: Some("Ask away.".into()), ..TextOverrides::default() };
        let t = Texts::zh().overridden(o);
        assert_eq!(t.help, "Ask away.");
        assert_eq!(t.apology, Texts::zh().apology);
    }

    #[test]
    fn the_text_only_reply_names_what_was_received_in_the_robot_s_language() {
        let parts = [Part::Other { what: "voice".into() }, Part::Image { url: "u".into(), bytes: None }];
        assert_eq!(
            Texts::en().text_only_reply(&parts),
            "I can only read text for now, not voice messages or images. Please write your question in words."
        );
        assert_eq!(Texts::zh().text_only_reply(&parts), "我暂时只能看懂文字，看不懂语音或图片。请用文字写下你的问题。");
        assert!(Texts::en().text_only_reply(&[]).contains("not that message"));
        // A robot's own wording without {what} is kept as written.
        let o = TextOverrides { text_only: Some("Words only, please.".into()), ..TextOverrides::default() };
        assert_eq!(Texts::zh().overridden(o).text_only_reply(&parts), "Words only, please.");
    }

    #[test]
    fn languages_are_zh_or_en() {
        assert_eq!("zh".parse(), Ok(Language::Zh));
        assert_eq!("en".parse(), Ok(Language::En));
        assert_eq!("fr".parse::<Language>(), Err("expected zh or en".to_owned()));
    }
}
