//! Message elements (`MsgBody` items), shared by webhooks and REST calls.
//!
//! Mirrors <https://trtc.io/document/34620> "Message Formats": each element is
//! `{"MsgType": …, "MsgContent": {…}}`. Text and custom elements are typed; every other type
//! is kept as it came so that a rewritten body (moderation) re-emits it untouched.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `MsgBody` element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawElement", into = "RawElement")]
pub enum MsgElement {
    /// `TIMTextElem`.
    Text { text: String },
    /// `TIMCustomElem`; `data` is usually a JSON string chosen by the app.
    Custom(CustomElem),
    /// Any other element type (image, sound, face, stream, …), kept verbatim.
    Other { msg_type: String, content: Value },
}

/// The content of a `TIMCustomElem`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomElem {
    #[serde(rename = "Data", default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(rename = "Desc", default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(rename = "Ext", default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    #[serde(rename = "Sound", default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RawElement {
    #[serde(rename = "MsgType")]
    msg_type: String,
    #[serde(rename = "MsgContent", default)]
    content: Value,
}

#[derive(Serialize, Deserialize)]
struct TextContent {
    #[serde(rename = "Text")]
    text: String,
}

impl TryFrom<RawElement> for MsgElement {
    type Error = String;
    fn try_from(raw: RawElement) -> Result<Self, String> {
        match raw.msg_type.as_str() {
            "TIMTextElem" => serde_json::from_value::<TextContent>(raw.content)
                .map(|t| MsgElement::Text { text: t.text })
                .map_err(|e| format!("TIMTextElem: {e}")),
            "TIMCustomElem" => {
                serde_json::from_value(raw.content).map(MsgElement::Custom).map_err(|e| format!("TIMCustomElem: {e}"))
            }
            _ => Ok(MsgElement::Other { msg_type: raw.msg_type, content: raw.content }),
        }
    }
}

impl From<MsgElement> for RawElement {
    fn from(e: MsgElement) -> Self {
        match e {
            MsgElement::Text { text } => {
                RawElement { msg_type: "TIMTextElem".into(), content: serde_json::json!({ "Text": text }) }
            }
            MsgElement::Custom(c) => {
                RawElement { msg_type: "TIMCustomElem".into(), content: serde_json::to_value(c).unwrap_or(Value::Null) }
            }
            MsgElement::Other { msg_type, content } => RawElement { msg_type, content },
        }
    }
}

impl MsgElement {
    /// A text element.
    pub fn text(s: impl Into<String>) -> Self {
        MsgElement::Text { text: s.into() }
    }
}

/// The text elements of a body joined in order, or `None` when it has none.
pub fn joined_text(body: &[MsgElement]) -> Option<String> {
    let parts: Vec<&str> = body
        .iter()
        .filter_map(|e| match e {
            MsgElement::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.concat())
}

/// A TUIKit "stop generating" request: a custom element whose `Data` is
/// `{"chatbotPlugin":1|2,"src":22,"msgKey":"…"}` (tencent-chat-protocol.md §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// The `MsgKey` of the bot's streamed reply to stop, when the client said which.
    pub msg_key: Option<String>,
}

/// Finds a stop request in a message body, if the body carries one.
pub fn stop_request(body: &[MsgElement]) -> Option<StopRequest> {
    #[derive(Deserialize)]
    struct Plugin {
        #[serde(rename = "chatbotPlugin")]
        plugin: Option<i64>,
        src: Option<i64>,
        #[serde(rename = "msgKey")]
        msg_key: Option<String>,
    }
    body.iter().find_map(|e| {
        let MsgElement::Custom(CustomElem { data: Some(data), .. }) = e else {
            return None;
        };
        let p: Plugin = serde_json::from_str(data).ok()?;
        // The plugin version is 2 in current TUIKit and 1 in the older Flutter plugin.
        matches!(p.plugin, Some(1 | 2))
            .then_some(())
            .filter(|_| p.src == Some(22))
            .map(|_| StopRequest { msg_key: p.msg_key.filter(|k| !k.is_empty()) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_elements_round_trip_unchanged() {
        let json = r#"[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}},{"MsgType":"TIMImageElem","MsgContent":{"UUID":"x","ImageInfoArray":[1]}}]"#;
        let body: Vec<MsgElement> = serde_json::from_str(json).unwrap_or_default();
        assert_eq!(body.len(), 2);
        assert_eq!(joined_text(&body).as_deref(), Some("hi"));
        let back = serde_json::to_string(&body).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Value>(&back).ok(), serde_json::from_str::<Value>(json).ok());
    }

    #[test]
    fn stop_request_is_recognised_in_both_plugin_versions() {
        for v in [1, 2] {
            let data = format!(r#"{{"chatbotPlugin":{v},"src":22,"msgKey":"1_2_3"}}"#);
            let body = vec![MsgElement::Custom(CustomElem { data: Some(data), ..Default::default() })];
            assert_eq!(stop_request(&body), Some(StopRequest { msg_key: Some("1_2_3".into()) }));
        }
        let not_stop = vec![MsgElement::Custom(CustomElem {
            data: Some(r#"{"chatbotPlugin":2,"src":2}"#.into()),
            ..Default::default()
        })];
        assert_eq!(stop_request(&not_stop), None);
        assert_eq!(stop_request(&[MsgElement::text("stop")]), None);
    }

    #[test]
    fn text_element_with_wrong_type_is_an_error() {
        let r = serde_json::from_str::<MsgElement>(r#"{"MsgType":"TIMTextElem","MsgContent":{"Text":5}}"#);
        assert!(r.is_err());
    }
}
