//! Cold start: settings, AWS clients, secrets and adapters, built once per Lambda instance.
//! A function's `main` calls [`Boot::load`] and one of the builders; a bad setting or an
//! unreadable secret fails the cold start with a message naming what is wrong.

use crate::bot::arrivals::Arrivals;
use crate::bot::sink::Outbound;
use crate::bot::worker::Worker;
use crate::community::Community;
use crate::config::{ConfigError, Settings};
use crate::invoke::{Invoker, LambdaInvoker};
use crate::llm::{Endpoint, Llm, OpenAiClient};
use crate::moderation::{Moderator, Verdict};
use crate::nim::{IntakeLimits, NimClient, NimOptions, NimOutbound, NimRouter};
use crate::platforms::PlatformOutbound;
use crate::presence::Presence;
use crate::queue::SqsQueue;
use crate::router::{Router, Routes};
use crate::secrets::{AppSecrets, SecretsError};
use crate::stats::Stats;
use crate::store::DynamoStore;
use crate::teams::Teams;
use crate::tencent::RestClient;
use crate::tencent::client::RestOptions;
use crate::tencent::sinks::TencentOutbound;
use crate::webhook::Ack;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("secrets: {0}")]
    Secrets(#[from] SecretsError),
    #[error(
        "the secret has no WebhookToken; set one in the Tencent console and the secret, or set TCBOT_ALLOW_UNSIGNED=true to accept unsigned webhooks"
    )]
    NoWebhookToken,
    #[error("could not build the HTTP client: {0}")]
    Http(String),
    #[error(
        "no chat platform's keys: Tencent's SecretKey is empty in secret {app}, and NIM's NimAppKey and NimAppSecret are empty in secret {nim}; fill in the keys of the platform(s) this stack serves (README \"Secrets\", \"NetEase NIM\")"
    )]
    NoPlatform { app: String, nim: String },
}

/// What every function shares after its cold start.
pub struct Boot {
    pub settings: Settings,
    pub secrets: Arc<AppSecrets>,
    pub aws: aws_config::SdkConfig,
}

impl Boot {
    /// Reads settings, loads the AWS configuration from the standard variables, and reads the
    /// secret (or the local secret file).
    pub async fn load() -> Result<Self, BootError> {
        let settings = Settings::from_env()?;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let mut secrets =
            AppSecrets::load(&aws, settings.local_secret_file.as_deref(), settings.secret_id.as_deref()).await?;
        // The NIM keys' own secret, where the deployment keeps them apart (a local secret file
        // holds everything).
        if let (None, Some(nim_id)) = (&settings.local_secret_file, &settings.nim.secret_id)
            && settings.secret_id.as_ref() != Some(nim_id)
        {
            let nim = AppSecrets::fetch(&aws_sdk_secretsmanager::Client::new(&aws), nim_id).await?;
            secrets.take_nim_from(nim);
        }
        tracing::info!(sdk_app_id = secrets.sdk_app_id, table = %settings.table_name, "cold start");
        Ok(Boot { settings, secrets: Arc::new(secrets), aws })
    }

