//! Request signing, exactly as each provider documents it. Pure: strings in, strings out.
//!
//! | provider | scheme | key | carried as |
//! | --- | --- | --- | --- |
//! | Aliyun (Dysmsapi) | V3 `ACS3-HMAC-SHA256` | the AccessKey secret | `Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=<hex>` |
//! | Tencent Cloud (SMS 2021-01-11) | `TC3-HMAC-SHA256` | `TC3` + SecretKey, derived through date, service, `tc3_request` | `Authorization: TC3-HMAC-SHA256 Credential=…/date/sms/tc3_request, SignedHeaders=…, Signature=<hex>` |
//!
//! Aliyun's V3 rather than its older RPC signature: V3 is HMAC-SHA256, which the hub already
//! has (the RPC one needs SHA-1, a dependency for this alone). Both canonical requests hash
//! the body, sort what they sign and are lower-case hex throughout.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Aliyun's V3 algorithm name, first in its string to sign and its `Authorization`.
pub const ACS3: &str = "ACS3-HMAC-SHA256";
/// Tencent Cloud's algorithm name.
pub const TC3: &str = "TC3-HMAC-SHA256";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex, as both providers write hashes and signatures.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// RFC 3986 percent-encoding as Aliyun specifies it: everything but `A-Z a-z 0-9 - _ . ~`
/// encoded as upper-case `%XY` of its UTF-8 bytes (so a space is `%20`, never `+`, and `*`
/// is `%2A`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Aliyun's canonical query string: every parameter's name and value percent-encoded, sorted
/// by encoded name, `name=value` joined by `&`. Also the query the request is sent with, so
/// what is signed is byte for byte what the server reads.
pub fn aliyun_canonical_query(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What an Aliyun V3 signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliyunRequest<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The canonical query ([`aliyun_canonical_query`]).
    pub query: &'a str,
    /// Signed headers, names in lower case (`host` and every `x-acs-*`, `x-acs-content-sha256`
    /// included); any order, they are sorted here.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body's exact bytes (empty for an RPC call whose parameters are in the query).
    pub body: &'a [u8],
}

/// Aliyun V3: the canonical request (method, URI `/`, query, `name:value\n` per header,
/// the `;`-joined names, the body's hash), its hash after `ACS3-HMAC-SHA256\n`, HMAC-SHA256
/// with the secret, hex. Returns `(signed_headers, signature)`.
pub fn aliyun_v3_signature(req: &AliyunRequest<'_>, secret: &str) -> (String, String) {
    let mut headers: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n/\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        req.query,
        sha256_hex(req.body)
    );
    let string_to_sign = format!("{ACS3}\n{}", sha256_hex(canonical_request.as_bytes()));
    let signature = hex(&hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()));
    (signed_headers, signature)
}

/// The `Authorization` header of an Aliyun V3 request.
pub fn aliyun_authorization(key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ACS3} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// What a Tencent Cloud TC3 signature covers. The hub signs `content-type` and `host` only,
/// the minimum the documentation allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TencentRequest<'a> {
    /// `host` as sent (`sms.tencentcloudapi.com`, or the test server's `127.0.0.1:port`).
    pub host: &'a str,
    /// `content-type` as sent.
    pub content_type: &'a str,
    /// The JSON body's exact bytes.
    pub body: &'a [u8],
    /// `X-TC-Timestamp`, seconds since the epoch; its UTC date is in the credential scope.
    pub timestamp: i64,
    /// The service name in the scope: `sms`.
    pub service: &'a str,
}

