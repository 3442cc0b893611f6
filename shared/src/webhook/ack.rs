//! The reply Tencent expects from every webhook: HTTP 200 and
//! `{"ActionStatus":"OK"|"FAIL","ErrorCode":n,"ErrorInfo":"…"}` (tencent-chat-protocol.md §2.2),
//! plus, for the before-send commands, an optional rewritten `MsgBody`.

use crate::msg::MsgElement;
use serde::{Deserialize, Serialize};

/// A webhook reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(rename = "ActionStatus")]
    pub action_status: String,
    #[serde(rename = "ErrorCode")]
    pub error_code: i64,
    #[serde(rename = "ErrorInfo")]
    pub error_info: String,
    /// Before-send only: the message as it should be delivered instead.
    #[serde(rename = "MsgBody", default, skip_serializing_if = "Option::is_none")]
    pub msg_body: Option<Vec<MsgElement>>,
    /// Before-send only: replacement custom data.
    #[serde(rename = "CloudCustomData", default, skip_serializing_if = "Option::is_none")]
    pub cloud_custom_data: Option<String>,
}

impl Ack {
    /// `ActionStatus: OK`, `ErrorCode: 0`: accepted, and for before-send, allowed.
    pub fn ok() -> Self {
        Self::with_code("OK", 0, "")
    }

    /// `ActionStatus: FAIL` with `ErrorCode: 1` and a reason that is safe to show.
    pub fn fail(info: impl Into<String>) -> Self {
        Self::with_code("FAIL", 1, info)
    }

    /// An OK ack with a specific verdict code (before-send: 1 refuse, 2 drop, custom ranges).
    pub fn verdict(code: i64, info: impl Into<String>) -> Self {
        Self::with_code("OK", code, info)
    }

    fn with_code(status: &str, code: i64, info: impl Into<String>) -> Self {
        Ack {
            action_status: status.to_owned(),
            error_code: code,
            error_info: info.into(),
            msg_body: None,
            cloud_custom_data: None,
        }
    }

    /// The JSON body of this ack.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"internal error"}"#.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_ack_has_tencent_shape() {
        assert_eq!(Ack::ok().to_json(), r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#);
        let mut a = Ack::ok();
        a.msg_body = Some(vec![MsgElement::text("x")]);
        assert!(a.to_json().contains(r#""MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]"#));
    }
}
