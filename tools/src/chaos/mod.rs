//! The `chaos` subcommand: proof that no alert is lost between the agent's outbox and a
//! subscriber, through broker restarts and agent crashes.
//!
//! Against a real mosquitto started here ([`broker`]), the agent (`edge-tools emit`, a child
//! process) appends `--count` alerts to its durable outbox and publishes them over MQTT QoS 1,
//! while the harness stops the broker gracefully and restarts it, and kills the agent with
//! `SIGKILL` and restarts it, spread over the run by delivery progress. A persistent subscriber
//! in this process ([`subscriber`]) counts every alert id it receives. The report's last line is
//! `sent=N received=R lost=L duplicated=D`; the exit code is 0 only if nothing was lost, nothing
//! arrived garbled and the agent finally exited 0 (every alert appended and acknowledged).
//!
//! How each count is decided:
//!
//! - `sent`: `--count`, the alerts the agent is told to emit. Their ids are known in advance
//!   ([`alert_id`] of indices `0..count`), so the harness never trusts the agent's own account.
//! - `received`: every PUBLISH the subscriber got on the alert topic, duplicates included.
//! - `lost`: expected ids never received.
//! - `duplicated`: copies beyond the first of an expected id (`received - distinct` when nothing
//!   malformed or unexpected arrived). QoS 1 is at-least-once, so duplicates are allowed;
//!   they come from a resend after a lost PUBACK (either hop) or an agent killed between
//!   PUBACK and deleting the outbox record.
//! - also reported, each failing the run: payloads that are not alert JSON (`malformed`), ids
//!   that were never sent (`unexpected`), and alerts whose content differs from what
//!   [`make_alert`] makes for their index (`corrupt`).
//!
//! What this proves and what it does not: the broker is stopped with `SIGTERM`, so it writes its
//! persistence file and keeps both what it acknowledged to the agent and what it queued for the
//! subscriber's persistent session. A broker killed with `SIGKILL` loses what it acknowledged
//! since its last autosave: that is the broker's durability, not the agent's, and outside this
//! test (which is why a stop that does not finish within its time and has to be forced is
//! reported separately).
//!
//! Work directory (`--work-dir`, else a fresh one under the system temp dir, removed after a
//! passing run): `mosquitto.conf`, `mosquitto.log`, `mosquitto/` (the broker's database),
//! `agent.toml`, `agent.log` (every agent run's stdout and stderr) and `agent-data/` (the outbox).

mod agent;
mod broker;
mod subscriber;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use testkit::emitted::splitmix64;
pub use testkit::emitted::{BASE_MS, alert_id, make_alert};
use tokio::time::Instant;
use tracing::{info, warn};

use agent::AgentProcess;
use broker::{Broker, StopKind};
use subscriber::{Expected, Subscriber, Tally};

/// The site id of the chaos agent; the alert topic follows from it.
pub const SITE: &str = "chaos";
/// Where the agent publishes alerts for [`SITE`].
pub const ALERT_TOPIC: &str = "se/v1/site/chaos/alert";
/// Largest snapshot accepted: base64 makes it 4/3 larger, and the subscriber accepts packets up
/// to 2 MiB.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;

/// The main loop's period: how quickly an event fires once its progress point is reached.
const TICK: Duration = Duration::from_millis(50);
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// After the agent exited 0, wait this long for late duplicates before reporting.
const SETTLE: Duration = Duration::from_secs(1);
/// After the agent exited 0 with ids still missing, give up when nothing has arrived for this
/// long: the broker has acknowledged everything, so what it still holds for the subscriber
/// comes within seconds, not minutes.
const DRAIN_IDLE: Duration = Duration::from_secs(15);
/// Progress points (fraction of distinct ids received) of the first and last chaos event.
const FIRST_EVENT_AT: f64 = 0.10;
const LAST_EVENT_AT: f64 = 0.85;

