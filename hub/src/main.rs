//! The hub daemon and its tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hub::config::HubConfig;
use hub::gateway::auth::{CredentialKind, add_to_file};
use hub::grid::{CoordSystem, geojson};
use hub::service::Loaded;

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "Receives alerts, finds the grid cell and the person on duty, escalates."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the hub (broker, ingest, dispatch, escalation, push) until SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of the config's `broker.listen` (repeatable).
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
        /// Serve `/metrics` here instead of the config's `metrics.listen`.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Serve the dashboard and API here instead of the config's `http.listen`.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// Accept the repository's published demo secrets (signing key, device tokens, user
        /// passwords), which are refused otherwise. Only for `cargo xtask demo` and tests.
        #[arg(long)]
        demo: bool,
    },
    /// Dashboard users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Print every notification the hub pushes (and with --alerts every alert), with the
    /// cell path and the person's name from the roster.
    Tail {
        #[arg(long, short)]
        config: PathBuf,
        /// The broker (the hub's gateway), host:port.
        #[arg(long, default_value = "127.0.0.1:1883")]
        broker: String,
        #[arg(long)]
        username: String,
        /// The token; `-` reads it from standard input.
        #[arg(long)]
        password: String,
        #[arg(long)]
        alerts: bool,
        /// Exit after this many ms without a message (0: run until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        idle_exit_ms: u64,
    },
    /// Check a config and everything it points at; lists every problem.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Reload the running hub's roster (people, duty, departments) and users without a
    /// restart: checks
    /// the config and every file first and lists each problem (nothing is sent then), else
    /// sends SIGHUP to the hub whose pid is in data_dir/hub.pid (as `systemctl reload hub`
    /// does). The hub checks again and logs what it applied or refused.
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a GeoJSON grid hierarchy and make it the hub's grid (stored under data_dir,
    /// as WGS-84). Takes effect at the next start.
    ImportGrids {
        #[arg(long, short)]
        config: PathBuf,
        file: PathBuf,
        /// How the file's coordinates are declared: wgs84 or gcj02.
        #[arg(long, default_value = "wgs84")]
        crs: String,
    },
    /// Validate a roster directory against the hub's grid and make it the hub's roster.
    /// A running hub takes it on `hub reload` (or at its next start).
    ImportRoster {
        #[arg(long, short)]
        config: PathBuf,
        dir: PathBuf,
    },
    /// Add (or replace) a device credential and print its new token once.
    CredentialAdd {
        /// The credentials file (the config's broker.credentials).
        #[arg(long)]
        file: PathBuf,
        /// site, person or service.
        #[arg(long)]
        kind: String,
        /// The username: the site, person or service id.
        id: String,
    },
    /// Write a synthetic grid hierarchy (GeoJSON, WGS-84) of about `cells` cells around Wuding
    /// county, for benchmarks and load tests. The same seed gives the same file.
    GenGrid {
        #[arg(long, default_value_t = 100_000)]
        cells: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make the hub's Ed25519 command-signing key; prints the public key for the agents'
    /// `[uplink.commands] public_key`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing key (agents then need the new public key).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a dashboard user (or replace the one with the same login). The password is read
    /// from standard input (first line) or from the environment variable --password-env names;
    /// only its argon2id hash is written.
    Add {
        /// The hub config; the user goes into its `http.users` file.
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
        /// admin, operator or member.
        #[arg(long)]
        role: String,
        /// A cell the user answers for (repeatable); operators see everything under it.
        #[arg(long = "cell")]
        cells: Vec<String>,
        /// The roster person this user is.
        #[arg(long)]
        person: Option<String>,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
}

/// See the workspace's `mimalloc` entry: the allocator is a large share of ingest's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rumqttd logs every routine disconnect (and the start-up probe) at ERROR; the
                // gateway logs each connection itself. `RUST_LOG=info,rumqttd=info` shows it.
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Run {
            config,
            listen,
            metrics,
            http,
            demo,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(hub::service::run(&config, listen, metrics, http, demo)),
        Cmd::User {
            cmd:
                UserCmd::Add {
                    config,
                    login,
                    role,
                    cells,
                    person,
                    name,
                    password_env,
                },
        } => user_add(&config, login, &role, cells, person, name, password_env),
        Cmd::Tail {
            config,
            broker,
            username,
            password,
            alerts,
            idle_exit_ms,
        } => {
            let loaded = load(&config)?;
            let (host, port) = broker
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| format!("--broker {broker:?}: expected host:port"))?;
            let password = if password == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_line(&mut s)
                    .map_err(|e| e.to_string())?;
                s.trim().to_owned()
            } else {
                password
            };
            let opts = hub::tail::TailOptions {
                host,
                port,
                username,
                password,
                prefix: loaded.config.topic_prefix.clone(),
                alerts,
                idle_exit_ms,
            };
            let n = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(hub::tail::run(opts, Some(loaded.roster)))?;
            eprintln!("hub tail: {n} notification(s)");
            Ok(())
        }
        Cmd::Reload { config } => {
            let loaded = load(&config)?;
            let pid_file = hub::service::pid_file(&loaded.config.data_dir);
            let text = std::fs::read_to_string(&pid_file).map_err(|e| {
                format!(
                    "{}: {e} (is the hub running with this config?)",
                    pid_file.display()
                )
            })?;
            let pid = text
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .ok_or_else(|| format!("{}: not a process id: {text:?}", pid_file.display()))?;
            rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                .map_err(|e| format!("cannot signal the hub (pid {pid:?}): {e}"))?;
            println!(
                "roster {} checked; reload sent to the hub (pid {}); its log says what it applied",
                loaded.roster.summary(),
                pid.as_raw_nonzero()
            );
            Ok(())
        }
        Cmd::Validate { config } => {
            let loaded = load(&config)?;
            let h = loaded.grid.hierarchy();
            println!(
                "ok: grid {} cells, roster {}, {} credential(s), {} registered site(s)",
                h.len(),
                loaded.roster.summary(),
                loaded.credentials.len(),
                loaded.config.sites.len()
            );
            for w in loaded.roster.warnings() {
                println!("warning: {w}");
            }
            for s in hub::demo::find(&loaded) {
                println!("warning: demo secret: {s} (`hub run` refuses it without --demo)");
            }
            Ok(())
        }
        Cmd::ImportGrids { config, file, crs } => {
            let config = HubConfig::load(&config).map_err(|e| e.to_string())?;
            let crs: CoordSystem = crs.parse().map_err(|e| format!("--crs: {e}"))?;
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let h = geojson::import_reader(std::io::BufReader::new(f), crs)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let index = hub::grid::GridIndex::new(h);
            // The roster and the sites must still fit the new grid.
            let known = |c: &str| index.find(c).is_some();
            hub::roster::Roster::load_dir(config.roster_source(), &known)
                .map_err(|e| format!("the current roster does not fit the new grid: {e}"))?;
            for (id, s) in &config.sites {
                if index.find(&s.cell).is_none() {
                    return Err(format!(
                        "sites.{id}.cell {:?} is not in the new grid",
                        s.cell
                    ));
                }
            }
            let text = serde_json::to_string(&geojson::to_value(index.hierarchy()))
                .map_err(|e| e.to_string())?;
            write_atomically(&config.data_dir.join("grid.geojson"), text.as_bytes())?;
            println!(
                "imported {} cells into {}",
                index.len(),
                config.data_dir.display()
            );
            Ok(())
        }
        Cmd::ImportRoster { config, dir } => {
            let config = HubConfig::load(&config).map_err(|e| e.to_string())?;
            let loaded = load_grid(&config)?;
            let known = |c: &str| loaded.find(c).is_some();
            let roster = hub::roster::Roster::load_dir(&dir, &known).map_err(|e| e.to_string())?;
            let target = config.data_dir.join("roster");
            std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            for file in hub::roster::RosterFile::ALL {
                let name = file.file_name();
                let src = dir.join(name);
                match std::fs::read(&src) {
                    Ok(bytes) => write_atomically(&target.join(name), &bytes)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let _ = std::fs::remove_file(target.join(name));
                    }
                    Err(e) => return Err(format!("{}: {e}", src.display())),
                }
            }
            println!(
                "imported roster ({}) into {}",
                roster.summary(),
                target.display()
            );
            Ok(())
        }
        Cmd::CredentialAdd { file, kind, id } => {
            let kind = match kind.as_str() {
                "site" => CredentialKind::Site,
                "person" => CredentialKind::Person,
                "service" => CredentialKind::Service,
                other => return Err(format!("--kind: {other:?} is not site, person or service")),
            };
            let token = add_to_file(&file, kind, &id).map_err(|e| e.to_string())?;
            println!("{token}");
            eprintln!(
                "credential for {id} written to {}; the token above is shown only once",
                file.display()
            );
            Ok(())
        }
        Cmd::GenGrid { cells, seed, out } => {
            let h = hub::grid::synthetic::Synthetic::new(cells, seed)
                .hierarchy()
                .map_err(|e| e.to_string())?;
            let text = serde_json::to_string(&geojson::to_value(&h)).map_err(|e| e.to_string())?;
            write_atomically(&out, text.as_bytes())?;
            println!("{} cells written to {}", h.len(), out.display());
            Ok(())
        }
        Cmd::Keygen { out, force } => {
            if out.exists() && !force {
                return Err(format!(
                    "{} exists; pass --force to replace it",
                    out.display()
                ));
            }
            let key = protocol::SigningKey::from_bytes(&hub::random::bytes32());
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            hub::secret_file::write_private(
                &out,
                protocol::command::encode_signing_key(&key).as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            println!(
                "{}",
                protocol::command::encode_verifying_key(&key.verifying_key())
            );
            eprintln!(
                "signing key written to {}; the public key above goes into each agent's [uplink.commands] public_key",
                out.display()
            );
            Ok(())
        }
    }
}

