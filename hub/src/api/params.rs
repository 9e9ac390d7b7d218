//! Query strings read into typed structs: [`Params`], and the value types the API's lists
//! share ([`Limit`], [`TimeParam`], [`CommaList`]).
//!
//! Each handler's query is one `Deserialize + IntoParams` struct with
//! `#[serde(deny_unknown_fields)]`: the same type reads the request and documents it, so the
//! OpenAPI document cannot promise a parameter the handler ignores. Every error is a 400 that
//! names the parameter (`error.field`): a bad value, an unknown parameter, or one given twice
//! (a repeated key used to be read as its last value, so `?state=open&state=closed` meant
//! something nobody asked for).

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::{self, DeserializeOwned, IntoDeserializer as _};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::{DEFAULT_LIMIT, MAX_LIMIT};

/// Longest query string read, in bytes. Generous for the longest real query (every filter of
/// the case list with every value, about 400 bytes) while a caller cannot make the hub split
/// and decode megabytes.
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// The request's query string read as `T`. Put it after the [`Caller`](super::auth::Caller)
/// in a handler's arguments so an anonymous request is refused before its query is read.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or_default()).map(Params)
    }
}

/// Reads a query string (without the `?`) as `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::invalid(
            "query",
            format!(
                "{} bytes of query string; at most {MAX_QUERY_BYTES}",
                query.len()
            ),
        ));
    }
    let pairs = form_urlencoded::parse(query.as_bytes());
    // serde's derive reports a repeated field without saying which: caught here by name.
    let mut seen = BTreeSet::new();
    for (key, _) in pairs {
        if !seen.insert(key.clone()) {
            return Err(ApiError::invalid(
                &key,
                format!("parameter {key:?} given more than once"),
            ));
        }
    }
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|e| {
        // The path of a query struct is the parameter's name, for a bad value and for an
        // unknown parameter alike (serde_path_to_error records the key it failed on).
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        match message.strip_prefix("unknown field") {
            Some(rest) => ApiError::invalid(&field, format!("unknown parameter{rest}")),
            None => ApiError::invalid(&field, message),
        }
    })
}

/// Reads a whole parameter value as a string and converts it with `f`; `f`'s error becomes
/// the message (the parameter's name is added by [`parse`]).
fn from_text<'de, D, T>(d: D, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    f(&s).map_err(de::Error::custom)
}

/// `limit=`: rows per page, 1..=500, 50 when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(usize);

impl Limit {
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(DEFAULT_LIMIT)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .map(Limit)
                .ok_or_else(|| format!("{v:?} is not 1..={MAX_LIMIT}"))
        })
    }
}

/// A page of a newest-first list keyed by record numbers.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, default = 50)]
    #[serde(default)]
    pub limit: Limit,
    /// Only records older than this one (the previous page's `next_before`).
    pub before: Option<u64>,
}

/// A point in time: milliseconds since 1970, or RFC 3339 as the API writes times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeParam(pub i64);

impl TimeParam {
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.parse::<i64>()
            .ok()
            .or_else(|| protocol::time::parse_rfc3339_ms(raw))
            .map(TimeParam)
            .ok_or_else(|| {
                format!("{raw:?} is neither milliseconds since 1970 nor an RFC 3339 time")
            })
    }
}

impl TimeParam {
    /// `from` and `to` as a half-open range in milliseconds; an end not given is open.
    pub fn range(from: Option<Self>, to: Option<Self>) -> (i64, i64) {
        (from.map_or(0, |t| t.0), to.map_or(i64::MAX, |t| t.0))
    }
}

impl<'de> Deserialize<'de> for TimeParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, Self::parse)
    }
}

/// `a,b,c`: each item read as `T` by its serde name (`severity=major,critical`). Empty items
/// are skipped, so a trailing comma is harmless; a list of none is no filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommaList<T>(pub Vec<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for CommaList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);

        impl<T: DeserializeOwned> de::Visitor<'_> for Items<T> {
            type Value = CommaList<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated list")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|item| {
                        T::deserialize(item.into_deserializer())
                            .map_err(|e: de::value::Error| E::custom(format!("{item:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()
                    .map(CommaList)
            }
        }

        d.deserialize_str(Items(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use protocol::Severity;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[serde(default)]
        limit: Limit,
        from: Option<TimeParam>,
        severity: Option<CommaList<Severity>>,
        before: Option<u64>,
        name: Option<String>,
    }

    fn field(query: &str) -> (String, String) {
        let e = parse::<Q>(query).expect_err(query);
        (e.field.clone().unwrap_or_default(), e.to_string())
    }

    #[test]
    fn every_value_is_read_typed_and_percent_decoded() {
        let q: Q = parse(
            "limit=7&from=2026-12-07T10:00:00Z&severity=major,critical,&before=9&name=%E7%BD%91+a",
        )
        .unwrap();
        assert_eq!(q.limit.get(), 7);
        assert_eq!(
            q.from,
            Some(TimeParam(
                protocol::time::parse_rfc3339_ms("2026-12-07T10:00:00Z").unwrap()
            ))
        );
        assert_eq!(
            q.severity,
            Some(CommaList(vec![Severity::Major, Severity::Critical]))
        );
        assert_eq!((q.before, q.name.as_deref()), (Some(9), Some("网 a")));
        let q: Q = parse("").unwrap();
        assert_eq!(
            (q.limit.get(), q.from, q.severity),
            (DEFAULT_LIMIT, None, None)
        );
        assert_eq!(
            parse::<Q>("from=1700000000000").unwrap().from,
            Some(TimeParam(1_700_000_000_000))
        );
    }

    #[test]
    fn each_refusal_names_its_parameter() {
        for (query, name, says) in [
            ("limit=0", "limit", "is not 1..=500"),
            ("limit=501", "limit", "is not 1..=500"),
            ("limit=x", "limit", "is not 1..=500"),
            ("from=yesterday", "from", "neither milliseconds"),
            ("severity=major,urgent", "severity", "\"urgent\""),
            ("before=-1", "before", "invalid"),
            ("colour=red", "colour", "unknown parameter `colour`"),
            ("limit=5&limit=6", "limit", "more than once"),
        ] {
            let (field, message) = field(query);
            assert_eq!(field, name, "{query}: {message}");
            assert!(message.contains(says), "{query}: {message}");
        }
    }

    #[test]
    fn an_oversized_query_is_refused_before_it_is_split() {
        let long = format!("name={}", "a".repeat(MAX_QUERY_BYTES));
        assert_eq!(field(&long).0, "query");
    }
}
