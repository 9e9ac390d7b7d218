//! A case's id ([`CaseId`]): `C-` and the id of the alert that opened it (一案一码). Typed, so a
//! case id is never confused with an alert id, a mute reason or any other string, and one from
//! outside (an API path) is checked before it reaches a lookup.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

const PREFIX: &str = "C-";
/// Longest alert part accepted from outside (a ULID is 26).
const MAX_ALERT_PART: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(String);

impl CaseId {
    /// The id of the case an alert opens.
    pub fn for_alert(alert_id: &str) -> Self {
        Self(format!("{PREFIX}{alert_id}"))
    }

    /// An id from outside: `C-` then 1 to 64 ASCII letters, digits, `-` or `_`; anything else
    /// is no case id.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        let ok = !rest.is_empty()
            && rest.len() <= MAX_ALERT_PART
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// An id as the store holds it (written by this hub; not checked again).
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for CaseId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CaseId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for CaseId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for CaseId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CaseId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Unit tests name cases freely (`"C-1"`).
#[cfg(test)]
impl From<&str> for CaseId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<CaseId> for String {
    fn from(id: CaseId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_outside_are_checked_and_an_alerts_case_id_round_trips() {
        let id = CaseId::for_alert("01KAQ5X3MV0000000000000001");
        assert_eq!(id.as_str(), "C-01KAQ5X3MV0000000000000001");
        assert_eq!(CaseId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"C-01KAQ5X3MV0000000000000001\""
        );
        for bad in [
            "",
            "C-",
            "01KAQ5X3MV",
            "c-01KAQ",
            "C-01KAQ/../x",
            "C-01 KAQ",
            "C-é",
            &format!("C-{}", "A".repeat(65)),
        ] {
            assert_eq!(CaseId::parse(bad), None, "{bad:?}");
        }
        assert!(CaseId::parse(&format!("C-{}", "A".repeat(64))).is_some());
    }
}
