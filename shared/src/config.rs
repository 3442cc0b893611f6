//! Our own settings: environment variables prefixed `TCBOT_`, read and validated once at cold
//! start. Errors name the variable and say what is wrong. The AWS SDK reads its own standard
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).

use crate::bot::sink::StreamMode;
use crate::bot::texts::Language;
use crate::nim::KnownRobot;
use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

const DAY_SECS: u64 = 86_400;
const DAY_MS: u64 = DAY_SECS * 1_000;

// The bounds of duration settings. Nothing waits longer than a day and nothing is kept longer
// than a leap year, which also keeps `Instant + d` and `now + ttl` from overflowing. A timeout
// or a TTL of 0 would make everything time out or expire at once, so it is refused; an
// interval of 0 means "send as soon as there is something", so it is allowed.
const TIMEOUT_MS: RangeInclusive<u64> = 1..=DAY_MS;
const INTERVAL_MS: RangeInclusive<u64> = 0..=DAY_MS;
const TTL_SECS: RangeInclusive<u64> = 1..=366 * DAY_SECS;

/// The LLM the robots use when `TCBOT_LLM_BASE_URL`, `TCBOT_LLM_MODEL` and
/// `TCBOT_LLM_API_STYLE` are not set (and a bot's profile does not say).
pub const DEFAULT_LLM_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_LLM_API_STYLE: &str = "openai";

/// A setting that is missing or malformed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is required but not set{hint}")]
    Missing { var: &'static str, hint: &'static str },
    #[error("{var}={value:?} is not valid: {why}")]
    Invalid { var: &'static str, value: String, why: String },
}

/// What to do with an answer longer than one Tencent message can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Finish the message with a short notice and drop the rest.
    Truncate,
    /// Finish the message and continue in a follow-up message.
    Continue,
}

impl FromStr for OverflowPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "truncate" => Ok(Self::Truncate),
            "continue" => Ok(Self::Continue),
            _ => Err("expected truncate or continue".into()),
        }
    }
}

/// Whether the LLM's answers are judged by the moderation policies before they are shown
/// (`TCBOT_MODERATE_ANSWERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerateAnswers {
    /// Judged when a policy exists for the conversation. A policy that cannot be read or is
    /// invalid is logged and skipped, as the before-send function skips it.
    Auto,
    /// Judged, and never shown unjudged: when a policy cannot be read the message is retried
    /// later, and when it is invalid the message is dead-lettered with the apology.
    On,
    /// Shown as the LLM wrote them.
    Off,
}

impl FromStr for ModerateAnswers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err("expected auto, on or off".into()),
        }
    }
}

/// Where Tencent's REST API is: a regional domain or an explicit base URL (local emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TencentEndpoint(pub String);

impl TencentEndpoint {
    /// The HTTPS base URL of a data-centre region (tencent-chat-protocol.md §4.1).
    pub fn for_region(region: &str) -> Result<Self, String> {
        let domain = match region {
            "china" => "console.tim.qq.com",
            "singapore" => "adminapisgp.im.qcloud.com",
            "seoul" => "adminapikr.im.qcloud.com",
            "tokyo" => "adminapijpn.im.qcloud.com",
            "frankfurt" => "adminapiger.im.qcloud.com",
            "mumbai" => "adminapiind.im.qcloud.com",
            "siliconvalley" => "adminapiusa.im.qcloud.com",
            "jakarta" => "adminapiidn.im.qcloud.com",
            "riyadh" => "adminapiksa.im.qcloud.com",
            _ => {
                return Err("expected one of china, singapore, seoul, tokyo, frankfurt, mumbai, \
                            siliconvalley, jakarta, riyadh"
                    .into());
            }
        };
        Ok(TencentEndpoint(format!("https://{domain}")))
    }

    /// The endpoint the settings name: `TCBOT_TENCENT_BASE_URL` (`base_url`) when set, else the
    /// domain of `TCBOT_TENCENT_REGION` (`region`, default `singapore`). The functions and the
    /// admin CLI both read it here.
    pub fn resolve(base_url: Option<&str>, region: Option<&str>) -> Result<Self, ConfigError> {
        match base_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                let parsed = url::Url::parse(url).map_err(|e| ConfigError::Invalid {
                    var: "TCBOT_TENCENT_BASE_URL",
                    value: url.to_owned(),
                    why: e.to_string(),
                })?;
                Ok(TencentEndpoint(parsed.as_str().trim_end_matches('/').to_owned()))
            }
            None => {
                let region = region.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("singapore");
                TencentEndpoint::for_region(region).map_err(|why| ConfigError::Invalid {
                    var: "TCBOT_TENCENT_REGION",
                    value: region.to_owned(),
                    why,
                })
            }
        }
    }
}