/// The `chaos` subcommand's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Alerts the agent emits.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Times the broker is stopped (SIGTERM), left down 2-5 s and started again.
    #[arg(long, default_value_t = 3)]
    pub broker_outages: usize,
    /// Times the agent is killed with SIGKILL and started again at once.
    #[arg(long, default_value_t = 2)]
    pub agent_kills: usize,
    /// Snapshot JPEG bytes per alert (0: no snapshot).
    #[arg(long, default_value_t = 20_000)]
    pub snapshot_bytes: usize,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// Broker database, agent outbox, configs and logs; must be empty or absent. Default: a
    /// new directory in the system temp dir, removed after a passing run.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Passed to `emit --rate` (alerts per second): slows an agent so fast that it finishes
    /// before the planned kills. Default: emit's own (as fast as it can).
    #[arg(long, value_name = "PER_S")]
    pub agent_rate: Option<f64>,
}

/// One chaos run, fully specified.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Alerts the agent emits.
    pub count: u64,
    /// Graceful broker stops and restarts.
    pub broker_outages: usize,
    /// Agent SIGKILLs (each followed by a restart).
    pub agent_kills: usize,
    /// Snapshot bytes per alert (0: none).
    pub snapshot_bytes: usize,
    /// The whole run's time limit.
    pub timeout: Duration,
    /// Where everything goes; `None`: a fresh temporary directory.
    pub work_dir: Option<PathBuf>,
    /// The `edge-tools` binary run as `emit` (the running one, for the subcommand).
    pub agent_program: PathBuf,
    /// Time of alert 0; alert `i` is at `base_ms + i`.
    pub base_ms: i64,
    /// Shortest and longest time a broker outage lasts (chosen at random in between).
    pub outage_min: Duration,
    pub outage_max: Duration,
    /// `emit --rate`, when given.
    pub agent_rate: Option<f64>,
}

impl ChaosConfig {
    /// The subcommand's flags, with `agent_program` as the agent.
    pub fn new(args: ChaosArgs, agent_program: PathBuf) -> Self {
        Self {
            count: args.count,
            broker_outages: args.broker_outages,
            agent_kills: args.agent_kills,
            snapshot_bytes: args.snapshot_bytes,
            timeout: Duration::from_secs(args.timeout_s),
            work_dir: args.work_dir,
            agent_program,
            base_ms: BASE_MS,
            outage_min: Duration::from_secs(2),
            outage_max: Duration::from_secs(5),
            agent_rate: args.agent_rate,
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=1_000_000).contains(&self.count) {
            errors.push(format!(
                "--count: must be within [1, 1000000], got {}",
                self.count
            ));
        }
        if self.snapshot_bytes > MAX_SNAPSHOT_BYTES {
            errors.push(format!(
                "--snapshot-bytes: must be at most {MAX_SNAPSHOT_BYTES}, got {}",
                self.snapshot_bytes
            ));
        }
        if self.timeout < Duration::from_secs(1) {
            errors.push("--timeout-s: must be at least 1".into());
        }
        if let Some(r) = self.agent_rate
            && !(r.is_finite() && r > 0.0)
        {
            errors.push(format!("--agent-rate: must be a positive number, got {r}"));
        }
        if self.outage_min > self.outage_max {
            errors.push(format!(
                "outage: shortest {:?} is longer than longest {:?}",
                self.outage_min, self.outage_max
            ));
        }
        errors
    }
}

