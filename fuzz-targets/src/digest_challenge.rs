//! A camera's `WWW-Authenticate` value (`edge_agent::source::parse_challenges`), then the
//! Digest challenge and `Authorization` answer built from it. A roadside camera, or whoever
//! replaced it, controls every byte of this header.
//!
//! Beyond "does not panic": schemes and parameter names come out lower case and non-empty,
//! and the `Authorization` we send for an answerable challenge parses back to the same
//! challenge (realm, nonce and opaque survive quoting exactly, the flags are echoed).

use edge_agent::source::{DigestChallenge, digest_authorization, parse_challenges};

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    // reqwest hands the agent the header as `&str` (`HeaderValue::to_str`); any UTF-8 is a
    // superset of what it lets through.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    for challenge in parse_challenges(value) {
        assert!(!challenge.scheme.is_empty());
        assert_eq!(challenge.scheme, challenge.scheme.to_ascii_lowercase());
        for (name, _) in &challenge.params {
            assert!(!name.is_empty());
            assert_eq!(name, &name.to_ascii_lowercase());
        }
        let Ok(digest) = DigestChallenge::from_challenge(&challenge) else {
            continue;
        };
        let header = digest_authorization(
            &digest,
            "admin",
            "secret",
            "GET",
            "/mjpg/video.mjpg",
            1,
            "0a4f113b0a4f113b",
        );
        let reparsed = parse_challenges(&header);
        assert_eq!(reparsed.len(), 1, "{header}");
        let again = DigestChallenge::from_challenge(&reparsed[0])
            .unwrap_or_else(|e| panic!("our own Authorization does not parse back: {e}\n{header}"));
        assert_eq!(digest, again, "{header}");
    }
}
