//! The inbound side of NIM: message copy (消息抄送, nim-protocol.md §1 and §2).
//!
//! Three steps, each a pure function: [`verify`] authenticates a POST (body size, `AppKey`,
//! `CurTime` freshness, `MD5` of the raw body, then `CheckSum`, all with an injected clock);
//! [`parse_copy`] types the body; [`classify`] decides whether a conversation message is
//! addressed to one of our robots and reduces it to platform-neutral facts ([`Addressed`]) or
//! says why it is ignored ([`Ignored`]). Nothing here depends on the bot core.

use super::checksum::{body_md5, copy_checksum, hex_matches};
use crate::redact::JsonError;
use crate::secrets::SecretString;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The headers of a message copy that [`verify`] reads, borrowed from the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyHeaders<'a> {
    pub app_key: Option<&'a str>,
    pub cur_time: Option<&'a str>,
    pub md5: Option<&'a str>,
    pub checksum: Option<&'a str>,
}

impl<'a> CopyHeaders<'a> {
    /// Picks the four headers out of `(name, value)` pairs, names compared without regard to
    /// case (API Gateway lowercases them; NIM sends `AppKey`, `CurTime`, `MD5`, `CheckSum`).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = CopyHeaders::default();
        for (name, value) in pairs {
            let slot = if name.eq_ignore_ascii_case("appkey") {
                &mut h.app_key
            } else if name.eq_ignore_ascii_case("curtime") {
                &mut h.cur_time
            } else if name.eq_ignore_ascii_case("md5") {
                &mut h.md5
            } else if name.eq_ignore_ascii_case("checksum") {
                &mut h.checksum
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        h
    }

    /// Picks the four headers out of an HTTP header map; values that are not visible ASCII
    /// count as absent.
    pub fn from_http(map: &'a lambda_http::http::HeaderMap) -> Self {
        Self::from_pairs(map.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))))
    }
}

/// How strict [`verify`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeLimits {
    /// The most `CurTime` may differ from now, either way, in milliseconds.
    pub window_ms: u64,
    /// The largest body accepted, checked before anything is hashed.
    pub max_body_bytes: usize,
}

impl Default for IntakeLimits {
    /// Five minutes, as long as NetEase's REST checksums stay valid: NIM's retry interval is
    /// UNCONFIRMED, and a retry may carry the first attempt's `CurTime`. 128 KiB holds a
    /// 5000-character text with its extension and attachment many times over.
    fn default() -> Self {
        IntakeLimits { window_ms: 300_000, max_body_bytes: 128 * 1024 }
    }
}

/// Why a message copy was refused. The text is safe to log: it holds no secret and no input.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("the body exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("AppKey is not this app's")]
    WrongAppKey,
    #[error("CurTime is not a Unix time in milliseconds")]
    BadTime,
    #[error("CurTime is {skew_ms} ms away from now, outside the freshness window")]
    Stale { skew_ms: i64 },
    #[error("the MD5 header does not match the body")]
    Md5Mismatch,
    #[error("CheckSum does not match")]
    ChecksumMismatch,
}

/// What a verified POST is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The console's check of a new URL: a body of `{}`. Answer 200, do nothing else.
    ConsoleProbe,
    /// A message copy (or another copy event): parse it with [`parse_copy`].
    Copy,
}

/// `CurTime` values below this are taken as seconds, above as milliseconds. The doc's example
/// is 13 digits (milliseconds, CONFIRMED); seconds are accepted too in case another sender or
/// a newer version sends them (UNCONFIRMED). 10^11 ms is March 1973, so no real millisecond
/// time is mistaken for seconds; the CheckSum covers the header as sent either way.
const SECONDS_BELOW: u64 = 100_000_000_000;

/// Whether `body` is the console's verification POST (`{}`, whitespace allowed). A router
/// may answer such a body 200 even when [`verify`] refuses it: nothing is done with it.
pub fn is_console_probe(body: &[u8]) -> bool {
    let trimmed: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    trimmed == b"{}"
}

/// Authenticates a message copy: body size, `AppKey`, `CurTime` within `limits.window_ms` of
/// `now_ms`, the `MD5` header equal to the MD5 of the raw body, then `CheckSum` =
/// `sha1(secret ‖ MD5 ‖ CurTime)`, the digests compared in constant time. Pure: the clock is
/// an argument.
pub fn verify(
    headers: &CopyHeaders<'_>,
    body: &[u8],
    expected_app_key: &str,
    secret: &SecretString,
    now_ms: u64,
    limits: &IntakeLimits,
) -> Result<Verified, Rejection> {
    if body.len() > limits.max_body_bytes {
        return Err(Rejection::TooLarge { max: limits.max_body_bytes });
    }
    let app_key = headers.app_key.ok_or(Rejection::MissingHeader("AppKey"))?;
    let cur_time = headers.cur_time.ok_or(Rejection::MissingHeader("CurTime"))?;
    let md5 = headers.md5.ok_or(Rejection::MissingHeader("MD5"))?;
    let checksum = headers.checksum.ok_or(Rejection::MissingHeader("CheckSum"))?;
    if app_key.trim() != expected_app_key {
        return Err(Rejection::WrongAppKey);
    }
    let time = cur_time.trim();
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::BadTime);
    }
    let t: u64 = time.parse().map_err(|_| Rejection::BadTime)?;
    let t_ms = if t < SECONDS_BELOW { t.saturating_mul(1000) } else { t };
    let skew_ms = i64::try_from(now_ms).unwrap_or(i64::MAX).saturating_sub(i64::try_from(t_ms).unwrap_or(i64::MAX));
    if skew_ms.unsigned_abs() > limits.window_ms {
        return Err(Rejection::Stale { skew_ms });
    }
    let actual_md5 = body_md5(body);
    if !hex_matches(&actual_md5, md5) {
        return Err(Rejection::Md5Mismatch);
    }
    // The checksum is computed over our own MD5 (equal to the header's, case aside) and the
    // header's CurTime exactly as sent.
    if !hex_matches(&copy_checksum(secret.expose(), &actual_md5, time), checksum) {
        return Err(Rejection::ChecksumMismatch);
    }
    Ok(if is_console_probe(body) { Verified::ConsoleProbe } else { Verified::Copy })
}