    pub fn store(&self) -> Arc<DynamoStore> {
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.aws), &self.settings.table_name))
    }

    pub fn queue(&self) -> Arc<SqsQueue> {
        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&self.aws)))
    }

    /// An HTTP client for outbound calls.
    pub fn http(&self) -> Result<reqwest::Client, BootError> {
        reqwest::Client::builder()
            .connect_timeout(self.settings.llm.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| BootError::Http(e.to_string()))
    }

    /// The Tencent REST client, speaking as the app admin.
    pub fn rest(&self) -> Result<Arc<RestClient>, BootError> {
        let s = &self.settings;
        let opts = RestOptions {
            base_url: s.tencent_endpoint.0.clone(),
            timeout: s.rest_timeout,
            max_attempts: s.rest_max_attempts.max(1),
            usersig_ttl: s.usersig_ttl,
            ..RestOptions::default()
        };
        Ok(Arc::new(RestClient::new(
            self.http()?,
            opts,
            self.secrets.sdk_app_id,
            self.secrets.admin_identifier.clone(),
            self.secrets.require_secret_key()?.clone(),
        )))
    }

    /// The stack's event bus (`TCBOT_EVENT_BUS_NAME`), if it has one.
    pub fn bus(&self) -> Option<crate::bus::Bus> {
        let name = crate::bus::bus_name_from_env()?;
        let client = aws_sdk_eventbridge::Client::new(&self.aws);
        Some(crate::bus::Bus::new(Arc::new(crate::bus::EventBridge::new(client, name))))
    }

    /// The bus outbox queue of the chatbot workers (`TCBOT_BUS_OUTBOX_QUEUE_URL`), if any.
    pub fn outbox(&self) -> Option<crate::bus::Outbox> {
        let url = crate::bus::outbox_url_from_env()?;
        Some(crate::bus::Outbox { queue: self.queue(), url })
    }

    /// The callback router. Its AWS calls are bounded so that the ack stays inside Tencent's
    /// 2 s whatever SQS or DynamoDB do: a call that takes longer fails, the webhook is answered
    /// with an error, and Tencent's retry delivers it again.
    pub fn router(&self) -> Result<Router, BootError> {
        let s = &self.settings;
        let token = self.secrets.webhook_token.clone().filter(|t| !t.is_empty());
        if token.is_none() && !s.allow_unsigned {
            return Err(BootError::NoWebhookToken);
        }
        if token.is_none() {
            tracing::warn!("webhook signatures are NOT checked (TCBOT_ALLOW_UNSIGNED=true)");
        }
        let ack_path = ack_path_config(&self.aws, s.ack_aws_timeout);
        let mut router = Router::new(
            self.secrets.sdk_app_id,
            token,
            Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&ack_path), &s.table_name)),
            Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&ack_path))),
            s.require_c2c_queue()?.to_owned(),
            s.require_group_queue()?.to_owned(),
        )
        .with_routes(self.routes());
        router.sign_window_secs = s.sign_window_secs;
        router.max_body_bytes = s.max_body_bytes;
        router.stop_ttl_secs = s.stop_ttl_secs;
        router.arrivals = self.arrivals();
        Ok(router)
    }

    /// Where the router sends the other commands, from the `TCBOT_*_FUNCTION` and
    /// `TCBOT_*_QUEUE_URL` settings.
    fn routes(&self) -> Routes {
        let e = &self.settings.events;
        let pairs = |v: &[(&str, &Option<String>)]| -> HashMap<String, String> {
            v.iter().filter_map(|(k, u)| u.as_ref().map(|u| (k.to_string(), u.clone()))).collect()
        };
        let sync_functions = pairs(&[
            ("Group.CallbackBeforeSendMsg", &e.group_moderation_function),
            ("C2C.CallbackBeforeSendMsg", &e.c2c_moderation_function),
        ]);
        let invoker: Option<Arc<dyn Invoker>> = (!sync_functions.is_empty())
            .then(|| Arc::new(LambdaInvoker::new(aws_sdk_lambda::Client::new(&self.aws))) as Arc<dyn Invoker>);
        Routes {
            sync_functions,
            invoker,
            sync_deadline: e.sync_deadline,
            sync_fallback: Some(if e.fail_closed { Ack::verdict(1, "") } else { Ack::ok() }),
            event_queues: pairs(&[
                ("Group.CallbackAfterSendMsg", &e.stats_queue_url),
                ("State.StateChange", &e.presence_queue_url),
                ("Group.CallbackAfterCreateGroup", &e.group_created_queue_url),
                ("Group.CallbackAfterNewMemberJoin", &e.member_joined_queue_url),
                ("Group.CallbackAfterGroupFull", &e.team_events_queue_url),
                ("Group.CallbackAfterMemberExit", &e.team_events_queue_url),
            ]),
        }
    }

    /// The before-send moderation service.
    pub fn moderator(&self) -> Result<Moderator, BootError> {
        let s = &self.settings;
        let endpoint = Endpoint {
            base_url: s.llm.base_url.clone(),
            api_style: s.llm.api_style.clone(),
            api_version: None,
            api_key: self.secrets.llm_key(None).cloned(),
        };
        let llm: Arc<dyn Llm> = Arc::new(OpenAiClient::new(self.http()?));
        let fallback =
            if s.events.fail_closed { Verdict::Refuse { code: 1, text: String::new() } } else { Verdict::Allow };
        Ok(Moderator::new(
            self.store(),
            Some((llm, endpoint, s.llm.model.clone())),
            s.events.classifier_deadline,
            fallback,
            Duration::from_secs(60),
        ))
    }

    /// UserSigs for the app's users (`usersig`).
    pub fn usersigs(&self) -> Result<crate::usersigs::UserSigs, BootError> {
        let s = &self.settings;
        Ok(crate::usersigs::UserSigs {
            sdk_app_id: self.secrets.sdk_app_id,
            key: self.secrets.require_secret_key()?.clone(),
            admin: self.secrets.admin_identifier.clone(),
            claim: s.app_usersig_claim.clone(),
            ttl: s.app_usersig_ttl,
            import: match crate::usersigs::import_from_env() {
                true => Some(crate::usersigs::AccountImport { chat: self.rest()?, store: self.store() }),
                false => None,
            },
        })
    }

    /// The statistics service (`group-after-send-msg`).
    pub fn stats(&self) -> Stats {
        Stats { store: self.store(), kind_field: self.settings.events.stats_kind_field.clone(), ttl_secs: 7 * 86_400 }
    }

    /// The presence service (`state-change`).
    pub fn presence(&self) -> Presence {
        Presence { store: self.store() }
    }

    /// The community service (`group-after-create-group`, `group-after-new-member-join`).
    pub fn community(&self) -> Result<Community, BootError> {
        let e = &self.settings.events;
        Ok(Community {
            store: self.store(),
            chat: self.rest()?,
            default_topics: e.default_topics.clone(),
            welcome_from: e.welcome_from.clone(),
            welcome_text: e.welcome_text.clone(),
            welcome_topic: e.welcome_topic.clone(),
            ttl_secs: 7 * 86_400,
        })
    }

    /// The game-team service (`group-team-events`).
    pub fn teams(&self) -> Result<Teams, BootError> {
        let t = &self.settings.teams;
        Ok(Teams {
            store: self.store(),
            chat: self.rest()?,
            full_text: t.full_text.clone(),
            exit_text: t.exit_text.clone(),
            exit_dm_from: t.exit_dm_from.clone(),
            exit_dm_text: t.exit_dm_text.clone(),
            ttl_secs: 7 * 86_400,
        })
    }

    /// The NIM REST client, when the secret has the NIM keys.
    pub fn nim_client(&self) -> Result<Option<Arc<NimClient>>, BootError> {
        let Ok((app_key, secret)) = self.secrets.require_nim() else {
            return Ok(None);
        };
        let s = &self.settings;
        let opts = NimOptions {
            base_url: s.nim.base_url.clone(),
            timeout: s.rest_timeout,
            max_attempts: s.rest_max_attempts.max(1),
            ..NimOptions::default()
        };
        Ok(Some(Arc::new(NimClient::new(self.http()?, opts, app_key.to_owned(), secret.clone()))))
    }

    /// The NIM message-copy router (`nim-callback-router`). Like Tencent's, its AWS calls are
    /// bounded, so the copy is answered within NIM's few seconds whatever SQS does.
    pub fn nim_router(&self) -> Result<NimRouter, BootError> {
        let s = &self.settings;
        let (app_key, secret) = self.secrets.require_nim()?;
        let ack_path = ack_path_config(&self.aws, s.ack_aws_timeout);
        let limits = IntakeLimits {
            window_ms: u64::try_from(s.nim.copy_window.as_millis()).unwrap_or(u64::MAX),
            ..IntakeLimits::default()
        };
        Ok(NimRouter {
            app_key: app_key.to_owned(),
            secret: secret.clone(),
            limits,
            robots: s.nim.require_robots()?.to_vec(),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&ack_path))),
            c2c_queue_url: s.require_c2c_queue()?.to_owned(),
            group_queue_url: s.require_group_queue()?.to_owned(),
            store: Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&ack_path), &s.table_name)),
            arrivals: self.arrivals(),
        })
    }

    /// What the routers note beside each queued chatbot message: busy checks when the busy
    /// queue is configured, inbox notes when bursts are merged.
    fn arrivals(&self) -> Arrivals {
        let b = &self.settings.busy;
        Arrivals { busy_queue_url: b.queue_url.clone(), note_after: b.note_after, inbox: !b.burst_window.is_zero() }
    }

    /// A chatbot worker (C2C and group alike), answering each job through its platform:
    /// Tencent as before, NIM when the secret has the NIM keys. A secret with NIM keys and no
    /// Tencent `SecretKey` serves NIM alone; one with neither fails, naming both platforms'
    /// fields and the secrets they belong in.
    pub fn worker(&self) -> Result<Worker, BootError> {
        let s = &self.settings;
        let nim: Option<Arc<dyn Outbound>> = self.nim_client()?.map(|client| {
            Arc::new(NimOutbound::new(client, s.stream.max_message_bytes, s.nim.team_streaming)) as Arc<dyn Outbound>
        });
        if nim.is_none() && self.secrets.secret_key.is_empty() {
            // Neither platform can be served: name both platforms' fields, not only Tencent's
            // (a NIM-only stack whose NIM secret is still empty would otherwise read as a
            // missing Tencent key).
            let app = self.secrets.source.clone();
            let nim = match (&s.local_secret_file, &s.nim.secret_id) {
                (None, Some(id)) => id.clone(),
                _ => app.clone(),
            };
            return Err(BootError::NoPlatform { app, nim });
        }
        let tencent: Option<Arc<dyn Outbound>> = if !self.secrets.secret_key.is_empty() {
            let outbound =
                TencentOutbound::new(self.rest()?, s.stream.max_message_bytes, s.stream.group_modify_interval);
            Some(Arc::new(outbound))
        } else {
            None
        };
        tracing::info!(tencent = tencent.is_some(), nim = nim.is_some(), "platforms served");
        let outbound = PlatformOutbound { tencent, nim, nim_direct_mode: s.nim.direct_mode };
        let mut worker = Worker::new(
            self.store(),
            Arc::new(outbound),
            Arc::new(OpenAiClient::new(self.http()?)),
            self.queue(),
            s.require_dlq()?.to_owned(),
            self.secrets.clone(),
            s,
        );
        worker.outbox = self.outbox();
        Ok(worker)
    }
}

