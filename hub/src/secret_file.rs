//! Files that hold secrets: the command-signing key (`hub keygen`), the device credentials
//! (`hub credential-add`) and the dashboard users (`hub user add`).
//!
//! They are written readable by their owner only (mode 0600) from the moment they exist: the
//! new content goes into a temporary file *created* with that mode next to the target, then
//! replaces it by a rename, so there is no window in which another user could open it, whatever
//! the umask, and a crash leaves the old file or the new one, never half of one. The hub
//! refuses a signing key that group or others can read ([`check_private`]): a key that leaked
//! to another account on the box lets it sign commands every agent obeys.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The mode secret files are created with.
pub const PRIVATE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by {who} (mode {mode:04o}); it holds a secret and must be readable by its owner only (chmod 600 {path})"
    )]
    Exposed {
        path: PathBuf,
        mode: u32,
        who: &'static str,
    },
}

/// Replaces (or creates) `path` with `bytes`, readable and writable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretFileError> {
    let write_error = |source| SecretFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    // A temporary file left by a crash (or planted) is not reused: `create_new` below must
    // make the file itself, with our mode.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(e)),
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    Ok(())
}

/// Refuses a file that group or others may read or write.
pub fn check_private(path: &Path) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    Err(SecretFileError::Exposed {
        path: path.to_path_buf(),
        mode,
        who,
    })
}

/// A provider's secret (an SMS AccessKey secret, a work app's Secret) read from a file of its
/// own. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct LineSecret(String);

impl LineSecret {
    /// Reads and checks the file: owner-only mode, one non-empty line without spaces. Errors
    /// name `field` (`sms.secret_file`).
    pub fn load(path: &Path, field: &str) -> Result<Self, String> {
        check_private(path).map_err(|e| format!("{field}: {e}"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{field} {}: {e}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(format!(
                "{field} {}: must hold the secret alone on one line",
                path.display()
            ));
        }
        Ok(Self(secret.to_owned()))
    }

    /// A secret from memory (tests).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LineSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_secret_replaces_an_open_file_with_an_owner_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A stale temporary file, as a crash (or another user) might leave.
        std::fs::write(dir.path().join("signing.key.tmp"), "stale").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        assert!(!dir.path().join("signing.key.tmp").exists());
        check_private(&path).unwrap();
    }

    #[test]
    fn a_file_group_or_others_can_read_is_refused_naming_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "x").unwrap();
        for (m, who) in [
            (0o640, "its group"),
            (0o604, "others"),
            (0o644, "its group and others"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            let e = check_private(&path).unwrap_err().to_string();
            assert!(
                e.contains(&format!("(mode {m:04o})")) && e.contains(who) && e.contains("/k"),
                "{e}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        check_private(&path).unwrap();
    }
}