// ---------------------------------------------------------------------------------------------
// Typed bodies

/// A string given as a JSON string or a number (ids such as team ids and `msgidServer` are
/// numbers in some copies, strings in others).
fn string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(_) => Err(D::Error::custom("expected a string or a number, got a boolean")),
        Value::Null => Err(D::Error::custom("expected a string or a number, got null")),
        Value::Array(_) => Err(D::Error::custom("expected a string or a number, got an array")),
        Value::Object(_) => Err(D::Error::custom("expected a string or a number, got an object")),
    }
}

fn opt_string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string_lenient(v).map(Some).map_err(D::Error::custom),
    }
}

fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match opt_string_lenient(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(|_| D::Error::custom("expected a non-negative integer")),
    }
}

/// `convType`: where a message was sent. Unknown values are kept, and ignored by [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvType {
    Person,
    Team,
    SuperTeam,
    CustomPerson,
    CustomTeam,
    Other(String),
}

impl ConvType {
    /// Reads the names of the message-copy table. Numbers are not mapped to names: the copy's
    /// numeric codes are UNCONFIRMED, and a wrong guess would answer in the wrong place.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "PERSON" => ConvType::Person,
            "TEAM" => ConvType::Team,
            "SUPER_TEAM" => ConvType::SuperTeam,
            "CUSTOM_PERSON" => ConvType::CustomPerson,
            "CUSTOM_TEAM" => ConvType::CustomTeam,
            _ => ConvType::Other(s.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for ConvType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_lenient(d).map(|s| ConvType::parse(&s))
    }
}

/// `msgType`: what a message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgType {
    Text,
    Picture,
    Audio,
    Video,
    Location,
    Notification,
    File,
    Tips,
    Custom,
    Other(String),
}

impl MsgType {
    /// Reads the names of the message-copy table, and the numeric codes of the REST API
    /// (0 text, 1 picture, 2 audio, 3 video, 4 location, 5 notification, 6 file, 10 tips,
    /// 100 custom) in case a copy sends numbers (UNCONFIRMED for copies).
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "TEXT" | "0" => MsgType::Text,
            "PICTURE" | "IMAGE" | "1" => MsgType::Picture,
            "AUDIO" | "2" => MsgType::Audio,
            "VIDEO" | "3" => MsgType::Video,
            "LOCATION" | "4" => MsgType::Location,
            "NOTIFICATION" | "5" => MsgType::Notification,
            "FILE" | "6" => MsgType::File,
            "TIPS" | "10" => MsgType::Tips,
            "CUSTOM" | "100" => MsgType::Custom,
            _ => MsgType::Other(s.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for MsgType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_lenient(d).map(|s| MsgType::parse(&s))
    }
}

/// `fromClientType`: the sender's device. `Rest` means a server API sent it, as our replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientType {
    Android,
    Ios,
    Pc,
    WinPhone,
    Web,
    Rest,
    Mac,
    Other(String),
}

impl ClientType {
    /// Reads the names of the message-copy table, and NIM's numeric client types (1, 2, 4, 8,
    /// 16, 32 = REST, 64) in case a copy sends numbers (UNCONFIRMED for copies).
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "AOS" | "ANDROID" | "1" => ClientType::Android,
            "IOS" | "2" => ClientType::Ios,
            "PC" | "WINDOWS" | "4" => ClientType::Pc,
            "WINPHONE" | "WP" | "8" => ClientType::WinPhone,
            "WEB" | "16" => ClientType::Web,
            "REST" | "32" => ClientType::Rest,
            "MAC" | "64" => ClientType::Mac,
            _ => ClientType::Other(s.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for ClientType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_lenient(d).map(|s| ClientType::parse(&s))
    }
}

/// A conversation message as message copy delivers it (`eventType` 1). Field names are the
/// copy's (nim-protocol.md §1; the table is UNCONFIRMED: the official one as copied in
/// third-party code). Unknown fields are ignored; numbers may come as strings and ids as
/// numbers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCopy {
    #[serde(deserialize_with = "string_lenient")]
    pub event_type: String,
    pub conv_type: ConvType,
    /// The receiver's accid (`PERSON`) or the team id (`TEAM`, `SUPER_TEAM`).
    #[serde(deserialize_with = "string_lenient")]
    pub to: String,
    #[serde(deserialize_with = "string_lenient")]
    pub from_account: String,
    #[serde(default, deserialize_with = "opt_string_lenient")]
    pub from_nick: Option<String>,
    #[serde(default, deserialize_with = "opt_string_lenient")]
    pub from_device_id: Option<String>,
    #[serde(default)]
    pub from_client_type: Option<ClientType>,
    /// When NIM received the message, Unix milliseconds.
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub msg_timestamp: Option<u64>,
    pub msg_type: MsgType,
    /// For `TEXT`, the text itself, or (UNCONFIRMED) a JSON `{"msg": "…"}`, as a string or an
    /// object: read it with [`MessageCopy::text`].
    #[serde(default)]
    pub body: Option<Value>,
    /// The attachment of media messages, kept as sent.
    #[serde(default)]
    pub attach: Option<Value>,
    #[serde(default, deserialize_with = "opt_string_lenient")]
    pub msgid_client: Option<String>,
    /// NIM's id of the message: the deduplication key (delivery is at least once).
    #[serde(default, deserialize_with = "opt_string_lenient")]
    pub msgid_server: Option<String>,
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub resend_flag: Option<u64>,
    /// The message's extension, a JSON string (or, leniently, an object): mentions live here.
    #[serde(default)]
    pub ext: Option<Value>,
}

