//! UserSig (TLSSigAPIv2): the credential every Tencent REST call carries in its URL.
//!
//! The algorithm is the one all five official implementations agree on
//! (see `tencent-chat-protocol.md` §1): an HMAC-SHA256 over four fixed lines, a small JSON
//! document, zlib, then base64 with `+/=` swapped for `*-_`. Generation and verification are
//! pure functions of their inputs, `now` included, so they can be tested with known answers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{Read, Write};

/// Why a UserSig did not verify. Mirrors the error values of Tencent's Go reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserSigError {
    #[error("the UserSig is not valid base64url-with-Tencent-alphabet or not zlib data")]
    Malformed,
    #[error("the UserSig document is not the expected JSON: {0}")]
    BadDocument(String),
    #[error("the UserSig was issued for another SDKAppID")]
    SdkAppIdMismatch,
    #[error("the UserSig was issued for another identifier")]
    IdentifierMismatch,
    #[error("the UserSig expired")]
    Expired,
    #[error("the UserSig signature does not match")]
    SignatureMismatch,
}

/// The decoded JSON document inside a UserSig. Field names are Tencent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSigDoc {
    #[serde(rename = "TLS.ver")]
    pub ver: String,
    #[serde(rename = "TLS.identifier")]
    pub identifier: String,
    #[serde(rename = "TLS.sdkappid")]
    pub sdkappid: u64,
    #[serde(rename = "TLS.time")]
    pub time: u64,
    #[serde(rename = "TLS.expire")]
    pub expire: u64,
    #[serde(rename = "TLS.sig")]
    pub sig: String,
}

/// The base64 string of HMAC-SHA256(key, content) over the four TLS lines.
pub fn hmac_sig(sdkappid: u64, key: &[u8], identifier: &str, time: u64, expire: u64) -> String {
    let content =
        format!("TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n");
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(content.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Generates a UserSig for `identifier`, valid for `expire` seconds from `now`.
pub fn generate(sdkappid: u64, key: &[u8], identifier: &str, expire: u64, now: u64) -> String {
    let doc = UserSigDoc {
        ver: "2.0".to_owned(),
        identifier: identifier.to_owned(),
        sdkappid,
        time: now,
        expire,
        sig: hmac_sig(sdkappid, key, identifier, now, expire),
    };
    // Serialising a struct of strings and integers cannot fail.
    let json = serde_json::to_vec(&doc).unwrap_or_default();
    let mut enc = ZlibEncoder::new(Vec::with_capacity(json.len()), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(&json);
    let compressed = enc.finish().unwrap_or_default();
    to_tencent_alphabet(&STANDARD.encode(compressed))
}

/// Decodes a UserSig into its JSON document without checking it.
pub fn decode(usersig: &str) -> Result<UserSigDoc, UserSigError> {
    let b64 = from_tencent_alphabet(usersig);
    let compressed = STANDARD.decode(b64).map_err(|_| UserSigError::Malformed)?;
    let mut json = Vec::new();
    // A UserSig is a few hundred bytes; cap what a hostile input can inflate to.
    ZlibDecoder::new(compressed.as_slice())
        .take(64 * 1024)
        .read_to_end(&mut json)
        .map_err(|_| UserSigError::Malformed)?;
    serde_json::from_slice(&json).map_err(|e| UserSigError::BadDocument(e.to_string()))
}

/// Verifies a UserSig as Tencent's server does: app, identifier, expiry, then the HMAC
/// recomputed from the decoded time and expiry, compared in constant time.
pub fn verify(
    sdkappid: u64,
    key: &[u8],
    identifier: &str,
    usersig: &str,
    now: u64,
) -> Result<UserSigDoc, UserSigError> {
    let doc = decode(usersig)?;
    if doc.sdkappid != sdkappid {
        return Err(UserSigError::SdkAppIdMismatch);
    }
    if doc.identifier != identifier {
        return Err(UserSigError::IdentifierMismatch);
    }
    if now > doc.time.saturating_add(doc.expire) {
        return Err(UserSigError::Expired);
    }
    let expected = hmac_sig(sdkappid, key, identifier, doc.time, doc.expire);
    if !crate::webhook::sign::constant_time_eq(expected.as_bytes(), doc.sig.as_bytes()) {
        return Err(UserSigError::SignatureMismatch);
    }
    Ok(doc)
}

fn to_tencent_alphabet(b64: &str) -> String {
    b64.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            other => other,
        })
        .collect()
}

fn from_tencent_alphabet(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector from tencent-chat-protocol.md §1.3, computed with Tencent's node and python code.
    const APPID: u64 = 1_400_000_000;
    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    const NODE_SIG: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwokpuZl5mcUlRYkl*UVQBcUp2YkFBZkpSlaGJgZQAJEpycxNVbIyNEcVTa0oyCxKVbKyMDOBCRVnpitZKVX6OKZql5uHh6aGlhYmhVlm6IdEmFuUGhnmh7hnamdaRhUYlhoHFORFmhnYKtUCAK0SM5I_";

    #[test]
    fn hmac_matches_known_answer() {
        assert_eq!(
            hmac_sig(APPID, KEY.as_bytes(), "administrator", 1_700_000_000, 86_400),
            "yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60="
        );
    }

    #[test]
    fn generated_sig_decodes_to_reference_document() {
        let ours = generate(APPID, KEY.as_bytes(), "administrator", 86_400, 1_700_000_000);
        assert_eq!(decode(&ours), decode(NODE_SIG));
        assert!(!ours.contains(['+', '/', '=']));
    }

    #[test]
    fn when_reference_sig_is_fresh_should_verify() {
        let doc = verify(APPID, KEY.as_bytes(), "administrator", NODE_SIG, 1_700_000_100);
        assert_eq!(doc.map(|d| d.expire), Ok(86_400));
    }

    #[test]
    fn when_sig_expired_or_forged_should_reject() {
        let key = KEY.as_bytes();
        let sig = NODE_SIG;
        assert_eq!(verify(APPID, key, "administrator", sig, 1_700_086_401), Err(UserSigError::Expired));
        assert_eq!(verify(APPID + 1, key, "administrator", sig, 1_700_000_000), Err(UserSigError::SdkAppIdMismatch));
        assert_eq!(verify(APPID, key, "bob", sig, 1_700_000_000), Err(UserSigError::IdentifierMismatch));
        assert_eq!(
            verify(APPID, b"other key", "administrator", sig, 1_700_000_000),
            Err(UserSigError::SignatureMismatch)
        );
        assert_eq!(verify(APPID, key, "administrator", "not a sig!", 1_700_000_000), Err(UserSigError::Malformed));
    }
}
