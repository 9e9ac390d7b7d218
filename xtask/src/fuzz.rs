//! `cargo xtask fuzz [--seconds N] [--target NAME]`: builds the cargo-fuzz targets in `fuzz/`
//! and runs each for N seconds, one line per target with its exec count; fails naming the
//! target and the crashing input when one crashes. The targets' bodies are the `fuzz-targets`
//! crate, which `cargo test` (so `cargo xtask test`) also runs over the corpus and mutations of
//! it; this command is the coverage-guided search, run apart from CI like the soak.
//!
//! Layout: build output, libFuzzer's logs and the corpus it grows live under
//! `target/fuzz/`; the committed seeds in `fuzz/corpus/<target>/` are only read (libFuzzer
//! writes new inputs to the first corpus directory it is given, which is the scratch one), so
//! runs never dirty the checkout. Crashing inputs go to `fuzz/artifacts/<target>/`
//! (gitignored), where cargo-fuzz's own `tmin`/`fmt` look for them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// Pinned like every other tool; installed into `.cache/cargo-fuzz/` when missing.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Per target by default: enough to replay the seeds and mutate them thousands of times (the
/// slowest target, roster_csv, runs a few hundred inputs a second; the parsers of the MQTT
/// gateway tens of thousands). Long searches are `--seconds 600` and more.
pub const SMOKE_SECONDS: u64 = 10;
/// A single input taking longer than this is reported as a hang (libFuzzer's default is
/// 20 minutes, longer than a smoke run).
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// `cargo xtask fuzz` itself.
pub fn command(repo: &Repo, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    run(repo, options.seconds, options.target.as_deref())
}

#[derive(Debug, PartialEq)]
struct Options {
    seconds: u64,
    target: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            seconds: SMOKE_SECONDS,
            target: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("`{name}` needs a value"))
            };
            match arg.as_str() {
                "--seconds" => {
                    let v = value("--seconds")?;
                    options.seconds =
                        v.parse().ok().filter(|&s| s > 0).with_context(|| {
                            format!("--seconds {v}: expected a whole number > 0")
                        })?;
                }
                "--target" => options.target = Some(value("--target")?.clone()),
                other => bail!(
                    "`cargo xtask fuzz`: unknown argument `{other}`; \
                     usage: cargo xtask fuzz [--seconds N] [--target NAME]"
                ),
            }
        }
        Ok(options)
    }
}

fn run(repo: &Repo, seconds: u64, only: Option<&str>) -> Result<()> {
    let cargo_fuzz = cargo_fuzz(repo).context("set up cargo-fuzz")?;
    let mut targets = list_targets(repo, &cargo_fuzz)?;
    if let Some(name) = only {
        if !targets.iter().any(|t| t == name) {
            bail!("no fuzz target `{name}`; targets: {}", targets.join(", "));
        }
        targets = vec![name.to_string()];
    }
    let triple = host_triple()?;
    let out = repo.target_dir().join("fuzz");
    let started = Instant::now();
    build(repo, &cargo_fuzz, &out, &triple, only)?;
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut crashes = Vec::new();
    for target in &targets {
        let binary = out.join(&triple).join("release").join(target);
        let outcome = run_target(repo, &binary, &out, target, seconds)?;
        let rate = outcome.execs as f64 / outcome.seconds.max(0.001);
        match &outcome.crash {
            None => println!(
                "fuzz {target}: ok, {} execs in {:.0} s ({rate:.0}/s)",
                outcome.execs, outcome.seconds
            ),
            Some(crash) => {
                println!(
                    "fuzz {target}: CRASHED after {} execs in {:.0} s: {crash}; log {}",
                    outcome.execs,
                    outcome.seconds,
                    repo.rel(&outcome.log)
                );
                crashes.push(format!(
                    "{target} ({crash}; reproduce with `{} {crash}`)",
                    repo.rel(&binary)
                ));
            }
        }
    }
    if !crashes.is_empty() {
        bail!("fuzz targets crashed: {}", crashes.join("; "));
    }
    Ok(())
}

/// `.cache/cargo-fuzz/bin/cargo-fuzz` at [`CARGO_FUZZ_VERSION`].
fn cargo_fuzz(repo: &Repo) -> Result<PathBuf> {
    setup::cargo_tool(repo, "cargo-fuzz", CARGO_FUZZ_VERSION)
}

/// `cargo fuzz ...` in the repository root, where cargo-fuzz finds `fuzz/`. Invoked as cargo
/// would invoke the subcommand (`cargo-fuzz fuzz ...`); it inherits `CARGO`, so it builds
/// with the toolchain that runs xtask.
fn cargo_fuzz_command(repo: &Repo, cargo_fuzz: &Path) -> Command {
    let mut c = Command::new(cargo_fuzz);
    c.arg("fuzz").current_dir(repo.root());
    c
}

/// The `[[bin]]`s of `fuzz/Cargo.toml`, so a new target needs no change here.
fn list_targets(repo: &Repo, cargo_fuzz: &Path) -> Result<Vec<String>> {
    let mut list = cargo_fuzz_command(repo, cargo_fuzz);
    list.arg("list");
    let output = cmd::stdout(&mut list)?;
    let targets: Vec<String> = output.split_whitespace().map(str::to_string).collect();
    if targets.is_empty() {
        bail!("`cargo fuzz list` listed no fuzz target");
    }
    Ok(targets)
}