/// Everything that can stop the harness from running (as opposed to a run that fails, which
/// is a [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// Bad flags; every problem.
    #[error("chaos: {}", .0.join("; "))]
    Args(Vec<String>),
    /// No mosquitto binary.
    #[error(
        "chaos: mosquitto not found ($MOSQUITTO, PATH, /usr/sbin, /usr/local/sbin): the delivery \
         chaos test needs a real broker; `cargo xtask setup` installs it (Debian package \
         `mosquitto`)"
    )]
    MosquittoMissing,
    /// No `kill` program to send SIGTERM with.
    #[error("chaos: no `kill` program on PATH or in /bin, /usr/bin (procps or util-linux)")]
    KillMissing,
    /// The work directory already holds something (a previous run's broker database and outbox
    /// would mix into this one's counts).
    #[error("chaos: work dir {0} is not empty; give an empty or absent directory")]
    WorkDirNotEmpty(PathBuf),
    /// A file or directory could not be read or written.
    #[error("chaos: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A child process could not be started.
    #[error("chaos: cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The broker did not come up.
    #[error("chaos: mosquitto on port {port}: {problem}; its log ends:\n{log_tail}")]
    Broker {
        /// Its port.
        port: u16,
        /// What went wrong.
        problem: String,
        /// The last lines of `mosquitto.log`.
        log_tail: String,
    },
    /// The subscriber could not subscribe before the agent started.
    #[error("chaos: subscriber: {0}")]
    Subscriber(String),
    /// The agent config could not be written.
    #[error("chaos: agent config: {0}")]
    AgentConfig(String),
    /// This process's own path (the agent binary) is unknown.
    #[error("chaos: cannot find the running edge-tools binary: {0}")]
    CurrentExe(std::io::Error),
    /// The async runtime could not be built.
    #[error("chaos: cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// One disruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the broker (SIGTERM), wait, start it again.
    BrokerOutage,
    /// SIGKILL the agent, start it again at once.
    AgentKill,
    /// SIGKILL the agent, stop the broker, start the agent (it starts up and finds unsent
    /// alerts in its outbox while the broker is down), wait, start the broker.
    AgentKillDuringOutage,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::BrokerOutage => "broker-outage",
            Self::AgentKill => "agent-kill",
            Self::AgentKillDuringOutage => "agent-kill+broker-outage",
        }
    }
}

/// A disruption and the delivery progress (fraction of ids received) that triggers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    /// Progress point in `0..1`.
    pub at: f64,
    /// What happens.
    pub action: Action,
}

/// The run's disruptions, in order: `outages` broker outages and `kills` agent kills,
/// alternating and starting with a kill, the last kill merged with an outage into
/// [`Action::AgentKillDuringOutage`] (so one outage hits an agent that is starting up and
/// resending), spread evenly between 10 % and 85 % of the ids received.
///
/// Kills go first because the agent keeps appending while the broker is down: after an outage
/// it can be far ahead of the subscriber, and a kill planned late could find it finished.
pub fn schedule(outages: usize, kills: usize) -> Vec<Planned> {
    let merged = outages > 0 && kills > 0;
    let (mut o, mut k) = (outages - usize::from(merged), kills);
    let mut actions = Vec::with_capacity(o + k);
    let mut kill_turn = true;
    while o + k > 0 {
        if (kill_turn && k > 0) || o == 0 {
            actions.push(Action::AgentKill);
            k -= 1;
        } else {
            actions.push(Action::BrokerOutage);
            o -= 1;
        }
        kill_turn = !kill_turn;
    }
    if merged && let Some(last) = actions.iter().rposition(|a| *a == Action::AgentKill) {
        actions[last] = Action::AgentKillDuringOutage;
    }
    let n = actions.len();
    actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| Planned {
            at: if n == 1 {
                FIRST_EVENT_AT
            } else {
                FIRST_EVENT_AT + (LAST_EVENT_AT - FIRST_EVENT_AT) * i as f64 / (n - 1) as f64
            },
            action,
        })
        .collect()
}

