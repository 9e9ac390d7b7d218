//! People: who they are, how to reach them, and what they may do.

use serde::Serialize;

/// Longest person id: ids become an MQTT topic level (`se/v1/person/{id}/notify`), and the
/// protocol caps topic ids at this length.
pub const MAX_PERSON_ID_CHARS: usize = 64;

/// What a person may do. A person has one or more roles.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
// Case-insensitive, so a spreadsheet's `Member` is accepted; an unknown name comes back as
// [`UnknownRole`] naming it.
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = UnknownRole,
    parse_err_fn = UnknownRole::of
)]
pub enum Role {
    /// 网格员: a grid member, who receives, acknowledges and resolves a cell's cases.
    Member,
    /// 网格长: leads a grid or a higher cell; usually the backup and the next escalation step.
    Leader,
    /// 综治中心值班员: a governance-centre operator on a county or township desk.
    Operator,
    /// Maintains the hub's configuration (the roster, the grid).
    Admin,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Self; 4] = [Self::Member, Self::Leader, Self::Operator, Self::Admin];

    /// The name used in `people.csv`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A role name that is not one of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl UnknownRole {
    fn of(name: &str) -> Self {
        Self(name.to_owned())
    }
}

/// How a person wants to be told about a case (`people.csv`'s optional `channels`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum Channel {
    /// The grid member's phone app (MQTT push). Every person gets it: it is the case's own
    /// record of who was told, so it is on whatever the column says.
    App,
    /// A personal message from the county's work app (WeCom / 政务微信, `[work_app]`); without
    /// that section, nothing more than the app push.
    WorkApp,
    /// A text message, for people who answer an SMS sooner than an app.
    Sms,
}

/// One person on the roster. Built only by validation, so the invariants hold: the id passes
/// [`check_id`], the phone passes [`check_phone`], and there is at least one role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Person {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) phone: String,
    pub(crate) roles: Vec<Role>,
    /// Sorted, without repeats; never empty, always with [`Channel::App`]. Not serialized:
    /// the API's people are as before (the dispatcher alone reads this).
    #[serde(skip)]
    pub(crate) channels: Vec<Channel>,
}

impl Person {
    /// Unique id, e.g. `p-zhangwei`; also the person's MQTT topic level.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Display name, e.g. 张伟.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mobile number as written in `people.csv` (11 digits, or `+86` and 11 digits).
    pub fn phone(&self) -> &str {
        &self.phone
    }

    /// Roles, sorted and without repeats; never empty.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The channels the person is told by: the app, and what `channels` adds.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether the person wants news by `channel`.
    pub fn wants(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    /// Whether the person has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Checks a person id: 1 to 64 ASCII letters, digits, `_` and `-`.
///
/// Stricter than the protocol's topic ids (which also allow `.`): a person id is typed by hand
/// into spreadsheets, where a dot is more often a typo than intended.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".to_owned());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; ids are 1 to {MAX_PERSON_ID_CHARS} characters of [A-Za-z0-9_-]"
        ));
    }
    // ASCII only from here, so bytes are characters.
    if id.len() > MAX_PERSON_ID_CHARS {
        return Err(format!(
            "{} characters; at most {MAX_PERSON_ID_CHARS} are allowed",
            id.len()
        ));
    }
    Ok(())
}

/// Whether `phone` is a mainland mobile number: `1[3-9]` and 9 more digits, optionally
/// prefixed `+86`. Landlines and other countries are refused: notifications go out by SMS.
pub fn check_phone(phone: &str) -> bool {
    let national = phone.strip_prefix("+86").unwrap_or(phone);
    let b = national.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// Parses a `;`-separated role list; blanks between separators are ignored and repeats dropped.
/// Returns the sorted roles and every unknown name.
pub(crate) fn parse_roles(field: &str) -> (Vec<Role>, Vec<String>) {
    let mut roles = Vec::new();
    let mut unknown = Vec::new();
    for token in field.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        match token.parse::<Role>() {
            Ok(r) => roles.push(r),
            Err(UnknownRole(name)) => unknown.push(name),
        }
    }
    roles.sort_unstable();
    roles.dedup();
    (roles, unknown)
}

