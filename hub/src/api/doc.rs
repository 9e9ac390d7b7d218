//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types they take and return, rendered once (see [`openapi_json`]).
//!
//! What is here and not beside a handler: the shared error responses, the security schemes,
//! and schema-only types for bodies that are not a struct of the API (the grid's GeoJSON,
//! JPEG and raw bytes).

use std::sync::LazyLock;

use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::{admin, auth, cases, error, feed, places, quarantine, silences, web};

/// The dialect the document's schemas are written in (JSON Schema 2020-12, as OpenAPI 3.1
/// allows); named so validators need not guess.
const JSON_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hub HTTP API",
        version = "1",
        description = "Alert dispatch for grid-based community management (网格化管理). Times in \
            responses are RFC 3339 strings (UTC, milliseconds); time parameters take \
            milliseconds since the Unix epoch or RFC 3339. Errors: \
            `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
    ),
    servers((url = "/")),
    paths(
        auth::login,
        auth::logout,
        auth::token,
        auth::me,
        auth::sessions_list,
        auth::session_revoke,
        cases::list,
        cases::detail,
        cases::act,
        cases::snapshot,
        cases::photo,
        cases::report,
        places::grid,
        places::cell,
        places::sites,
        places::departments,
        places::watchlist,
        places::watch_add,
        places::watch_remove,
        places::watch_audit,
        silences::list,
        silences::create,
        silences::end,
        silences::audit,
        places::trajectory,
        places::stats,
        places::stats_csv,
        places::stats_xlsx,
        places::ui_config,
        quarantine::list,
        quarantine::raw,
        quarantine::reingest,
        quarantine::remove,
        admin::reload,
        feed::events,
        web::openapi,
        web::index,
        web::member,
        web::asset,
    ),
    // The feed's `data` is JSON inside an event stream and the error body is reached through
    // the shared responses: no path names either, so they are listed here.
    components(
        schemas(feed::EventData, error::ErrorBody),
        responses(
            Unauthenticated,
            Forbidden,
            NotFound,
            Gone,
            Invalid,
            Conflict,
            Busy,
            StillRefused,
            Failure,
            RateLimited,
        ),
    ),
    modifiers(&Security),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    tags(
        (name = "auth"),
        (name = "cases"),
        (name = "grid"),
        (name = "sites"),
        (name = "watchlist"),
        (name = "silences"),
        (name = "stats"),
        (name = "events"),
        (name = "meta"),
        (name = "pages"),
        (name = "quarantine"),
        (name = "admin"),
    ),
)]
struct ApiDoc;

/// The security schemes the handlers' `security(...)` name.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::COOKIE,
                "Session from `POST /api/v1/auth/login`.",
            ))),
        );
        components.add_security_scheme(
            "csrfToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "Required with the cookie on POST/PUT/PATCH/DELETE: the `csrf` of login or `/me`.",
            ))),
        );
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Token from `POST /api/v1/auth/tokens`; needs no CSRF token.",
                    ))
                    .build(),
            ),
        );
        // utoipa writes `security(())` as one empty requirement (`[{}]`, "optionally
        // anonymous"); the public routes need none at all, which OpenAPI spells `[]`.
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                if let Some(sec) = &mut op.security
                    && sec.len() == 1
                    && serde_json::to_value(&sec[0]).is_ok_and(|v| v == serde_json::json!({}))
                {
                    sec.clear();
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::path::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Component names that some `allOf` refers to (a `#[serde(flatten)]` field): those stay open,
/// since each part of an `allOf` sees only the properties it names.
fn all_of_parts(v: &Value, inside: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if inside
                && let Some(name) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_owned());
            }
            for (k, x) in m {
                all_of_parts(x, k == "allOf", out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_of_parts(x, inside, out)),
        _ => {}
    }
}

/// Marks every object schema closed (`additionalProperties: false`) unless it says
/// otherwise: the API never sends a field its document does not name, and a client (or the
/// tests) can hold it to that. Objects that are parts of an `allOf` stay open (see
/// [`all_of_parts`]).
fn close_objects(schema: &mut Value, in_all_of: bool) {
    let Value::Object(m) = schema else {
        return;
    };
    if !in_all_of && m.contains_key("properties") && !m.contains_key("additionalProperties") {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (k, x) in m.iter_mut() {
        match (k.as_str(), x) {
            ("properties", Value::Object(props)) => {
                props.values_mut().for_each(|p| close_objects(p, false))
            }
            ("allOf", Value::Array(parts)) => parts.iter_mut().for_each(|p| close_objects(p, true)),
            ("oneOf" | "anyOf" | "prefixItems", Value::Array(parts)) => {
                parts.iter_mut().for_each(|p| close_objects(p, false))
            }
            ("items" | "not", x) => close_objects(x, false),
            _ => {}
        }
    }
}

/// A schema made of an `allOf` (a `#[serde(flatten)]` field) is closed as a whole with
/// `unevaluatedProperties: false`, which sees the properties every part names; its parts stay
/// open (see [`close_objects`]), so together they refuse a field none of them names.
fn close_all_of(doc: &mut Value) {
    let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") else {
        return;
    };
    for schema in schemas.values_mut() {
        if let Value::Object(m) = schema
            && m.contains_key("allOf")
            && !m.contains_key("unevaluatedProperties")
        {
            m.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
    }
}

/// Response bodies that are not JSON, which utoipa writes as a bare `string`: the document
/// says what the bytes are (`contentMediaType`), and for the event stream which schema each
/// event's `data` follows (`x-event-schema`, an extension: OpenAPI has no word for it).
fn describe_bodies(doc: &mut Value) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    let event = format!(
        "#/components/schemas/{}",
        <feed::EventData as ToSchema>::name()
    );
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|m| m.values_mut())
    {
        let Some(Value::Object(responses)) = op.get_mut("responses") else {
            continue;
        };
        for response in responses.values_mut() {
            let Some(Value::Object(content)) = response.get_mut("content") else {
                continue;
            };
            for (media, body) in content.iter_mut() {
                let Value::Object(body) = body else { continue };
                match media.as_str() {
                    "image/jpeg" | "application/octet-stream" => {
                        if let Some(Value::Object(schema)) = body.get_mut("schema") {
                            schema.insert("contentMediaType".into(), media.as_str().into());
                        }
                    }
                    "text/event-stream" => {
                        body.insert(
                            "x-event-schema".into(),
                            serde_json::json!({ "$ref": event }),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The document as JSON, generated once.
pub fn openapi_json() -> &'static str {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        let mut v = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
        let mut open = Vec::new();
        all_of_parts(&v, false, &mut open);
        if let Some(Value::Object(schemas)) = v.pointer_mut("/components/schemas") {
            for (name, schema) in schemas.iter_mut() {
                if !open.contains(name) {
                    close_objects(schema, false);
                }
            }
        }
        close_all_of(&mut v);
        describe_bodies(&mut v);
        if let Some(m) = v.as_object_mut() {
            m.insert("jsonSchemaDialect".into(), JSON_SCHEMA_DIALECT.into());
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    });
    &DOC
}

/// An error response: the shared [`error::ErrorBody`] with a description of when it comes.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(
                    <error::ErrorBody as ToSchema>::name(),
                ))))
                .build(),
        )
        .build()
}