/// The UTC date (`YYYY-MM-DD`) of `timestamp` seconds.
pub fn utc_date(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Tencent TC3: canonical request (`POST`, `/`, empty query, the two headers, their names,
/// the body's hash), string to sign (algorithm, timestamp, `date/service/tc3_request`, the
/// request's hash), key derived `TC3`+key → date → service → `tc3_request`, hex HMAC.
/// Returns `(credential_scope, signature)`.
pub fn tencent_tc3_signature(req: &TencentRequest<'_>, secret_key: &str) -> (String, String) {
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        req.content_type,
        req.host,
        sha256_hex(req.body)
    );
    let date = utc_date(req.timestamp);
    let scope = format!("{date}/{}/tc3_request", req.service);
    let string_to_sign = format!(
        "{TC3}\n{}\n{scope}\n{}",
        req.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, req.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    (scope, signature)
}

/// The `Authorization` header of a Tencent Cloud request.
pub fn tencent_authorization(secret_id: &str, scope: &str, signature: &str) -> String {
    format!(
        "{TC3} Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values were computed outside this code, with Python's hmac, hashlib and
    // urllib.parse.quote(safe="-_.~") following each provider's documented steps, so a change
    // in the construction fails here.

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn aliyun_query_is_rfc3986_encoded_and_sorted() {
        let q = aliyun_canonical_query(&[
            ("TemplateParam", r#"{"case":"C-1 x*y"}"#),
            ("SignName", "武定网格"),
            ("PhoneNumbers", "13800000001"),
            ("TemplateCode", "SMS_123456789"),
        ]);
        assert_eq!(
            q,
            "PhoneNumbers=13800000001&SignName=%E6%AD%A6%E5%AE%9A%E7%BD%91%E6%A0%BC\
             &TemplateCode=SMS_123456789&TemplateParam=%7B%22case%22%3A%22C-1%20x%2Ay%22%7D"
        );
    }

    #[test]
    fn aliyun_v3_signature_matches_a_known_vector() {
        let q = aliyun_canonical_query(&[
            ("PhoneNumbers", "13800000001"),
            ("SignName", "武定网格"),
            ("TemplateCode", "SMS_123456789"),
            ("TemplateParam", r#"{"case":"C-1 x*y"}"#),
        ]);
        let req = AliyunRequest {
            method: "POST",
            query: &q,
            headers: &[
                ("x-acs-version", "2017-05-25"),
                ("host", "dysmsapi.aliyuncs.com"),
                ("x-acs-action", "SendSms"),
                ("x-acs-date", "2026-12-07T08:00:00Z"),
                ("x-acs-signature-nonce", "0123456789abcdef"),
                ("x-acs-content-sha256", EMPTY_SHA256),
            ],
            body: b"",
        };
        let (signed, signature) = aliyun_v3_signature(&req, "aliyun-test-secret");
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            signature,
            "a28f6219a15cac993c78c33261effc72c7cd145761aed9b2e1cfa69283c35f45"
        );
        let (_, other) = aliyun_v3_signature(&req, "aliyun-test-secreT");
        assert_ne!(other, signature, "the secret is in the signature");
    }

    #[test]
    fn tencent_tc3_signature_matches_a_known_vector() {
        let body = r#"{"PhoneNumberSet":["+8613800000001"],"SmsSdkAppId":"1400000001","SignName":"武定网格","TemplateId":"1234567","TemplateParamSet":["C-1"]}"#;
        let req = TencentRequest {
            host: "sms.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            body: body.as_bytes(),
            timestamp: 1_765_094_400,
            service: "sms",
        };
        let (scope, signature) = tencent_tc3_signature(&req, "tencent-test-key");
        assert_eq!(scope, "2025-12-07/sms/tc3_request");
        assert_eq!(
            signature,
            "3359f815246328bdef5e12c5effa64d1c9afeba47c0b0f38a6814e092d7d4e10"
        );
        assert_eq!(
            tencent_authorization("AKIDtest", &scope, &signature),
            "TC3-HMAC-SHA256 Credential=AKIDtest/2025-12-07/sms/tc3_request, \
             SignedHeaders=content-type;host, Signature=3359f815246328bdef5e12c5effa64d1c9afeba47c0b0f38a6814e092d7d4e10"
        );
    }

    #[test]
    fn utc_dates_cross_day_and_leap_boundaries() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_765_065_599), "2025-12-06");
        assert_eq!(utc_date(1_765_065_600), "2025-12-07");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
