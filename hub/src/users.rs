//! Dashboard users ([`Users`]): who may log in, in which role, for which cells.
//!
//! The users file is TOML, one `[[user]]` per login, written by `hub user add` (which hashes
//! the password with argon2id; the file never holds a password):
//!
//! ```toml
//! [[user]]
//! login = "op-shishan"
//! name = "狮山镇综治中心值班员"
//! role = "operator"            # admin | operator | member
//! cells = ["532329101"]        # operators and members: their cells (and all under them)
//! person = "p-luozhengyu"      # optional: the roster person they are (their actions' actor)
//! password = "$argon2id$v=19$…"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {path} has {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("password: {0}")]
    Password(String),
    #[error("users file: {0}")]
    SecretFile(#[from] crate::secret_file::SecretFileError),
}

/// What a user may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum UserRole {
    /// Everything, every cell.
    Admin,
    /// A governance-centre operator (综治中心): every case under their cells, every action,
    /// the watchlist.
    Operator,
    /// A grid member (网格员): the cases of their cells; acknowledge, handle, resolve, return,
    /// comment, patrol reports.
    Member,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One user as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub login: String,
    #[serde(default)]
    pub name: String,
    pub role: UserRole,
    #[serde(default)]
    pub cells: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// argon2id PHC string.
    pub password: String,
}

impl User {
    /// The id their actions are recorded under: their roster person, else their login.
    pub fn actor_id(&self) -> &str {
        self.person.as_deref().unwrap_or(&self.login)
    }

    pub fn verify(&self, password: &str) -> bool {
        verify_phc(password.as_bytes(), &self.password)
    }
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept by each thread that
    /// checks passwords. Allocated afresh per check, the allocator kept freed blocks per
    /// thread and arena and the hub grew by hundreds of MB under a flood of logins; reused, a
    /// checking thread holds exactly one.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` matches the argon2 PHC string `phc`, computed in this thread's reused
/// working memory (wiped after use). An unparseable hash matches nothing.
fn verify_phc(password: &[u8], phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = h.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let blocks_needed = params.block_count();
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    BLOCKS.with_borrow_mut(|blocks| {
        blocks.resize(blocks_needed, argon2::Block::default());
        let hashed = argon
            .hash_password_into_with_memory(password, salt, &mut *out, &mut blocks[..])
            .is_ok();
        blocks.fill(argon2::Block::default());
        // Constant time: the position of the first difference is not told.
        hashed
            && out
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    user: Vec<User>,
}

/// Every user, by login.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_login: BTreeMap<String, User>,
    /// A hash to verify against when the login is unknown, so an unknown login costs the
    /// same time as a wrong password and does not reveal which logins exist.
    decoy: String,
}

/// Hashes a password for the users file (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    if password.chars().count() < 8 {
        return Err(UsersError::Password(
            "must be at least 8 characters".to_owned(),
        ));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Password(e.to_string()))
}

impl Users {
    /// Reads and checks the file; `known_cell` and `known_person` check references. Every
    /// problem is listed.
    pub fn load(
        path: &Path,
        known_cell: &dyn Fn(&str) -> bool,
        known_person: &dyn Fn(&str) -> bool,
    ) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, known_cell, known_person).map_err(|problems| UsersError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    pub fn parse(
        text: &str,
        known_cell: &dyn Fn(&str) -> bool,
        known_person: &dyn Fn(&str) -> bool,
    ) -> Result<Self, Vec<String>> {
        let de = toml::Deserializer::parse(text).map_err(|e| vec![e.to_string()])?;
        let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
            vec![format!(
                "{}: {}",
                e.path(),
                e.inner().to_string().trim_end()
            )]
        })?;
        let mut problems = Vec::new();
        let mut by_login = BTreeMap::new();
        for (i, u) in file.user.into_iter().enumerate() {
            let at = format!("user[{i}] ({})", u.login);
            if let Err(e) = crate::roster::check_id(&u.login) {
                problems.push(format!("{at}.login: {e}"));
            }
            if u.role != UserRole::Admin && u.cells.is_empty() {
                problems.push(format!(
                    "{at}.cells: a {} needs at least one cell",
                    u.role.as_str()
                ));
            }
            for c in &u.cells {
                if !known_cell(c) {
                    problems.push(format!("{at}.cells: {c:?} is not a cell of the grid"));
                }
            }
            if let Some(p) = &u.person
                && !known_person(p)
            {
                problems.push(format!("{at}.person: {p:?} is not on the roster"));
            }
            if PasswordHash::new(&u.password).is_err() {
                problems.push(format!(
                    "{at}.password: not an argon2 hash (set it with `hub user add`)"
                ));
            }
            if by_login.contains_key(&u.login) {
                problems.push(format!("{at}.login: {:?} appears twice", u.login));
            }
            by_login.insert(u.login.clone(), u);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let decoy = Argon2::default()
            .hash_password(crate::random::token().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| vec![format!("argon2: {e}")])?;
        Ok(Self { by_login, decoy })
    }

    pub fn get(&self, login: &str) -> Option<&User> {
        self.by_login.get(login)
    }

    pub fn len(&self) -> usize {
        self.by_login.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_login.is_empty()
    }

    /// The user if the password is theirs. Unknown logins take as long as known ones.
    pub fn check(&self, login: &str, password: &str) -> Option<&User> {
        match self.by_login.get(login) {
            Some(u) if u.verify(password) => Some(u),
            Some(_) => None,
            None => {
                let _ = verify_phc(password.as_bytes(), &self.decoy);
                None
            }
        }
    }

    pub fn logins(&self) -> BTreeSet<&str> {
        self.by_login.keys().map(String::as_str).collect()
    }
}

