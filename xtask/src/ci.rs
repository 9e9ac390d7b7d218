//! `cargo xtask test`: the whole CI gate, runnable locally with the same result.

use anyhow::{Context as _, Result};

use crate::{Repo, cmd, setup};

/// One gate: cargo arguments and what to tell the user when it fails.
struct Step {
    what: &'static str,
    args: &'static [&'static str],
    on_failure: &'static str,
}

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
    for (i, step) in STEPS.iter().enumerate() {
        eprintln!("xtask: [{}/{}] {}", i + 1, STEPS.len(), step.what);
        // The detector finds the cached library by itself too; saying it explicitly makes
        // test runs independent of that search.
        let mut cargo = repo.cargo();
        cargo.args(step.args).env("ORT_DYLIB_PATH", &assets.ort_lib);
        cmd::run(&mut cargo).context(step.on_failure)?;
    }
    // Nothing printed after success, so the log ends with cargo's own test summary.
    Ok(())
}