/// How the deployment serves NetEase NIM robots (`TCBOT_NIM_*`); unused where NIM is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NimSettings {
    /// The robot accounts and the nicknames members type after `@` in teams
    /// (`TCBOT_NIM_ROBOTS`); empty when NIM is not served.
    pub robots: Vec<KnownRobot>,
    /// NIM's REST base URL: `TCBOT_NIM_BASE_URL`, else the host of `TCBOT_NIM_REGION`.
    pub base_url: String,
    /// How far a message copy's `CurTime` may be from now (`TCBOT_NIM_COPY_WINDOW_SECS`).
    pub copy_window: Duration,
    /// How one-to-one answers are shown when the robot's profile does not say
    /// (`TCBOT_NIM_DIRECT_STREAM_MODE`: `native_stream` or `final`).
    pub direct_mode: StreamMode,
    /// Whether NetEase has turned on live stream delivery to all team members for the app
    /// (`TCBOT_NIM_TEAM_STREAMING`). Off: team answers are sent once, complete, because live
    /// chunks would reach only the asker (nim-protocol.md §3).
    pub team_streaming: bool,
    /// A second secret holding `NimAppKey` and `NimAppSecret` (`TCBOT_NIM_SECRET_ID`), read
    /// beside `TCBOT_SECRET_ID` by the functions that call NIM; its NIM keys take precedence.
    pub secret_id: Option<String>,
}

impl NimSettings {
    /// The robots, for the function that needs them (the NIM router).
    pub fn require_robots(&self) -> Result<&[KnownRobot], ConfigError> {
        if self.robots.is_empty() {
            return Err(ConfigError::Missing {
                var: "TCBOT_NIM_ROBOTS",
                hint: " (the NIM robot accounts, e.g. {\"mybot\":\"MyBot\"} or mybot:MyBot)",
            });
        }
        Ok(&self.robots)
    }
}

/// The REST host of a NIM data centre (nim-protocol.md §3: the official SDKs' defaults).
pub fn nim_base_url_for_region(region: &str) -> Result<String, String> {
    match region {
        "cn" => Ok("https://api-cn.yunxinapi.com".into()),
        "sg" => Ok("https://api-sg.yunxinapi.com".into()),
        _ => Err("expected cn or sg (or set TCBOT_NIM_BASE_URL)".into()),
    }
}

/// A JSON object's entries in the order written, repeats kept (`serde_json::Map` sorts them and
/// keeps only the last of a repeated key), so that the first robot listed is the first tried
/// and a repeated account is reported.
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(OrderedObject(entries))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Reads `TCBOT_NIM_ROBOTS`: a JSON object `{"accid": "nickname", …}` (a `null` or empty
/// nickname for none), or a comma list `accid:nickname,accid2`. Account ids may not be empty,
/// hold whitespace, `,` or `:`, or repeat; nicknames are trimmed.
pub fn parse_nim_robots(value: &str) -> Result<Vec<KnownRobot>, String> {
    let value = value.trim();
    let pairs: Vec<(String, Option<String>)> = if value.starts_with('{') {
        let map: OrderedObject = serde_json::from_str(value).map_err(|e| {
            format!("not a JSON object of account id to nickname ({})", crate::redact::JsonError::from(e))
        })?;
        map.0
            .into_iter()
            .map(|(accid, nick)| match nick {
                serde_json::Value::String(n) => Ok((accid, Some(n))),
                serde_json::Value::Null => Ok((accid, None)),
                _ => Err(format!("the nickname of {accid:?} is not a string")),
            })
            .collect::<Result<_, _>>()?
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once(':') {
                Some((accid, nick)) => (accid.trim().to_owned(), Some(nick.to_owned())),
                None => (e.to_owned(), None),
            })
            .collect()
    };
    let mut robots: Vec<KnownRobot> = Vec::with_capacity(pairs.len());
    for (accid, nick) in pairs {
        if accid.is_empty() {
            return Err("an account id is empty".into());
        }
        if accid.contains(|c: char| c.is_whitespace() || c == ',' || c == ':') {
            return Err(format!("account id {accid:?} holds whitespace, ',' or ':'"));
        }
        if robots.iter().any(|r| r.accid == accid) {
            return Err(format!("account id {accid:?} is listed twice"));
        }
        let nickname = nick.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        robots.push(KnownRobot { accid, nickname });
    }
    if robots.is_empty() {
        return Err("no robot account is listed".into());
    }
    Ok(robots)
}

/// The JWT claim that names an app user when `TCBOT_APP_USERSIG_CLAIM` is unset.
pub const DEFAULT_USERSIG_CLAIM: &str = "sub";

/// All settings. Which ones a function needs is checked by the `require_*` accessors in its
/// `main`, so a missing queue URL fails the cold start of the function that uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table_name: String,
    pub secret_id: Option<String>,
    pub local_secret_file: Option<String>,
    pub tencent_endpoint: TencentEndpoint,
    pub usersig_ttl: Duration,
    /// `usersig`: the JWT claim that names the caller, and how long their UserSigs last.
    pub app_usersig_claim: String,
    pub app_usersig_ttl: Duration,
    pub rest_timeout: Duration,
    pub rest_max_attempts: u32,
    pub sign_window_secs: i64,
    pub allow_unsigned: bool,
    pub max_body_bytes: usize,
    /// The longest one AWS call on the router's ack path may take, retries included.
    pub ack_aws_timeout: Duration,
    pub c2c_queue_url: Option<String>,
    pub group_queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub max_receives: u32,
    /// A failed chatbot message is retried after this, doubled per receive, at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Time a worker keeps before its Lambda deadline to finish and record an answer.
    pub finish_margin: Duration,
    pub history_ttl_secs: u64,
    pub stop_ttl_secs: u64,
    /// Whether chatbot answers are judged by the moderation policies.
    pub moderate_answers: ModerateAnswers,
    pub llm: LlmDefaults,
    pub stream: StreamSettings,
    pub events: EventSettings,
    pub nim: NimSettings,
    pub teams: TeamSettings,
    pub busy: BusySettings,
}

