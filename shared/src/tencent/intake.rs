//! Tencent's intake: robot webhooks mapped to neutral [`Job`]s.
//!
//! Everything Tencent-specific about an inbound message ends here: which field names the
//! message (`MsgKey` or `MsgSeq_MsgRandom_MsgTime` in one-to-one chats, `MsgSeq` per group or
//! topic), how robots are @-mentioned in the text, which elements carry text or an image.

use crate::bot::job::{JOB_VERSION, Job, Part, Place, Platform};
use crate::msg::MsgElement;
use crate::webhook::events::{BotGroupMessage, C2cMessage};
use serde::Deserialize;

/// The hosts Tencent serves message images from (its COS buckets and CDN). An image URL on
/// any other host is not handed to the LLM: the URL comes from the sender's client.
pub const IMAGE_HOSTS: &[&str] = &[".myqcloud.com", ".qcloud.com", ".tencent-cloud.com", ".tencentcos.cn", ".qpic.cn"];

/// The largest image handed to the LLM, in bytes (the `Size` Tencent reports per size).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// The job of a one-to-one message to the robot `to_account`.
pub fn c2c_job(request_id: &str, received_ms: u64, m: &C2cMessage) -> Job {
    let (text, parts) = content(&m.msg_body, &[]);
    Job {
        v: JOB_VERSION,
        platform: Platform::Tencent,
        request_id: request_id.to_owned(),
        received_ms,
        bot: m.to_account.clone(),
        sender: m.from_account.clone(),
        place: Place::Direct,
        msg_id: m.key(),
        text,
        parts,
        per_member: false,
    }
}

/// The job of a group message for one of the robots it mentions.
pub fn group_job(request_id: &str, received_ms: u64, m: &BotGroupMessage, bot: &str) -> Job {
    let (text, parts) = content(&m.msg_body, &m.at_robots_account);
    Job {
        v: JOB_VERSION,
        platform: Platform::Tencent,
        request_id: request_id.to_owned(),
        received_ms,
        bot: bot.to_owned(),
        sender: m.from_account.clone(),
        place: Place::Group { id: m.group_id.clone(), topic: m.topic_id.clone().filter(|t| !t.is_empty()) },
        msg_id: m.msg_seq.to_string(),
        text,
        parts,
        per_member: false,
    }
}

/// A body queued before jobs were versioned: `{request_id, received_ms, bot, msg: {kind:
/// "c2c"|"group", event: <the webhook>}}`. Read so that messages in flight during the deploy
/// that introduced versions are answered, not dead-lettered.
pub fn legacy_job(body: &str) -> Result<Job, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(tag = "kind", content = "event", rename_all = "lowercase")]
    enum Msg {
        C2c(C2cMessage),
        Group(BotGroupMessage),
    }
    #[derive(Deserialize)]
    struct Legacy {
        request_id: String,
        received_ms: u64,
        bot: String,
        msg: Msg,
    }
    let l: Legacy = serde_json::from_str(body)?;
    Ok(match l.msg {
        Msg::C2c(m) => c2c_job(&l.request_id, l.received_ms, &m),
        Msg::Group(m) => group_job(&l.request_id, l.received_ms, &m, &l.bot),
    })
}

/// The text (mentions of `robots` removed) and the other parts of a body.
fn content(body: &[MsgElement], robots: &[String]) -> (String, Vec<Part>) {
    let mut text = String::new();
    let mut parts = Vec::new();
    for e in body {
        match e {
            MsgElement::Text { text: t } => text.push_str(t),
            MsgElement::Custom(_) => parts.push(Part::Other { what: "custom".into() }),
            MsgElement::Other { msg_type, content } => parts.push(match msg_type.as_str() {
                "TIMImageElem" => image(content).unwrap_or_else(|| Part::Other { what: "image".into() }),
                other => Part::Other { what: element_name(other).into() },
            }),
        }
    }
    let text = if robots.is_empty() { text.trim().to_owned() } else { strip_mentions(&text, robots) };
    (text, parts)
}

/// The neutral name of a Tencent element type.
fn element_name(msg_type: &str) -> &str {
    match msg_type {
        "TIMSoundElem" => "voice",
        "TIMFileElem" => "file",
        "TIMVideoFileElem" => "video",
        "TIMLocationElem" => "location",
        "TIMFaceElem" => "sticker",
        "TIMRelayElem" => "forwarded messages",
        _ => "message",
    }
}

