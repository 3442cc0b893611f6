//! The app's secrets, read once per cold start from a JSON secret in Secrets Manager.
//!
//! ```json
//! {"SdkAppId": 1400000000, "SecretKey": "…", "AdminIdentifier": "administrator",
//!  "WebhookToken": "…", "LlmApiKey": "…", "LlmApiKeys": {"deepseek": "…"}}
//! ```
//! In AWS the fields live in two secrets: the router reads one with `SdkAppId` and
//! `WebhookToken` only, every other function one with the Tencent and LLM keys, so the public
//! function cannot read the keys. A local secret file may hold all of them. Apps that serve
//! NetEase NIM add `"NimAppKey"` and `"NimAppSecret"`; secrets without them still load. In AWS
//! those two live in a secret of their own (the NIM router's, read by the workers too through
//! `TCBOT_NIM_SECRET_ID`, see [`AppSecrets::take_nim_from`]), which need not hold `SdkAppId`.
//! Every secret value is a [`SecretString`], whose `Debug` and `Display` print no secret.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// A string that must never reach a log line. Read it with [`SecretString::expose`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    /// The secret itself; call only where it is used, never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The contents of the app secret.
#[derive(Clone, Debug, Deserialize)]
pub struct AppSecrets {
    /// 0 when absent (a secret holding only NIM keys): no Tencent webhook matches it.
    #[serde(rename = "SdkAppId", default, deserialize_with = "crate::lenient::u64_lenient")]
    pub sdk_app_id: u64,
    /// Empty in the router's webhook secret; [`AppSecrets::require_secret_key`] where needed.
    #[serde(rename = "SecretKey", default)]
    pub secret_key: SecretString,
    #[serde(rename = "AdminIdentifier", default = "default_admin")]
    pub admin_identifier: String,
    /// The webhook authentication token set in the Tencent console; absent when unsigned
    /// webhooks are explicitly allowed.
    #[serde(rename = "WebhookToken", default)]
    pub webhook_token: Option<SecretString>,
    /// The default LLM API key.
    #[serde(rename = "LlmApiKey", default)]
    pub llm_api_key: Option<SecretString>,
    /// Named LLM API keys, chosen by a bot profile's `api_key_name`.
    #[serde(rename = "LlmApiKeys", default)]
    pub llm_api_keys: HashMap<String, SecretString>,
    /// The NetEase NIM app's AppKey (not secret: it is sent in headers), when NIM is served.
    #[serde(rename = "NimAppKey", default)]
    pub nim_app_key: Option<String>,
    /// The NetEase NIM AppSecret: signs REST calls and verifies message copies.
    #[serde(rename = "NimAppSecret", default)]
    pub nim_app_secret: Option<SecretString>,
    /// Where the secret was read from (its id or file), for error messages.
    #[serde(skip)]
    pub source: String,
}

fn default_admin() -> String {
    "administrator".to_owned()
}

/// Why the secrets could not be loaded. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("reading secret {id} from Secrets Manager failed: {reason}")]
    Fetch { id: String, reason: String },
    #[error("secret {id} has no SecretString")]
    Empty { id: String },
    #[error("secret {id} is not the expected JSON ({reason}); see README \"Secrets\"")]
    Format { id: String, reason: String },
    #[error("local secret file {path}: {reason}")]
    LocalFile { path: String, reason: String },
    #[error("secret {id}: {field} is empty")]
    Missing { id: String, field: &'static str },
    #[error("no secret to read: set TCBOT_SECRET_ID (or TCBOT_LOCAL_SECRET_FILE for local development)")]
    NoSource,
}

impl AppSecrets {
    /// Parses the secret JSON. The error names the secret and the JSON problem, not the value:
    /// serde's messages quote the offending token, so only its category is kept.
    pub fn parse(id: &str, json: &str) -> Result<Self, SecretsError> {
        let mut s: AppSecrets = serde_json::from_str(json).map_err(|e| SecretsError::Format {
            id: id.to_owned(),
            reason: format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
        })?;
        s.source = id.to_owned();
        Ok(s)
    }