/// What a user sees of a conversation that is busy: a note when a message waits behind an
/// answer in progress, and bursts answered as one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct BusySettings {
    /// The standard queue of busy checks (`TCBOT_BUSY_QUEUE_URL`); unset: no busy notes.
    pub queue_url: Option<String>,
    /// How long a message waits behind an answer before it is told it is next
    /// (`TCBOT_BUSY_NOTE_AFTER_SECS`, default 5; SQS delays at most 900).
    pub note_after: Duration,
    /// Messages of one sender within this time of each other are answered as one turn
    /// (`TCBOT_BURST_WINDOW_MS`, default 1500; 0: each on its own). A robot's profile may say
    /// otherwise (`burst_window_ms`).
    pub burst_window: Duration,
}

/// Game teams (`group-team-events`): what the team is told when it is complete and when
/// players leave. `{members}` is replaced by the IDs of those who left, `{how}` by `quit`,
/// `was kicked` or `were kicked` (in the message to a player: `left` or `were removed from`),
/// `{group}` by the group's ID.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamSettings {
    /// The group system notification when the team is full.
    pub full_text: String,
    /// The group system notification when players leave.
    pub exit_text: String,
    /// Who sends each player who left a one-to-one message; unset: no message.
    pub exit_dm_from: Option<String>,
    pub exit_dm_text: String,
}

/// The commands other than the chatbot's: where the router sends them and how their functions
/// behave.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSettings {
    pub group_moderation_function: Option<String>,
    pub c2c_moderation_function: Option<String>,
    /// How long the router waits for a before-send verdict (Tencent allows 2 s in all).
    pub sync_deadline: Duration,
    /// `true`: refuse when moderation fails or is late; `false` (default): deliver.
    pub fail_closed: bool,
    pub classifier_deadline: Duration,
    pub stats_queue_url: Option<String>,
    pub presence_queue_url: Option<String>,
    pub group_created_queue_url: Option<String>,
    pub member_joined_queue_url: Option<String>,
    /// The game-team function's queue (`Group.CallbackAfterGroupFull`,
    /// `Group.CallbackAfterMemberExit`).
    pub team_events_queue_url: Option<String>,
    /// The field of a custom message's `Data` JSON that names its kind (`like`, `gift`).
    pub stats_kind_field: String,
    /// Topics created in every new Community group.
    pub default_topics: Vec<String>,
    /// Who greets new members, and with what (`{members}` is replaced by their IDs).
    pub welcome_from: Option<String>,
    pub welcome_text: String,
    /// The default topic that welcomes go to in topic-enabled communities (the first default
    /// topic unless set).
    pub welcome_topic: Option<String>,
}

/// The LLM and robot settings used when a bot has no profile, or its profile leaves a field out.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmDefaults {
    pub base_url: String,
    pub model: String,
    pub api_style: String,
    pub system_prompt: String,
    pub max_turns: usize,
    pub max_age_secs: u64,
    pub token_budget: usize,
    pub daily_quota: u64,
    /// The language of the robots' fixed texts (`TCBOT_LANGUAGE`).
    pub language: Language,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
    pub total_timeout: Duration,
}

