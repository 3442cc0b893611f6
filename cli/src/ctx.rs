//! What every command shares: the settings (flags, or the functions' own environment
//! variables), the failure type and its exit code, and the clients built from the settings.
//! Secrets and the Tencent endpoint are read by `shared`'s own functions, as the functions read
//! them at cold start.

use shared::bot::job::Platform;
use shared::config::TencentEndpoint;
use shared::secrets::{AppSecrets, SecretString};
use shared::store::DynamoStore;
use shared::tencent::RestClient;
use shared::tencent::client::RestOptions;
use std::path::PathBuf;
use tokio::sync::OnceCell;

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub enum Fail {
    /// Bad usage or configuration: exit code 2.
    Usage(String),
    /// The operation failed (Tencent or AWS said no, a webhook was refused): exit code 1.
    Op(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Usage(e) | Fail::Op(e) => f.write_str(e),
        }
    }
}

pub type Res<T> = Result<T, Fail>;

pub fn usage<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Usage(msg.into()))
}

pub fn op(e: impl std::fmt::Display) -> Fail {
    Fail::Op(e.to_string())
}

/// The deployment's settings, from flags or the environment variables the functions read.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Settings (flags or environment)")]
pub struct Settings {
    /// The app secret in Secrets Manager (SdkAppId, SecretKey, AdminIdentifier, LlmApiKey, …)
    #[arg(long, global = true, env = "TCBOT_SECRET_ID", value_name = "ID")]
    pub secret_id: Option<String>,
    /// A local JSON file with the secret's fields, instead of Secrets Manager
    #[arg(long, global = true, env = "TCBOT_LOCAL_SECRET_FILE", value_name = "PATH")]
    pub local_secret_file: Option<String>,
    /// The router's webhook secret (WebhookToken), for `send` and `doctor` [default: the app secret's]
    #[arg(long, global = true, env = "TCBOT_WEBHOOK_SECRET_ID", value_name = "ID")]
    pub webhook_secret_id: Option<String>,
    /// The NIM secret (NimAppKey, NimAppSecret), for `send --platform nim` [default: the app secret's]
    #[arg(long, global = true, env = "TCBOT_NIM_SECRET_ID", value_name = "ID")]
    pub nim_secret_id: Option<String>,
    /// The stack's DynamoDB table
    #[arg(long = "table", global = true, env = "TCBOT_TABLE_NAME", value_name = "NAME")]
    pub table_name: Option<String>,
    /// Tencent's data-centre region (china, singapore, seoul, …) [default: singapore]
    #[arg(long, global = true, env = "TCBOT_TENCENT_REGION", value_name = "REGION")]
    pub tencent_region: Option<String>,
    /// Tencent's REST base URL, instead of the region's (an emulator)
    #[arg(long, global = true, env = "TCBOT_TENCENT_BASE_URL", value_name = "URL")]
    pub tencent_base_url: Option<String>,
}

/// `--platform`: tencent or nim, any other value refused (exit 2) with the two it takes.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    match s {
        "tencent" => Ok(Platform::Tencent),
        "nim" => Ok(Platform::Nim),
        other => Err(format!("unknown platform {other:?}: --platform takes tencent or nim")),
    }
}

/// `--platform` for the commands that serve both platforms.
#[derive(Debug, Clone, clap::Args)]
pub struct PlatformArg {
    /// The chat platform: tencent or nim (NIM account ids are taken in lowercase)
    #[arg(long, value_name = "tencent|nim", default_value = "tencent", value_parser = parse_platform)]
    pub platform: Platform,
}

/// A JSON document given in a file or on the command line.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct JsonSource {
    /// Read the JSON from this file
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The JSON itself
    #[arg(long, value_name = "JSON")]
    pub json: Option<String>,
}

impl JsonSource {
    pub fn read(&self) -> Res<String> {
        match (&self.file, &self.json) {
            (Some(f), _) => read_file(f),
            (None, Some(j)) => Ok(j.clone()),
            (None, None) => usage("give the JSON with --file PATH or --json JSON"),
        }
    }
}

pub fn read_file(path: &std::path::Path) -> Res<String> {
    std::fs::read_to_string(path).map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))
}

/// A setting's value, unless it is unset or blank.
pub fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The settings and the clients built from them, each when first needed.
pub struct Ctx {
    pub settings: Settings,
    aws: OnceCell<aws_config::SdkConfig>,
}

impl Ctx {
    pub fn new(settings: Settings) -> Self {
        Ctx { settings, aws: OnceCell::new() }
    }

    /// The AWS configuration from the standard variables (`AWS_REGION`, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`, …).
    pub async fn aws(&self) -> &aws_config::SdkConfig {
        self.aws.get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load()).await
    }

    /// The app secret, from the local file or Secrets Manager.
    pub async fn secrets(&self) -> Res<AppSecrets> {
        let s = &self.settings;
        AppSecrets::load(self.aws().await, set(&s.local_secret_file), set(&s.secret_id)).await.map_err(|e| match e {
            shared::secrets::SecretsError::NoSource => Fail::Usage(e.to_string()),
            other => op(other),
        })
    }

    /// The secret that holds the router's WebhookToken: `TCBOT_WEBHOOK_SECRET_ID`, else the app
    /// secret.
    pub async fn webhook_secrets(&self) -> Res<AppSecrets> {
        match set(&self.settings.webhook_secret_id) {
            Some(id) => AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(self.aws().await), id).await.map_err(op),
            None => self.secrets().await,
        }
    }

    /// The NIM AppKey and AppSecret: from `TCBOT_NIM_SECRET_ID` (the NIM secret, which the NIM
    /// router reads) when set, else from the app secret (or local secret file).
    pub async fn nim_keys(&self) -> Res<(String, SecretString)> {
        let s = match set(&self.settings.nim_secret_id) {
            Some(id) => {
                AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(self.aws().await), id).await.map_err(op)?
            }
            None => self.secrets().await?,
        };
        let (key, secret) = s.require_nim().map_err(|e| {
            Fail::Usage(format!("{e}: put NimAppKey and NimAppSecret in the secret, or set TCBOT_NIM_SECRET_ID"))
        })?;
        Ok((key.to_owned(), secret.clone()))
    }

    pub fn table(&self) -> Res<&str> {
        match set(&self.settings.table_name) {
            Some(t) => Ok(t),
            None => usage("set TCBOT_TABLE_NAME (or --table) to the stack's table"),
        }
    }

    pub async fn store(&self) -> Res<DynamoStore> {
        let table = self.table()?.to_owned();
        Ok(DynamoStore::new(aws_sdk_dynamodb::Client::new(self.aws().await), table))
    }

    /// Tencent's REST endpoint, as the functions resolve it.
    pub fn tencent_endpoint(&self) -> Res<TencentEndpoint> {
        TencentEndpoint::resolve(set(&self.settings.tencent_base_url), set(&self.settings.tencent_region))
            .map_err(|e| Fail::Usage(e.to_string()))
    }

    /// The REST client speaking as the app admin, with the secret `s`.
    pub fn rest_with(&self, s: &AppSecrets) -> Res<RestClient> {
        let opts = RestOptions { base_url: self.tencent_endpoint()?.0, ..RestOptions::default() };
        Ok(RestClient::new(
            reqwest::Client::new(),
            opts,
            s.sdk_app_id,
            s.admin_identifier.clone(),
            s.require_secret_key().map_err(op)?.clone(),
        ))
    }

    pub async fn rest(&self) -> Res<RestClient> {
        let s = self.secrets().await?;
        self.rest_with(&s)
    }
}
