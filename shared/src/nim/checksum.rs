//! NIM's two checksums (nim-protocol.md §1, §3), as pure functions compared in constant time.
//!
//! - REST calls: `CheckSum = hex(sha1(AppSecret ‖ Nonce ‖ CurTime))`, `CurTime` in seconds
//!   (CONFIRMED by the official SDKs' checksum builders).
//! - Message copy: `MD5 = hex(md5(raw body))`, `CheckSum = hex(sha1(AppSecret ‖ MD5 ‖ CurTime))`,
//!   `CurTime` in milliseconds (the MD5 is CONFIRMED by the doc's example; the CheckSum formula is
//!   UNCONFIRMED, consistent across third-party handlers).
//!
//! SHA-1 and MD5 are NetEase's choice, not ours: they authenticate a shared secret, not a
//! signature we could strengthen.

use crate::webhook::sign::constant_time_eq;
use md5::Md5;
use sha1::{Digest, Sha1};

/// The lowercase hex SHA-1 of the concatenated parts.
fn sha1_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The `CheckSum` header of a REST call: lowercase hex `sha1(app_secret ‖ nonce ‖ cur_time)`,
/// `cur_time` being the decimal Unix seconds sent in `CurTime`.
pub fn rest_checksum(app_secret: &str, nonce: &str, cur_time: &str) -> String {
    sha1_hex(&[app_secret.as_bytes(), nonce.as_bytes(), cur_time.as_bytes()])
}

/// The `MD5` header of a message copy: lowercase hex MD5 of the raw body bytes.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The `CheckSum` header of a message copy: lowercase hex `sha1(app_secret ‖ md5 ‖ cur_time)`,
/// `md5` being the `MD5` header and `cur_time` the `CurTime` header (milliseconds) as sent.
pub fn copy_checksum(app_secret: &str, md5: &str, cur_time: &str) -> String {
    sha1_hex(&[app_secret.as_bytes(), md5.as_bytes(), cur_time.as_bytes()])
}

/// Whether a hex digest received in a header equals the one computed here, in time that
/// depends only on the lengths. The received one is trimmed and compared without regard to
/// case: hex is hex.
pub fn hex_matches(expected: &str, received: &str) -> bool {
    constant_time_eq(expected.as_bytes(), received.trim().to_ascii_lowercase().as_bytes())
}

/// Whether a REST call's `CheckSum` is right for `nonce` and `cur_time` (what NIM checks; the
/// emulator uses it).
pub fn verify_rest_checksum(app_secret: &str, nonce: &str, cur_time: &str, checksum: &str) -> bool {
    hex_matches(&rest_checksum(app_secret, nonce, cur_time), checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from nim-protocol.md §5 (computed independently, not NetEase's own).
    const SECRET: &str = "c0d4e5f6a7b8";

    #[test]
    fn rest_checksum_matches_known_answer() {
        assert_eq!(rest_checksum(SECRET, "abc123", "1700000000"), "5eb41e5d9d24204c69a29f8538229af0b5c0e731");
    }

    #[test]
    fn copy_md5_and_checksum_match_known_answers() {
        let md5 = body_md5(b"{}");
        assert_eq!(md5, "99914b932bd37a50b983c5e7c90ae93b");
        assert_eq!(copy_checksum(SECRET, &md5, "1608110108512"), "db0ecff2b7b3fb1a7a2598e5441d9af2ee092b1c");
    }

    #[test]
    fn when_checksum_is_right_in_any_case_should_match() {
        let sum = "5eb41e5d9d24204c69a29f8538229af0b5c0e731";
        assert!(verify_rest_checksum(SECRET, "abc123", "1700000000", sum));
        assert!(verify_rest_checksum(SECRET, "abc123", "1700000000", &sum.to_ascii_uppercase()));
        assert!(verify_rest_checksum(SECRET, "abc123", "1700000000", &format!(" {sum}\n")));
    }

    #[test]
    fn when_any_input_differs_should_not_match() {
        let sum = "5eb41e5d9d24204c69a29f8538229af0b5c0e731";
        assert!(!verify_rest_checksum("other", "abc123", "1700000000", sum));
        assert!(!verify_rest_checksum(SECRET, "abc124", "1700000000", sum));
        assert!(!verify_rest_checksum(SECRET, "abc123", "1700000001", sum));
        assert!(!verify_rest_checksum(SECRET, "abc123", "1700000000", &sum[..39]));
        assert!(!verify_rest_checksum(SECRET, "abc123", "1700000000", ""));
        assert!(!hex_matches(&body_md5(b"{} "), "99914b932bd37a50b983c5e7c90ae93b"));
    }
}
