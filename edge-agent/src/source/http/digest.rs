//! HTTP authentication challenges and Digest answers (RFC 7616 / 2617, MD5 or SHA-256,
//! `qop=auth`): pure functions over header text, public for the fuzz targets (`fuzz/`).

use md5::Md5;
use sha2::{Digest, Sha256};

/// One challenge from a `WWW-Authenticate` header: the scheme (lower case) and its parameters
/// (names lower case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value, which may hold several comma-separated challenges
/// (`Digest realm="a", nonce="b", Basic realm="a"`). Lenient: what cannot be parsed is skipped.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let s = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let skip = |i: &mut usize, chars: &[u8]| {
        while *i < s.len() && chars.contains(&s[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < s.len() && !b" \t,=\"".contains(&s[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    while i < s.len() {
        skip(&mut i, b" \t,");
        let scheme = token(&mut i);
        if scheme.is_empty() {
            // A stray character: step over it so the loop always advances.
            i += 1;
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            skip(&mut i, b" \t,");
            let start = i;
            let name = token(&mut i);
            skip(&mut i, b" \t");
            if name.is_empty() || i >= s.len() || s[i] != b'=' {
                // Not `name=`: the next challenge's scheme (or the end).
                i = start;
                break;
            }
            i += 1;
            skip(&mut i, b" \t");
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                // Past the closing quote; an unterminated value ends the header, and stepping
                // past its end would make the next slice start beyond it (a panic).
                i = (i + 1).min(s.len());
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let start = i;
                while i < s.len() && !b" \t,".contains(&s[i]) {
                    i += 1;
                }
                // token68 (`Negotiate abc==`) ends in '='s; keep them with the value.
                String::from_utf8_lossy(&s[start..i]).into_owned()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
    out
}

/// A Digest hash algorithm (RFC 7616 §3.2). SHA-512-256 is not offered by cameras in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Preference when a camera offers several: SHA-256 first (RFC 7616 §3.7).
    pub(super) fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
        }
    }

    /// Lower-case hex of the hash of `data`.
    fn hex(self, data: &str) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => to_hex(&Md5::digest(data.as_bytes())),
            Self::Sha256 | Self::Sha256Sess => to_hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Digest challenge the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether the camera named the algorithm: RFC 2069-era cameras do not, and some reject an
    /// `algorithm` they did not send, so it is echoed only when given.
    pub algorithm_named: bool,
    /// `qop=auth` offered; without any `qop` the RFC 2069 response form is used.
    pub qop_auth: bool,
    /// RFC 7616 `userhash=true`: send `H(username:realm)` instead of the name.
    pub userhash: bool,
}

impl DigestChallenge {
    /// The challenge, or why it cannot be answered.
    pub fn from_challenge(c: &Challenge) -> Result<Self, String> {
        if c.scheme != "digest" {
            return Err(format!("not a Digest challenge ({})", c.scheme));
        }
        let nonce = c.param("nonce").ok_or("Digest challenge without a nonce")?;
        let (algorithm, algorithm_named) = match c.param("algorithm") {
            None => (Algorithm::Md5, false),
            Some(name) => (
                Algorithm::parse(name).ok_or_else(|| format!("Digest algorithm {name}"))?,
                true,
            ),
        };
        let qop_auth = match c.param("qop") {
            None => false,
            Some(list) => {
                if !list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                {
                    // auth-int would need the body hashed; cameras always offer auth too.
                    return Err(format!("Digest qop=\"{list}\" without auth"));
                }
                true
            }
        };
        Ok(Self {
            realm: c.param("realm").unwrap_or_default().to_string(),
            nonce: nonce.to_string(),
            opaque: c.param("opaque").map(str::to_string),
            algorithm,
            algorithm_named,
            qop_auth,
            userhash: c
                .param("userhash")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// The `Authorization` header value answering `ch` (RFC 7616 §3.4; RFC 2069 form without qop).
pub fn digest_authorization(
    ch: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = ch.algorithm;
    let mut ha1 = alg.hex(&format!("{username}:{}:{password}", ch.realm));
    if alg.is_sess() {
        ha1 = alg.hex(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = alg.hex(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = if ch.qop_auth {
        alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        alg.hex(&format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    let user = if ch.userhash {
        alg.hex(&format!("{username}:{}", ch.realm))
    } else {
        username.to_string()
    };
    let mut header = format!(
        "Digest username=\"{}\", realm=\"{}\", uri=\"{}\"",
        quote(&user),
        quote(&ch.realm),
        quote(uri)
    );
    if ch.algorithm_named {
        header.push_str(&format!(", algorithm={}", alg.name()));
    }
    header.push_str(&format!(", nonce=\"{}\"", quote(&ch.nonce)));
    if ch.qop_auth {
        header.push_str(&format!(
            ", nc={nc}, cnonce=\"{}\", qop=auth",
            quote(cnonce)
        ));
    }
    header.push_str(&format!(", response=\"{response}\""));
    if let Some(opaque) = &ch.opaque {
        header.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    if ch.userhash {
        header.push_str(", userhash=true");
    }
    header
}

/// Escapes a quoted-string's content.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The challenges, for error messages: `Digest (realm "x", SHA-256), Basic`.
pub(super) fn describe_offered(challenges: &[Challenge]) -> String {
    if challenges.is_empty() {
        return "nothing (no WWW-Authenticate header)".to_string();
    }
    challenges
        .iter()
        .map(|c| {
            let mut s = c.scheme.clone();
            if let Some(alg) = c.param("algorithm") {
                s.push_str(&format!(" {alg}"));
            }
            if let Some(qop) = c.param("qop") {
                s.push_str(&format!(" qop={qop}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    fn rfc7616(algorithm: &str) -> DigestChallenge {
        let header = format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
        let challenges = parse_challenges(&header);
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        DigestChallenge::from_challenge(&challenges[0]).unwrap()
    }

    #[test]
    fn digest_response_matches_the_rfc_7616_examples() {
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = digest_authorization(
            &rfc7616("SHA-256"),
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            cnonce,
        );
        assert!(
            sha.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{sha}"
        );
        let md5 = digest_authorization(
            &rfc7616("MD5"),
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            cnonce,
        );
        assert_eq!(
            md5,
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             uri=\"/dir/index.html\", algorithm=MD5, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
    }

    #[test]
    fn digest_response_matches_the_rfc_2617_example_without_algorithm() {
        let c = &parse_challenges(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )[0];
        let ch = DigestChallenge::from_challenge(c).unwrap();
        assert!(!ch.algorithm_named);
        let h = digest_authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{h}"
        );
        assert!(!h.contains("algorithm"), "not echoed when not sent: {h}");
    }

    #[test]
    fn quoted_values_keep_escapes_and_commas() {
        let cs = parse_challenges(r#"Digest realm="a \"b\", c", nonce=x"#);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].param("realm"), Some("a \"b\", c"));
        assert_eq!(cs[0].param("nonce"), Some("x"));
        assert!(parse_challenges("").is_empty());
        // Garbage never loops forever.
        let _ = parse_challenges("=,=\"\\");
    }

    #[test]
    fn an_unterminated_quoted_value_ends_the_header_instead_of_panicking() {
        // Found by the `digest_challenge` fuzz target: the index stepped past the end and the
        // next parameter name was sliced out of range. A camera controls this header.
        let cs = parse_challenges(r#"Digest nonce="abc", realm="cam, qop=auth"#);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].param("nonce"), Some("abc"));
        assert_eq!(cs[0].param("realm"), Some("cam, qop=auth"));
        let cs = parse_challenges(r#"Digest nonce="n\"#);
        assert_eq!(cs[0].param("nonce"), Some("n\\"));
    }
}