/// One `@` mention in a message's extension (`ext.yxAitMsg.<accid>`), the NetEase UIKit
/// convention (nim-protocol.md §2), not enforced by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub accid: String,
    /// The mention as shown, e.g. `@MyBot`.
    pub text: Option<String>,
    pub segments: Vec<Segment>,
}

/// Where a mention sits in the text, in UTF-16 code units (the UIKits are iOS, web and
/// Flutter, whose strings count UTF-16). `end` appears inclusive (UNCONFIRMED); both readings
/// are tried against the mention's text before anything is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
    pub broken: bool,
}

impl MessageCopy {
    /// The text of a `TEXT` message: `body` as a string, or its `msg` when `body` is a JSON
    /// object `{"msg": "…"}` (given as an object or as a string holding one).
    pub fn text(&self) -> Option<String> {
        match self.body.as_ref()? {
            Value::String(s) => {
                let looks_wrapped = s.trim_start().starts_with('{');
                let wrapped = looks_wrapped.then(|| serde_json::from_str::<Value>(s).ok()).flatten();
                match wrapped.as_ref().and_then(|v| v.get("msg")).and_then(Value::as_str) {
                    Some(msg) => Some(msg.to_owned()),
                    None => Some(s.clone()),
                }
            }
            Value::Object(o) => o.get("msg").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
    }

    /// Whether NIM marked the copy as a client's resend of an earlier message.
    pub fn is_resend(&self) -> bool {
        self.resend_flag.is_some_and(|f| f != 0)
    }

    /// The extension as a JSON value: parsed from the string, or the object as sent. Anything
    /// unparseable counts as no extension.
    pub fn extension(&self) -> Option<Value> {
        match self.ext.as_ref()? {
            Value::String(s) if !s.trim().is_empty() => serde_json::from_str(s).ok(),
            v @ Value::Object(_) => Some(v.clone()),
            _ => None,
        }
    }

    /// The accounts mentioned in `ext.yxAitMsg`, in the order of the JSON object. `ait_all`
    /// (@everyone) is left out: it does not address a robot. Malformed entries are skipped.
    pub fn mentions(&self) -> Vec<Mention> {
        let Some(ext) = self.extension() else { return Vec::new() };
        let Some(map) = ext.get("yxAitMsg").and_then(Value::as_object) else { return Vec::new() };
        map.iter()
            .filter(|(accid, _)| accid.as_str() != "ait_all")
            .filter_map(|(accid, entry)| {
                let entry = entry.as_object()?;
                let segments = entry
                    .get("segments")
                    .and_then(Value::as_array)
                    .map(|segs| {
                        segs.iter()
                            .filter_map(|s| {
                                let start = usize::try_from(s.get("start")?.as_u64()?).ok()?;
                                let end = usize::try_from(s.get("end")?.as_u64()?).ok()?;
                                let broken = s.get("broken").and_then(Value::as_bool).unwrap_or(false);
                                (end >= start).then_some(Segment { start, end, broken })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let text = entry.get("text").and_then(Value::as_str).map(str::to_owned);
                Some(Mention { accid: accid.clone(), text, segments })
            })
            .collect()
    }
}

/// A message-copy POST, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyEvent {
    /// `eventType` 1: a conversation message.
    Message(Box<MessageCopy>),
    /// Any other event (logins, logouts, recalls, …) or none at all (the console's `{}`):
    /// acknowledged and ignored.
    Other { event_type: Option<String> },
}

/// Why a copy body could not be typed. The text names the problem, never the input.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CopyParseError {
    #[error("message copy body: {0}")]
    Json(JsonError),
    #[error("message copy body: missing field {0}")]
    MissingField(String),
    #[error("message copy body: not a JSON object")]
    NotAnObject,
}

impl From<serde_json::Error> for CopyParseError {
    fn from(e: serde_json::Error) -> Self {
        // serde's "missing field `x`" names a field, not a value: keep it; any other message
        // may quote the input, so only its category and position are kept.
        let text = e.to_string();
        match text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            Some(field) => CopyParseError::MissingField(field.to_owned()),
            None => CopyParseError::Json(JsonError::from(e)),
        }
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "eventType", default, deserialize_with = "opt_string_lenient")]
    event_type: Option<String>,
}

/// Types a copy body: a conversation message (`eventType` "1" or 1) or another event.
pub fn parse_copy(body: &[u8]) -> Result<CopyEvent, CopyParseError> {
    // serde would read a struct of optional fields from `[]` too.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(CopyParseError::NotAnObject);
    }
    let head: Head = serde_json::from_slice(body)?;
    match head.event_type.as_deref().map(str::trim) {
        Some("1") => Ok(CopyEvent::Message(Box::new(serde_json::from_slice(body)?))),
        _ => Ok(CopyEvent::Other { event_type: head.event_type }),
    }
}

// ---------------------------------------------------------------------------------------------
// Classification

/// One of our robot accounts, with the nickname members type after `@` in teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRobot {
    pub accid: String,
    pub nickname: Option<String>,
}

/// Whether a team is an advanced team or a super team (they are addressed differently by REST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamKind {
    Advanced,
    Super,
}