/// An image element: the largest size Tencent offers within [`MAX_IMAGE_BYTES`], from
/// Tencent's own storage. `ImageInfoArray` entries are `{Type: 1 original|2 large|3 thumbnail,
/// Size, Width, Height, URL}`; a size of 0 (unknown) is taken as fitting.
fn image(content: &serde_json::Value) -> Option<Part> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "Size", default)]
        size: Option<u64>,
        #[serde(rename = "URL", default)]
        url: Option<String>,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "ImageInfoArray", default)]
        infos: Vec<Info>,
    }
    let img: Image = serde_json::from_value(content.clone()).ok()?;
    img.infos
        .into_iter()
        .filter_map(|i| Some((i.size.unwrap_or(0), i.url?)))
        .filter(|(size, url)| *size <= MAX_IMAGE_BYTES && from_tencent(url))
        .max_by_key(|(size, _)| *size)
        .map(|(size, url)| Part::Image { url, bytes: (size > 0).then_some(size) })
}

/// Whether `url` is an https URL on one of Tencent's storage hosts.
pub fn from_tencent(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // A user part or a port would let `evil.com@x.myqcloud.com`-style tricks through.
    !host.contains(['@', ':']) && IMAGE_HOSTS.iter().any(|h| host.ends_with(h))
}

/// Removes the @-mentions of robots from a group message. Routing is by `AtRobots_Account`;
/// the text after `@` is free-form (usually a nickname), so leading `@word` tokens go too.
pub fn strip_mentions(text: &str, robots: &[String]) -> String {
    let mut t = text.to_owned();
    for r in robots {
        t = t.replace(&format!("@{r}"), "");
    }
    let mut rest = t.trim_start();
    while rest.starts_with('@') {
        rest = rest.split_once(char::is_whitespace).map(|(_, r)| r.trim_start()).unwrap_or("");
    }
    rest.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        let robots = vec!["@RBT#001".to_owned()];
        assert_eq!(strip_mentions("@@RBT#001 hello", &robots), "hello");
        assert_eq!(strip_mentions("@Jarvis what is 2+2?", &robots), "what is 2+2?");
        assert_eq!(strip_mentions("tell me @@RBT#001 a joke", &robots), "tell me  a joke");
        assert_eq!(strip_mentions("@Jarvis", &robots), "");
    }

    #[test]
    fn legacy_bodies_map_to_the_same_jobs_as_the_webhooks() {
        let event = serde_json::json!({
            "CallbackCommand": "Bot.OnGroupMessage", "GroupId": "@TGS#_g", "From_Account": "ann",
            "MsgSeq": 7, "Random": 1, "MsgTime": 1, "TopicId": "t1", "AtRobots_Account": ["@RBT#a"],
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "@@RBT#a hi"}}],
        });
        let legacy = serde_json::json!({
            "request_id": "r", "received_ms": 5, "bot": "@RBT#a", "msg": {"kind": "group", "event": event},
        });
        let job = legacy_job(&legacy.to_string()).map_err(|e| e.to_string());
        let m: BotGroupMessage = serde_json::from_value(event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(job, Ok(group_job("r", 5, &m, "@RBT#a")));
        let job = job.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(job.text, "hi");
        assert_eq!(job.key(), "grp#@TGS#_g#t1#7#@RBT#a");
    }

    #[test]
    fn images_come_only_from_tencent_storage_at_the_largest_size_that_fits() {
        let body: Vec<MsgElement> = serde_json::from_value(serde_json::json!([
            {"MsgType": "TIMImageElem", "MsgContent": {"UUID": "u", "ImageInfoArray": [
                {"Type": 1, "Size": 20_000_000, "URL": "https://a-1.cos.ap-shanghai.myqcloud.com/orig.png"},
                {"Type": 2, "Size": 300_000, "URL": "https://a-1.cos.ap-shanghai.myqcloud.com/large.png"},
                {"Type": 3, "Size": 9_000, "URL": "https://a-1.cos.ap-shanghai.myqcloud.com/thumb.png"}]}},
            {"MsgType": "TIMImageElem", "MsgContent": {"ImageInfoArray": [
                {"Type": 2, "Size": 1, "URL": "https://evil.example/x.myqcloud.com.png"}]}},
            {"MsgType": "TIMSoundElem", "MsgContent": {}},
        ]))
        .unwrap_or_default();
        let (text, parts) = content(&body, &[]);
        assert_eq!(text, "");
        assert_eq!(
            parts,
            vec![
                Part::Image { url: "https://a-1.cos.ap-shanghai.myqcloud.com/large.png".into(), bytes: Some(300_000) },
                Part::Other { what: "image".into() },
                Part::Other { what: "voice".into() },
            ]
        );
        assert!(!from_tencent("https://evil.com@x.myqcloud.com/a"));
        assert!(!from_tencent("http://x.myqcloud.com/a"));
    }
}