/// `hub user add`: adds the user to the file, or replaces the one with the same login. The
/// file is created if missing; other users are kept as they are.
pub fn add_user(path: &Path, user: User) -> Result<(), UsersError> {
    let mut file: File = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| UsersError::Invalid {
            path: path.to_path_buf(),
            problems: vec![e.to_string()],
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(source) => {
            return Err(UsersError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    file.user.retain(|u| u.login != user.login);
    file.user.push(user);
    let text = toml::to_string_pretty(&file).map_err(|e| UsersError::Invalid {
        path: path.to_path_buf(),
        problems: vec![e.to_string()],
    })?;
    let header = "# Dashboard users (hub user add). Passwords are argon2id hashes.\n\n";
    // Owner-only: the hashes are slow to attack, not impossible.
    Ok(crate::secret_file::write_private(
        path,
        format!("{header}{text}").as_bytes(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_their_serde_names() {
        use strum::IntoEnumIterator;
        for role in UserRole::iter() {
            assert_eq!(serde_json::to_value(role).ok(), Some(role.as_str().into()));
        }
    }

    fn user(login: &str, role: UserRole, cells: &[&str], pw: &str) -> User {
        User {
            login: login.into(),
            name: login.into(),
            role,
            cells: cells.iter().map(|c| c.to_string()).collect(),
            person: None,
            password: hash_password(pw).unwrap(),
        }
    }

    #[test]
    fn add_then_load_then_check_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add_user(&path, user("ops", UserRole::Operator, &["A"], "secret-1")).unwrap();
        add_user(&path, user("m1", UserRole::Member, &["A1"], "secret-2")).unwrap();
        // Replacing keeps one entry per login.
        add_user(&path, user("ops", UserRole::Operator, &["A"], "secret-3")).unwrap();
        let users = Users::load(&path, &|_| true, &|_| true).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.check("ops", "secret-3").is_some());
        assert!(users.check("ops", "secret-1").is_none());
        assert!(users.check("m1", "secret-2").is_some());
        assert!(users.check("nobody", "secret-2").is_none());
        assert!(!std::fs::read_to_string(&path).unwrap().contains("secret"));
    }

    #[test]
    fn every_problem_is_listed() {
        let text = r#"
            [[user]]
            login = "a b"
            role = "operator"
            password = "plain"
            [[user]]
            login = "m"
            role = "member"
            cells = ["nowhere"]
            person = "ghost"
            password = "plain"
        "#;
        let errs = Users::parse(text, &|c| c == "A", &|p| p == "p1").unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "user[0] (a b).login",
            "user[0] (a b).cells: a operator needs",
            "user[0] (a b).password",
            "user[1] (m).cells: \"nowhere\"",
            "user[1] (m).person: \"ghost\"",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_and_roles_are_refused() {
        let e = Users::parse(
            "[[user]]\nlogin='x'\nrole='boss'\npassword='p'\n",
            &|_| true,
            &|_| true,
        )
        .unwrap_err();
        assert!(e[0].contains("user[0].role"), "{e:?}");
        let e = Users::parse(
            "[[user]]\nlogin='x'\nrole='admin'\npassword='p'\ncolour='red'\n",
            &|_| true,
            &|_| true,
        )
        .unwrap_err();
        assert!(e[0].contains("colour"), "{e:?}");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(hash_password("short").is_err());
    }
}