/// Where a message was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    OneToOne,
    Team { team_id: String, kind: TeamKind },
}

/// How the robot was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressedBy {
    /// A one-to-one message to the robot.
    Direct,
    /// A team message whose `ext.yxAitMsg` names the robot.
    ExtMention,
    /// A team message whose text holds `@<nickname>`.
    Nickname,
}

/// What a message holds, as far as the bot cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text,
    /// Not text: the bot answers with its text-only reply.
    NonText(MsgType),
}

/// A conversation message addressed to one of our robots, reduced to platform-neutral facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub robot: String,
    pub sender: String,
    pub sender_nick: Option<String>,
    pub place: Place,
    /// `msgidServer`: the deduplication key.
    pub msg_id_server: String,
    pub msg_id_client: Option<String>,
    /// The text with the robot's mention removed and trimmed; empty for non-text messages.
    pub text: String,
    pub content: Content,
    pub by: AddressedBy,
    /// `msgTimestamp`, Unix milliseconds, when the copy carries it.
    pub sent_ms: Option<u64>,
    pub resent: bool,
}

/// Why a conversation message is not for the bot. Every case is answered 200 and dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("the conversation type is not one-to-one or a team")]
    UnsupportedConversation(ConvType),
    #[error("our own reply, sent by REST as a robot")]
    OwnReply,
    #[error("the sender is a robot")]
    FromRobot,
    #[error("the receiver is not a robot")]
    NotToRobot,
    #[error("the team message mentions no robot")]
    NoMention,
    #[error("a notification or tip, not said by a person")]
    SystemMessage(MsgType),
    #[error("the copy has no msgidServer to deduplicate on")]
    NoServerId,
}

/// Decides whether a conversation message is addressed to one of `robots`.
///
/// - Robot senders are ignored (`OwnReply` when sent by REST, i.e. our own replies coming back
///   through message copy), so robots never answer each other or themselves.
/// - `PERSON` to a robot: always addressed. `TEAM`/`SUPER_TEAM`: when `ext.yxAitMsg` names a
///   robot (the first of `robots` named), else when the text holds `@<nickname>` of a robot.
///   The mention is removed from the text.
/// - Account ids are compared without regard to ASCII case ([`same_accid`]), and the robot of
///   the result is its lowercase accid, the one NIM knows.
/// - Notifications and tips are ignored; other non-text messages are addressed with
///   [`Content::NonText`] so the bot can say it reads text only.
pub fn classify(copy: &MessageCopy, robots: &[KnownRobot]) -> Result<Addressed, Ignored> {
    let is_robot = |accid: &str| robots.iter().any(|r| same_accid(&r.accid, accid));
    if is_robot(&copy.from_account) {
        return Err(match copy.from_client_type {
            Some(ClientType::Rest) => Ignored::OwnReply,
            _ => Ignored::FromRobot,
        });
    }
    let team_kind = match &copy.conv_type {
        ConvType::Person => None,
        ConvType::Team => Some(TeamKind::Advanced),
        ConvType::SuperTeam => Some(TeamKind::Super),
        other => return Err(Ignored::UnsupportedConversation(other.clone())),
    };
    let raw_text = match copy.msg_type {
        MsgType::Text => copy.text().unwrap_or_default(),
        _ => String::new(),
    };
    let (robot, text, by, place) = match team_kind {
        None => {
            let robot = robots.iter().find(|r| same_accid(&r.accid, &copy.to)).ok_or(Ignored::NotToRobot)?;
            (robot, raw_text.trim().to_owned(), AddressedBy::Direct, Place::OneToOne)
        }
        Some(kind) => {
            let place = Place::Team { team_id: copy.to.clone(), kind };
            let mentions = copy.mentions();
            let by_ext = robots.iter().find_map(|r| {
                let m = mentions.iter().find(|m| same_accid(&m.accid, &r.accid) && is_live(m))?;
                Some((r, m))
            });
            match by_ext {
                Some((robot, mention)) => {
                    let text = strip_ext_mention(&raw_text, mention, robot.nickname.as_deref());
                    (robot, text, AddressedBy::ExtMention, place)
                }
                None => {
                    let robot = robots
                        .iter()
                        .find(|r| r.nickname.as_deref().is_some_and(|n| find_at_nickname(&raw_text, n).is_some()))
                        .ok_or(Ignored::NoMention)?;
                    let nick = robot.nickname.as_deref().unwrap_or_default();
                    let text = remove_at_nickname(&raw_text, nick);
                    (robot, text, AddressedBy::Nickname, place)
                }
            }
        }
    };
    let content = match &copy.msg_type {
        MsgType::Text => Content::Text,
        t @ (MsgType::Notification | MsgType::Tips) => return Err(Ignored::SystemMessage(t.clone())),
        t => Content::NonText(t.clone()),
    };
    let msg_id_server = copy.msgid_server.clone().filter(|s| !s.trim().is_empty()).ok_or(Ignored::NoServerId)?;
    Ok(Addressed {
        robot: robot.accid.to_ascii_lowercase(),
        sender: copy.from_account.clone(),
        sender_nick: copy.from_nick.clone(),
        place,
        msg_id_server,
        msg_id_client: copy.msgid_client.clone(),
        text,
        content,
        by,
        sent_ms: copy.msg_timestamp,
        resent: copy.is_resend(),
    })
}

