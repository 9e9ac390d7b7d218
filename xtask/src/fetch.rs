//! Getting files into the cache safely: hashing, verified copies and downloads, and writes that
//! only ever appear under their final name once complete.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::apt::Apt;
use crate::cmd;

/// Lower-case hex sha256 of a file, streamed so large wheels are not read into memory.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// True when `path` exists and has the expected hash. A missing file is simply "no".
pub fn has_sha256(path: &Path, expected: &str) -> Result<bool> {
    if !path.is_file() {
        return Ok(false);
    }
    Ok(sha256_file(path)? == expected)
}

/// Checks `path` against `expected`; on mismatch deletes it (a bad file must not be mistaken
/// for a good cached one next time) and fails naming both hashes.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        let removed = fs::remove_file(path);
        bail!(
            "sha256 mismatch for {}: expected {expected}, got {actual} ({})",
            path.display(),
            match removed {
                Ok(()) => "file deleted".to_owned(),
                Err(e) => format!("could not delete it: {e}"),
            }
        );
    }
    Ok(())
}

/// A sibling of `dest` to write into before renaming. The process id keeps two concurrent
/// set-ups from writing into the same temporary file.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Renames a finished temporary file into place (same directory, so the rename is atomic).
pub fn commit(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest).with_context(|| format!("rename {} to {}", tmp.display(), dest.display()))
}

pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create directory {}", dir.display()))
}

/// Writes `contents` to `dest` atomically.
pub fn write_atomic(dest: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temp_path(dest);
    fs::write(&tmp, contents).with_context(|| format!("write {}", tmp.display()))?;
    commit(&tmp, dest)
}

/// Copies `src` to `dest`, verifying the copy before it gets its final name.
pub fn copy_verified(src: &Path, dest: &Path, sha256: &str) -> Result<()> {
    create_parent(dest)?;
    let tmp = temp_path(dest);
    fs::copy(src, &tmp).with_context(|| format!("copy {} to {}", src.display(), tmp.display()))?;
    // The shared copy may be read-only; the cached one should be replaceable.
    set_mode(&tmp, 0o644)?;
    verify_sha256(&tmp, sha256).with_context(|| format!("copy of {}", src.display()))?;
    commit(&tmp, dest)
}

/// Downloads `url` to `dest` with curl (or wget), verifying before the final rename.
/// Uses an external client rather than an HTTP crate: both are on every Debian machine or one
/// `apt-get install` away, and they honour the usual proxy settings.
pub fn download_verified(apt: &mut Apt, url: &str, dest: &Path, sha256: &str) -> Result<()> {
    create_parent(dest)?;
    let tmp = temp_path(dest);
    let mut command = if cmd::which("curl").is_some() {
        curl(url, &tmp)
    } else if cmd::which("wget").is_some() {
        let mut c = Command::new("wget");
        c.args(["-q", "--tries=3", "-O"]).arg(&tmp).arg(url);
        c
    } else {
        apt.install(&["curl", "ca-certificates"])
            .context("neither curl nor wget is available")?;
        curl(url, &tmp)
    };
    let result = cmd::run(&mut command).and_then(|()| verify_sha256(&tmp, sha256));
    if let Err(e) = result {
        // Do not leave a partial download behind; the error already says what went wrong.
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("download {url}")));
    }
    commit(&tmp, dest)
}

fn curl(url: &str, out: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["-fL", "--retry", "3", "--silent", "--show-error", "-o"])
        .arg(out)
        .arg(url);
    c
}

/// Copies everything `reader` yields into `dest`, atomically, with the given mode.
pub fn write_stream_atomic(reader: &mut impl io::Read, dest: &Path, mode: u32) -> Result<()> {
    create_parent(dest)?;
    let tmp = temp_path(dest);
    let mut file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    io::copy(reader, &mut file).with_context(|| format!("write {}", tmp.display()))?;
    // Flush to disk before the rename so a crash cannot leave a complete-looking empty file.
    file.sync_all()
        .with_context(|| format!("sync {}", tmp.display()))?;
    drop(file);
    set_mode(&tmp, mode)?;
    commit(&tmp, dest)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set permissions of {}", path.display()))
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => create_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn sha256_of_known_input() {
        let path = std::env::temp_dir().join(format!("xtask-sha-{}", std::process::id()));
        fs::write(&path, b"abc").unwrap();
        let digest = sha256_file(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