/// How answers are chunked on their way to Tencent.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// Longest a chunk waits after the first one before it is sent.
    pub interval: Duration,
    /// A chunk is sent as soon as it holds this many bytes.
    pub max_chunk_bytes: usize,
    /// Most bytes one message may carry (Tencent: about 12 KB).
    pub max_message_bytes: usize,
    pub overflow: OverflowPolicy,
    /// How one-to-one answers are shown, unless a robot's profile says otherwise.
    pub direct_mode: StreamMode,
    /// How group answers are shown, unless a robot's profile says otherwise.
    pub group_mode: StreamMode,
    /// Least time between two modifications of a message (the `modify` mode).
    pub group_modify_interval: Duration,
    /// How long the LLM may take to its first token before a placeholder is shown (in the
    /// modes that can replace it).
    pub placeholder_after: Duration,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    /// Reads the settings through `get`, which maps a variable name to its value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&get);
        let tencent_endpoint = TencentEndpoint::resolve(
            env.opt("TCBOT_TENCENT_BASE_URL").as_deref(),
            env.opt("TCBOT_TENCENT_REGION").as_deref(),
        )?;
        let secret_id = env.opt("TCBOT_SECRET_ID");
        let local_secret_file = env.opt("TCBOT_LOCAL_SECRET_FILE");
        if secret_id.is_none() && local_secret_file.is_none() {
            return Err(ConfigError::Missing {
                var: "TCBOT_SECRET_ID",
                hint: " (or TCBOT_LOCAL_SECRET_FILE for local development)",
            });
        }
        let ms = |var, default, range| env.bounded(var, default, range).map(Duration::from_millis);
        let default_topics: Vec<String> = env
            .opt("TCBOT_DEFAULT_TOPICS")
            .unwrap_or_else(|| "General,Announcements".into())
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let nim = NimSettings {
            robots: match env.opt("TCBOT_NIM_ROBOTS") {
                None => Vec::new(),
                Some(v) => parse_nim_robots(&v).map_err(|why| ConfigError::Invalid {
                    var: "TCBOT_NIM_ROBOTS",
                    value: v.clone(),
                    why,
                })?,
            },
            base_url: match env.opt("TCBOT_NIM_BASE_URL") {
                Some(url) => {
                    let parsed = url::Url::parse(&url).map_err(|e| ConfigError::Invalid {
                        var: "TCBOT_NIM_BASE_URL",
                        value: url.clone(),
                        why: e.to_string(),
                    })?;
                    parsed.as_str().trim_end_matches('/').to_owned()
                }
                None => {
                    let region = env.opt("TCBOT_NIM_REGION").unwrap_or_else(|| "cn".into());
                    nim_base_url_for_region(&region).map_err(|why| ConfigError::Invalid {
                        var: "TCBOT_NIM_REGION",
                        value: region,
                        why,
                    })?
                }
            },
            // NIM's retry interval is UNCONFIRMED and a retry may carry the first CurTime: five
            // minutes, as long as NIM's own REST checksums stay valid.
            copy_window: Duration::from_secs(env.bounded("TCBOT_NIM_COPY_WINDOW_SECS", 300, 1..=DAY_SECS)?),
            direct_mode: match env.parse("TCBOT_NIM_DIRECT_STREAM_MODE", StreamMode::NativeStream)? {
                m @ (StreamMode::NativeStream | StreamMode::Final) => m,
                other => {
                    return Err(ConfigError::Invalid {
                        var: "TCBOT_NIM_DIRECT_STREAM_MODE",
                        value: other.name().to_owned(),
                        why: "expected native_stream or final (NIM has no robot stream and cannot modify a message)"
                            .into(),
                    });
                }
            },
            team_streaming: env.parse("TCBOT_NIM_TEAM_STREAMING", false)?,
            secret_id: env.opt("TCBOT_NIM_SECRET_ID"),
        };
        Ok(Settings {
            nim,
            table_name: env.required("TCBOT_TABLE_NAME", "")?,
            secret_id,
            local_secret_file,
            tencent_endpoint,
            usersig_ttl: Duration::from_secs(env.bounded("TCBOT_USERSIG_TTL_SECS", DAY_SECS, TTL_SECS)?),
            app_usersig_claim: env.opt("TCBOT_APP_USERSIG_CLAIM").unwrap_or_else(|| DEFAULT_USERSIG_CLAIM.to_owned()),
            app_usersig_ttl: Duration::from_secs(env.bounded(
                "TCBOT_APP_USERSIG_TTL_SECS",
                7 * DAY_SECS,
                1..=crate::usersigs::MAX_TTL.as_secs(),
            )?),
            rest_timeout: ms("TCBOT_REST_TIMEOUT_MS", 3_000, TIMEOUT_MS)?,
            rest_max_attempts: env.parse("TCBOT_REST_MAX_ATTEMPTS", 4)?,
            // RequestTime has a resolution of a second, so 0 would refuse good webhooks. Years
            // are meaningful: local runs widen the window to accept the sample events, which
            // are signed at a fixed time (README).
            sign_window_secs: env.bounded("TCBOT_SIGN_WINDOW_SECS", 60, 1..=(100 * 366 * DAY_SECS) as i64)?,
            allow_unsigned: env.parse("TCBOT_ALLOW_UNSIGNED", false)?,
            max_body_bytes: env.parse("TCBOT_MAX_BODY_BYTES", 64 * 1024)?,
            ack_aws_timeout: ms("TCBOT_ACK_AWS_TIMEOUT_MS", 1_000, TIMEOUT_MS)?,
            c2c_queue_url: env.opt("TCBOT_C2C_QUEUE_URL"),
            group_queue_url: env.opt("TCBOT_GROUP_QUEUE_URL"),
            dlq_url: env.opt("TCBOT_DLQ_URL"),
            max_receives: env.bounded("TCBOT_MAX_RECEIVES", 5, 1..=1000)?,
            retry_base: ms("TCBOT_RETRY_BASE_MS", 5_000, TIMEOUT_MS)?,
            retry_max: ms("TCBOT_RETRY_MAX_MS", 60_000, TIMEOUT_MS)?,
            finish_margin: ms("TCBOT_FINISH_MARGIN_MS", 15_000, TIMEOUT_MS)?,
            history_ttl_secs: env.bounded("TCBOT_HISTORY_TTL_SECS", 7 * DAY_SECS, TTL_SECS)?,
            stop_ttl_secs: env.bounded("TCBOT_STOP_TTL_SECS", 600, TTL_SECS)?,
            moderate_answers: env.parse("TCBOT_MODERATE_ANSWERS", ModerateAnswers::Auto)?,
            llm: LlmDefaults {
                base_url: env.opt("TCBOT_LLM_BASE_URL").unwrap_or_else(|| DEFAULT_LLM_BASE_URL.into()),
                model: env.opt("TCBOT_LLM_MODEL").unwrap_or_else(|| DEFAULT_LLM_MODEL.into()),
                api_style: env.opt("TCBOT_LLM_API_STYLE").unwrap_or_else(|| DEFAULT_LLM_API_STYLE.into()),
                system_prompt: env
                    .opt("TCBOT_SYSTEM_PROMPT")
                    .unwrap_or_else(|| "You are a helpful assistant in a chat app. Answer concisely.".into()),
                max_turns: env.parse("TCBOT_WINDOW_TURNS", 20)?,
                // 0 is allowed: the prompt then holds no earlier turns.
                max_age_secs: env.bounded("TCBOT_WINDOW_SECS", DAY_SECS, 0..=*TTL_SECS.end())?,
                token_budget: env.parse("TCBOT_WINDOW_TOKENS", 3_000)?,
                daily_quota: env.parse("TCBOT_DAILY_QUOTA", 200)?,
                language: env.parse("TCBOT_LANGUAGE", Language::En)?,
                connect_timeout: ms("TCBOT_LLM_CONNECT_TIMEOUT_MS", 3_000, TIMEOUT_MS)?,
                first_token_timeout: ms("TCBOT_LLM_FIRST_TOKEN_TIMEOUT_MS", 20_000, TIMEOUT_MS)?,
                idle_timeout: ms("TCBOT_LLM_IDLE_TIMEOUT_MS", 10_000, TIMEOUT_MS)?,
                total_timeout: ms("TCBOT_LLM_TOTAL_TIMEOUT_MS", 120_000, TIMEOUT_MS)?,
            },
            stream: StreamSettings {
                interval: ms("TCBOT_STREAM_INTERVAL_MS", 400, INTERVAL_MS)?,
                max_chunk_bytes: env.parse("TCBOT_STREAM_MAX_CHUNK_BYTES", 600)?,
                max_message_bytes: env.parse("TCBOT_MAX_MESSAGE_BYTES", 12_000)?,
                overflow: env.parse("TCBOT_OVERFLOW_POLICY", OverflowPolicy::Truncate)?,
                direct_mode: env.parse("TCBOT_DIRECT_STREAM_MODE", StreamMode::RobotStream)?,
                // `TCBOT_GROUP_STREAMING=false`, the setting before modes, still means one send.
                group_mode: match env.parse("TCBOT_GROUP_STREAMING", true)? {
                    true => env.parse("TCBOT_GROUP_STREAM_MODE", StreamMode::NativeStream)?,
                    false => env.parse("TCBOT_GROUP_STREAM_MODE", StreamMode::Final)?,
                },
                group_modify_interval: ms("TCBOT_GROUP_MODIFY_INTERVAL_MS", 1_000, INTERVAL_MS)?,
                placeholder_after: ms("TCBOT_PLACEHOLDER_AFTER_MS", 1_000, INTERVAL_MS)?,
            },
            events: EventSettings {
                group_moderation_function: env.opt("TCBOT_GROUP_MODERATION_FUNCTION"),
                c2c_moderation_function: env.opt("TCBOT_C2C_MODERATION_FUNCTION"),
                sync_deadline: ms("TCBOT_SYNC_DEADLINE_MS", 1_500, TIMEOUT_MS)?,
                fail_closed: match env.opt("TCBOT_MODERATION_FALLBACK").as_deref() {
                    None | Some("allow") => false,
                    Some("refuse") => true,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            var: "TCBOT_MODERATION_FALLBACK",
                            value: other.to_owned(),
                            why: "expected allow or refuse".into(),
                        });
                    }
                },
                classifier_deadline: ms("TCBOT_CLASSIFIER_DEADLINE_MS", 800, TIMEOUT_MS)?,
                stats_queue_url: env.opt("TCBOT_STATS_QUEUE_URL"),
                presence_queue_url: env.opt("TCBOT_PRESENCE_QUEUE_URL"),
                group_created_queue_url: env.opt("TCBOT_GROUP_CREATED_QUEUE_URL"),
                member_joined_queue_url: env.opt("TCBOT_MEMBER_JOINED_QUEUE_URL"),
                team_events_queue_url: env.opt("TCBOT_TEAM_EVENTS_QUEUE_URL"),
                stats_kind_field: env.opt("TCBOT_STATS_KIND_FIELD").unwrap_or_else(|| "type".into()),
                welcome_from: env.opt("TCBOT_WELCOME_FROM"),
                welcome_text: env
                    .opt("TCBOT_WELCOME_TEXT")
                    .unwrap_or_else(|| "Welcome, {members}! Say hello to everyone.".into()),
                welcome_topic: match env.opt("TCBOT_WELCOME_TOPIC") {
                    None => default_topics.first().cloned(),
                    // A topic is named by its name: its ID is derived from it (`community::topic_id`).
                    Some(t) if default_topics.contains(&t) => Some(t),
                    Some(t) => {
                        return Err(ConfigError::Invalid {
                            var: "TCBOT_WELCOME_TOPIC",
                            value: t,
                            why: "expected one of TCBOT_DEFAULT_TOPICS".into(),
                        });
                    }
                },
                default_topics,
            },
            busy: BusySettings {
                queue_url: env.opt("TCBOT_BUSY_QUEUE_URL"),
                note_after: Duration::from_secs(env.bounded("TCBOT_BUSY_NOTE_AFTER_SECS", 5, 1..=900)?),
                burst_window: ms("TCBOT_BURST_WINDOW_MS", 1_500, 0..=10_000)?,
            },
            teams: TeamSettings {
                full_text: env
                    .opt("TCBOT_TEAM_FULL_TEXT")
                    .unwrap_or_else(|| "The team is complete. Good luck, have fun!".into()),
                exit_text: env
                    .opt("TCBOT_TEAM_EXIT_TEXT")
                    .unwrap_or_else(|| "{members} {how}. The team has room for new players.".into()),
                exit_dm_from: env.opt("TCBOT_TEAM_EXIT_DM_FROM"),
                exit_dm_text: env
                    .opt("TCBOT_TEAM_EXIT_DM_TEXT")
                    .unwrap_or_else(|| "You are no longer in team {group}. Find a new team any time!".into()),
            },
        })
    }

    /// The FIFO queue for chatbot C2C messages (router).
    pub fn require_c2c_queue(&self) -> Result<&str, ConfigError> {
        self.c2c_queue_url.as_deref().ok_or(ConfigError::Missing { var: "TCBOT_C2C_QUEUE_URL", hint: "" })
    }

    /// The FIFO queue for chatbot group messages (router).
    pub fn require_group_queue(&self) -> Result<&str, ConfigError> {
        self.group_queue_url.as_deref().ok_or(ConfigError::Missing { var: "TCBOT_GROUP_QUEUE_URL", hint: "" })
    }

    /// The dead-letter queue a worker sends what it gives up on (workers).
    pub fn require_dlq(&self) -> Result<&str, ConfigError> {
        self.dlq_url.as_deref().ok_or(ConfigError::Missing { var: "TCBOT_DLQ_URL", hint: "" })
    }
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn opt(&self, var: &str) -> Option<String> {
        (self.0)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str, hint: &'static str) -> Result<String, ConfigError> {
        self.opt(var).ok_or(ConfigError::Missing { var, hint })
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: Display,
    {
        match self.opt(var) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|e: T::Err| ConfigError::Invalid { var, value: v.clone(), why: e.to_string() })
            }
        }
    }

    /// Like [`Env::parse`], for a number that must lie in `range`.
    fn bounded<T>(&self, var: &'static str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Display,
    {
        let v = self.parse(var, default)?;
        if range.contains(&v) {
            return Ok(v);
        }
        let why = format!("expected {} to {}", range.start(), range.end());
        Err(ConfigError::Invalid { var, value: self.opt(var).unwrap_or_else(|| v.to_string()), why })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn when_table_is_missing_should_name_the_variable() {
        let err = Settings::from_lookup(lookup(&[("TCBOT_SECRET_ID", "s")])).err();
        assert_eq!(err, Some(ConfigError::Missing { var: "TCBOT_TABLE_NAME", hint: "" }));
    }

    #[test]
    fn when_number_is_malformed_should_say_which_and_why() {
        let err = Settings::from_lookup(lookup(&[
            ("TCBOT_SECRET_ID", "s"),
            ("TCBOT_TABLE_NAME", "t"),
            ("TCBOT_SIGN_WINDOW_SECS", "a minute"),
        ]))
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("TCBOT_SIGN_WINDOW_SECS=\"a minute\" is not valid: invalid digit found in string")
        );
    }

    /// Every duration setting, named by its unit.
    const DURATIONS: [&str; 20] = [
        "TCBOT_APP_USERSIG_TTL_SECS",
        "TCBOT_NIM_COPY_WINDOW_SECS",
        "TCBOT_ACK_AWS_TIMEOUT_MS",
        "TCBOT_USERSIG_TTL_SECS",
        "TCBOT_REST_TIMEOUT_MS",
        "TCBOT_SIGN_WINDOW_SECS",
        "TCBOT_RETRY_BASE_MS",
        "TCBOT_RETRY_MAX_MS",
        "TCBOT_FINISH_MARGIN_MS",
        "TCBOT_HISTORY_TTL_SECS",
        "TCBOT_STOP_TTL_SECS",
        "TCBOT_WINDOW_SECS",
        "TCBOT_LLM_CONNECT_TIMEOUT_MS",
        "TCBOT_LLM_FIRST_TOKEN_TIMEOUT_MS",
        "TCBOT_LLM_IDLE_TIMEOUT_MS",
        "TCBOT_LLM_TOTAL_TIMEOUT_MS",
        "TCBOT_STREAM_INTERVAL_MS",
        "TCBOT_GROUP_MODIFY_INTERVAL_MS",
        "TCBOT_SYNC_DEADLINE_MS",
        "TCBOT_CLASSIFIER_DEADLINE_MS",
    ];

    fn with(var: &str, value: &str) -> Result<Settings, ConfigError> {
        Settings::from_lookup(lookup(&[("TCBOT_SECRET_ID", "s"), ("TCBOT_TABLE_NAME", "t"), (var, value)]))
    }

    #[test]
    fn welcome_topic_is_the_first_default_topic_unless_set_and_must_be_a_default_topic() {
        let topics = |pairs: &[(&str, &str)]| {
            let mut all = vec![("TCBOT_SECRET_ID", "s"), ("TCBOT_TABLE_NAME", "t")];
            all.extend_from_slice(pairs);
            Settings::from_lookup(lookup(&all)).map(|s| s.events.welcome_topic)
        };
        assert_eq!(topics(&[("TCBOT_DEFAULT_TOPICS", "Lobby, Help")]), Ok(Some("Lobby".into())));
        assert_eq!(topics(&[("TCBOT_DEFAULT_TOPICS", ",")]), Ok(None), "no default topics");
        let chosen = [("TCBOT_DEFAULT_TOPICS", "Lobby,Help"), ("TCBOT_WELCOME_TOPIC", "Help")];
        assert_eq!(topics(&chosen), Ok(Some("Help".into())));
        let err = topics(&[("TCBOT_WELCOME_TOPIC", "Elsewhere")]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("TCBOT_WELCOME_TOPIC=\"Elsewhere\""), "{err}");
    }

    #[test]
    fn when_stream_interval_is_huge_should_name_the_variable_and_the_bound() {
        let err = with("TCBOT_STREAM_INTERVAL_MS", "18446744073709551615").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("TCBOT_STREAM_INTERVAL_MS=\"18446744073709551615\" is not valid: expected 0 to 86400000")
        );
    }

    #[test]
    fn when_any_duration_is_huge_should_be_invalid() {
        for var in DURATIONS {
            let err = with(var, &u64::MAX.to_string()).err();
            assert!(matches!(err, Some(ConfigError::Invalid { var: v, .. }) if v == var), "{var}: {err:?}");
        }
    }

    #[test]
    fn when_a_timeout_or_ttl_is_zero_should_be_invalid() {
        for var in DURATIONS.iter().filter(|v| !v.contains("INTERVAL") && **v != "TCBOT_WINDOW_SECS") {
            let err = with(var, "0").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.starts_with(&format!("{var}=\"0\" is not valid: expected 1 to ")), "{var}: {err}");
        }
    }

    #[test]
    fn when_an_interval_or_the_window_is_zero_should_be_accepted() {
        for var in ["TCBOT_STREAM_INTERVAL_MS", "TCBOT_GROUP_MODIFY_INTERVAL_MS", "TCBOT_WINDOW_SECS"] {
            assert!(with(var, "0").is_ok(), "{var}");
        }
    }

    #[test]
    fn when_a_duration_is_at_its_bound_should_be_accepted() {
        let s = with("TCBOT_HISTORY_TTL_SECS", &(366 * 86_400).to_string());
        assert_eq!(s.map(|s| s.history_ttl_secs).ok(), Some(366 * 86_400));
        let s = with("TCBOT_LLM_TOTAL_TIMEOUT_MS", "86400000");
        assert_eq!(s.map(|s| s.llm.total_timeout).ok(), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn when_sign_window_is_widened_for_the_sample_events_should_be_accepted() {
        assert_eq!(with("TCBOT_SIGN_WINDOW_SECS", "999999999").map(|s| s.sign_window_secs).ok(), Some(999_999_999));
    }

    #[test]
    fn answer_moderation_is_auto_by_default_and_named_when_malformed() {
        assert_eq!(with("TCBOT_GROUP_STREAMING", "true").map(|s| s.moderate_answers).ok(), Some(ModerateAnswers::Auto));
        for (value, want) in
            [("auto", ModerateAnswers::Auto), ("on", ModerateAnswers::On), ("off", ModerateAnswers::Off)]
        {
            assert_eq!(with("TCBOT_MODERATE_ANSWERS", value).map(|s| s.moderate_answers).ok(), Some(want), "{value}");
        }
        let err = with("TCBOT_MODERATE_ANSWERS", "yes").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("TCBOT_MODERATE_ANSWERS=\"yes\" is not valid: expected auto, on or off"));
    }

    #[test]
    fn when_language_is_unknown_should_name_the_variable() {
        let err = with("TCBOT_LANGUAGE", "fr").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("TCBOT_LANGUAGE=\"fr\" is not valid: expected zh or en"));
    }

    #[test]
    fn language_is_en_unless_set() {
        assert_eq!(with("TCBOT_GROUP_STREAMING", "true").map(|s| s.llm.language), Ok(Language::En));
        assert_eq!(with("TCBOT_LANGUAGE", "zh").map(|s| s.llm.language), Ok(Language::Zh));
    }

    #[test]
    fn nim_robots_are_read_from_json_or_a_comma_list() {
        let robot = |a: &str, n: Option<&str>| KnownRobot { accid: a.into(), nickname: n.map(str::to_owned) };
        assert_eq!(
            parse_nim_robots(r#"{"mybot": "MyBot", "helper": "小助手", "quiet": null, "blank": " "}"#),
            Ok(vec![
                robot("mybot", Some("MyBot")),
                robot("helper", Some("小助手")),
                robot("quiet", None),
                robot("blank", None)
            ])
        );
        assert_eq!(
            parse_nim_robots(" mybot:My Bot , helper ,"),
            Ok(vec![robot("mybot", Some("My Bot")), robot("helper", None)])
        );
        for (bad, why) in [
            ("", "no robot account is listed"),
            (",,", "no robot account is listed"),
            (":Nick", "an account id is empty"),
            ("a b:x", "account id \"a b\" holds whitespace, ',' or ':'"),
            ("a,a:x", "account id \"a\" is listed twice"),
            (r#"{"a": "x", "a": "y"}"#, "account id \"a\" is listed twice"),
            (r#"{"a": 1}"#, "the nickname of \"a\" is not a string"),
            (
                r#"{"a": "x""#,
                "not a JSON object of account id to nickname (unexpected end of input at line 1, column 9)",
            ),
            ("{}", "no robot account is listed"),
        ] {
            assert_eq!(parse_nim_robots(bad), Err(why.to_owned()), "{bad:?}");
        }
    }

    #[test]
    fn nim_settings_default_to_no_robots_cn_streams_one_to_one_and_final_teams() {
        let s = with("TCBOT_GROUP_STREAMING", "true").map(|s| s.nim);
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert!(s.robots.is_empty());
        assert!(matches!(s.require_robots(), Err(ConfigError::Missing { var: "TCBOT_NIM_ROBOTS", .. })));
        assert_eq!(s.base_url, "https://api-cn.yunxinapi.com");
        assert_eq!(
            (s.direct_mode, s.team_streaming, s.copy_window),
            (StreamMode::NativeStream, false, Duration::from_secs(300))
        );
        let robots = with("TCBOT_NIM_ROBOTS", "mybot:MyBot").map(|s| s.nim.robots.len());
        assert_eq!(robots, Ok(1));
        let err = with("TCBOT_NIM_ROBOTS", "a,a").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("TCBOT_NIM_ROBOTS=\"a,a\" is not valid: account id \"a\" is listed twice"));
        assert_eq!(
            with("TCBOT_NIM_REGION", "sg").map(|s| s.nim.base_url).ok().as_deref(),
            Some("https://api-sg.yunxinapi.com")
        );
        assert!(matches!(with("TCBOT_NIM_REGION", "eu"), Err(ConfigError::Invalid { var: "TCBOT_NIM_REGION", .. })));
        let url = with("TCBOT_NIM_BASE_URL", "http://127.0.0.1:9/").map(|s| s.nim.base_url);
        assert_eq!(url.ok().as_deref(), Some("http://127.0.0.1:9"));
        for mode in ["robot_stream", "modify"] {
            let err = with("TCBOT_NIM_DIRECT_STREAM_MODE", mode).err();
            assert!(matches!(err, Some(ConfigError::Invalid { var: "TCBOT_NIM_DIRECT_STREAM_MODE", .. })), "{mode}");
        }
        assert_eq!(with("TCBOT_NIM_DIRECT_STREAM_MODE", "final").map(|s| s.nim.direct_mode), Ok(StreamMode::Final));
        assert_eq!(with("TCBOT_NIM_TEAM_STREAMING", "true").map(|s| s.nim.team_streaming), Ok(true));
        assert!(matches!(with("TCBOT_NIM_COPY_WINDOW_SECS", "0"), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn region_selects_domain_and_base_url_overrides_it() {
        let s = Settings::from_lookup(lookup(&[
            ("TCBOT_SECRET_ID", "s"),
            ("TCBOT_TABLE_NAME", "t"),
            ("TCBOT_TENCENT_REGION", "china"),
        ]));
        assert_eq!(s.map(|s| s.tencent_endpoint.0).ok().as_deref(), Some("https://console.tim.qq.com"));
        let s = Settings::from_lookup(lookup(&[
            ("TCBOT_SECRET_ID", "s"),
            ("TCBOT_TABLE_NAME", "t"),
            ("TCBOT_TENCENT_BASE_URL", "http://127.0.0.1:9/"),
        ]));
        assert_eq!(s.map(|s| s.tencent_endpoint.0).ok().as_deref(), Some("http://127.0.0.1:9"));
        let bad = Settings::from_lookup(lookup(&[
            ("TCBOT_SECRET_ID", "s"),
            ("TCBOT_TABLE_NAME", "t"),
            ("TCBOT_TENCENT_REGION", "mars"),
        ]));
        assert!(matches!(bad, Err(ConfigError::Invalid { var: "TCBOT_TENCENT_REGION", .. })));
    }
}
