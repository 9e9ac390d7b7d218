//! Reloading while the hub runs: `hub reload` (SIGHUP to the running hub) and
//! `POST /api/v1/admin/reload`. What a county changes weekly takes effect without a restart,
//! which would stop every escalation timer and dashboard.
//!
//! Reloaded today: the roster (people, duty, overrides, backups, departments), from the
//! directory the running config names, and the dashboard's users (`http.users`: what
//! `hub user add` writes). Both are read and checked in full first: the roster against the
//! running grid and the routing rules' and webhooks' department codes, the users against the
//! new roster. Any problem and nothing changes (every problem is reported); otherwise both
//! are replaced at once ([`crate::live::Live`]): the next notification round, deadline, login
//! and API request use the new ones, work already running finishes on the old. A user
//! removed from the file is refused at their next request. Open cases keep their cells (the
//! grid is not reloaded here).

use std::sync::Arc;

use crate::config::HubConfig;
use crate::grid::GridIndex;
use crate::live::Live;
use crate::metrics::{HubMetrics, bump};
use crate::roster::Roster;
use crate::users::Users;

/// Reloads what may change while the hub runs.
#[derive(Debug)]
pub struct Reloader {
    config: HubConfig,
    grid: Arc<GridIndex>,
    roster: Arc<Live<Roster>>,
    /// With `[http]`.
    users: Option<Arc<Live<Users>>>,
    metrics: Arc<HubMetrics>,
}

impl Reloader {
    pub fn new(
        config: HubConfig,
        grid: Arc<GridIndex>,
        roster: Arc<Live<Roster>>,
        users: Option<Arc<Live<Users>>>,
        metrics: Arc<HubMetrics>,
    ) -> Self {
        Self {
            config,
            grid,
            roster,
            users,
            metrics,
        }
    }

    /// Reads, checks and applies the roster; on any problem nothing changes and every problem
    /// is returned. Blocking file reads: call it off the async threads.
    pub fn reload(&self) -> Result<String, Vec<String>> {
        let result = self.try_reload();
        match &result {
            Ok(summary) => {
                bump(&self.metrics.reloads);
                tracing::info!(what = %summary, "reloaded");
            }
            Err(problems) => {
                bump(&self.metrics.reloads_refused);
                tracing::error!(problems = %problems.join("; "), "reload refused; nothing changed");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<String, Vec<String>> {
        let dir = self.config.roster_source();
        let g = &self.grid;
        let known = |code: &str| g.find(code).is_some();
        let roster = Roster::load_dir(&dir, &known)
            .and_then(|r| r.with_utc_offset_minutes(self.config.roster.utc_offset_minutes))
            .map_err(|e| vec![format!("roster {}: {e}", dir.display())])?;
        let mut problems = fit_problems(&self.config, g, &roster);
        let mut users = None;
        if let Some(h) = &self.config.http {
            let known_cell = |c: &str| g.find(c).is_some() || roster.department(c).is_some();
            let known_person = |p: &str| roster.person(p).is_some();
            match Users::load(&h.users, &known_cell, &known_person) {
                Ok(u) => users = Some(u),
                Err(e) => problems.push(format!("http.users: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut summary = format!("roster {}", roster.summary());
        for w in roster.warnings() {
            tracing::warn!(warning = %w, "roster");
        }
        self.roster.set(roster);
        if let (Some(live), Some(users)) = (&self.users, users) {
            summary.push_str(&format!(", {} user(s)", users.len()));
            live.set(users);
        }
        Ok(summary)
    }
}

/// What the rest of the config asks of a roster: every department a routing rule names, and
/// every webhook's cell or department.
pub(crate) fn fit_problems(config: &HubConfig, grid: &GridIndex, roster: &Roster) -> Vec<String> {
    let mut errors = Vec::new();
    // A department's group chat hears its notifications as a cell's does.
    for (i, w) in config.push.webhooks.iter().enumerate() {
        if grid.find(&w.cell).is_none() && roster.department(&w.cell).is_none() {
            errors.push(format!(
                "push.webhooks[{i}].cell: {:?} is neither a cell of the grid nor a department \
                 of the roster",
                w.cell
            ));
        }
    }
    for (i, rule) in config.routing.iter().enumerate() {
        for d in &rule.departments {
            if roster.department(d).is_none() {
                errors.push(format!(
                    "routing[{i}].departments: {d:?} is not in the roster's departments.csv"
                ));
            }
        }
    }
    errors
}
