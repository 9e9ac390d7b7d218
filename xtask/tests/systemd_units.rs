//! Both service units stay sandboxed: `systemd-analyze security --offline=yes` rates each at
//! an exposure of at most 2.0 (of 10), and every directive of their `[Service]` sections
//! carries its reason in a comment. `cargo xtask setup` installs systemd-analyze (Debian's
//! `systemd` package); without it this test is skipped, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest exposure a unit may have.
const MAX_EXPOSURE: f64 = 2.0;

fn units() -> [PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        root.join("systemd/edge-agent.service"),
        root.join("systemd/hub.service"),
    ]
}

/// The overall exposure `systemd-analyze` gives the unit file, or `None` without the tool.
fn exposure(unit: &Path) -> Option<f64> {
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("systemd-analyze: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security {}: {}\n{text}",
        unit.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // `→ Overall exposure level for hub.service: 1.1 OK 🙂`
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    let value = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    Some(value)
}

#[test]
fn both_units_are_sandboxed_to_an_exposure_of_at_most_2() {
    for unit in units() {
        let Some(value) = exposure(&unit) else {
            eprintln!(
                "SKIPPED: systemd-analyze not found (Debian's systemd package; `cargo xtask setup` installs it)"
            );
            return;
        };
        eprintln!("{}: exposure {value}", unit.display());
        assert!(
            value <= MAX_EXPOSURE,
            "{}: exposure {value} > {MAX_EXPOSURE}; see `systemd-analyze security --offline=yes {}`",
            unit.display(),
            unit.display()
        );
    }
}

#[test]
fn every_sandbox_directive_says_why() {
    for unit in units() {
        let text = std::fs::read_to_string(&unit).unwrap();
        let service = text
            .split("[Service]")
            .nth(1)
            .and_then(|s| s.split("[Install]").next())
            .unwrap();
        let mut commented = false;
        for line in service.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                commented = true;
            } else if line.is_empty() {
                commented = false;
            } else {
                // A directive belongs to the comment block above it (directly, or further up
                // in the same paragraph).
                assert!(
                    commented,
                    "{}: `{line}` has no comment saying why",
                    unit.display()
                );
            }
        }
        assert!(
            service.contains("ProtectProc=invisible"),
            "{}: other users must not see the processes (ffmpeg's command line holds the camera password)",
            unit.display()
        );
    }
}