fn load(config: &Path) -> Result<Loaded, String> {
    let config = HubConfig::load(config).map_err(|e| e.to_string())?;
    Loaded::load(config)
        .map_err(|errors| format!("{} problem(s):\n  {}", errors.len(), errors.join("\n  ")))
}

fn load_grid(config: &HubConfig) -> Result<hub::grid::GridIndex, String> {
    let (file, crs) = config.grid_source();
    let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    geojson::import_reader(std::io::BufReader::new(f), crs)
        .map(hub::grid::GridIndex::new)
        .map_err(|e| format!("{}: {e}", file.display()))
}

fn user_add(
    config_path: &Path,
    login: String,
    role: &str,
    cells: Vec<String>,
    person: Option<String>,
    name: String,
    password_env: Option<String>,
) -> Result<(), String> {
    use hub::users::{User, UserRole, add_user, hash_password};
    let config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
    let http = config
        .http
        .as_ref()
        .ok_or("the config has no [http] section (it names the users file)")?;
    let mut problems = Vec::new();
    let role = match role {
        "admin" => Some(UserRole::Admin),
        "operator" => Some(UserRole::Operator),
        "member" => Some(UserRole::Member),
        other => {
            problems.push(format!(
                "--role: {other:?} is not admin, operator or member"
            ));
            None
        }
    };
    if let Err(e) = hub::roster::check_id(&login) {
        problems.push(format!("--login: {e}"));
    }
    // The grid and roster to check against; not the users file, which may not exist yet.
    let mut without_users = config.clone();
    without_users.http = None;
    let loaded = Loaded::load(without_users);
    if let Err(errors) = &loaded {
        problems.extend(errors.iter().map(|e| format!("config: {e}")));
    }
    if let Ok(l) = &loaded {
        for c in &cells {
            if l.grid.find(c).is_none() {
                problems.push(format!("--cell: {c:?} is not a cell of the grid"));
            }
        }
        if let Some(p) = &person
            && l.roster.person(p).is_none()
        {
            problems.push(format!("--person: {p:?} is not on the roster"));
        }
    }
    if role.is_some_and(|r| r != UserRole::Admin) && cells.is_empty() {
        problems.push("--cell: operators and members need at least one cell".into());
    }
    let password = match &password_env {
        Some(var) => std::env::var(var).map_err(|_| format!("--password-env: {var} is not set"))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password from standard input: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let hash = match hash_password(&password) {
        Ok(h) => Some(h),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if !problems.is_empty() {
        return Err(format!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    let (Some(role), Some(password)) = (role, hash) else {
        return Err("unreachable: problems were listed".into());
    };
    let user = User {
        login: login.clone(),
        name,
        role,
        cells,
        person,
        password,
    };
    add_user(&http.users, user).map_err(|e| e.to_string())?;
    println!(
        "user {login} ({}) written to {}",
        role.as_str(),
        http.users.display()
    );
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
