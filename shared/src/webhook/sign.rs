//! Webhook authentication: `Sign = hex(sha256(token ‖ RequestTime))`, plain SHA-256 and not an
//! HMAC (tencent-chat-protocol.md §2.1). Pure functions; the clock is an argument.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a webhook's signature was refused. The text is safe to log: it holds no secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("the Sign or RequestTime query parameter is missing")]
    Missing,
    #[error("RequestTime is not a unix time in seconds")]
    BadTime,
    #[error("RequestTime is {0} s away from now, outside the freshness window")]
    Stale(i64),
    #[error("Sign does not match")]
    Mismatch,
}

/// The lowercase hex SHA-256 of `token` followed by `request_time`.
pub fn compute_sign(token: &str, request_time: &str) -> String {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(request_time.as_bytes());
    hex::encode(h.finalize())
}

/// Checks a webhook's `Sign` and `RequestTime` against the token, the clock `now` (unix
/// seconds) and the allowed skew `window_secs` in either direction.
///
/// Tencent documents no freshness window; 60 s is what Tencent's own `timbot` uses.
pub fn verify_sign(
    token: &str,
    sign: Option<&str>,
    request_time: Option<&str>,
    now: i64,
    window_secs: i64,
) -> Result<(), SignError> {
    let (Some(sign), Some(time)) = (sign, request_time) else {
        return Err(SignError::Missing);
    };
    let t: i64 = time.trim().parse().map_err(|_| SignError::BadTime)?;
    let skew = now.saturating_sub(t);
    if skew.abs() > window_secs {
        return Err(SignError::Stale(skew));
    }
    let expected = compute_sign(token, time);
    if constant_time_eq(expected.as_bytes(), sign.trim().to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(SignError::Mismatch)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tencent's own example from the Webhook Overview page.
    const TOKEN: &str = "xxxxyyyy";
    const TIME: &str = "1669872112";
    const SIGN: &str = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061";

    #[test]
    fn sign_matches_official_example() {
        assert_eq!(compute_sign(TOKEN, TIME), SIGN);
    }

    #[test]
    fn when_signature_is_fresh_and_right_should_accept() {
        assert_eq!(verify_sign(TOKEN, Some(SIGN), Some(TIME), 1_669_872_150, 60), Ok(()));
        let upper = SIGN.to_ascii_uppercase();
        assert_eq!(verify_sign(TOKEN, Some(&upper), Some(TIME), 1_669_872_112, 60), Ok(()));
    }

    #[test]
    fn when_signature_is_wrong_missing_stale_or_future_should_reject() {
        let now = 1_669_872_112;
        assert_eq!(verify_sign("other", Some(SIGN), Some(TIME), now, 60), Err(SignError::Mismatch));
        assert_eq!(verify_sign(TOKEN, None, Some(TIME), now, 60), Err(SignError::Missing));
        assert_eq!(verify_sign(TOKEN, Some(SIGN), None, now, 60), Err(SignError::Missing));
        assert_eq!(verify_sign(TOKEN, Some(SIGN), Some("soon"), now, 60), Err(SignError::BadTime));
        assert_eq!(verify_sign(TOKEN, Some(SIGN), Some(TIME), now + 61, 60), Err(SignError::Stale(61)));
        assert_eq!(verify_sign(TOKEN, Some(SIGN), Some(TIME), now - 61, 60), Err(SignError::Stale(-61)));
        assert_eq!(verify_sign(TOKEN, Some(&SIGN[..10]), Some(TIME), now, 60), Err(SignError::Mismatch));
    }
}