/// A disruption as it happened.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// What happened.
    pub action: Action,
    /// Distinct ids received when it started.
    pub at_distinct: u64,
    /// How long the broker was down (outages).
    pub broker_down: Option<Duration>,
    /// The broker did not stop within its time after SIGTERM and was killed (its unsaved state
    /// may be lost: broker durability, not the agent's).
    pub broker_forced: bool,
    /// Kills: whether the agent was still running (a kill of a finished agent proves nothing).
    pub agent_was_running: Option<bool>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Alerts the agent was told to emit.
    pub sent: u64,
    /// PUBLISHes received on the alert topic, every copy.
    pub received: u64,
    /// Expected ids received at least once.
    pub distinct: u64,
    /// Expected ids never received.
    pub lost: u64,
    /// Copies of expected ids beyond the first.
    pub duplicated: u64,
    /// Payloads that were not alert JSON.
    pub malformed: u64,
    /// Alerts whose id was never sent.
    pub unexpected: u64,
    /// Alerts with an expected id whose content differs from what was sent.
    pub corrupt: u64,
    /// The first few lost indices.
    pub lost_sample: Vec<u64>,
    /// Times the subscriber's broker session was gone on reconnect (what the broker had queued
    /// for it went with it).
    pub subscriber_sessions_lost: u64,
    /// The disruptions that happened.
    pub events: Vec<EventRecord>,
    /// The disruptions planned.
    pub events_planned: usize,
    /// Agent processes started.
    pub agent_starts: u32,
    /// The agent's last run exited 0 (all appended, outbox empty).
    pub agent_exit_ok: bool,
    /// How the agent's last run ended, for the report.
    pub agent_exit: String,
    /// The time limit was reached.
    pub timed_out: bool,
    /// The harness itself failed mid-run (a broker that would not restart, an agent that could
    /// not be started).
    pub failure: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Where the logs are.
    pub work_dir: PathBuf,
    /// Whether the work dir is still there (a default one is removed after a pass).
    pub work_dir_kept: bool,
}

impl Report {
    /// Nothing lost or garbled, every disruption done, and the agent finished.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.malformed == 0
            && self.unexpected == 0
            && self.corrupt == 0
            && self.agent_exit_ok
            && self.failure.is_none()
            && !self.timed_out
            && self.events.len() == self.events_planned
            && self.kills_missed() == 0
    }

    /// Kills that found the agent already finished.
    pub fn kills_missed(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.agent_was_running == Some(false))
            .count()
    }

    /// The last line of the run.
    pub fn summary_line(&self) -> String {
        format!(
            "sent={} received={} lost={} duplicated={}",
            self.sent, self.received, self.lost, self.duplicated
        )
    }

    /// Why the run failed, one reason per entry; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.lost > 0 {
            why.push(format!(
                "{} alert id(s) never arrived (first indices {:?})",
                self.lost, self.lost_sample
            ));
        }
        if self.malformed > 0 {
            why.push(format!("{} payload(s) were not alert JSON", self.malformed));
        }
        if self.unexpected > 0 {
            why.push(format!("{} alert(s) with ids never sent", self.unexpected));
        }
        if self.corrupt > 0 {
            why.push(format!(
                "{} alert(s) differ from what was sent",
                self.corrupt
            ));
        }
        if !self.agent_exit_ok {
            why.push(format!("the agent did not finish: {}", self.agent_exit));
        }
        if let Some(f) = &self.failure {
            why.push(f.clone());
        }
        if self.timed_out {
            why.push("timed out".into());
        }
        if self.kills_missed() > 0 {
            why.push(format!(
                "{} agent kill(s) found the agent already finished, so they tested nothing; \
                 raise --count",
                self.kills_missed()
            ));
        }
        if self.events.len() != self.events_planned {
            why.push(format!(
                "only {} of {} disruptions happened",
                self.events.len(),
                self.events_planned
            ));
        }
        why
    }

    fn print(&self) {
        let outages: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| e.broker_down)
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect();
        let forced = self.events.iter().filter(|e| e.broker_forced).count();
        let kills = self
            .events
            .iter()
            .filter(|e| e.action != Action::BrokerOutage)
            .count();
        println!(
            "chaos report (work dir {}{})",
            self.work_dir.display(),
            if self.work_dir_kept { "" } else { ", removed" }
        );
        println!(
            "  disruptions: {} of {} planned; broker outages {} (down {}), forced broker stops {forced}; agent SIGKILLs {kills}, agent starts {}",
            self.events.len(),
            self.events_planned,
            outages.len(),
            if outages.is_empty() {
                "-".to_string()
            } else {
                outages.join(", ")
            },
            self.agent_starts,
        );
        println!("  agent: {}", self.agent_exit);
        println!(
            "  subscriber: {} received, {} distinct of {} sent, {} duplicated, {} malformed, {} unexpected, {} corrupt, {} session(s) lost by the broker",
            self.received,
            self.distinct,
            self.sent,
            self.duplicated,
            self.malformed,
            self.unexpected,
            self.corrupt,
            self.subscriber_sessions_lost
        );
        println!("  elapsed: {:.1} s", self.elapsed.as_secs_f64());
        let failures = self.failures();
        if failures.is_empty() {
            println!("  result: PASS");
        } else {
            println!("  result: FAIL: {}", failures.join("; "));
            if forced > 0 && self.lost > 0 {
                println!(
                    "  note: {forced} broker stop(s) had to be forced (SIGKILL); a killed broker loses what it acknowledged since its last save"
                );
            }
        }
        println!("{}", self.summary_line());
    }
}

