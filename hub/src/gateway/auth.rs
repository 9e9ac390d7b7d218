//! Who may connect to the hub's broker, and what each may publish and subscribe to.
//!
//! Pure: the gateway hands in a CONNECT's username and password and each topic a client uses;
//! these functions answer. Credentials are per device: every site (edge agent), every person's
//! phone app and every service (another hub, `edge-agent tail`) has its own username and token.
//! Tokens are random 256-bit strings made by `hub credential add`, so a salted slow hash would
//! add nothing over SHA-256: nobody can guess a preimage of a random 256-bit token. Only the
//! hash is stored.

use std::collections::BTreeMap;
use std::path::Path;

use protocol::topics::TopicKind;
use protocol::{Topics, validate_id};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a connected client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An edge agent: publishes under `{prefix}/site/{id}/…`, reads its own `cmd`.
    Site(String),
    /// A person's app: reads its own `{prefix}/person/{id}/notify`.
    Person(String),
    /// A trusted service (another hub, operator tools): any topic.
    Service(String),
}

impl Principal {
    pub fn label(&self) -> String {
        match self {
            Self::Site(id) => format!("site:{id}"),
            Self::Person(id) => format!("person:{id}"),
            Self::Service(id) => format!("service:{id}"),
        }
    }
}

/// One credential in the credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// `site`, `person` or `service`.
    pub kind: CredentialKind,
    /// The MQTT username: the site, person or service id.
    pub id: String,
    /// Lower-case hex SHA-256 of the token (the MQTT password).
    pub token_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Site,
    Person,
    Service,
}

/// The credentials file: `[[credential]]` tables.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default, rename = "credential")]
    pub credentials: Vec<Credential>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("credentials file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("credentials file {path} has {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Invalid { path: String, problems: Vec<String> },
    #[error("cannot write credentials file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("credentials file: {0}")]
    SecretFile(#[from] crate::secret_file::SecretFileError),
}

/// Validated credentials, looked up by username.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_id: BTreeMap<String, (CredentialKind, [u8; 32])>,
}

/// Outcome of checking a CONNECT's username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted(Principal),
    /// Unknown user, wrong token, or none given.
    BadCredentials,
}

