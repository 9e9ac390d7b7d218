//! Routing rules (分类交办 by configuration): alerts of a kind, label, rule or severity go
//! straight to departments as well as to their cell (fire → 消防, traffic → 交警).
//!
//! TOML, in `hub.toml`:
//!
//! ```toml
//! [[routing]]
//! name = "traffic"                # for the audit trail and errors
//! kinds = ["line"]                # any of these kinds (empty: any kind)
//! labels = ["car", "truck"]       # any of these detection labels (empty: any)
//! rules = []                      # any of these rule ids (empty: any)
//! min_severity = "minor"          # at least this severity (absent: any)
//! departments = ["D-JJ"]          # department codes from the roster's departments.csv
//! ```
//!
//! Every matcher given must match; a rule must give at least one. An alert matched by several
//! rules goes to each of their departments once.

use protocol::{Alert, AlertKind, Severity};
use serde::Deserialize;

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// Its name.
    pub name: String,
    /// Alert kinds it takes (empty: any).
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    /// Detection labels it takes (empty: any). An alert without a label matches no label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Rule ids it takes (empty: any).
    #[serde(default)]
    pub rules: Vec<String>,
    /// The least severity it takes.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Where matching alerts go, by department code.
    pub departments: Vec<String>,
}

impl RoutingRule {
    /// Whether `alert` is one this rule routes.
    pub fn matches(&self, alert: &Alert) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&alert.kind))
            && (self.labels.is_empty()
                || alert
                    .label
                    .as_ref()
                    .is_some_and(|l| self.labels.contains(l)))
            && (self.rules.is_empty() || self.rules.contains(&alert.rule))
            && self.min_severity.is_none_or(|m| alert.severity >= m)
    }

    /// Every problem of the rule itself (department codes are checked against the roster by
    /// the loader), `field: problem`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() {
            out.push("name: empty".to_owned());
        }
        if self.departments.is_empty() {
            out.push("departments: empty; name at least one department".to_owned());
        }
        if self.kinds.is_empty()
            && self.labels.is_empty()
            && self.rules.is_empty()
            && self.min_severity.is_none()
        {
            out.push(
                "no matcher: give kinds, labels, rules or min_severity (a rule for every alert \
                 would send all of them to the department)"
                    .to_owned(),
            );
        }
        out
    }
}

/// The departments `rules` send `alert` to, each once, in rule order, with the name of the
/// first rule that sent it there.
pub fn departments_for<'r>(rules: &'r [RoutingRule], alert: &Alert) -> Vec<(&'r str, &'r str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for rule in rules.iter().filter(|r| r.matches(alert)) {
        for d in &rule.departments {
            if !out.iter().any(|(code, _)| code == d) {
                out.push((d, &rule.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use protocol::{AlertKind, Severity};

    use super::super::testkit::*;
    use super::*;

    fn rules() -> Vec<RoutingRule> {
        toml::from_str::<std::collections::BTreeMap<String, Vec<RoutingRule>>>(
            r#"
            [[routing]]
            name = "traffic"
            kinds = ["line"]
            labels = ["car", "truck"]
            departments = ["D-JJ"]

            [[routing]]
            name = "serious"
            min_severity = "major"
            departments = ["D-GA", "D-JJ"]
            "#,
        )
        .unwrap()
        .remove("routing")
        .unwrap()
    }

    #[test]
    fn every_matcher_must_match_and_each_department_comes_once() {
        let rules = rules();
        let mut a = alert(Severity::Minor);
        a.kind = AlertKind::Line;
        a.label = Some("car".into());
        assert_eq!(departments_for(&rules, &a), [("D-JJ", "traffic")]);
        a.label = Some("person".into());
        assert!(departments_for(&rules, &a).is_empty());
        a.label = None;
        assert!(departments_for(&rules, &a).is_empty());
        a.label = Some("truck".into());
        a.severity = Severity::Critical;
        assert_eq!(
            departments_for(&rules, &a),
            [("D-JJ", "traffic"), ("D-GA", "serious")]
        );
        a.kind = AlertKind::Zone;
        assert_eq!(
            departments_for(&rules, &a),
            [("D-GA", "serious"), ("D-JJ", "serious")]
        );
    }

    #[test]
    fn a_rule_without_matchers_or_departments_is_refused() {
        let r: RoutingRule = toml::from_str("name = \"\"\ndepartments = []").unwrap();
        assert_eq!(
            r.problems(),
            [
                "name: empty",
                "departments: empty; name at least one department",
                "no matcher: give kinds, labels, rules or min_severity (a rule for every alert \
                 would send all of them to the department)",
            ]
        );
        let unknown =
            toml::from_str::<RoutingRule>("name = \"x\"\ndepartments = [\"D\"]\nkind = []");
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `kind`")
        );
        assert!(rules().iter().all(|r| r.problems().is_empty()));
    }
}
