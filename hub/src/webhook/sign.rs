//! The signatures, exactly as each service documents them. All HMAC-SHA256; they differ in
//! what is key and what is message, and in how the result is carried:
//!
//! | kind | key | message | carried as |
//! | --- | --- | --- | --- |
//! | DingTalk 加签 | secret | `"{timestamp_ms}\n{secret}"` | `&timestamp=…&sign=` + urlencode(base64) on the URL |
//! | Feishu 签名校验 | `"{timestamp_s}\n{secret}"` | empty | `"timestamp"` (string) and `"sign"` (base64) in the body |
//! | generic | secret | the body's exact bytes | `X-Signature: sha256=<lower-case hex>` |
//!
//! Feishu's "key = the string to sign, message = empty" looks backwards but is what its
//! reference code does (`hmac.new(string_to_sign, digestmod=sha256)`), and what its servers
//! check.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Header name of the `generic` kind's signature.
pub const SIGNATURE_HEADER: &str = "X-Signature";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// DingTalk's `sign` for `timestamp_ms` (ms since the epoch), base64 but not yet URL-encoded.
pub fn dingtalk_sign(timestamp_ms: i64, secret: &str) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    STANDARD.encode(hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// The query DingTalk wants appended to the webhook URL: `timestamp=…&sign=…`, the sign
/// percent-encoded (base64's `+`, `/`, `=` are not safe in a query).
pub fn dingtalk_query(timestamp_ms: i64, secret: &str) -> String {
    format!(
        "timestamp={timestamp_ms}&sign={}",
        percent_encode(&dingtalk_sign(timestamp_ms, secret))
    )
}

/// Feishu's `sign` for `timestamp_s` (seconds since the epoch), base64.
pub fn feishu_sign(timestamp_s: i64, secret: &str) -> String {
    let string_to_sign = format!("{timestamp_s}\n{secret}");
    STANDARD.encode(hmac_sha256(string_to_sign.as_bytes(), b""))
}

/// The `generic` kind's `X-Signature` value for `body`: `sha256=` and the lower-case hex HMAC.
pub fn generic_signature(secret: &str, body: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in hmac_sha256(secret.as_bytes(), body) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Percent-encodes everything but RFC 3986's unreserved characters, as Java's `URLEncoder`
/// and Python's `quote_plus` (DingTalk's reference code) do for base64 text.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)].to_ascii_uppercase()));
            out.push(char::from(HEX[usize::from(b & 0xf)].to_ascii_uppercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The literal values below were computed outside this code (Python's hmac, hashlib,
    // base64 and urllib.parse.quote_plus), so a change in the algorithm fails here.

    #[test]
    fn dingtalk_sign_matches_a_known_vector() {
        assert_eq!(
            dingtalk_sign(1_700_000_000_000, "SEC0123456789abcdef"),
            "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="
        );
    }

    #[test]
    fn dingtalk_query_percent_encodes_plus_slash_and_equals() {
        assert_eq!(
            dingtalk_query(1_700_000_000_002, "SEC0123456789abcdef"),
            "timestamp=1700000000002&sign=VGvd0brDJp%2FnMZtR%2BXnA3yBIlhowT%2BTwkRPua0q1%2Fjg%3D"
        );
    }

    #[test]
    fn feishu_sign_matches_a_known_vector() {
        assert_eq!(
            feishu_sign(1_700_000_000, "feishu-secret"),
            "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
        );
    }

    #[test]
    fn generic_signature_matches_a_known_vector() {
        assert_eq!(
            generic_signature("generic-secret", br#"{"hello":"world"}"#),
            "sha256=9858e8fea916b4f991c984891b199af820f78dd387b5c596a48934a46b5d279a"
        );
    }

    #[test]
    fn the_hmac_is_the_rustcrypto_readme_vector() {
        // Pins the primitive itself, independent of our string building.
        let mac = hmac_sha256(b"my secret and secure key", b"input message");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "97d2a569059bbcd8ead4444ff99071f4c01d005bcefe0d3567e1be628e5fdcd9"
        );
    }

    #[test]
    fn signatures_agree_with_a_direct_hmac_computation() {
        // The same construction spelt out with the hmac crate, for other inputs.
        let secret = "SECxyz";
        let ts = 1_234_567_890_123_i64;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}\n{secret}").as_bytes());
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(dingtalk_sign(ts, secret), expected);

        let key = format!("{}\n{secret}", ts / 1000);
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(feishu_sign(ts / 1000, secret), expected);
    }

    #[test]
    fn percent_encoding_leaves_unreserved_characters_alone() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode("a+b/c= d"), "a%2Bb%2Fc%3D%20d");
    }
}