pub fn sha256_hex(token: &[u8]) -> String {
    Sha256::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Credentials {
    /// Validates a parsed file; every problem is listed with the entry's index.
    pub fn from_file(file: &CredentialsFile, path: &str) -> Result<Self, AuthError> {
        let mut problems = Vec::new();
        let mut by_id = BTreeMap::new();
        for (i, c) in file.credentials.iter().enumerate() {
            let at = format!("credential[{i}] (id {:?})", c.id);
            if let Err(e) = validate_id("id", &c.id) {
                problems.push(format!("{at}: {e}"));
            }
            let hash = parse_hex32(&c.token_sha256);
            if hash.is_none() {
                problems.push(format!(
                    "{at}: token_sha256 must be 64 hex digits (the SHA-256 of the token)"
                ));
            }
            if by_id.contains_key(&c.id) {
                problems.push(format!(
                    "{at}: duplicate id; usernames are unique across kinds"
                ));
            } else if let Some(h) = hash {
                by_id.insert(c.id.clone(), (c.kind, h));
            }
        }
        if problems.is_empty() {
            Ok(Self { by_id })
        } else {
            Err(AuthError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let shown = path.display().to_string();
        let file = read_file(path)?;
        Self::from_file(&file, &shown)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every credential: its id (username), kind and token hash.
    pub fn entries(&self) -> impl Iterator<Item = (&str, CredentialKind, &[u8; 32])> {
        self.by_id
            .iter()
            .map(|(id, (kind, hash))| (id.as_str(), *kind, hash))
    }

    /// Adds or replaces one credential (tests and the hub's own internal user).
    pub fn insert(&mut self, kind: CredentialKind, id: &str, token: &[u8]) {
        self.by_id
            .insert(id.to_owned(), (kind, Sha256::digest(token).into()));
    }

    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> AuthOutcome {
        let (Some(user), Some(pass)) = (username, password) else {
            return AuthOutcome::BadCredentials;
        };
        let Some((kind, hash)) = self.by_id.get(user) else {
            return AuthOutcome::BadCredentials;
        };
        let given: [u8; 32] = Sha256::digest(pass).into();
        // Compare every byte regardless of where they differ, so timing says nothing.
        let diff = given
            .iter()
            .zip(hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return AuthOutcome::BadCredentials;
        }
        let id = user.to_owned();
        AuthOutcome::Accepted(match kind {
            CredentialKind::Site => Principal::Site(id),
            CredentialKind::Person => Principal::Person(id),
            CredentialKind::Service => Principal::Service(id),
        })
    }
}

pub fn read_file(path: &Path) -> Result<CredentialsFile, AuthError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CredentialsFile::default()),
        Err(source) => {
            return Err(AuthError::Read {
                path: shown,
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| AuthError::Parse {
        path: shown,
        source: Box::new(e),
    })
}

/// Adds (or replaces) a credential in the file and returns the new random token, which is
/// shown once and never stored.
pub fn add_to_file(path: &Path, kind: CredentialKind, id: &str) -> Result<String, AuthError> {
    let shown = path.display().to_string();
    let mut file = read_file(path)?;
    let token = crate::random::token();
    file.credentials.retain(|c| c.id != id);
    file.credentials.push(Credential {
        kind,
        id: id.to_owned(),
        token_sha256: sha256_hex(token.as_bytes()),
    });
    Credentials::from_file(&file, &shown)?;
    let text = toml::to_string(&file).map_err(|e| AuthError::Write {
        path: shown.clone(),
        source: std::io::Error::other(e),
    })?;
    // Owner-only and atomic: the file names every device that may connect.
    crate::secret_file::write_private(path, text.as_bytes())?;
    Ok(token)
}

/// Topic access rules for one principal.
#[derive(Debug, Clone)]
pub struct Acl {
    topics: Topics,
}

impl Acl {
    pub fn new(topics: Topics) -> Self {
        Self { topics }
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// May `who` publish on `topic` (also used for a CONNECT's will topic)?
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        match who {
            Principal::Service(_) => true,
            Principal::Person(_) => false,
            Principal::Site(site) => match self.topics.parse(topic) {
                Some((s, kind)) => s == *site && kind != TopicKind::Cmd,
                None => false,
            },
        }
    }

    /// May `who` subscribe to `filter`? Sites and people get exactly their own topic; a
    /// wildcard that would reach another's is refused rather than narrowed.
    pub fn may_subscribe(&self, who: &Principal, filter: &str) -> bool {
        match who {
            Principal::Service(_) => true,
            Principal::Site(site) => filter == self.topics.cmd(site),
            Principal::Person(person) => filter == self.topics.notify(person),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        let mut c = Credentials::default();
        c.insert(CredentialKind::Site, "s1", b"tok-s1");
        c.insert(CredentialKind::Person, "p1", b"tok-p1");
        c.insert(CredentialKind::Service, "tail", b"tok-tail");
        c
    }

    #[test]
    fn right_token_gives_the_principal_wrong_or_missing_does_not() {
        let c = creds();
        assert_eq!(
            c.check(Some("s1"), Some(b"tok-s1")),
            AuthOutcome::Accepted(Principal::Site("s1".into()))
        );
        assert_eq!(
            c.check(Some("s1"), Some(b"tok-p1")),
            AuthOutcome::BadCredentials
        );
        assert_eq!(
            c.check(Some("nobody"), Some(b"x")),
            AuthOutcome::BadCredentials
        );
        assert_eq!(c.check(Some("s1"), None), AuthOutcome::BadCredentials);
        assert_eq!(c.check(None, None), AuthOutcome::BadCredentials);
    }

    #[test]
    fn a_site_publishes_only_under_its_own_topics_and_never_commands() {
        let acl = Acl::new(Topics::new("se/v1").unwrap());
        let s1 = Principal::Site("s1".into());
        for ok in [
            "se/v1/site/s1/alert",
            "se/v1/site/s1/status",
            "se/v1/site/s1/sighting",
            "se/v1/site/s1/cmd/reply",
        ] {
            assert!(acl.may_publish(&s1, ok), "{ok}");
        }
        for bad in [
            "se/v1/site/s2/alert",
            "se/v1/site/s1/cmd",
            "se/v1/person/p1/notify",
            "se/v1/site/+/alert",
            "other/topic",
        ] {
            assert!(!acl.may_publish(&s1, bad), "{bad}");
        }
    }

    #[test]
    fn subscriptions_are_exactly_ones_own_topic() {
        let acl = Acl::new(Topics::new("se/v1").unwrap());
        let s1 = Principal::Site("s1".into());
        let p1 = Principal::Person("p1".into());
        assert!(acl.may_subscribe(&s1, "se/v1/site/s1/cmd"));
        assert!(!acl.may_subscribe(&s1, "se/v1/site/+/cmd"));
        assert!(!acl.may_subscribe(&s1, "#"));
        assert!(acl.may_subscribe(&p1, "se/v1/person/p1/notify"));
        assert!(!acl.may_subscribe(&p1, "se/v1/person/+/notify"));
        assert!(!acl.may_publish(&p1, "se/v1/person/p1/notify"));
        let svc = Principal::Service("tail".into());
        assert!(acl.may_subscribe(&svc, "se/v1/#"));
    }

    #[test]
    fn a_bad_credentials_file_lists_every_problem() {
        let file: CredentialsFile = toml::from_str(
            r#"
            [[credential]]
            kind = "site"
            id = "bad id"
            token_sha256 = "00"
            [[credential]]
            kind = "person"
            id = "p1"
            token_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
            [[credential]]
            kind = "site"
            id = "p1"
            token_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
            "#,
        )
        .unwrap();
        let err = Credentials::from_file(&file, "creds.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 problem(s)"), "{err}");
        assert!(
            err.contains("credential[0]") && err.contains("64 hex digits"),
            "{err}"
        );
        assert!(
            err.contains("credential[2]") && err.contains("duplicate id"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = toml::from_str::<CredentialsFile>(
            "[[credential]]\nkind = \"site\"\nid = \"s\"\ntoken_sha256 = \"x\"\npassword = \"p\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }
}
