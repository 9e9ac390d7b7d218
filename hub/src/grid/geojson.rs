//! GeoJSON in and out: a `FeatureCollection` whose features are the cells.
//!
//! Each feature carries `properties.id` (string, or an integer such as an administrative code),
//! `properties.name`, `properties.level` (see [`Level`]), `properties.parent` (the parent's id,
//! or `null` at the top level) and a `Polygon` or `MultiPolygon` geometry. Other properties and
//! members (a feature-level `id`, a legacy `crs`) are ignored: the coordinate system is declared
//! by the caller, because files exported from Chinese consumer maps say WGS-84 when they are
//! GCJ-02.
//!
//! The parser reads the document as a `serde_json::Value` and walks it by hand, rather than
//! deserialising into typed structs, so that one bad feature does not hide the others: every
//! problem is reported with its feature and path (see [`super::validate`]).

use std::io::Read;

use serde_json::{Map, Value, json};

use super::crs::CoordSystem;
use super::geometry::{MultiPolygon, Point, Polygon};
use super::hierarchy::Hierarchy;
use super::level::Level;
use super::validate::{self, GridError, Issue, ParentRef, Problem, Record};

/// Imports a hierarchy from GeoJSON text whose coordinates are in `crs`.
pub fn import_str(text: &str, crs: CoordSystem) -> Result<Hierarchy, GridError> {
    let doc: Value = serde_json::from_str(text).map_err(GridError::Json)?;
    import_value(&doc, crs)
}

/// Imports a hierarchy from a reader of GeoJSON whose coordinates are in `crs`.
pub fn import_reader(reader: impl Read, crs: CoordSystem) -> Result<Hierarchy, GridError> {
    let doc: Value = serde_json::from_reader(std::io::BufReader::new(reader)).map_err(|e| {
        if e.is_io() {
            GridError::Read(e.into())
        } else {
            GridError::Json(e)
        }
    })?;
    import_value(&doc, crs)
}

/// Imports a hierarchy from a parsed GeoJSON document whose coordinates are in `crs`.
pub fn import_value(doc: &Value, crs: CoordSystem) -> Result<Hierarchy, GridError> {
    let mut issues = Vec::new();
    let document = |problem| Issue {
        feature: None,
        id: None,
        problem,
    };
    let features = match doc {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
                issues.push(document(Problem::Document(format!(
                    "type: expected \"FeatureCollection\", found {}",
                    short(o.get("type").unwrap_or(&Value::Null))
                ))));
            }
            match o.get("features") {
                Some(Value::Array(features)) => features.as_slice(),
                other => {
                    issues.push(document(Problem::Document(format!(
                        "features: expected an array, found {}",
                        short(other.unwrap_or(&Value::Null))
                    ))));
                    &[]
                }
            }
        }
        other => {
            issues.push(document(Problem::Document(format!(
                "expected a GeoJSON FeatureCollection object, found {}",
                short(other)
            ))));
            &[]
        }
    };
    let records = features
        .iter()
        .enumerate()
        .map(|(index, f)| parse_feature(index, f, &mut issues))
        .collect();
    validate::validate(records, issues, crs)
}

