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
    /// Takes effect at the next start.
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
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(hub::service::run(&config, listen, metrics)),
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
            for name in ["people.csv", "duty.csv", "overrides.csv", "backups.csv"] {
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
            write_atomically(&out, protocol::command::encode_signing_key(&key).as_bytes())?;
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

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
