//! Loading a daemon's TOML config so that every problem is reported at once.
//!
//! serde stops at the first error; an installer fixing a box's file one error per restart is
//! what this avoids. [`Sections`] deserialises each top-level key on its own (and each element
//! of an array of tables on its own), records every failure with its full path (`cameras[2].
//! rules.zones[0].points`), and reports the keys nobody asked for as unknown, so the list of
//! known keys is the loader's own calls, not a second list to keep in step with the structs.

use serde::de::DeserializeOwned;

/// The top-level table of a config file, taken key by key.
#[derive(Debug)]
pub struct Sections {
    table: toml::Table,
    asked: Vec<&'static str>,
    errors: Vec<String>,
}

impl Sections {
    /// Parses `text`; a TOML syntax error is the only problem reported then (nothing else can
    /// be read).
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![format!("TOML syntax: {}", e.to_string().trim_end())]
        })?;
        Ok(Self {
            table,
            asked: Vec::new(),
            errors: Vec::new(),
        })
    }

    fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.table.remove(key)
    }

    /// A key that must be present; when it is missing, `missing` says why it is needed.
    /// `None` when missing or invalid (the problem is recorded).
    pub fn required<T: DeserializeOwned>(&mut self, key: &'static str, missing: &str) -> Option<T> {
        match self.take(key) {
            Some(v) => deserialize(key, v, &mut self.errors),
            None => {
                self.errors.push(format!("{key}: missing; {missing}"));
                None
            }
        }
    }

    /// A key that may be absent: `None` when absent, and when invalid (the problem is
    /// recorded, so [`Sections::finish_with`] refuses the file anyway).
    pub fn optional<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        let v = self.take(key)?;
        deserialize(key, v, &mut self.errors)
    }

    /// A key with a default when absent. An invalid value also gives the default (its problem
    /// is recorded): the checks that read the section afterwards still run, and report theirs
    /// beside it.
    pub fn or_else<T: DeserializeOwned>(
        &mut self,
        key: &'static str,
        default: impl FnOnce() -> T,
    ) -> T {
        self.optional(key).unwrap_or_else(default)
    }

    /// [`Sections::or_else`] with `T::default()`.
    pub fn or_default<T: DeserializeOwned + Default>(&mut self, key: &'static str) -> T {
        self.or_else(key, T::default)
    }

    /// An array of tables (`[[key]]`, empty when absent), each element deserialised on its own
    /// so that one bad element does not hide the others' problems. The good elements are
    /// returned; the bad ones, or a key that is not an array, are recorded.
    pub fn each<T: DeserializeOwned>(&mut self, key: &'static str) -> Vec<T> {
        match self.take(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| deserialize(&format!("{key}[{i}]"), item, &mut self.errors))
                .collect(),
            Some(other) => {
                self.errors.push(format!(
                    "{key}: expected an array of tables ([[{key}]]), got {}",
                    other.type_str()
                ));
                Vec::new()
            }
        }
    }

    /// Records several problems.
    pub fn errors(&mut self, problems: impl IntoIterator<Item = String>) {
        self.errors.extend(problems);
    }

    /// Every problem found, the keys nobody asked for included (reported as unknown, with the
    /// keys that are known). Call after taking every key.
    pub fn finish(mut self) -> Vec<String> {
        let known = self.asked.join(", ");
        for key in self.table.keys() {
            self.errors
                .push(format!("{key}: unknown key; expected one of {known}"));
        }
        self.errors
    }

    /// [`Sections::finish`], giving `value` when there was no problem and it was built (it is
    /// `None` when a required key was missing or invalid).
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, Vec<String>> {
        let errors = self.finish();
        match value {
            Some(v) if errors.is_empty() => Ok(v),
            _ => Err(errors),
        }
    }
}

/// Deserialises `value` as a `T`; on failure records the problem at its full path below `at`
/// (`at.inner.path` or `at[3]...`) and gives `None`.
pub fn deserialize<T: DeserializeOwned>(
    at: &str,
    value: toml::Value,
    errors: &mut Vec<String>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                at.to_owned()
            } else if inner.starts_with('[') {
                format!("{at}{inner}")
            } else {
                format!("{at}.{inner}")
            };
            errors.push(format!("{path}: {}", e.inner().to_string().trim_end()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Camera {
        id: String,
        fps: u32,
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outbox {
        #[serde(default)]
        max_mb: u32,
    }

    type Loaded = (String, Vec<Camera>, Outbox, Option<u32>);

    fn load(text: &str) -> Result<Loaded, Vec<String>> {
        let mut s = Sections::parse(text)?;
        let site = s.required::<String>("site", "every box needs a site id");
        let cameras = s.each::<Camera>("cameras");
        let outbox = s.or_default::<Outbox>("outbox");
        let port = s.optional::<u32>("port");
        let value = site.map(|site| (site, cameras, outbox, port));
        s.finish_with(value)
    }

    #[test]
    fn a_good_file_loads_with_defaults_for_what_is_absent() {
        let (site, cameras, outbox, port) =
            load("site = \"s1\"\n[[cameras]]\nid = \"c1\"\nfps = 5\n").unwrap();
        assert_eq!(site, "s1");
        assert_eq!(
            cameras,
            [Camera {
                id: "c1".into(),
                fps: 5
            }]
        );
        assert_eq!(outbox, Outbox::default());
        assert_eq!(port, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errors = load(
            "colour = 1\nport = \"x\"\n[outbox]\nmax_mb = -1\n\
             [[cameras]]\nid = \"c1\"\nfps = \"fast\"\n\
             [[cameras]]\nid = \"c2\"\nfps = 5\nzoom = 2\n",
        )
        .unwrap_err();
        let has = |p: &str| errors.iter().any(|e| e.starts_with(p));
        assert!(
            has("site: missing; every box needs a site id"),
            "{errors:#?}"
        );
        assert!(has("cameras[0].fps: "), "{errors:#?}");
        assert!(has("cameras[1].zoom: unknown field `zoom`"), "{errors:#?}");
        assert!(has("outbox.max_mb: "), "{errors:#?}");
        assert!(has("port: "), "{errors:#?}");
        assert!(
            has("colour: unknown key; expected one of site, cameras, outbox, port"),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), 6, "{errors:#?}");
    }

    #[test]
    fn syntax_errors_and_wrong_shapes_are_named() {
        let e = load("site = ").unwrap_err();
        assert!(e[0].starts_with("TOML syntax: "), "{e:#?}");
        let e = load("site = \"s\"\ncameras = 3\n").unwrap_err();
        assert_eq!(
            e,
            ["cameras: expected an array of tables ([[cameras]]), got integer"]
        );
    }
}
