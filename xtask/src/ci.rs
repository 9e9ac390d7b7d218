//! `cargo xtask test`: the whole CI gate, runnable locally with the same result.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// One gate: cargo arguments and what to tell the user when it fails.
struct Step {
    what: &'static str,
    args: &'static [&'static str],
    on_failure: &'static str,
}

/// Pinned like every other tool; installed into `.cache/cargo-deny/` when missing.
const CARGO_DENY_VERSION: &str = "0.20.2";

const STEPS: &[Step] = &[
    Step {
        what: "formatting",
        args: &["fmt", "--all", "--", "--check"],
        on_failure: "code is not formatted; run `cargo fmt --all`",
    },
    Step {
        what: "lints",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        on_failure: "clippy reported problems (warnings are errors in CI)",
    },
    Step {
        what: "tests",
        args: &["test", "--workspace"],
        on_failure: "tests failed",
    },
];

pub fn test(repo: &Repo, args: &[String]) -> Result<()> {
    crate::no_args("test", args)?;
    let assets = setup::run(repo)?;
    // The dependency policy first (seconds, and a banned crate makes the rest moot). The fuzz
    // targets run inside `cargo test` over their corpus (`fuzz-targets/tests/corpus.rs`); the
    // instrumented libFuzzer build, about ten minutes of two cores, is `cargo xtask fuzz`.
    let steps = STEPS.len() + 1;
    eprintln!("xtask: [1/{steps}] dependency policy (deny.toml)");
    deny(repo).context(
        "a dependency breaks deny.toml (license, ban, duplicate or source); fix it or add an \
         exception there with its reason",
    )?;
    for (i, step) in STEPS.iter().enumerate() {
        eprintln!("xtask: [{}/{steps}] {}", i + 2, step.what);
        // The detector finds the cached library by itself too; saying it explicitly makes
        // test runs independent of that search.
        let mut cargo = repo.cargo();
        cargo.args(step.args).env("ORT_DYLIB_PATH", &assets.ort_lib);
        if step.args[0] == "test" {
            run_counting(&mut cargo).context(step.on_failure)?;
        } else {
            cmd::run(&mut cargo).context(step.on_failure)?;
        }
    }
    Ok(())
}

/// cargo-deny's licenses, bans and sources checks against deny.toml, for the workspace and
/// the fuzz crate. Advisories are not checked here: they need the advisory database from
/// GitHub, which this gate must not depend on.
fn deny(repo: &Repo) -> Result<()> {
    let cargo_deny = setup::cargo_tool(repo, "cargo-deny", CARGO_DENY_VERSION)?;
    for manifest in ["Cargo.toml", "fuzz/Cargo.toml"] {
        cmd::run(
            Command::new(&cargo_deny)
                .current_dir(repo.root())
                .args([
                    "--manifest-path",
                    manifest,
                    "--workspace",
                    "--locked",
                    "--config",
                ])
                .arg(repo.root().join("deny.toml"))
                .args(["check", "licenses", "bans", "sources"]),
        )?;
    }
    Ok(())
}

/// Runs `cargo test`, passing its output through, and ends with one line totalling every test
/// binary's `test result:` line. Cargo's own last line belongs to whichever binary ran last
/// (often doc tests with nothing in them), which says nothing about the run as a whole.
fn run_counting(cargo: &mut Command) -> Result<()> {
    let line = cmd::display(cargo);
    eprintln!("$ {line}");
    let mut child = cargo
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    for l in BufReader::new(stdout).lines() {
        let l = l.context("reading cargo test output")?;
        println!("{l}");
        totals.add_line(&l);
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    println!();
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    if totals.passed == 0 {
        bail!("`{line}` ran no test");
    }
    Ok(())
}

/// Sums of libtest's `test result: ok. 5 passed; 0 failed; 1 ignored; ...` lines.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_every_test_result_line_and_ignore_the_rest() {
        let mut t = Totals::default();
        for l in [
            "running 3 tests",
            "test result: ok. 47 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test a::b ... ok",
            "test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.2s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            t.add_line(l);
        }
        assert_eq!(
            t,
            Totals {
                passed: 52,
                failed: 1,
                ignored: 2
            }
        );
    }
}