/// A hierarchy as a GeoJSON `FeatureCollection` in WGS-84, in the import format (so an export
/// imports back to the same hierarchy with `CoordSystem::Wgs84`).
pub fn to_value(hierarchy: &Hierarchy) -> Value {
    let ring = |r: &[Point]| r.iter().map(|p| json!([p.lon, p.lat])).collect::<Vec<_>>();
    let features: Vec<Value> = hierarchy
        .cells()
        .iter()
        .map(|c| {
            let polygons: Vec<Value> = c
                .area()
                .polygons()
                .iter()
                .map(|p| Value::Array(p.rings().map(|r| Value::Array(ring(r))).collect()))
                .collect();
            json!({
                "type": "Feature",
                "properties": {
                    "id": c.code(),
                    "name": c.name(),
                    "level": c.level().as_str(),
                    "parent": c.parent().and_then(|p| hierarchy.get(p)).map(|p| p.code()),
                },
                "geometry": { "type": "MultiPolygon", "coordinates": polygons },
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// A JSON value for a message, cut short.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn parse_feature(index: usize, f: &Value, issues: &mut Vec<Issue>) -> Record {
    let mut rec = Record {
        index,
        code: None,
        name: None,
        level: None,
        parent: ParentRef::Invalid,
        area: None,
        single_polygon: true,
    };
    let Some(obj) = f.as_object() else {
        issues.push(rec.issue(Problem::NotAFeature(format!("found {}", short(f)))));
        return rec;
    };
    let empty = Map::new();
    let props = match obj.get("properties") {
        Some(Value::Object(p)) => p,
        other => {
            issues.push(rec.issue(Problem::NotAFeature(format!(
                "properties: expected an object, found {}",
                short(other.unwrap_or(&Value::Null))
            ))));
            &empty
        }
    };
    // The id first, so every later problem of this feature can name it.
    let mut pending = Vec::new();
    match props.get("id") {
        None | Some(Value::Null) => pending.push(Problem::MissingProperty {
            name: "id",
            hint: "",
        }),
        Some(v) => match id_text(v) {
            Some(id) => rec.code = Some(id),
            None => pending.push(invalid("id", "a non-empty string or an integer", v)),
        },
    }
    if obj.get("type").and_then(Value::as_str) != Some("Feature") {
        pending.push(Problem::NotAFeature(format!(
            "type: expected \"Feature\", found {}",
            short(obj.get("type").unwrap_or(&Value::Null))
        )));
    }
    match props.get("name") {
        None | Some(Value::Null) => pending.push(Problem::MissingProperty {
            name: "name",
            hint: "",
        }),
        Some(Value::String(s)) if !s.trim().is_empty() => rec.name = Some(s.clone()),
        Some(v) => pending.push(invalid("name", "a non-empty string", v)),
    }
    match props.get("level") {
        None | Some(Value::Null) => pending.push(Problem::MissingProperty {
            name: "level",
            hint: "",
        }),
        Some(Value::String(s)) => match s.parse::<Level>() {
            Ok(l) => rec.level = Some(l),
            Err(e) => pending.push(Problem::UnknownLevel(e)),
        },
        Some(v) => pending.push(invalid("level", "a string", v)),
    }
    match props.get("parent") {
        None => pending.push(Problem::MissingProperty {
            name: "parent",
            hint: " (use null for a top-level cell)",
        }),
        Some(Value::Null) => rec.parent = ParentRef::Root,
        Some(v) => match id_text(v) {
            Some(p) => rec.parent = ParentRef::Code(p),
            None => pending.push(invalid(
                "parent",
                "null, a non-empty string or an integer",
                v,
            )),
        },
    }
    match parse_geometry(obj.get("geometry")) {
        Ok((area, single)) => {
            rec.area = Some(area);
            rec.single_polygon = single;
        }
        Err(problem) => pending.push(problem),
    }
    issues.extend(pending.into_iter().map(|p| rec.issue(p)));
    rec
}

fn invalid(name: &'static str, expected: &'static str, found: &Value) -> Problem {
    Problem::InvalidProperty {
        name,
        expected,
        found: short(found),
    }
}

/// Ids are strings; integers (administrative codes such as 532329) are accepted as their
/// decimal text.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn geometry_problem(path: impl Into<String>, reason: impl Into<String>) -> Problem {
    Problem::Geometry {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The geometry as drawn (unchecked rings), and whether it was a single `Polygon`.
fn parse_geometry(g: Option<&Value>) -> Result<(MultiPolygon, bool), Problem> {
    let g = match g {
        None | Some(Value::Null) => {
            return Err(geometry_problem(
                "geometry",
                "missing; a cell needs a Polygon or MultiPolygon",
            ));
        }
        Some(Value::Object(g)) => g,
        Some(other) => {
            return Err(geometry_problem(
                "geometry",
                format!("expected an object, found {}", short(other)),
            ));
        }
    };
    let kind = g.get("type").and_then(Value::as_str).unwrap_or("");
    let coords = g.get("coordinates").unwrap_or(&Value::Null);
    match kind {
        "Polygon" => {
            let poly = parse_polygon(coords, "geometry.coordinates")?;
            Ok((MultiPolygon::new(vec![poly]), true))
        }
        "MultiPolygon" => {
            let items = array(coords, "geometry.coordinates", "an array of polygons")?;
            let polygons = items
                .iter()
                .enumerate()
                .map(|(i, p)| parse_polygon(p, &format!("geometry.coordinates[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((MultiPolygon::new(polygons), false))
        }
        _ => Err(geometry_problem(
            "geometry.type",
            format!(
                "expected \"Polygon\" or \"MultiPolygon\", found {}",
                short(g.get("type").unwrap_or(&Value::Null))
            ),
        )),
    }
}

fn array<'a>(v: &'a Value, path: &str, what: &str) -> Result<&'a [Value], Problem> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| geometry_problem(path, format!("expected {what}, found {}", short(v))))
}

fn parse_polygon(v: &Value, path: &str) -> Result<Polygon, Problem> {
    let rings = array(v, path, "an array of rings")?;
    if rings.is_empty() {
        return Err(geometry_problem(
            path,
            "a polygon needs at least an exterior ring",
        ));
    }
    let mut parsed = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let rpath = format!("{path}[{r}]");
        let positions = array(ring, &rpath, "an array of positions")?;
        let mut points = Vec::with_capacity(positions.len());
        for (k, pos) in positions.iter().enumerate() {
            let xy = pos.as_array().and_then(|a| {
                let lon = a.first()?.as_f64()?;
                let lat = a.get(1)?.as_f64()?;
                Some(Point::new(lon, lat))
            });
            match xy {
                Some(p) => points.push(p),
                None => {
                    return Err(geometry_problem(
                        format!("{rpath}[{k}]"),
                        format!(
                            "expected a position [longitude, latitude], found {}",
                            short(pos)
                        ),
                    ));
                }
            }
        }
        parsed.push(points);
    }
    let mut rings = parsed.into_iter();
    let exterior = rings.next().unwrap_or_default();
    Ok(Polygon::new(exterior, rings.collect()))
}
