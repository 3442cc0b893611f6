//! The query string Tencent appends to the webhook URL (tencent-chat-protocol.md §2.1):
//! `SdkAppid`, `CallbackCommand`, `contenttype`, `ClientIP`, `OptPlatform`, and with
//! authentication on, `Sign` and `RequestTime`. Names are case-sensitive.

/// The client platform Tencent reports. Parsed leniently: Tencent spells iOS both `iOS` and
/// `IOS`, and older pages use `Mac` and `Unkown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptPlatform {
    RestApi,
    Web,
    Android,
    Ios,
    Windows,
    MacOs,
    IPad,
    Unknown,
    Other(String),
}

impl OptPlatform {
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "restapi" => Self::RestApi,
            "web" => Self::Web,
            "android" => Self::Android,
            "ios" => Self::Ios,
            "windows" => Self::Windows,
            "macos" | "mac" => Self::MacOs,
            "ipad" => Self::IPad,
            "unknown" | "unkown" | "" => Self::Unknown,
            _ => Self::Other(s.to_owned()),
        }
    }
}

/// The parsed webhook query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    pub sdk_app_id: Option<String>,
    pub command: Option<String>,
    pub sign: Option<String>,
    pub request_time: Option<String>,
    pub client_ip: Option<String>,
    pub opt_platform: Option<OptPlatform>,
}

impl CallbackQuery {
    /// Parses a raw (still percent-encoded) query string. Unknown parameters are ignored.
    pub fn parse(raw: &str) -> Self {
        let mut q = CallbackQuery::default();
        for (k, v) in url::form_urlencoded::parse(raw.trim_start_matches('?').as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "SdkAppid" => q.sdk_app_id = Some(v),
                "CallbackCommand" => q.command = Some(v),
                "Sign" => q.sign = Some(v),
                "RequestTime" => q.request_time = Some(v),
                "ClientIP" => q.client_ip = Some(v),
                "OptPlatform" => q.opt_platform = Some(OptPlatform::parse(&v)),
                _ => {}
            }
        }
        q
    }

    /// Builds the query string Tencent would send; used by the admin CLI and the tests.
    pub fn encode(sdk_app_id: u64, command: &str, signed: Option<(&str, i64)>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("SdkAppid", &sdk_app_id.to_string())
            .append_pair("CallbackCommand", command)
            .append_pair("contenttype", "json")
            .append_pair("ClientIP", "127.0.0.1")
            .append_pair("OptPlatform", "RESTAPI");
        if let Some((token, time)) = signed {
            let t = time.to_string();
            s.append_pair("Sign", &super::sign::compute_sign(token, &t)).append_pair("RequestTime", &t);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tencent_query_with_lenient_platform() {
        let q = CallbackQuery::parse(
            "?SdkAppid=1400000000&CallbackCommand=State.StateChange&contenttype=json&ClientIP=1.2.3.4&OptPlatform=IOS&Sign=ab&RequestTime=17",
        );
        assert_eq!(q.sdk_app_id.as_deref(), Some("1400000000"));
        assert_eq!(q.command.as_deref(), Some("State.StateChange"));
        assert_eq!(q.opt_platform, Some(OptPlatform::Ios));
        assert_eq!(q.sign.as_deref(), Some("ab"));
        assert_eq!(q.request_time.as_deref(), Some("17"));
        assert_eq!(OptPlatform::parse("Unkown"), OptPlatform::Unknown);
        assert_eq!(OptPlatform::parse("Mac"), OptPlatform::MacOs);
    }

    #[test]
    fn encoded_query_parses_back_and_verifies() {
        let raw = CallbackQuery::encode(7, "Bot.OnC2CMessage", Some(("tok", 1000)));
        let q = CallbackQuery::parse(&raw);
        assert_eq!(q.command.as_deref(), Some("Bot.OnC2CMessage"));
        let ok = super::super::sign::verify_sign("tok", q.sign.as_deref(), q.request_time.as_deref(), 1000, 60);
        assert_eq!(ok, Ok(()));
    }
}