/// `edge-tools chaos`: runs the harness with this binary as the agent; exit 0 only if it
/// passed. The last line printed is [`Report::summary_line`].
pub fn run(args: ChaosArgs) -> Result<ExitCode, ChaosError> {
    let agent_program = std::env::current_exe().map_err(ChaosError::CurrentExe)?;
    let cfg = ChaosConfig::new(args, agent_program);
    let runtime = tokio::runtime::Runtime::new().map_err(ChaosError::Runtime)?;
    let report = runtime.block_on(execute(&cfg))?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one chaos test and prints its progress and report. `Err` only when the harness could
/// not start (bad flags, no mosquitto, unusable work dir); anything that goes wrong once alerts
/// flow is part of the [`Report`].
pub async fn execute(cfg: &ChaosConfig) -> Result<Report, ChaosError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(ChaosError::Args(problems));
    }
    let work = WorkDir::prepare(cfg.work_dir.as_deref())?;
    let began = Instant::now();
    let mut broker = Broker::start(&work.path).await?;
    println!(
        "chaos: {} alerts, {} B snapshots, {} broker outage(s), {} agent kill(s); mosquitto port {}; work dir {}",
        cfg.count,
        cfg.snapshot_bytes,
        cfg.broker_outages,
        cfg.agent_kills,
        broker.port(),
        work.path.display()
    );
    let expected = Expected::new(SITE, cfg.base_ms, cfg.count, cfg.snapshot_bytes);
    // Subscribed before the agent publishes anything: an alert published with nobody
    // subscribed is dropped by the broker, which is no fault of the agent.
    let subscriber = Subscriber::start(broker.port(), expected).await?;
    let config = agent::write_config(&work.path, broker.port())?;
    let mut agent = AgentProcess::new(cfg, config, work.path.join("agent.log"));

    let plan = schedule(cfg.broker_outages, cfg.agent_kills);
    let outcome = match agent.spawn() {
        Ok(()) => drive(cfg, &plan, began, &mut broker, &subscriber, &mut agent).await,
        Err(e) => Outcome {
            failure: Some(e.to_string()),
            ..Outcome::default()
        },
    };

    let agent_exit = agent.finish().await;
    let tally = subscriber.stop().await;
    if let Err(e) = broker.stop().await {
        warn!(message = "Broker did not stop cleanly at the end.", error = %e);
    }
    let mut report = build_report(
        cfg,
        tally,
        outcome,
        plan.len(),
        &agent,
        agent_exit,
        began.elapsed(),
        &work.path,
    );
    if !report.passed() {
        println!("--- agent.log (end) ---\n{}", agent.log_tail(20));
        println!("--- mosquitto.log (end) ---\n{}", broker.log_tail(20));
    }
    report.work_dir_kept = work.finish(report.passed());
    report.print();
    Ok(report)
}

/// What the main loop saw.
#[derive(Debug, Default)]
struct Outcome {
    events: Vec<EventRecord>,
    timed_out: bool,
    failure: Option<String>,
}

