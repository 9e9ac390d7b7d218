//! Grid lookups per second on a synthetic hierarchy (default 100,000 cells).
//!
//! `cargo bench -p hub --bench grid [-- --cells N --lookups N --edge-points N]`
//!
//! A plain `main` rather than a harness: the figure wanted is a throughput, printed once per
//! configuration, and the inputs are fixed by seed so runs compare.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hub::grid::synthetic::{Synthetic, XorShift};
use hub::grid::{CoordSystem, GridIndex, Level, Point, geojson};

struct Args {
    cells: usize,
    lookups: usize,
    edge_points: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        cells: 100_000,
        lookups: 4_000_000,
        edge_points: vec![3, 10],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // `cargo bench` adds `--bench`; ignore what we do not know.
        let value = |it: &mut dyn Iterator<Item = String>| it.next().and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--cells" => a.cells = value(&mut it).unwrap_or(a.cells),
            "--lookups" => a.lookups = value(&mut it).unwrap_or(a.lookups),
            "--edge-points" => a.edge_points = value(&mut it).map_or(a.edge_points, |n| vec![n]),
            _ => {}
        }
    }
    a
}

fn main() {
    let args = args();
    println!(
        "grid lookup benchmark: {} cells, {} lookups per run",
        args.cells, args.lookups
    );
    for &edge_points in &args.edge_points {
        run(&args, edge_points);
    }
}

fn run(args: &Args, edge_points: usize) {
    let t = Instant::now();
    let spec = Synthetic {
        edge_points,
        ..Synthetic::new(args.cells, 1)
    };
    let hierarchy = match spec.hierarchy() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("synthetic hierarchy failed validation: {e}");
            std::process::exit(1);
        }
    };
    let generated = t.elapsed();
    let vertices: usize = hierarchy
        .cells()
        .iter()
        .flat_map(|c| c.area().polygons())
        .flat_map(|p| p.rings())
        .map(|r| r.len() - 1)
        .sum();

    let text = geojson::to_value(&hierarchy).to_string();
    let t = Instant::now();
    let imported = geojson::import_str(&text, CoordSystem::Wgs84).map(|h| h.len());
    let import_time = t.elapsed();

    let t = Instant::now();
    let bbox = hierarchy.bbox();
    let index = GridIndex::new(hierarchy);
    let built = t.elapsed();

    println!();
    println!(
        "up to {edge_points} extra points per edge: {} cells, {:.1} vertices per cell",
        index.len(),
        vertices as f64 / index.len() as f64
    );
    println!(
        "  generate + validate {:.2} s; GeoJSON import of the same ({} MB) {:.2} s ({:?} cells); index build {:.2} s",
        generated.as_secs_f64(),
        text.len() / 1_000_000,
        import_time.as_secs_f64(),
        imported.as_ref().map_err(ToString::to_string),
        built.as_secs_f64()
    );

    // Uniform over the region's box: most points fall in a micro-grid, some in gaps that
    // resolve to a grid, village, township or county, a few outside everything.
    let mut rng = XorShift::new(42);
    let points: Vec<Point> = (0..1_000_000)
        .map(|_| {
            Point::new(
                rng.range(bbox.min.lon, bbox.max.lon),
                rng.range(bbox.min.lat, bbox.max.lat),
            )
        })
        .collect();
    let mut by_level = [0usize; Level::ALL.len() + 1];
    for p in &points[..100_000] {
        let slot = index
            .locate_point(*p)
            .and_then(|id| index.cell(id))
            .map_or(Level::ALL.len(), |c| c.level().depth());
        by_level[slot] += 1;
    }
    let share: Vec<String> = Level::ALL
        .iter()
        .map(|l| format!("{l} {:.1}%", by_level[l.depth()] as f64 / 1000.0))
        .chain(std::iter::once(format!(
            "none {:.1}%",
            by_level[Level::ALL.len()] as f64 / 1000.0
        )))
        .collect();
    println!("  answers: {}", share.join(", "));

    // Warm up, then the best of three timed runs on one thread.
    lookups(&index, &points, points.len());
    // Also points where alerts come from: inside the box of a random micro-grid (or of a random
    // cell, when there are none), so almost every lookup ends at the first level.
    let micro: Vec<_> = index
        .hierarchy()
        .cells()
        .iter()
        .filter(|c| c.level() == Level::MicroGrid)
        .collect();
    let pool: Vec<_> = if micro.is_empty() {
        index.hierarchy().cells().iter().collect()
    } else {
        micro
    };
    let at_sites: Vec<Point> = (0..1_000_000)
        .map(|_| {
            let b = pool[rng.below(pool.len())].bbox();
            Point::new(
                rng.range(b.min.lon, b.max.lon),
                rng.range(b.min.lat, b.max.lat),
            )
        })
        .collect();
    let single = (0..3)
        .map(|_| lookups(&index, &points, args.lookups))
        .min()
        .unwrap_or_default();
    let rate = args.lookups as f64 / single.as_secs_f64();
    println!(
        "  uniform over the region, 1 thread:  {:>10.0} lookups/s ({:.0} ns per lookup)",
        rate,
        1e9 / rate
    );
    lookups(&index, &at_sites, at_sites.len());
    let single = (0..3)
        .map(|_| lookups(&index, &at_sites, args.lookups))
        .min()
        .unwrap_or_default();
    let rate = args.lookups as f64 / single.as_secs_f64();
    println!(
        "  inside micro-grid boxes, 1 thread: {:>10.0} lookups/s ({:.0} ns per lookup)",
        rate,
        1e9 / rate
    );

    // One lookup stream per core: the index is immutable and shared.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads > 1 {
        let streams: Vec<Vec<Point>> = (0..threads)
            .map(|k| {
                let mut rotated = points.clone();
                rotated.rotate_left(k * 1_000);
                rotated
            })
            .collect();
        let t = Instant::now();
        std::thread::scope(|s| {
            for stream in &streams {
                let index = &index;
                s.spawn(move || lookups(index, stream, args.lookups));
            }
        });
        let rate = (threads * args.lookups) as f64 / t.elapsed().as_secs_f64();
        println!("  uniform over the region, {threads} threads: {rate:>9.0} lookups/s");
    }
}

/// Time for `n` lookups cycling through `points`.
fn lookups(index: &GridIndex, points: &[Point], n: usize) -> Duration {
    let t = Instant::now();
    let mut found = 0u64;
    for p in points.iter().cycle().take(n) {
        if let Some(id) = index.locate(black_box(p.lon), black_box(p.lat)) {
            found = found.wrapping_add(id.index() as u64);
        }
    }
    black_box(found);
    t.elapsed()
}