/// The triple cargo-fuzz builds for by default, spelled out so the binaries' path is known.
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .context("could not run `rustc -vV`")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` printed no `host:` line")
}

fn build(
    repo: &Repo,
    cargo_fuzz: &Path,
    out: &Path,
    triple: &str,
    only: Option<&str>,
) -> Result<()> {
    let mut build = cargo_fuzz_command(repo, cargo_fuzz);
    build
        .arg("build")
        // No sanitizer: the workspace denies `unsafe_code`, so AddressSanitizer would only
        // watch the few C and unsafe lines of dependencies, which these inputs do not reach,
        // while it makes every run several times slower and the build longer. Panics,
        // overflow checks and debug assertions (on by default in cargo-fuzz's release build)
        // are what find our bugs.
        .args(["--sanitizer", "none", "--target", triple, "--target-dir"])
        .arg(out)
        // Without a sanitizer cargo-fuzz passes only stable flags (`-Cpasses=sancov-module`,
        // `-Cllvm-args=-sanitizer-coverage-*`, `--cfg fuzzing`), so the stable toolchain
        // builds the targets as is (checked with 1.95): no nightly, no `RUSTC_BOOTSTRAP`.
        .args(only);
    cmd::run(&mut build).context("build the fuzz targets")
}

#[derive(Debug)]
struct Outcome {
    execs: u64,
    seconds: f64,
    /// The crashing input's path (relative to the root), or a description of the failure.
    crash: Option<String>,
    log: PathBuf,
}

fn run_target(
    repo: &Repo,
    binary: &Path,
    out: &Path,
    target: &str,
    seconds: u64,
) -> Result<Outcome> {
    let scratch = out.join("corpus").join(target);
    let logs = out.join("logs");
    let artifacts = repo.root().join("fuzz").join("artifacts").join(target);
    for dir in [&scratch, &logs, &artifacts] {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let seeds = repo.root().join("fuzz").join("corpus").join(target);
    let log = logs.join(format!("{target}.log"));
    let log_file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let mut fuzz = Command::new(binary);
    fuzz.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        // The trailing slash makes it a directory prefix: `<dir>/crash-<sha1>`.
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the first directory; the seeds are only read.
        .arg(&scratch)
        .current_dir(repo.root())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("log file handle")?)
        .stderr(log_file);
    if seeds.is_dir() {
        fuzz.arg(&seeds);
    } else {
        eprintln!(
            "xtask: warning: no seeds for {target} in {}",
            repo.rel(&seeds)
        );
    }
    let line = cmd::display(&fuzz);
    eprintln!("$ {line} > {}", repo.rel(&log));
    let started = Instant::now();
    let status = fuzz
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).with_context(|| format!("read {}", log.display()))?;
    let stats = Stats::parse(&text);
    let crash = match (stats.artifact, status.success()) {
        (Some(path), _) => Some(repo.rel(Path::new(&path))),
        (None, true) => None,
        (None, false) => Some(format!("libFuzzer exited with {status} and wrote no input")),
    };
    if crash.is_some() {
        // The panic message and stack are what the reader needs next.
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("  | {l}");
        }
    }
    Ok(Outcome {
        execs: stats.execs,
        seconds,
        crash,
        log,
    })
}

/// What libFuzzer's output says about a run.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    execs: u64,
    /// `Test unit written to <path>`: the input that crashed (or hung, or ran out of memory).
    artifact: Option<String>,
}

impl Stats {
    /// `stat::number_of_executed_units: N` from `-print_final_stats=1`, or failing that the
    /// last status line's `#N` (a run killed before its final stats).
    fn parse(text: &str) -> Self {
        let mut stats = Stats::default();
        let mut final_units = None;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                final_units = n.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix('#')
                && let Some(n) = rest.split_whitespace().next()
                && let Ok(n) = n.parse()
            {
                stats.execs = n;
            } else if let Some((_, path)) = line.split_once("Test unit written to ") {
                stats.artifact = Some(path.trim().to_string());
            }
        }
        if let Some(n) = final_units {
            stats.execs = n;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_default_to_the_smoke_and_refuse_nonsense() {
        assert_eq!(
            Options::parse(&[]).unwrap(),
            Options {
                seconds: SMOKE_SECONDS,
                target: None
            }
        );
        assert_eq!(
            Options::parse(&args("--target mjpeg --seconds 600")).unwrap(),
            Options {
                seconds: 600,
                target: Some("mjpeg".into())
            }
        );
        for bad in [
            "--seconds",
            "--seconds 0",
            "--seconds x",
            "--target",
            "mjpeg",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn stats_prefer_the_final_count_and_find_the_crashing_input() {
        let done = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                    #4096\tpulse  cov: 12\n#123456\tDONE   cov: 12 ft: 20 corp: 5/50b\n\
                    Done 123456 runs in 21 second(s)\nstat::number_of_executed_units: 123457\n\
                    stat::average_exec_per_sec:     5878\n";
        assert_eq!(
            Stats::parse(done),
            Stats {
                execs: 123_457,
                artifact: None
            }
        );
        let crash = "#512\tNEW    cov: 30\n==9== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='fuzz/artifacts/x/'; Test unit written to \
                     fuzz/artifacts/x/crash-da39a3ee\nBase64: AA==\n";
        assert_eq!(
            Stats::parse(crash),
            Stats {
                execs: 512,
                artifact: Some("fuzz/artifacts/x/crash-da39a3ee".into())
            }
        );
    }
}