/// The main loop: fires each planned disruption when its progress point is reached, restarts
/// what it broke, and ends when every id arrived and the agent exited 0, when nothing more can
/// come, on an agent failure, or at the time limit.
async fn drive(
    cfg: &ChaosConfig,
    plan: &[Planned],
    began: Instant,
    broker: &mut Broker,
    subscriber: &Subscriber,
    agent: &mut AgentProcess,
) -> Outcome {
    let deadline = began + cfg.timeout;
    let mut outcome = Outcome::default();
    let mut rng = RandomState::new().hash_one(std::process::id()) | 1;
    let mut last_print = Instant::now();
    let mut last_received = (0u64, Instant::now());
    loop {
        let now = Instant::now();
        let progress = subscriber.progress();
        if progress.received != last_received.0 {
            last_received = (progress.received, now);
        }
        if now >= deadline {
            outcome.timed_out = true;
            break;
        }
        match agent.poll_exit() {
            // The agent failed on its own; the report says how (`AgentProcess::finish`).
            Ok(Some(status)) if !status.success() => break,
            Ok(_) => {}
            Err(e) => {
                outcome.failure = Some(e.to_string());
                break;
            }
        }
        let fraction = progress.distinct as f64 / cfg.count as f64;
        if let Some(planned) = plan.get(outcome.events.len())
            && fraction >= planned.at
        {
            let n = outcome.events.len() + 1;
            match disrupt(
                cfg,
                planned.action,
                progress.distinct,
                broker,
                agent,
                &mut rng,
            )
            .await
            {
                Ok(record) => {
                    println!(
                        "event {n}/{} {} at {}/{} ids ({:.0} %){}{}{}",
                        plan.len(),
                        record.action.name(),
                        record.at_distinct,
                        cfg.count,
                        fraction * 100.0,
                        record
                            .broker_down
                            .map(|d| format!(", broker down {:.1} s", d.as_secs_f64()))
                            .unwrap_or_default(),
                        if record.broker_forced {
                            ", broker stop FORCED (SIGKILL)"
                        } else {
                            ""
                        },
                        match record.agent_was_running {
                            Some(true) => ", agent was running",
                            Some(false) => ", agent had already FINISHED (kill missed)",
                            None => "",
                        }
                    );
                    outcome.events.push(record);
                }
                Err(e) => {
                    outcome.failure = Some(format!("{} failed: {e}", planned.action.name()));
                    break;
                }
            }
            continue;
        }
        if agent.exited_ok() {
            if progress.distinct == cfg.count {
                if outcome.events.len() == plan.len() {
                    tokio::time::sleep(SETTLE).await;
                    break;
                }
            } else if now.duration_since(last_received.1) >= DRAIN_IDLE {
                info!(
                    message = "Agent done and nothing arrived for a while; ids are missing.",
                    distinct = progress.distinct,
                    count = cfg.count
                );
                break;
            }
        }
        if last_print.elapsed() >= PROGRESS_EVERY {
            last_print = Instant::now();
            println!(
                "progress t={:.0}s ids={}/{} received={} agent={} broker={}",
                began.elapsed().as_secs_f64(),
                progress.distinct,
                cfg.count,
                progress.received,
                agent.state(),
                if broker.is_running() { "up" } else { "down" },
            );
        }
        tokio::time::sleep(TICK).await;
    }
    outcome
}