/// Whether two account ids name the same NIM account. NIM lowercases an `account_id` when it
/// creates the account (CONFIRMED: doc.yunxin.163.com/messaging2/server-apis/TQyNjgyMzc, "会对
/// account_id 参数做小写转换"), so ids that differ only in ASCII case are one account: a robot
/// listed as `MyBot` is the `mybot` that copies name.
fn same_accid(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A mention counts unless every one of its segments is marked broken (the user edited the
/// `@name` text, so the UIKit no longer shows it as a mention; UNCONFIRMED reading of the flag).
fn is_live(m: &Mention) -> bool {
    m.segments.is_empty() || m.segments.iter().any(|s| !s.broken)
}

/// Byte offsets of UTF-16 offsets `start` and `end` (exclusive) in `text`, when both fall on
/// character boundaries.
fn utf16_range(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let (mut from, mut to) = (None, None);
    let mut units = 0usize;
    for (byte, c) in text.char_indices().chain(std::iter::once((text.len(), '\0'))) {
        if units == start {
            from = Some(byte);
        }
        if units == end {
            to = Some(byte);
            break;
        }
        units += c.len_utf16();
    }
    from.zip(to).filter(|(f, t)| f <= t)
}

/// Removes the robot's mention: each live segment whose text is the mention (`end` read as
/// inclusive, then as exclusive), else the mention's text where it first occurs, else
/// `@<nickname>`. The result is trimmed.
fn strip_ext_mention(text: &str, mention: &Mention, nickname: Option<&str>) -> String {
    let is_the_mention = |s: &str| match &mention.text {
        Some(t) => s.trim_end() == t.trim_end(),
        None => s.starts_with('@'),
    };
    let mut ranges: Vec<(usize, usize)> = mention
        .segments
        .iter()
        .filter(|s| !s.broken)
        .filter_map(|s| {
            [s.end.checked_add(1), Some(s.end)]
                .into_iter()
                .flatten()
                .filter_map(|end| utf16_range(text, s.start, end))
                .find(|(f, t)| f < t && is_the_mention(&text[*f..*t]))
        })
        .collect();
    if !ranges.is_empty() {
        ranges.sort_unstable();
        ranges.dedup();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (f, t) in ranges {
            if f >= at {
                out.push_str(&text[at..f]);
                at = t;
            }
        }
        out.push_str(&text[at..]);
        return out.trim().to_owned();
    }
    if let Some(t) = mention.text.as_deref().filter(|t| !t.is_empty())
        && let Some(i) = text.find(t)
    {
        return format!("{}{}", &text[..i], &text[i + t.len()..]).trim().to_owned();
    }
    match nickname {
        Some(n) => remove_at_nickname(text, n),
        None => text.trim().to_owned(),
    }
}

/// The byte offset of the first `@<nickname>` in `text` that is not the start of a longer
/// ASCII word (`@Bot` is not in `@Bottle`; CJK names need no space after them).
fn find_at_nickname(text: &str, nickname: &str) -> Option<usize> {
    if nickname.is_empty() {
        return None;
    }
    let needle = format!("@{nickname}");
    let ends_in_word = nickname.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    let mut from = 0;
    while let Some(i) = text[from..].find(&needle).map(|i| i + from) {
        let after = text[i + needle.len()..].chars().next();
        if !(ends_in_word && after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return Some(i);
        }
        from = i + needle.len();
    }
    None
}

fn remove_at_nickname(text: &str, nickname: &str) -> String {
    match find_at_nickname(text, nickname) {
        Some(i) => format!("{}{}", &text[..i], &text[i + 1 + nickname.len()..]).trim().to_owned(),
        None => text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nim::checksum::copy_checksum;

    const KEY: &str = "appkey-0001";
    const SECRET: &str = "c0d4e5f6a7b8";
    const NOW_MS: u64 = 1_700_000_000_000;

    fn secret() -> SecretString {
        SecretString::new(SECRET)
    }

    /// Headers as NIM would sign `body` at `cur_time`.
    fn signed(body: &[u8], cur_time: &str) -> (String, String, String) {
        let md5 = body_md5(body);
        let sum = copy_checksum(SECRET, &md5, cur_time);
        (cur_time.to_owned(), md5, sum)
    }

    fn check(body: &[u8], h: &CopyHeaders<'_>) -> Result<Verified, Rejection> {
        verify(h, body, KEY, &secret(), NOW_MS, &IntakeLimits::default())
    }

    #[test]
    fn when_console_probe_is_signed_like_the_doc_example_should_accept_as_probe() {
        // The doc's example: body {}, CurTime 1608110108512, MD5 99914b…; CheckSum from §5.
        let h = CopyHeaders {
            app_key: Some(KEY),
            cur_time: Some("1608110108512"),
            md5: Some("99914b932bd37a50b983c5e7c90ae93b"),
            checksum: Some("db0ecff2b7b3fb1a7a2598e5441d9af2ee092b1c"),
        };
        let r = verify(&h, b"{}", KEY, &secret(), 1_608_110_108_512 + 1000, &IntakeLimits::default());
        assert_eq!(r, Ok(Verified::ConsoleProbe));
        assert!(is_console_probe(b" { }\n") && !is_console_probe(b"{\"eventType\":\"1\"}"));
    }

    #[test]
    fn when_copy_is_signed_and_fresh_should_accept_headers_in_any_case() {
        let body = br#"{"eventType":"1"}"#;
        let (t, md5, sum) = signed(body, "1700000004000");
        let upper = sum.to_ascii_uppercase();
        let pairs = [("appkey", KEY), ("CURTIME", t.as_str()), ("Md5", md5.as_str()), ("checksum", upper.as_str())];
        assert_eq!(check(body, &CopyHeaders::from_pairs(pairs)), Ok(Verified::Copy));
        let mut map = lambda_http::http::HeaderMap::new();
        for (k, v) in [("AppKey", KEY), ("CurTime", &t), ("MD5", &md5), ("CheckSum", &sum)] {
            if let (Ok(k), Ok(v)) =
                (lambda_http::http::HeaderName::from_bytes(k.as_bytes()), lambda_http::http::HeaderValue::from_str(v))
            {
                map.insert(k, v);
            }
        }
        assert_eq!(check(body, &CopyHeaders::from_http(&map)), Ok(Verified::Copy));
    }

    #[test]
    fn when_cur_time_is_in_seconds_should_still_check_freshness() {
        let body = b"{}";
        let (t, md5, sum) = signed(body, "1700000010");
        let h = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
        assert_eq!(check(body, &h), Ok(Verified::ConsoleProbe));
        let (t, md5, sum) = signed(body, "1699999000");
        let h = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
        assert_eq!(check(body, &h), Err(Rejection::Stale { skew_ms: 1_000_000 }));
    }

    #[test]
    fn when_copy_is_wrong_missing_stale_future_or_large_should_reject() {
        let body = br#"{"eventType":"1","msgType":"TEXT"}"#;
        let (t, md5, sum) = signed(body, "1700000000000");
        let good = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
        assert_eq!(check(body, &good), Ok(Verified::Copy));

        assert_eq!(check(body, &CopyHeaders { md5: None, ..good }), Err(Rejection::MissingHeader("MD5")));
        assert_eq!(check(body, &CopyHeaders { checksum: None, ..good }), Err(Rejection::MissingHeader("CheckSum")));
        assert_eq!(check(body, &CopyHeaders { app_key: None, ..good }), Err(Rejection::MissingHeader("AppKey")));
        assert_eq!(check(body, &CopyHeaders { cur_time: None, ..good }), Err(Rejection::MissingHeader("CurTime")));
        assert_eq!(check(body, &CopyHeaders { app_key: Some("other"), ..good }), Err(Rejection::WrongAppKey));
        assert_eq!(check(body, &CopyHeaders { cur_time: Some("soon"), ..good }), Err(Rejection::BadTime));
        assert_eq!(check(body, &CopyHeaders { cur_time: Some("-5"), ..good }), Err(Rejection::BadTime));
        assert_eq!(
            check(body, &CopyHeaders { cur_time: Some("99999999999999999999999"), ..good }),
            Err(Rejection::BadTime)
        );

        // A body changed in transit: the MD5 no longer matches.
        let tampered = br#"{"eventType":"1","msgType":"TEXT "}"#;
        assert_eq!(check(tampered, &good), Err(Rejection::Md5Mismatch));
        // A body and MD5 both changed, without the secret: the CheckSum no longer matches.
        let md5_t = body_md5(tampered);
        assert_eq!(check(tampered, &CopyHeaders { md5: Some(&md5_t), ..good }), Err(Rejection::ChecksumMismatch));
        // The right body signed with another secret.
        let other = copy_checksum("not-the-secret", &md5, &t);
        assert_eq!(check(body, &CopyHeaders { checksum: Some(&other), ..good }), Err(Rejection::ChecksumMismatch));
        // A CurTime replaced on a replay: the CheckSum covers it.
        assert_eq!(
            check(body, &CopyHeaders { cur_time: Some("1700000000001"), ..good }),
            Err(Rejection::ChecksumMismatch)
        );

        for (time, skew_ms) in [("1699999600000", 400_000), ("1700000400000", -400_000)] {
            let (t, md5, sum) = signed(body, time);
            let h = CopyHeaders { app_key: Some(KEY), cur_time: Some(&t), md5: Some(&md5), checksum: Some(&sum) };
            assert_eq!(check(body, &h), Err(Rejection::Stale { skew_ms }));
        }

        let limits = IntakeLimits { max_body_bytes: 10, ..IntakeLimits::default() };
        assert_eq!(verify(&good, body, KEY, &secret(), NOW_MS, &limits), Err(Rejection::TooLarge { max: 10 }));
        let text = Rejection::ChecksumMismatch.to_string() + &Rejection::WrongAppKey.to_string();
        assert!(!text.contains(SECRET) && !text.contains(KEY), "{text}");
    }

    // --- parsing

    const TEAM_COPY: &str = r#"{"eventType":"1","convType":"TEAM","to":"2837465","fromAccount":"alice","fromClientType":"IOS",
 "fromNick":"Alice","msgTimestamp":"1700000000000","msgType":"TEXT","body":"@MyBot what is X?",
 "msgidClient":"3f2c9a","msgidServer":"1234567890123","resendFlag":"0",
 "ext":"{\"yxAitMsg\":{\"mybot\":{\"text\":\"@MyBot\",\"segments\":[{\"start\":0,\"end\":5,\"broken\":false}]}}}"}"#;

    fn message(json: &str) -> MessageCopy {
        match parse_copy(json.as_bytes()) {
            Ok(CopyEvent::Message(m)) => *m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn robots() -> Vec<KnownRobot> {
        vec![
            KnownRobot { accid: "mybot".into(), nickname: Some("MyBot".into()) },
            KnownRobot { accid: "helper".into(), nickname: Some("小助手".into()) },
        ]
    }

    #[test]
    fn doc_example_parses_with_strings_for_numbers() {
        let m = message(TEAM_COPY);
        assert_eq!(m.conv_type, ConvType::Team);
        assert_eq!(m.msg_type, MsgType::Text);
        assert_eq!(m.from_client_type, Some(ClientType::Ios));
        assert_eq!(m.msg_timestamp, Some(1_700_000_000_000));
        assert_eq!(m.msgid_server.as_deref(), Some("1234567890123"));
        assert!(!m.is_resend());
        assert_eq!(m.text().as_deref(), Some("@MyBot what is X?"));
        let mentions = m.mentions();
        assert_eq!(mentions.len(), 1);
        assert_eq!(mentions[0].segments, [Segment { start: 0, end: 5, broken: false }]);
    }

    #[test]
    fn numbers_for_strings_unknown_fields_and_wrapped_bodies_are_accepted() {
        let m = message(
            r#"{"eventType":1,"convType":"PERSON","to":"mybot","fromAccount":"bob","msgType":"TEXT",
                "body":"{\"msg\":\"hi there\"}","msgidServer":987654321,"msgTimestamp":1700000000000,
                "resendFlag":1,"tMembers":["a","b"],"somethingNew":{"x":1}}"#,
        );
        assert_eq!(m.msgid_server.as_deref(), Some("987654321"));
        assert_eq!(m.text().as_deref(), Some("hi there"));
        assert!(m.is_resend());
        let m = message(
            r#"{"eventType":"1","convType":"PERSON","to":"mybot","fromAccount":"bob","msgType":"TEXT","body":{"msg":"obj"}}"#,
        );
        assert_eq!(m.text().as_deref(), Some("obj"));
        let m = message(
            r#"{"eventType":"1","convType":"PERSON","to":"mybot","fromAccount":"bob","msgType":"TEXT","body":"{not json"}"#,
        );
        assert_eq!(m.text().as_deref(), Some("{not json"));
    }

    #[test]
    fn other_events_and_the_probe_are_not_messages() {
        assert_eq!(parse_copy(b"{}"), Ok(CopyEvent::Other { event_type: None }));
        assert_eq!(
            parse_copy(br#"{"eventType":"2","accid":"a"}"#),
            Ok(CopyEvent::Other { event_type: Some("2".into()) })
        );
    }

    #[test]
    fn when_body_is_malformed_or_mistyped_should_give_a_clear_error_without_the_input() {
        assert_eq!(
            parse_copy(br#"{"eventType":"1","convType":"PERSON","to":"mybot","msgType":"TEXT"}"#),
            Err(CopyParseError::MissingField("fromAccount".into()))
        );
        let wrong = parse_copy(br#"{"eventType":"1","convType":"PERSON","to":"mybot","fromAccount":"b","msgType":"TEXT","msgTimestamp":"secret-ish"}"#);
        let text = wrong.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(text.starts_with("message copy body: wrong type or value"), "{text}");
        assert!(!text.contains("secret-ish"), "{text}");
        let wrong =
            parse_copy(br#"{"eventType":"1","convType":"PERSON","to":["x"],"fromAccount":"b","msgType":"TEXT"}"#);
        assert!(matches!(wrong, Err(CopyParseError::Json(_))), "{wrong:?}");
        for junk in [&b"not json"[..], b"", b"[]", b"null", b"{\"eventType\":true}", b"\xff\xfe"] {
            assert!(parse_copy(junk).is_err(), "{junk:?}");
        }
    }

    // --- classification

    fn person(from: &str, to: &str, msg_type: &str, client: &str) -> MessageCopy {
        message(&format!(
            r#"{{"eventType":"1","convType":"PERSON","to":"{to}","fromAccount":"{from}","fromClientType":"{client}",
                "msgType":"{msg_type}","body":"  hello  ","msgidServer":"42","msgTimestamp":"1700000000000"}}"#
        ))
    }

    fn team(body: &str, ext: Option<&str>) -> MessageCopy {
        let mut v = serde_json::json!({"eventType":"1","convType":"TEAM","to":"2837465","fromAccount":"alice",
            "fromNick":"Alice","msgType":"TEXT","body":body,"msgidServer":"77"});
        if let Some(ext) = ext {
            v["ext"] = Value::String(ext.to_owned());
        }
        message(&v.to_string())
    }

    #[test]
    fn one_to_one_to_a_robot_is_addressed_with_neutral_facts() {
        let a = classify(&person("bob", "mybot", "TEXT", "AOS"), &robots());
        assert_eq!(
            a,
            Ok(Addressed {
                robot: "mybot".into(),
                sender: "bob".into(),
                sender_nick: None,
                place: Place::OneToOne,
                msg_id_server: "42".into(),
                msg_id_client: None,
                text: "hello".into(),
                content: Content::Text,
                by: AddressedBy::Direct,
                sent_ms: Some(1_700_000_000_000),
                resent: false,
            })
        );
        assert_eq!(classify(&person("bob", "carol", "TEXT", "AOS"), &robots()), Err(Ignored::NotToRobot));
    }

    #[test]
    fn robot_senders_and_our_own_replies_are_ignored() {
        assert_eq!(classify(&person("mybot", "bob", "TEXT", "REST"), &robots()), Err(Ignored::OwnReply));
        assert_eq!(classify(&person("helper", "mybot", "TEXT", "WEB"), &robots()), Err(Ignored::FromRobot));
        assert_eq!(classify(&team("@MyBot hi", None), &[]), Err(Ignored::NoMention));
    }

    /// NIM lowercases account ids when it creates them (doc "注册 IM 账号": the server converts
    /// `account_id` to lowercase), so copies name `mybot` even where the robot was listed as
    /// `MyBot`; the robot answers as the accid NIM knows.
    #[test]
    fn robots_are_matched_without_regard_to_ascii_case_and_answer_as_the_lowercase_accid() {
        let listed = [KnownRobot { accid: "MyBot".into(), nickname: Some("Helper Bot".into()) }];
        let a = classify(&person("bob", "mybot", "TEXT", "AOS"), &listed);
        assert_eq!(a.map(|a| (a.robot, a.by)), Ok(("mybot".into(), AddressedBy::Direct)));
        let a = classify(&message(TEAM_COPY), &listed);
        assert_eq!(
            a.map(|a| (a.robot, a.text, a.by)),
            Ok(("mybot".into(), "what is X?".into(), AddressedBy::ExtMention))
        );
        assert_eq!(classify(&person("mybot", "bob", "TEXT", "REST"), &listed), Err(Ignored::OwnReply));
        let lower = [KnownRobot { accid: "mybot".into(), nickname: None }];
        let a = classify(&person("bob", "MYBOT", "TEXT", "AOS"), &lower);
        assert_eq!(a.map(|a| a.robot), Ok("mybot".into()));
    }

    #[test]
    fn non_text_is_addressed_but_flagged_and_system_messages_are_ignored() {
        let a = classify(&person("bob", "mybot", "PICTURE", "IOS"), &robots());
        assert_eq!(a.as_ref().map(|a| (&a.content, a.text.as_str())), Ok((&Content::NonText(MsgType::Picture), "")));
        let a = classify(&person("bob", "mybot", "SOMETHING_NEW", "IOS"), &robots());
        assert_eq!(a.map(|a| a.content), Ok(Content::NonText(MsgType::Other("SOMETHING_NEW".into()))));
        assert_eq!(
            classify(&person("bob", "mybot", "NOTIFICATION", "IOS"), &robots()),
            Err(Ignored::SystemMessage(MsgType::Notification))
        );
    }

    #[test]
    fn team_mention_in_ext_addresses_the_robot_and_is_removed_from_the_text() {
        let a = classify(&message(TEAM_COPY), &robots());
        let a = a.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.robot.as_str(), a.text.as_str(), a.by), ("mybot", "what is X?", AddressedBy::ExtMention));
        assert_eq!(a.place, Place::Team { team_id: "2837465".into(), kind: TeamKind::Advanced });
        assert_eq!(a.sender_nick.as_deref(), Some("Alice"));
    }

    #[test]
    fn team_mention_segments_count_utf16_and_keep_other_mentions() {
        // "😀 @bob @小助手 hi": the robot's mention starts at UTF-16 unit 8 (😀 is 2 units).
        let ext = r#"{"yxAitMsg":{"bob":{"text":"@bob","segments":[{"start":3,"end":6}]},
                     "helper":{"text":"@小助手","segments":[{"start":8,"end":11,"broken":false}]}}}"#;
        let a = classify(&team("😀 @bob @小助手 hi", Some(ext)), &robots());
        assert_eq!(a.map(|a| (a.robot, a.text)), Ok(("helper".into(), "😀 @bob  hi".into())));
        // An exclusive end is read too.
        let ext = r#"{"yxAitMsg":{"mybot":{"text":"@MyBot","segments":[{"start":0,"end":6}]}}}"#;
        assert_eq!(classify(&team("@MyBot go", Some(ext)), &robots()).map(|a| a.text), Ok("go".into()));
        // Segments that do not point at the mention: the mention's text is removed where found.
        let ext = r#"{"yxAitMsg":{"mybot":{"text":"@MyBot","segments":[{"start":40,"end":45}]}}}"#;
        assert_eq!(classify(&team("hey @MyBot go", Some(ext)), &robots()).map(|a| a.text), Ok("hey  go".into()));
    }

    #[test]
    fn team_mention_falls_back_to_the_nickname_and_ignores_the_rest() {
        let a = classify(&team("hey @MyBot, what now?", None), &robots());
        assert_eq!(
            a.map(|a| (a.robot, a.text, a.by)),
            Ok(("mybot".into(), "hey , what now?".into(), AddressedBy::Nickname))
        );
        let a = classify(&team("@小助手你好", None), &robots());
        assert_eq!(a.map(|a| (a.robot, a.text)), Ok(("helper".into(), "你好".into())));
        assert_eq!(classify(&team("@MyBottle is not the bot", None), &robots()), Err(Ignored::NoMention));
        assert_eq!(classify(&team("no mention here", None), &robots()), Err(Ignored::NoMention));
        // @everyone is not a robot mention; a mention of someone else neither.
        let ext =
            r#"{"yxAitMsg":{"ait_all":{"text":"@所有人","segments":[{"start":0,"end":3}]},"bob":{"text":"@bob"}}}"#;
        assert_eq!(classify(&team("@所有人 @bob hi", Some(ext)), &robots()), Err(Ignored::NoMention));
        // A mention whose every segment is broken no longer counts.
        let ext = r#"{"yxAitMsg":{"mybot":{"text":"@MyBot","segments":[{"start":0,"end":5,"broken":true}]}}}"#;
        assert_eq!(classify(&team("@MyBo go", Some(ext)), &robots()), Err(Ignored::NoMention));
        // A malformed extension is no extension.
        assert_eq!(classify(&team("hi", Some("{oops")), &robots()), Err(Ignored::NoMention));
    }

    #[test]
    fn other_conversations_and_missing_ids_are_ignored() {
        let mut m = person("bob", "mybot", "TEXT", "IOS");
        m.conv_type = ConvType::CustomPerson;
        assert_eq!(classify(&m, &robots()), Err(Ignored::UnsupportedConversation(ConvType::CustomPerson)));
        let mut m = person("bob", "mybot", "TEXT", "IOS");
        m.msgid_server = None;
        assert_eq!(classify(&m, &robots()), Err(Ignored::NoServerId));
        let mut m = person("bob", "mybot", "TEXT", "IOS");
        m.conv_type = ConvType::SuperTeam;
        m.to = "55".into();
        m.ext = Some(serde_json::json!({"yxAitMsg": {"mybot": {"text": "@MyBot"}}}));
        let a = classify(&m, &robots());
        assert_eq!(a.map(|a| a.place), Ok(Place::Team { team_id: "55".into(), kind: TeamKind::Super }));
    }
}
