//! The demo's published secrets, recognised by value so `hub run` can refuse them outside the
//! demo (`--demo`).
//!
//! The repository ships a working demo: a signing key (`configs/hub/demo-signing.key`), device
//! tokens `demo-token-<id>` (`configs/hub/credentials.toml`, among them the `tail` service,
//! which may publish for any site) and dashboard users with passwords printed in the README
//! (`configs/hub/users.toml`). A hub started on any of them is open to everyone who has read
//! the repository. Names prove nothing (a copied hash under another id is the same token), so
//! each secret is compared by what it is:
//!
//! - the signing key: its public half against the committed demo key's
//!   ([`protocol::demo::is_demo_key`]);
//! - a credential: its token hash against every hash of the committed credentials file and
//!   against SHA-256 of `demo-token-<its id>` (the published pattern);
//! - a user: the password hash equal to one of the committed users file, or verifying
//!   (argon2) with one of the published demo passwords. The argon2 checks run in parallel on
//!   every core; with `--demo` none of this runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::gateway::auth::{CredentialKind, Credentials, CredentialsFile};
use crate::service::Loaded;
use crate::users::{User, Users};

/// The committed demo credentials file.
const DEMO_CREDENTIALS: &str = include_str!("../../configs/hub/credentials.toml");
/// The committed demo users file.
const DEMO_USERS: &str = include_str!("../../configs/hub/users.toml");
/// The passwords of the demo users, as published in `configs/hub/README.md` (a test checks
/// that every committed demo user's hash verifies with one of them).
pub const DEMO_PASSWORDS: &[&str] = &["demo-admin", "demo-county", "demo-shishan", "demo-member"];
/// The published pattern of the demo device tokens: `demo-token-<id>`.
const DEMO_TOKEN_PREFIX: &str = "demo-token-";

/// One demo secret found in the configuration: the file it is in and which entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DemoSecret {
    pub file: PathBuf,
    pub entry: String,
}

impl std::fmt::Display for DemoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.entry)
    }
}

/// Every demo secret `loaded` uses, in file order.
pub fn find(loaded: &Loaded) -> Vec<DemoSecret> {
    let mut found = Vec::new();
    if protocol::demo::is_demo_key(&loaded.signing_key.verifying_key()) {
        found.push(DemoSecret {
            file: loaded.config.commands.signing_key_file.clone(),
            entry: "commands.signing_key_file: the committed demo signing key".into(),
        });
    }
    for (id, kind) in demo_credentials(&loaded.credentials) {
        found.push(DemoSecret {
            file: loaded.config.broker.credentials.clone(),
            entry: format!(
                "credential {id:?} ({}): a published demo token",
                kind_name(kind)
            ),
        });
    }
    if let (Some(http), Some(users)) = (&loaded.config.http, &loaded.users) {
        for login in demo_users(users) {
            found.push(DemoSecret {
                file: http.users.clone(),
                entry: format!("user {login:?}: a published demo password"),
            });
        }
    }
    found
}

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Site => "site",
        CredentialKind::Person => "person",
        CredentialKind::Service => "service",
    }
}

/// The ids (and kinds) of the credentials whose token is a demo token.
fn demo_credentials(credentials: &Credentials) -> Vec<(String, CredentialKind)> {
    let committed: BTreeSet<[u8; 32]> = toml::from_str::<CredentialsFile>(DEMO_CREDENTIALS)
        .ok()
        .and_then(|f| Credentials::from_file(&f, "configs/hub/credentials.toml").ok())
        .map(|c| c.entries().map(|(_, _, h)| *h).collect())
        .unwrap_or_default();
    credentials
        .entries()
        .filter(|(id, _, hash)| {
            let pattern: [u8; 32] =
                Sha256::digest(format!("{DEMO_TOKEN_PREFIX}{id}").as_bytes()).into();
            committed.contains(*hash) || **hash == pattern
        })
        .map(|(id, kind, _)| (id.to_owned(), kind))
        .collect()
}

/// The logins whose password is a demo password, sorted.
fn demo_users(users: &Users) -> Vec<String> {
    let committed: BTreeSet<String> = Users::parse(DEMO_USERS, &|_| true, &|_| true)
        .map(|u| {
            u.logins()
                .into_iter()
                .filter_map(|l| u.get(l).map(|u| u.password.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut to_verify: Vec<&User> = Vec::new();
    for login in users.logins() {
        let Some(user) = users.get(login) else {
            continue;
        };
        if committed.contains(&user.password) {
            found.push(user.login.clone());
        } else {
            to_verify.push(user);
        }
    }
    found.extend(verify_in_parallel(&to_verify));
    found.sort();
    found
}

/// The logins among `users` whose hash verifies with a demo password. argon2 is slow on
/// purpose (tens of ms and 19 MiB per check), so the users are shared out over the cores.
fn verify_in_parallel(users: &[&User]) -> Vec<String> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(users.len());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut hits = Vec::new();
                    while let Some(user) = users.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if DEMO_PASSWORDS.iter().any(|p| user.verify(p)) {
                            hits.push(user.login.clone());
                        }
                    }
                    hits
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_committed_demo_user_has_a_published_password() {
        let users = Users::parse(DEMO_USERS, &|_| true, &|_| true).unwrap();
        assert!(!users.is_empty());
        for login in users.logins() {
            let user = users.get(login).unwrap();
            assert!(
                DEMO_PASSWORDS.iter().any(|p| user.verify(p)),
                "{login}: its password is not in DEMO_PASSWORDS"
            );
        }
    }

    #[test]
    fn demo_tokens_are_found_by_hash_not_by_name() {
        let mut c = Credentials::default();
        // The committed `tail` token under another name, the pattern under a new id, and a
        // fresh token under a demo name.
        c.insert(CredentialKind::Service, "ops-tool", b"demo-token-tail");
        c.insert(CredentialKind::Site, "s-9", b"demo-token-s-9");
        c.insert(CredentialKind::Site, "wd-demo-001", b"a-real-random-token");
        let found = demo_credentials(&c);
        assert_eq!(
            found,
            vec![
                ("ops-tool".to_owned(), CredentialKind::Service),
                ("s-9".to_owned(), CredentialKind::Site)
            ]
        );
    }

    #[test]
    fn demo_passwords_are_found_under_any_login_with_any_salt() {
        let user = |login: &str, pw: &str| User {
            login: login.into(),
            name: String::new(),
            role: crate::users::UserRole::Admin,
            cells: Vec::new(),
            person: None,
            password: crate::users::hash_password(pw).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        crate::users::add_user(&path, user("chief", "demo-member")).unwrap();
        crate::users::add_user(&path, user("admin", "a-real-password")).unwrap();
        let users = Users::load(&path, &|_| true, &|_| true).unwrap();
        assert_eq!(demo_users(&users), vec!["chief".to_owned()]);
    }
}