/// Declares reusable error responses (`#/components/responses/{name}`).
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), RefOr::T(error_response($description)))
            }
        }
    )*};
}

error_responses! {
    Unauthenticated => "No valid session or bearer token (`unauthenticated`).";
    Forbidden => "Out of the caller's scope or role (`forbidden`), or, for a cookie-authenticated \
        unsafe request, a missing or wrong `X-CSRF-Token` (`csrf`).";
    NotFound => "No such resource (`not_found`).";
    Gone => "Kept once, now deleted by retention (`gone`).";
    Invalid => "A bad parameter or body field (`invalid`, naming `field`).";
    Conflict => "The case's state refuses the action (`conflict`).";
    Busy => "Every password check busy; try again (`unavailable`, with Retry-After).";
    StillRefused => "Still refused (`malformed`: 422, `not_authorized`: 409); the record stays \
        with this reason.";
    /// Any status without its own entry.
    Failure => "Any other error: `internal` (500), `unavailable` (503).";
}

/// What every route behind a caller can answer besides its own responses: 401 without a
/// valid session or token, and `default` for the rest. Listed once here rather than in each
/// handler's `responses(...)`, which name only what is particular to them.
pub struct Authenticated;

impl utoipa::IntoResponses for Authenticated {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        [
            ("401", <Unauthenticated as ToResponse>::response().0),
            ("default", <Failure as ToResponse>::response().0),
        ]
        .into_iter()
        .map(|(status, name)| (status.to_owned(), RefOr::Ref(Ref::from_response_name(name))))
        .collect()
    }
}

/// Too many failed logins: the error body and when to try again.
pub struct RateLimited;

impl<'r> ToResponse<'r> for RateLimited {
    fn response() -> (&'r str, RefOr<Response>) {
        let mut r = error_response("Too many failed logins (`rate_limited`).");
        r.headers.insert(
            "Retry-After".into(),
            utoipa::openapi::HeaderBuilder::new()
                .schema(<u64 as utoipa::PartialSchema>::schema())
                .description(Some("Seconds until the window passes."))
                .build(),
        );
        ("RateLimited", RefOr::T(r))
    }
}

/// GeoJSON (RFC 7946), WGS-84: the grid as `grid::geojson` writes it, with `properties.code`.
/// Schema only: the body is built as JSON by the grid module.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Grid {
    #[schema(pattern = "^FeatureCollection$", rename = "type")]
    kind: String,
    features: Vec<GridFeature>,
}

/// One cell.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GridFeature {
    #[schema(pattern = "^Feature$", rename = "type")]
    kind: String,
    id: Option<String>,
    properties: GridProperties,
    geometry: Geometry,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GridProperties {
    id: Option<String>,
    code: String,
    name: String,
    level: crate::grid::Level,
    #[schema(required = true)]
    parent: Option<String>,
}

/// A cell's outline: rings of `[lon, lat]` (or `[lon, lat, alt]`) positions.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum Geometry {
    Polygon(Polygon),
    MultiPolygon(MultiPolygon),
}

#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Polygon {
    #[schema(pattern = "^Polygon$", rename = "type")]
    kind: String,
    #[schema(min_items = 1)]
    coordinates: Vec<Vec<Vec<f64>>>,
}

#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MultiPolygon {
    #[schema(pattern = "^MultiPolygon$", rename = "type")]
    kind: String,
    #[schema(min_items = 1)]
    coordinates: Vec<Vec<Vec<Vec<f64>>>>,
}

/// Milliseconds since the Unix epoch, or an RFC 3339 time.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum MsOrTime {
    Ms(i64),
    Time(String),
}

/// JSON `null`: the value of a field that is always null.
pub struct Null;

impl utoipa::PartialSchema for Null {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Null)
            .into()
    }
}

impl ToSchema for Null {}
