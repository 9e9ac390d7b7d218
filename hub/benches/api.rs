//! The dashboard's case list with a big store, over real HTTP on loopback, and the dashboard's
//! first-load size.
//!
//! `cargo bench -p hub --bench api [-- --cases N --requests R]`
//!
//! Fills a fresh store with `--cases` (default 100,000) cases spread over the Wuding example
//! grid's micro-grids and grids (a tenth open, the rest acknowledged, resolved or closed, over
//! the last 30 days), starts the hub on it (which loads the case book: timed), logs in and asks
//! `GET /api/v1/cases` `--requests` times (default 1,000) for each of the dashboard's usual
//! queries, as the county operator (sees everything) and a township operator (sees a part).
//! Prints p50/p99/max per query, with the machine's load.
//!
//! Then sums the bytes of the dashboard's first load: `/`, and every `/assets/…` file it
//! references (scanning HTML, CSS and JS for further references).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/integration/common.rs"]
mod common;

use hub::case::CaseId;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hub::case::{Action, Case, CellRef, Duty, Policy, Transition};
use hub::store::Store;
use protocol::{AlertSource, Severity, UtcMillis};

struct Everyone;

impl Duty for Everyone {
    fn on_duty(&self, _: &str, _: UtcMillis) -> Vec<String> {
        vec!["p-bench".into()]
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `n` cases over the grid's deepest cells, with mixed states, severities and sites.
fn fill(store: &Store, n: usize) {
    let grid = hub::grid::geojson::import_str(
        &std::fs::read_to_string(repo().join("configs/hub/wuding.geojson")).unwrap(),
        hub::grid::CoordSystem::Wgs84,
    )
    .unwrap();
    let leaves: Vec<Vec<CellRef>> = grid
        .cells()
        .iter()
        .filter(|c| !grid.cells().iter().any(|d| d.parent() == Some(c.id())))
        .map(|c| CellRef::path_to(&grid, c.id()))
        .collect();
    let policy = Policy::default();
    let now = UtcMillis::now().0;
    let severities = [
        Severity::Minor,
        Severity::Major,
        Severity::Critical,
        Severity::Major,
    ];
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let mut a = alert(
            if i % 3 == 0 { "wd-other-002" } else { SITE },
            i as u64,
            severities[i % severities.len()],
            None,
        );
        a.source = AlertSource::Camera(format!("cam-{}", i % 7));
        // Spread over 30 days; every tenth case recent and still open.
        let open = i % 10 == 0;
        let t = if open {
            now - (i as i64 % 3_600_000)
        } else {
            now - (i as i64 * 25_920) % (30 * 86_400_000)
        };
        a.time = UtcMillis(t);
        a.started_at = UtcMillis(t);
        let path = leaves[i % leaves.len()].clone();
        let (mut case, _) = Case::open(
            CaseId::for_alert(&a.id),
            &a,
            path,
            UtcMillis(t),
            &policy,
            &Everyone,
        );
        if !open {
            let step = |action, by: &str, at: i64, note: Option<&str>| {
                let mut tr = Transition::new(action, by, UtcMillis(at));
                if let Some(n) = note {
                    tr = tr.with_note(n);
                }
                tr
            };
            let _ = case.apply(
                step(Action::Acknowledge, "p-a", t + 60_000, None),
                &policy,
                &Everyone,
            );
            if i % 10 > 2 {
                let _ = case.apply(
                    step(Action::Resolve, "p-a", t + 600_000, Some("done")),
                    &policy,
                    &Everyone,
                );
            }
            if i % 10 > 4 {
                let _ = case.apply(
                    step(Action::Close, "p-b", t + 700_000, None),
                    &policy,
                    &Everyone,
                );
            }
        }
        batch.push(case);
        if batch.len() == batch.capacity() {
            hub::dispatch::import_cases(store, &batch).unwrap();
            batch.clear();
        }
    }
    hub::dispatch::import_cases(store, &batch).unwrap();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(api: &Api, who: &str, query: &str, requests: usize) {
    // Warm up (connection, caches).
    for _ in 0..10 {
        assert_eq!(api.get(query).await.status, 200);
    }
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        // Timed: request to the last body byte; the JSON is not parsed by the client.
        let r = api
            .request(reqwest::Method::GET, query)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        times.push(t.elapsed());
        assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
    }
    let total = api.get(query).await.json["total"].as_u64().unwrap();
    times.sort();
    println!(
        "{who:<11} {query:<58} matches {total:>6}  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        pct(&times, 0.50).as_secs_f64() * 1e3,
        pct(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// Bytes of `/` and of every asset it pulls in, following references in HTML, CSS and JS.
async fn first_load(api: &Api) -> (usize, Vec<(String, usize)>) {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from(["/".to_owned()]);
    let mut files = Vec::new();
    let mut total = 0;
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let r = Api::send(api.http.get(format!("{}{path}", api.base))).await;
        assert_eq!(r.status, 200, "{path}");
        total += r.bytes.len();
        files.push((path.clone(), r.bytes.len()));
        let text = String::from_utf8_lossy(&r.bytes);
        for (i, _) in text.match_indices("/assets/") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                .unwrap_or(rest.len());
            queue.push_back(rest[..end].to_owned());
        }
        // Relative module imports inside assets: `from "./i18n.js"`.
        if path.starts_with("/assets/") {
            for (i, _) in text.match_indices("\"./") {
                let rest = &text[i + 3..];
                if let Some(end) = rest.find('"') {
                    queue.push_back(format!("/assets/{}", &rest[..end]));
                }
            }
        }
    }
    (total, files)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--cases", 100_000);
    let requests = arg("--requests", 1_000);
    let dir = hub_dir(EMBEDDED, "");
    let t = Instant::now();
    {
        let store = Store::open(&dir.dir.path().join("state")).unwrap();
        fill(&store, n);
    }
    println!(
        "filled a store with {n} cases in {:.1} s (load {})",
        t.elapsed().as_secs_f64(),
        load()
    );
    let t = Instant::now();
    let hub = start_hub(&dir.config_path).await;
    println!(
        "hub started with {} cases in the book in {:.1} s",
        hub.book.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(hub.book.len(), n);
    // The scan alone, in process: the whole book through a filter, a page of 50 kept.
    let mut scan = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let p = hub.book.page(|r| r.is_open(), None, 50);
        scan.push(t.elapsed());
        assert_eq!(p.cases.len(), 50);
    }
    scan.sort();
    println!(
        "book scan of {n} cases (state=open, page of 50), in process: p50 {:.2} ms  p99 {:.2} ms",
        pct(&scan, 0.5).as_secs_f64() * 1e3,
        pct(&scan, 0.99).as_secs_f64() * 1e3
    );
    let county = Api::login(&hub, "op-county").await;
    let township = Api::login(&hub, "op-shishan").await;
    let queries = [
        "/api/v1/cases?state=open&limit=200",
        "/api/v1/cases?limit=50",
        "/api/v1/cases?severity=critical&level=micro_grid&limit=50",
        "/api/v1/cases?cell=532329101001-G01&state=closed&limit=50",
        "/api/v1/cases?site=wd-other-002&state=resolved,closed&limit=100",
    ];
    println!(
        "GET /api/v1/cases, {requests} requests each, one client, load {}",
        load()
    );
    for q in queries {
        measure(&county, "op-county", q, requests).await;
    }
    for q in &queries[..2] {
        measure(&township, "op-shishan", q, requests).await;
    }
    // Deep paging: the cursor of page 20.
    let mut cursor = String::new();
    for _ in 0..20 {
        let r = county.get(&format!("/api/v1/cases?limit=50{cursor}")).await;
        cursor = format!("&cursor={}", r.json["next_cursor"].as_str().unwrap());
    }
    measure(
        &county,
        "op-county",
        &format!("/api/v1/cases?limit=50{cursor}"),
        requests,
    )
    .await;
    println!("load after: {}", load());

    let anonymous = Api::anonymous(&hub);
    let (bytes, files) = first_load(&anonymous).await;
    println!(
        "dashboard first load: {bytes} bytes ({:.1} KB) in {} files (uncompressed):",
        bytes as f64 / 1024.0,
        files.len()
    );
    for (p, b) in files {
        println!("  {b:>8}  {p}");
    }
    let _ = Arc::new(());
    hub.stop().await;
}
