//! [`Secret`]: a password in a config (camera, broker), never printed. [`CameraUrl`]: a
//! camera input that may carry a password in its URL, shown redacted everywhere but on
//! ffmpeg's command line.

use serde::Deserialize;

/// A password: deserialized like a string, but shown as `***` by `Debug`, and with no
/// `Display`, so it cannot end up in a log line or an error by accident.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The password itself, for building a request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no password was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

/// What a redacted password reads as.
const REDACTED: &str = "***";

/// A camera's input for ffmpeg: an `rtsp://` URL (or any URL ffmpeg reads) or a file path.
/// RTSP cameras take their credentials only in the URL (`rtsp://user:pass@host/path`), so it
/// may hold a password. It deserializes like a string; `Debug` and `Display` show
/// [`Self::redacted`] (`rtsp://user:***@host/path`), and [`Self::expose`] is for the one place
/// that needs the real thing: ffmpeg's command line. [`Self::scrub`] takes the password out of
/// text that may quote the URL (ffmpeg's own error messages do).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CameraUrl(String);

impl CameraUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The input as written, password included: for ffmpeg's command line and for telling a
    /// file from a URL only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password's byte range in the input, if it has one. The userinfo is what precedes
    /// the last `@` of the authority (which ends at the first `/`, `?` or `#`), as ffmpeg
    /// splits it; the password is what follows its first `:`.
    fn password_range(&self) -> Option<std::ops::Range<usize>> {
        let start = self.0.find("://")? + 3;
        let rest = &self.0[start..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let at = authority.rfind('@')?;
        let colon = authority[..at].find(':')?;
        Some(start + colon + 1..start + at)
    }

    /// The input with its password replaced by `***` (the user name stays: it says which
    /// account, not how to use it).
    pub fn redacted(&self) -> String {
        match self.password_range() {
            Some(r) => format!("{}{REDACTED}{}", &self.0[..r.start], &self.0[r.end..]),
            None => self.0.clone(),
        }
    }

    /// `text` with every occurrence of the password replaced by `***`: as written in the URL,
    /// percent-decoded (how ffmpeg sends it) and fully percent-encoded.
    pub fn scrub(&self, text: &str) -> String {
        let Some(r) = self.password_range() else {
            return text.to_owned();
        };
        let written = &self.0[r];
        let mut forms = vec![
            written.to_owned(),
            percent_decode(written),
            percent_encode(&percent_decode(written)),
        ];
        // Longest first, so no form is left half-replaced by a shorter one inside it.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        let mut out = text.to_owned();
        for form in forms.iter().filter(|f| !f.is_empty()) {
            out = out.replace(form.as_str(), REDACTED);
        }
        out
    }
}

impl From<&str> for CameraUrl {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for CameraUrl {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for CameraUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for CameraUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `%XX` sequences decoded (lossily, as UTF-8); anything else kept.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`) as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_url_shows_its_user_but_never_its_password() {
        let u = CameraUrl::new("rtsp://admin:p%40ss:w0rd@10.0.0.5:554/Streaming/101?x=a@b");
        assert_eq!(
            u.redacted(),
            "rtsp://admin:***@10.0.0.5:554/Streaming/101?x=a@b"
        );
        assert_eq!(format!("{u}"), u.redacted());
        assert_eq!(
            format!("{:?}", Some(&u)),
            format!("Some({:?})", u.redacted())
        );
        assert!(u.expose().contains("p%40ss:w0rd"));
        // ffmpeg splits at the last `@` of the authority.
        let u = CameraUrl::new("rtsp://u:a@b@cam/x");
        assert_eq!(u.redacted(), "rtsp://u:***@cam/x");
        for plain in [
            "rtsp://cam/x",
            "rtsp://user@cam/x",
            "/videos/a@b:c.avi",
            "rtsp://cam/a:b@c",
        ] {
            assert_eq!(CameraUrl::new(plain).redacted(), plain);
            assert_eq!(CameraUrl::new(plain).scrub("x y"), "x y");
        }
    }

    #[test]
    fn scrubbing_takes_every_form_of_the_password_out_of_text() {
        let u = CameraUrl::new("rtsp://cam:s3cr%40t!@127.0.0.1:9/x");
        let text =
            "rtsp://cam:s3cr%40t!@127.0.0.1:9/x: Connection refused | auth s3cr@t! | s3cr%40t%21";
        let out = u.scrub(text);
        assert_eq!(
            out,
            "rtsp://cam:***@127.0.0.1:9/x: Connection refused | auth *** | ***"
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let s: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert!(!format!("{:?}", Some(s)).contains("hunter2"));
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