    /// Reads the secret named `id` from Secrets Manager.
    pub async fn fetch(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<Self, SecretsError> {
        let out = client.get_secret_value().secret_id(id).send().await.map_err(|e| SecretsError::Fetch {
            id: id.to_owned(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
        let json = out.secret_string().ok_or_else(|| SecretsError::Empty { id: id.to_owned() })?;
        Self::parse(id, json)
    }

    /// Reads the secret JSON from a local file, for development without Secrets Manager.
    pub fn from_file(path: &str) -> Result<Self, SecretsError> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| SecretsError::LocalFile { path: path.to_owned(), reason: e.to_string() })?;
        Self::parse(path, &json)
    }

    /// Reads the app secret from where the settings say: the local file `local_file`
    /// (`TCBOT_LOCAL_SECRET_FILE`) when set, else the Secrets Manager secret `secret_id`
    /// (`TCBOT_SECRET_ID`). The functions' cold start and the admin CLI both read it here.
    pub async fn load(
        aws: &aws_config::SdkConfig,
        local_file: Option<&str>,
        secret_id: Option<&str>,
    ) -> Result<Self, SecretsError> {
        let set = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        match (set(local_file), set(secret_id)) {
            (Some(path), _) => Self::from_file(&path),
            (None, Some(id)) => Self::fetch(&aws_sdk_secretsmanager::Client::new(aws), &id).await,
            (None, None) => Err(SecretsError::NoSource),
        }
    }

    /// The Chat secret key, for the functions that call Tencent's REST API or sign UserSigs.
    pub fn require_secret_key(&self) -> Result<&SecretString, SecretsError> {
        if self.secret_key.is_empty() {
            return Err(SecretsError::Missing { id: self.source.clone(), field: "SecretKey" });
        }
        Ok(&self.secret_key)
    }

    /// The NIM AppKey and AppSecret, for the functions that serve NetEase NIM.
    pub fn require_nim(&self) -> Result<(&str, &SecretString), SecretsError> {
        let missing = |field| SecretsError::Missing { id: self.source.clone(), field };
        let key = self.nim_app_key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| missing("NimAppKey"))?;
        let secret = self.nim_app_secret.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| missing("NimAppSecret"))?;
        Ok((key, secret))
    }

    /// Takes the NIM keys of `nim` (the secret named by `TCBOT_NIM_SECRET_ID`), where it has
    /// them, over any of this secret's own.
    pub fn take_nim_from(&mut self, nim: AppSecrets) {
        if let Some(key) = nim.nim_app_key.filter(|k| !k.is_empty()) {
            self.nim_app_key = Some(key);
        }
        if let Some(secret) = nim.nim_app_secret.filter(|s| !s.is_empty()) {
            self.nim_app_secret = Some(secret);
        }
    }

    /// The LLM key for a profile: the named one when the profile names one, else the default.
    pub fn llm_key(&self, name: Option<&str>) -> Option<&SecretString> {
        match name {
            Some(n) => self.llm_api_keys.get(n),
            None => self.llm_api_key.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_secret() {
        let s = AppSecrets::parse(
            "t",
            r#"{"SdkAppId":"1400000000","SecretKey":"sk-very-secret","WebhookToken":"tok-secret","LlmApiKeys":{"a":"llm-secret"}}"#,
        );
        let s = s.map_err(|e| e.to_string());
        let printed = format!("{s:?}");
        assert!(printed.contains("1400000000"), "{printed}");
        for secret in ["sk-very-secret", "tok-secret", "llm-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn format_error_does_not_echo_the_value() {
        let err = AppSecrets::parse("t", r#"{"SdkAppId":1,"SecretKey":12345678}"#).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("not the expected JSON"), "{text}");
        assert!(!text.contains("12345678"), "{text}");
        let webhook_only = AppSecrets::parse("t", r#"{"SdkAppId":1,"WebhookToken":"tok"}"#);
        let missing = webhook_only.as_ref().map(|s| s.require_secret_key().map(|_| ()).map_err(|e| e.to_string()));
        assert_eq!(missing.ok(), Some(Err("secret t: SecretKey is empty".to_owned())));
    }

    #[test]
    fn a_secret_of_nim_keys_alone_loads_and_lends_them_to_the_app_secret() {
        let nim = AppSecrets::parse("nim", r#"{"NimAppKey":"appkey-1","NimAppSecret":"nim-very-secret"}"#);
        let nim = nim.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nim.sdk_app_id, 0);
        let mut app = AppSecrets::parse("app", r#"{"SdkAppId":1,"SecretKey":"k","NimAppKey":"old"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        app.take_nim_from(nim);
        let pair = app.require_nim().map(|(k, s)| (k.to_owned(), s.expose().to_owned())).ok();
        assert_eq!(pair, Some(("appkey-1".to_owned(), "nim-very-secret".to_owned())));
        assert_eq!((app.sdk_app_id, app.secret_key.expose()), (1, "k"));
        // An empty NIM secret takes nothing away.
        app.take_nim_from(
            AppSecrets::parse("nim", r#"{"NimAppKey":"","NimAppSecret":""}"#).unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(app.require_nim().is_ok());
    }

    #[test]
    fn nim_fields_are_optional_and_redacted() {
        let without = AppSecrets::parse("t", r#"{"SdkAppId":1,"SecretKey":"k"}"#).map_err(|e| e.to_string());
        let without = without.as_ref().map(|s| s.require_nim().map(|_| ()).map_err(|e| e.to_string()));
        assert_eq!(without.ok(), Some(Err("secret t: NimAppKey is empty".to_owned())));
        let with = AppSecrets::parse("t", r#"{"SdkAppId":1,"NimAppKey":"appkey-1","NimAppSecret":"nim-very-secret"}"#)
            .map_err(|e| e.to_string());
        let printed = format!("{with:?}");
        assert!(printed.contains("appkey-1") && !printed.contains("nim-very-secret"), "{printed}");
        let pair =
            with.as_ref().ok().and_then(|s| s.require_nim().ok()).map(|(k, s)| (k.to_owned(), s.expose().to_owned()));
        assert_eq!(pair, Some(("appkey-1".to_owned(), "nim-very-secret".to_owned())));
    }
}
