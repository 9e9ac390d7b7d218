//! Debian packages via apt. Installing needs root: run directly as root, through `sudo -n`
//! when that works without a password, and otherwise stop and print the exact command for the
//! user, because a set-up tool must never hang on a password prompt.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    Root,
    Sudo,
}

/// Remembers within one run whether the package lists were refreshed, so several installs
/// cost one `apt-get update`.
#[derive(Debug, Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// Installs `packages` (the caller has already checked they are missing).
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        let privilege = privilege().with_context(|| {
            format!(
                "installing Debian packages needs root; run:\n  sudo apt-get update && \
                 sudo DEBIAN_FRONTEND=noninteractive apt-get install -y \
                 --no-install-recommends {}\nthen run `cargo xtask setup` again",
                packages.join(" ")
            )
        })?;
        self.update(privilege)?;
        let mut install = apt_get(privilege);
        install.args(["install", "-y", "--no-install-recommends"]);
        install.args(packages);
        cmd::run(&mut install)
            .with_context(|| format!("install Debian packages {}", packages.join(" ")))
    }

    /// Downloads the `.deb` of `package` into `dir` (no root needed when the package lists are
    /// present; if they are not, refreshes them when allowed and tries once more).
    pub fn download(&mut self, package: &str, dir: &Path) -> Result<()> {
        let mut download = Command::new("apt-get");
        download.args(["download", package]).current_dir(dir);
        if cmd::run(&mut download).is_ok() {
            return Ok(());
        }
        let privilege = privilege().with_context(|| {
            format!("`apt-get download {package}` failed; try `sudo apt-get update` first")
        })?;
        if self.updated {
            bail!("`apt-get download {package}` failed even with fresh package lists");
        }
        self.update(privilege)?;
        cmd::run(&mut download).with_context(|| format!("download Debian package {package}"))
    }

    fn update(&mut self, privilege: Privilege) -> Result<()> {
        if !self.updated {
            cmd::run(apt_get(privilege).arg("update")).context("refresh apt package lists")?;
            self.updated = true;
        }
        Ok(())
    }
}

/// `apt-get` as root, non-interactive (no debconf questions, which would hang a CI job).
fn apt_get(privilege: Privilege) -> Command {
    match privilege {
        Privilege::Root => {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        }
        Privilege::Sudo => {
            // sudo resets the environment, so the variable goes through `env`.
            let mut c = Command::new("sudo");
            c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        }
    }
}

/// How this process can become root, if at all.
fn privilege() -> Result<Privilege> {
    if is_root() {
        return Ok(Privilege::Root);
    }
    if cmd::which("sudo").is_some() && cmd::succeeds(Command::new("sudo").args(["-n", "true"])) {
        return Ok(Privilege::Sudo);
    }
    bail!("not running as root and `sudo -n` is not available")
}

/// Effective uid 0? Read from /proc so no `unsafe` libc call is needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Fields: real, effective, saved, filesystem.
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Runs a privileged housekeeping command whose failure does not matter (e.g. stopping a
/// service in a container without an init system). Echoed, but errors are only reported.
pub fn run_privileged_best_effort(program: &str, args: &[&str]) {
    let mut c = match privilege() {
        Ok(Privilege::Root) => Command::new(program),
        Ok(Privilege::Sudo) => {
            let mut c = Command::new("sudo");
            c.arg("-n").arg(program);
            c
        }
        Err(_) => return,
    };
    c.args(args);
    if let Err(e) = cmd::run(&mut c) {
        eprintln!("xtask: (ignored) {e:#}");
    }
}
