//! A small tmpfs mounted for one test, to fill a real filesystem (disk-full tests), and a
//! ballast file that fills it. `Tmpfs::mount(dir, bytes)` is `None` when not root (the test
//! skips, saying so); the tmpfs is unmounted when dropped, also when the test panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

/// Whether the test process runs as root (effective uid 0), from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `dir` (created). `None`, with the reason printed, when
    /// the process is not root; panics if root cannot mount.
    pub fn mount(dir: &Path, bytes: u64) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root; this test runs as root in CI");
            return None;
        }
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes the file `name` (real bytes: a sparse file takes no tmpfs pages) until at most
    /// `leave` bytes are free, but not fewer than `leave` minus a MiB; returns its path.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create ballast");
        let chunk = vec![0x5Au8; 1 << 20];
        while free_bytes(&self.dir) > leave + chunk.len() as u64 {
            f.write_all(&chunk).expect("write ballast");
        }
        f.sync_all().expect("sync ballast");
        path
    }

    /// Fills the filesystem with the file `name` until a write fails for want of space;
    /// returns its path. Written in shrinking chunks so that not even one page is left.
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create ballast");
        for chunk in [1 << 20, 64 << 10, 4 << 10, 512] {
            let buf = vec![0xA5u8; chunk];
            loop {
                match f.write_all(&buf) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("ballast {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

/// Bytes available to this process on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).expect("statvfs");
    s.f_bavail * s.f_frsize
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has a file open (a thread of a failed test): detach it, so the
            // mount never outlives the test run.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