/// Carries out one disruption and restarts what it stopped.
async fn disrupt(
    cfg: &ChaosConfig,
    action: Action,
    at_distinct: u64,
    broker: &mut Broker,
    agent: &mut AgentProcess,
    rng: &mut u64,
) -> Result<EventRecord, ChaosError> {
    let mut record = EventRecord {
        action,
        at_distinct,
        broker_down: None,
        broker_forced: false,
        agent_was_running: None,
    };
    let span = cfg.outage_max.saturating_sub(cfg.outage_min).as_millis() as u64;
    let down = cfg.outage_min + Duration::from_millis(splitmix64(rng) % (span + 1));
    match action {
        Action::AgentKill => {
            record.agent_was_running = Some(agent.kill().await);
            agent.spawn()?;
        }
        Action::BrokerOutage => {
            let stopped = Instant::now();
            record.broker_forced = broker.stop().await? == StopKind::Forced;
            tokio::time::sleep(down).await;
            broker.restart().await?;
            record.broker_down = Some(stopped.elapsed());
        }
        Action::AgentKillDuringOutage => {
            record.agent_was_running = Some(agent.kill().await);
            let stopped = Instant::now();
            record.broker_forced = broker.stop().await? == StopKind::Forced;
            agent.spawn()?;
            tokio::time::sleep(down).await;
            broker.restart().await?;
            record.broker_down = Some(stopped.elapsed());
        }
    }
    info!(
        message = "Disruption done.",
        action = action.name(),
        at_distinct,
        broker_down_ms = record.broker_down.map(|d| d.as_millis() as u64),
        broker_forced = record.broker_forced,
        agent_was_running = record.agent_was_running
    );
    Ok(record)
}

#[allow(clippy::too_many_arguments)] // everything the report is made of
fn build_report(
    cfg: &ChaosConfig,
    tally: Tally,
    outcome: Outcome,
    events_planned: usize,
    agent: &AgentProcess,
    agent_exit: String,
    elapsed: Duration,
    work_dir: &Path,
) -> Report {
    let lost_indices = tally.missing();
    Report {
        sent: cfg.count,
        received: tally.received,
        distinct: tally.distinct,
        lost: lost_indices.len() as u64,
        duplicated: tally.duplicated(),
        malformed: tally.malformed,
        unexpected: tally.unexpected,
        corrupt: tally.corrupt,
        lost_sample: lost_indices.into_iter().take(10).collect(),
        subscriber_sessions_lost: tally.sessions_lost,
        events: outcome.events,
        events_planned,
        agent_starts: agent.starts(),
        agent_exit_ok: agent.exited_ok(),
        agent_exit,
        timed_out: outcome.timed_out,
        failure: outcome.failure,
        elapsed,
        work_dir: work_dir.to_path_buf(),
        work_dir_kept: true,
    }
}

/// The run's directory; a default one is removed after a passing run (it holds a broker
/// database and outbox of up to a few hundred MB), a given one is always kept.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    remove_if_passed: bool,
}

impl WorkDir {
    fn prepare(given: Option<&Path>) -> Result<Self, ChaosError> {
        let (path, remove_if_passed) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let name = format!("edge-tools-chaos-{}-{stamp}", std::process::id());
                (std::env::temp_dir().join(name), true)
            }
        };
        let io = |what| {
            let path = path.clone();
            move |source| ChaosError::Io { what, path, source }
        };
        std::fs::create_dir_all(&path).map_err(io("creating work dir"))?;
        if std::fs::read_dir(&path)
            .map_err(io("reading work dir"))?
            .next()
            .is_some()
        {
            return Err(ChaosError::WorkDirNotEmpty(path));
        }
        // Absolute, because the broker and agent configs name files in it.
        let path = std::fs::canonicalize(&path).map_err(io("resolving work dir"))?;
        Ok(Self {
            path,
            remove_if_passed,
        })
    }

    /// Removes a default work dir after a pass; returns whether the directory is still there.
    fn finish(&self, passed: bool) -> bool {
        if passed && self.remove_if_passed {
            match std::fs::remove_dir_all(&self.path) {
                Ok(()) => return false,
                Err(e) => {
                    warn!(message = "Could not remove the work dir.", path = %self.path.display(), error = %e)
                }
            }
        }
        info!(message = "Work dir kept.", path = %self.path.display());
        true
    }
}