/// Parses a `;`-separated channel list (case-insensitive; blanks and repeats ignored). The
/// app is always added (see [`Channel::App`]). Returns the sorted channels and every unknown
/// name; no channel named at all gives an empty list, for the caller to report.
pub(crate) fn parse_channels(field: &str) -> (Vec<Channel>, Vec<String>) {
    let mut channels = Vec::new();
    let mut unknown = Vec::new();
    for token in field.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        match token.parse::<Channel>() {
            Ok(c) => channels.push(c),
            Err(_) => unknown.push(token.to_owned()),
        }
    }
    if !channels.is_empty() {
        channels.push(Channel::App);
    }
    channels.sort_unstable();
    channels.dedup();
    (channels, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_fit_a_topic_level_are_accepted() {
        assert_eq!(check_id("p-zhangwei"), Ok(()));
        assert_eq!(check_id("OP_01"), Ok(()));
        assert_eq!(check_id(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn ids_with_topic_characters_dots_or_chinese_are_refused() {
        for bad in ["", "p/zhang", "p+", "p#", "p zhang", "p.zhang", "张伟"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            check_id(&"a".repeat(65))
                .expect_err("65 chars")
                .contains("65")
        );
    }

    #[test]
    fn mainland_mobiles_with_or_without_plus_86_are_accepted() {
        for good in [
            "13800000001",
            "+8613800000001",
            "19912345678",
            "15087654321",
        ] {
            assert!(check_phone(good), "{good:?} refused");
        }
    }

    #[test]
    fn landlines_short_numbers_and_other_prefixes_are_refused() {
        for bad in [
            "",
            "1380000000",      // 10 digits
            "138000000012",    // 12 digits
            "12800000001",     // second digit 2
            "10800000001",     // second digit 0
            "23800000001",     // not starting with 1
            "0878-7123456",    // a Wuding landline
            "+85213800000001", // Hong Kong prefix
            "8613800000001",   // prefix without +
            "138 0000 0001",
            "1380000000a",
            "+86",
        ] {
            assert!(!check_phone(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn role_names_are_their_serde_names_and_parse_back() {
        use strum::IntoEnumIterator;
        assert_eq!(Role::iter().collect::<Vec<_>>(), Role::ALL);
        for r in Role::iter() {
            assert_eq!(serde_json::to_value(r).ok(), Some(r.as_str().into()));
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("boss".parse::<Role>(), Err(UnknownRole("boss".to_owned())));
    }

    #[test]
    fn channels_always_include_the_app_and_report_unknown_names() {
        assert_eq!(
            parse_channels("SMS; work_app;;sms"),
            (vec![Channel::App, Channel::WorkApp, Channel::Sms], vec![])
        );
        assert_eq!(parse_channels("app"), (vec![Channel::App], vec![]));
        let (channels, unknown) = parse_channels("sms;wechat");
        assert_eq!(channels, vec![Channel::App, Channel::Sms]);
        assert_eq!(unknown, vec!["wechat".to_owned()]);
        assert_eq!(parse_channels(";"), (vec![], vec![]));
    }

    #[test]
    fn roles_are_parsed_case_insensitively_sorted_and_deduplicated() {
        let (roles, unknown) = parse_roles("operator; Member;;member;admin");
        assert_eq!(roles, vec![Role::Member, Role::Operator, Role::Admin]);
        assert!(unknown.is_empty());
        let (roles, unknown) = parse_roles("leader;boss;网格员");
        assert_eq!(roles, vec![Role::Leader]);
        assert_eq!(unknown, vec!["boss".to_owned(), "网格员".to_owned()]);
    }
}