/// `aws` with every call bounded by `timeout` in all (retries included), each attempt by half
/// of it: for the router, which must ack within Tencent's 2 s.
pub fn ack_path_config(aws: &aws_config::SdkConfig, timeout: Duration) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(timeout)
        .operation_attempt_timeout(timeout / 2)
        .build();
    aws.to_builder().timeout_config(timeouts).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's cold start with `app` as its app secret and the NIM secret `nim-secret`
    /// lending its keys, as `Boot::load` reads them.
    fn boot(app: &str, nim: &str) -> Boot {
        let settings = Settings::from_lookup(|k| match k {
            "TCBOT_TABLE_NAME" => Some("t".into()),
            "TCBOT_SECRET_ID" => Some("app-secret".into()),
            "TCBOT_NIM_SECRET_ID" => Some("nim-secret".into()),
            "TCBOT_DLQ_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/dlq.fifo".into()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut secrets = AppSecrets::parse("app-secret", app).unwrap_or_else(|e| panic!("{e}"));
        secrets.take_nim_from(AppSecrets::parse("nim-secret", nim).unwrap_or_else(|e| panic!("{e}")));
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Boot { settings, secrets: Arc::new(secrets), aws }
    }

    const EMPTY_NIM: &str = r#"{"NimAppKey":"","NimAppSecret":""}"#;

    #[test]
    fn a_worker_with_neither_platform_s_keys_names_both_platforms_fields_and_secrets() {
        // A NIM-only stack whose NIM secret is still as created: no Tencent key either.
        let b = boot(r#"{"SdkAppId":0,"SecretKey":"","LlmApiKey":"sk"}"#, EMPTY_NIM);
        let err = b.worker().err().map(|e| e.to_string()).unwrap_or_default();
        for part in ["SecretKey", "app-secret", "NimAppKey", "NimAppSecret", "nim-secret"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }

    #[test]
    fn a_worker_starts_with_either_platform_s_keys() {
        let nim = r#"{"NimAppKey":"k","NimAppSecret":"s"}"#;
        assert!(boot(r#"{"SdkAppId":0,"SecretKey":""}"#, nim).worker().is_ok(), "NIM alone");
        assert!(boot(r#"{"SdkAppId":1,"SecretKey":"k"}"#, EMPTY_NIM).worker().is_ok(), "Tencent alone");
        assert!(boot(r#"{"SdkAppId":1,"SecretKey":"k"}"#, nim).worker().is_ok(), "both");
    }
}
