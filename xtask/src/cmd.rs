//! Running child processes. Every command is echoed before it runs so a failing step can be
//! copied and re-run by hand, and every failure names the command that failed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Runs `cmd` with inherited stdio; fails when it cannot start or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `first | second` (first's stdout into second's stdin); fails if either fails.
pub fn pipe(first: &mut Command, second: &mut Command) -> Result<()> {
    let line = format!("{} | {}", display(first), display(second));
    eprintln!("$ {line}");
    let mut producer = first
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(first)))?;
    let pipe = producer
        .stdout
        .take()
        .with_context(|| format!("no stdout from `{}`", display(first)))?;
    let consumer = second.stdin(Stdio::from(pipe)).status();
    // The Command keeps our copy of the pipe's read end until its stdin is replaced; while it
    // is open, a producer whose consumer stopped reading would block forever instead of
    // getting EPIPE.
    second.stdin(Stdio::inherit());
    let produced = producer
        .wait()
        .with_context(|| format!("wait for `{}`", display(first)))?;
    let consumed = consumer.with_context(|| format!("could not start `{}`", display(second)))?;
    if !produced.success() || !consumed.success() {
        bail!("`{line}` failed ({produced}; {consumed})");
    }
    Ok(())
}

/// Runs `cmd` with no input and returns its trimmed standard output; fails naming the
/// command and quoting its stderr when it cannot start or exits unsuccessfully.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Quiet probe: true when `cmd` starts and exits successfully. Not echoed, output discarded,
/// because probes are checks for what is present, not steps the user needs to see.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Like the shell's `command -v`: the first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command as a shell line, with the environment variables it sets explicitly, so the
/// echo is something that can be pasted into a terminal.
pub fn display(cmd: &Command) -> String {
    let envs = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))));
    let program = std::iter::once(quote(cmd.get_program()));
    let args = cmd.get_args().map(quote);
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("ffmpeg");
        cmd.env("A", "b c")
            .args(["-vf", "select=not(mod(n\\,100))", "x_%03d.jpg", "it's"]);
        assert_eq!(
            display(&cmd),
            r"A='b c' ffmpeg -vf 'select=not(mod(n\,100))' x_%03d.jpg 'it'\''s'"
        );
    }
}
