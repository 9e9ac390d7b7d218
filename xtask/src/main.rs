//! Project chores, run as `cargo xtask <command>` (see the alias in .cargo/config.toml).
//! Plain Rust instead of shell scripts so they behave the same on every machine and fail
//! with messages that say which file or command went wrong.

mod agent;
mod apt;
mod ci;
mod cmd;
mod fetch;
mod fuzz;
mod package;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

/// One `cargo xtask` command. Adding a command = one entry here plus its function; help and
/// the unknown-command error are derived from this table so they cannot drift.
#[derive(Debug)]
struct Task {
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    run: fn(&Repo, &[String]) -> Result<()>,
}

const TASKS: &[Task] = &[
    Task {
        name: "setup",
        usage: "setup",
        about: "fetch ONNX Runtime, the model and the sample clip into .cache/; \
                install ffmpeg and mosquitto if missing",
        run: setup::command,
    },
    Task {
        name: "test",
        usage: "test",
        about: "setup, then the dependency policy, cargo fmt --check, clippy -D warnings and \
                cargo test (the fuzz targets over their corpus included): what CI runs",
        run: ci::test,
    },
    Task {
        name: "demo",
        usage: "demo",
        about: "setup, build edge-agent (release), replay the sample clip and recorded tag reads \
                through the whole agent with configs/vtest.toml; print the alerts",
        run: agent::demo,
    },
    Task {
        name: "bench",
        usage: "bench [-- ARGS...]",
        about: "setup, build edge-tools (release), run `edge-tools bench ARGS...`",
        run: agent::bench,
    },
    Task {
        name: "soak",
        usage: "soak [-- ARGS...]",
        about: "setup, build edge-tools (release), run `edge-tools soak ARGS...` (minutes)",
        run: agent::soak,
    },
    Task {
        name: "chaos",
        usage: "chaos [-- ARGS...]",
        about: "setup, build edge-tools (release), run `edge-tools chaos ARGS...`: a real \
                mosquitto restarted 3 times and the agent SIGKILLed twice while 10,000 alerts \
                flow; last line `sent=… received=… lost=… duplicated=…`",
        run: chaos,
    },
    Task {
        name: "fuzz",
        usage: "fuzz [--seconds N] [--target NAME]",
        about: "build the cargo-fuzz targets in fuzz/ (stable toolchain is enough) and run each \
                for N seconds (default 20); one line per target with its exec count; fails \
                naming the target and the crashing input",
        run: fuzz::command,
    },
    Task {
        name: "package",
        usage: "package [--out DIR] [--install-test]",
        about: "setup, build both daemons (release) and make Debian packages edge-agent and hub \
                in target/debian/; --install-test installs them into a fresh Debian 12 root \
                (debootstrap, as root) and checks validate, detect, upgrade, remove and purge",
        run: package::command,
    },
    Task {
        name: "help",
        usage: "help",
        about: "show this list",
        run: help,
    },
];

fn main() -> ExitCode {
    match dispatch() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("argument is not UTF-8: {}", a.to_string_lossy()))
        })
        .collect::<Result<Vec<_>>>()?;
    let repo = Repo::locate()?;
    let Some((name, rest)) = args.split_first() else {
        return help(&repo, &[]);
    };
    let name = match name.as_str() {
        "-h" | "--help" => "help",
        other => other,
    };
    let Some(task) = TASKS.iter().find(|t| t.name == name) else {
        let known: Vec<_> = TASKS.iter().map(|t| t.name).collect();
        bail!(
            "unknown command `{name}`; known commands: {}",
            known.join(", ")
        );
    };
    (task.run)(&repo, rest)
}

/// `cargo xtask chaos [-- ARGS...]`: the delivery chaos test (`edge-tools chaos`), arguments
/// passed through. Like `soak`, but a failing run exits with the harness's own code and
/// without an error line of ours, so the harness's summary stays the last line of the output.
fn chaos(repo: &Repo, args: &[String]) -> Result<()> {
    // `cargo xtask chaos -- --count 500` reaches us with the `--`; the agent should not see it.
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    // For mosquitto, which setup installs when missing.
    setup::run(repo)?;
    let binary = agent::build_release_tools(repo)?;
    let mut run = Command::new(&binary);
    run.arg("chaos").args(args).current_dir(repo.root());
    let line = cmd::display(&run);
    eprintln!("$ {line}");
    let status = run
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        // The harness printed why; its summary must stay the last line.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn help(_repo: &Repo, _args: &[String]) -> Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let width = TASKS.iter().map(|t| t.usage.len()).max().unwrap_or(0);
    let mut text = String::from("usage: cargo xtask <command>\n\ncommands:\n");
    for task in TASKS {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "  {:width$}  {}", task.usage, task.about);
    }
    // Not `print!`: help piped into `head` must not panic on the closed pipe.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// For commands that take no arguments: a typo should fail, not be silently ignored.
pub fn no_args(command: &str, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!(
            "`cargo xtask {command}` takes no arguments (got: {})",
            args.join(" ")
        );
    }
    Ok(())
}

/// The workspace checkout xtask was built from, and where things live in it.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    /// The parent of this crate's directory, fixed at compile time, so commands work from any
    /// current directory.
    fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .with_context(|| format!("{} has no parent directory", manifest_dir.display()))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Project-local cache (gitignored): nothing outside the checkout is touched except
    /// Debian packages.
    pub fn cache(&self) -> PathBuf {
        self.root.join(".cache")
    }

    /// Read-only inputs provided next to the checkout on this workplace; optional elsewhere.
    pub fn shared(&self) -> PathBuf {
        self.root.join("..").join("shared")
    }

    /// Where cargo puts build output: honours CARGO_TARGET_DIR (relative to the root, where
    /// xtask runs cargo).
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// `cargo` in the repository root: the same cargo that runs xtask (cargo sets $CARGO), so
    /// child builds use the same toolchain.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(&self.root);
        c
    }

    /// `path` relative to the root when it is inside it, for short messages.
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
