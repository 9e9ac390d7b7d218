//! Departments (职能部门: 公安, 交警, 消防, 城管, 市场监管 …): units with people on duty like a
//! cell's, that cases reach by a routing rule or a transfer rather than by where they
//! happened. `departments.csv`: `code,name,kind,cell` — the code (as a person id: it is used
//! where cell codes are, in `duty.csv`, `overrides.csv`, `backups.csv` and users' cells), its
//! name, its kind in words (交警), and the grid cell it serves (its level is that cell's).

/// One department.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Department {
    pub(super) code: String,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) cell: String,
}

impl Department {
    /// A department (tests and callers that build rosters by hand).
    pub fn new(code: &str, name: &str, kind: &str, cell: &str) -> Self {
        Self {
            code: code.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            cell: cell.to_owned(),
        }
    }

    /// Its code, e.g. `D-JJ`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Its name, e.g. 武定县公安局交通警察大队.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind in words, e.g. 交警.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The code of the grid cell it serves.
    pub fn cell(&self) -> &str {
        &self.cell
    }
}

#[cfg(test)]
mod tests {
    use protocol::UtcMillis;

    use super::super::{Roster, RosterError, RosterFiles};

    const PEOPLE: &str = "id,name,phone,roles\np-liu,刘警官,13800000001,member\np-wang,王网格员,13800000002,member\n";
    const CELLS: [&str; 2] = ["532329", "532329101001-G01"];

    fn known(c: &str) -> bool {
        CELLS.contains(&c)
    }

    fn load(departments: &str, duty: &str) -> Result<Roster, RosterError> {
        Roster::from_strs(
            RosterFiles {
                people: PEOPLE,
                duty,
                overrides: None,
                backups: "cell,person\n",
                departments: Some(departments),
            },
            &known,
        )
    }

    #[test]
    fn a_department_has_people_on_duty_like_a_cell() {
        let r = load(
            "code,name,kind,cell\n# 县直部门\nD-JJ,武定县公安局交通警察大队,交警,532329\n",
            "cell,person,days,start,end\nD-JJ,p-liu,daily,00:00,24:00\n532329101001-G01,p-wang,daily,00:00,24:00\n",
        )
        .unwrap();
        let d = r.department("D-JJ").unwrap();
        assert_eq!(
            (d.name(), d.kind(), d.cell()),
            ("武定县公安局交通警察大队", "交警", "532329")
        );
        assert_eq!(r.departments().len(), 1);
        assert!(r.department("532329").is_none());
        assert_eq!(
            r.on_duty("D-JJ", UtcMillis(1_795_334_400_000)).people,
            ["p-liu"]
        );
    }

    #[test]
    fn every_department_problem_is_listed_with_its_line_and_column() {
        let err = load(
            "code,name,kind,cell\nD-JJ,交警大队,交警,532329\nD-JJ,again,交警,532329\n532329,县局,公安,532329\nD-X,消防,消防,999\nbad id,x,y,532329\n",
            "cell,person,days,start,end\nD-NONE,p-liu,daily,00:00,24:00\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "departments.csv line 3, column code: duplicate department code \"D-JJ\"; it is first defined on line 2",
            "departments.csv line 4, column code: department code \"532329\" is a grid cell's code",
            "departments.csv line 5, column cell: unknown cell \"999\": not in the grid",
            "departments.csv line 6, column code: bad person id \"bad id\"",
            "duty.csv line 2, column cell: unknown cell \"D-NONE\"",
        ] {
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
    }

    #[test]
    fn a_roster_without_departments_still_loads() {
        let r = Roster::from_strs(
            RosterFiles {
                people: PEOPLE,
                duty: "cell,person,days,start,end\n",
                overrides: None,
                backups: "cell,person\n",
                departments: None,
            },
            &known,
        )
        .unwrap();
        assert!(r.departments().is_empty());
    }
}