/// Opens `path` for appending (created if missing): the broker's and the agent's logs.
fn append_log(path: &std::path::Path) -> Result<std::fs::File, ChaosError> {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ChaosError::Io {
            what: "opening",
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_schedule_spreads_outages_and_kills_and_merges_one_pair() {
        use Action::*;
        let plan = schedule(3, 2);
        let actions: Vec<Action> = plan.iter().map(|p| p.action).collect();
        assert_eq!(
            actions,
            [AgentKill, BrokerOutage, AgentKillDuringOutage, BrokerOutage]
        );
        let at: Vec<f64> = plan.iter().map(|p| p.at).collect();
        assert!(
            (at[0] - 0.10).abs() < 1e-9 && (at[3] - 0.85).abs() < 1e-9,
            "{at:?}"
        );
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");

        let count = |plan: &[Planned]| {
            let outages = plan.iter().filter(|p| p.action != AgentKill).count();
            let kills = plan.iter().filter(|p| p.action != BrokerOutage).count();
            (outages, kills)
        };
        for o in 0..6 {
            for k in 0..6 {
                let plan = schedule(o, k);
                assert_eq!(count(&plan), (o, k), "schedule({o}, {k}) = {plan:?}");
                assert!(plan.iter().all(|p| (0.0..1.0).contains(&p.at)));
            }
        }
        assert_eq!(
            schedule(1, 1),
            [Planned {
                at: 0.10,
                action: AgentKillDuringOutage
            }]
        );
        let plan: Vec<Action> = schedule(2, 1).iter().map(|p| p.action).collect();
        assert_eq!(plan, [AgentKillDuringOutage, BrokerOutage]);
        let plan: Vec<Action> = schedule(1, 3).iter().map(|p| p.action).collect();
        assert_eq!(plan, [AgentKill, AgentKill, AgentKillDuringOutage]);
        assert!(schedule(0, 0).is_empty());
    }

    #[test]
    fn the_last_line_has_the_four_counts_and_failures_say_why() {
        let mut r = Report {
            sent: 10,
            received: 12,
            distinct: 9,
            lost: 1,
            duplicated: 3,
            malformed: 0,
            unexpected: 0,
            corrupt: 0,
            lost_sample: vec![4],
            subscriber_sessions_lost: 0,
            events: Vec::new(),
            events_planned: 0,
            agent_starts: 1,
            agent_exit_ok: true,
            agent_exit: "exited 0".into(),
            timed_out: false,
            failure: None,
            elapsed: Duration::from_secs(1),
            work_dir: PathBuf::from("/tmp/x"),
            work_dir_kept: true,
        };
        assert_eq!(r.summary_line(), "sent=10 received=12 lost=1 duplicated=3");
        assert!(!r.passed());
        assert!(r.failures()[0].contains("[4]"), "{:?}", r.failures());
        r.lost = 0;
        r.lost_sample.clear();
        assert!(r.passed(), "{:?}", r.failures());
        r.agent_exit_ok = false;
        assert!(!r.passed());
    }

    #[test]
    fn bad_flags_are_all_reported() {
        let mut cfg = ChaosConfig::new(
            ChaosArgs {
                count: 0,
                broker_outages: 1,
                agent_kills: 1,
                snapshot_bytes: MAX_SNAPSHOT_BYTES + 1,
                timeout_s: 0,
                work_dir: None,
                agent_rate: Some(-1.0),
            },
            PathBuf::from("edge-tools"),
        );
        assert_eq!(cfg.problems().len(), 4, "{:?}", cfg.problems());
        cfg.agent_rate = None;
        cfg.count = 10;
        cfg.snapshot_bytes = 100;
        cfg.timeout = Duration::from_secs(5);
        assert!(cfg.problems().is_empty());
    }

    #[test]
    fn a_work_dir_must_be_empty() {
        let dir = std::env::temp_dir().join(format!("chaos-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let w = WorkDir::prepare(Some(&dir)).unwrap();
        assert!(w.path.is_absolute());
        std::fs::write(w.path.join("x"), b"x").unwrap();
        let err = WorkDir::prepare(Some(&dir)).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
