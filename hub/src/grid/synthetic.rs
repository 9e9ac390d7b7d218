//! Synthetic grid hierarchies for benchmarks and property tests: pure functions of a cell count
//! and a seed.
//!
//! The layout imitates a real prefecture: counties (about 15,000 cells each, like Wuding's
//! 11 townships, 136 village grids and 1,600 villager-group grids, plus micro-grids) side by side
//! near Wuding (102.4°E, 25.5°N), each split into townships, villages, grids and micro-grids.
//! Every split is a jittered lattice inside the parent's quadrilateral whose interior edges wiggle
//! and are shared exactly by the two neighbours (so boundary points are exercised), with some
//! lattice slots left empty (land that belongs to the parent only), some grids not split into
//! micro-grids, and a few leaf cells with a hole — and sometimes an island inside the hole, as a
//! second polygon.
//!
//! Children's outer edges follow the parent's quadrilateral, not its wiggles, so they overhang
//! the parent slightly, as hand-drawn data does; the far-outside check's margin absorbs that.

use super::crs::CoordSystem;
use super::geometry::{MultiPolygon, Point, Polygon};
use super::hierarchy::{CellSpec, Hierarchy};
use super::level::Level;
use super::validate::GridError;

/// A small xorshift64* generator: deterministic across platforms and releases, which a
/// benchmark's input must be, and enough randomness for test data.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from any seed (0 included: the seed is scrambled with splitmix64 first).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Parameters of a synthetic hierarchy.
#[derive(Clone, Debug)]
pub struct Synthetic {
    /// Exactly this many cells are made.
    pub cells: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Most extra points along each edge of a cell (0 makes quadrilaterals); each edge gets a
    /// random number up to this. Real boundaries have more; the benchmark varies it.
    pub edge_points: usize,
    /// South-west corner of the region.
    pub origin: Point,
}

/// Size of a county in degrees (Wuding is about 0.5° × 0.45°).
const COUNTY_SIZE: (f64, f64) = (0.5, 0.45);
/// Cells per county, as in a real county with micro-grids.
const CELLS_PER_COUNTY: usize = 15_000;

impl Synthetic {
    /// `cells` cells from `seed`, up to 3 extra points per edge, starting near Wuding.
    pub fn new(cells: usize, seed: u64) -> Self {
        Self {
            cells,
            seed,
            edge_points: 3,
            origin: Point::new(102.0, 25.3),
        }
    }

    /// The cells, in WGS-84, parents before children.
    pub fn specs(&self) -> Vec<CellSpec> {
        let mut rng = XorShift::new(self.seed);
        let mut out = Vec::with_capacity(self.cells);
        if self.cells == 0 {
            return out;
        }
        let counties = self.cells.div_ceil(CELLS_PER_COUNTY);
        let cols = (counties as f64).sqrt().ceil() as usize;
        let rows = counties.div_ceil(cols);
        let (w, h) = (cols as f64 * COUNTY_SIZE.0, rows as f64 * COUNTY_SIZE.1);
        let o = self.origin;
        let region = [
            o,
            Point::new(o.lon + w, o.lat),
            Point::new(o.lon + w, o.lat + h),
            Point::new(o.lon, o.lat + h),
        ];
        let shares = split(self.cells - counties, counties, &mut rng, false);
        let pieces = self.subdivide(&region, counties, &mut rng);
        for (n, ((frame, ring), share)) in pieces.into_iter().zip(shares).enumerate() {
            let code = format!("C{:02}", n + 1);
            self.emit(
                &mut out,
                &mut rng,
                code,
                None,
                Level::County,
                frame,
                ring,
                share,
            );
        }
        out
    }

    /// The cells, validated.
    pub fn hierarchy(&self) -> Result<Hierarchy, GridError> {
        Hierarchy::from_specs(self.specs(), CoordSystem::Wgs84)
    }

    /// Pushes one cell and then its `budget` descendants.
    #[allow(clippy::too_many_arguments)] // a private recursive step; a struct would only rename them
    fn emit(
        &self,
        out: &mut Vec<CellSpec>,
        rng: &mut XorShift,
        code: String,
        parent: Option<&str>,
        level: Level,
        frame: Frame,
        ring: Vec<Point>,
        budget: usize,
    ) {
        let mut polygons = Vec::with_capacity(2);
        let mut holes = Vec::new();
        if budget == 0 && rng.unit() < 0.05 {
            let mut hole = square_in(&frame, 0.35, 0.65);
            hole.reverse();
            holes.push(hole);
            if rng.unit() < 0.5 {
                polygons.push(Polygon::new(square_in(&frame, 0.45, 0.55), Vec::new()));
            }
        }
        polygons.insert(0, Polygon::new(ring, holes));
        out.push(CellSpec {
            name: format!("{level} {code}"),
            code: code.clone(),
            level,
            parent: parent.map(str::to_owned),
            area: MultiPolygon::new(polygons),
        });
        let Some(child_level) = level.child() else {
            return;
        };
        if budget == 0 {
            return;
        }
        // Levels below a child; a child at the bottom takes the whole budget as siblings.
        let below = Level::MicroGrid.depth() - child_level.depth();
        let k = if below == 0 {
            budget
        } else {
            let ideal = (budget as f64).powf(1.0 / (below + 1) as f64) * rng.range(0.75, 1.25);
            (ideal.round() as usize).clamp(1, budget)
        };
        let shares = split(budget - k, k, rng, child_level == Level::Grid);
        let pieces = self.subdivide(&frame, k, rng);
        for (n, ((child_frame, child_ring), share)) in pieces.into_iter().zip(shares).enumerate() {
            let child_code = format!("{code}-{:02}", n + 1);
            self.emit(
                out,
                rng,
                child_code,
                Some(&code),
                child_level,
                child_frame,
                child_ring,
                share,
            );
        }
    }

    /// Splits `frame` into a jittered lattice and returns `k` of its slots (the rest stay empty):
    /// each as its own frame and its closed ring, counter-clockwise.
    fn subdivide(&self, frame: &Frame, k: usize, rng: &mut XorShift) -> Vec<(Frame, Vec<Point>)> {
        let rows = ((k as f64).sqrt().round() as usize).max(1);
        let cols = k.div_ceil(rows);
        // Lattice corners in the frame's (u, v); only interior corners move.
        let mut corner = vec![vec![(0.0, 0.0); rows + 1]; cols + 1];
        for (i, column) in corner.iter_mut().enumerate() {
            for (j, c) in column.iter_mut().enumerate() {
                let du = if i > 0 && i < cols {
                    rng.range(-0.25, 0.25)
                } else {
                    0.0
                };
                let dv = if j > 0 && j < rows {
                    rng.range(-0.25, 0.25)
                } else {
                    0.0
                };
                *c = ((i as f64 + du) / cols as f64, (j as f64 + dv) / rows as f64);
            }
        }
        // Points strictly inside each lattice edge, shared by the cells on both sides. Interior
        // edges wiggle sideways (most in the middle, so corners stay clean); edges on the
        // frame's boundary stay on it.
        let mut wiggle = |a: (f64, f64), b: (f64, f64), interior: bool| -> Vec<(f64, f64)> {
            let n = rng.below(self.edge_points + 1);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            (1..=n)
                .map(|m| {
                    let t = m as f64 / (n + 1) as f64;
                    let off = if interior {
                        0.06 * (std::f64::consts::PI * t).sin() * rng.range(-1.0, 1.0)
                    } else {
                        0.0
                    };
                    (a.0 + t * dx - off * dy, a.1 + t * dy + off * dx)
                })
                .collect()
        };
        // horizontal[i][j]: (i, j) → (i+1, j); vertical[i][j]: (i, j) → (i, j+1).
        let horizontal: Vec<Vec<Vec<(f64, f64)>>> = (0..cols)
            .map(|i| {
                (0..=rows)
                    .map(|j| wiggle(corner[i][j], corner[i + 1][j], j > 0 && j < rows))
                    .collect()
            })
            .collect();
        let vertical: Vec<Vec<Vec<(f64, f64)>>> = (0..=cols)
            .map(|i| {
                (0..rows)
                    .map(|j| wiggle(corner[i][j], corner[i][j + 1], i > 0 && i < cols))
                    .collect()
            })
            .collect();

        let mut slots: Vec<(usize, usize)> = (0..rows)
            .flat_map(|j| (0..cols).map(move |i| (i, j)))
            .collect();
        // Keep k slots at random, then restore row order so codes run west→east, south→north.
        for s in (1..slots.len()).rev() {
            slots.swap(s, rng.below(s + 1));
        }
        slots.truncate(k);
        slots.sort_by_key(|&(i, j)| (j, i));

        slots
            .into_iter()
            .map(|(i, j)| {
                let mut uv = Vec::new();
                uv.push(corner[i][j]);
                uv.extend(&horizontal[i][j]);
                uv.push(corner[i + 1][j]);
                uv.extend(&vertical[i + 1][j]);
                uv.push(corner[i + 1][j + 1]);
                uv.extend(horizontal[i][j + 1].iter().rev());
                uv.push(corner[i][j + 1]);
                uv.extend(vertical[i][j].iter().rev());
                uv.push(corner[i][j]);
                let ring = uv.iter().map(|&(u, v)| bilinear(frame, u, v)).collect();
                let child = [
                    bilinear(frame, corner[i][j].0, corner[i][j].1),
                    bilinear(frame, corner[i + 1][j].0, corner[i + 1][j].1),
                    bilinear(frame, corner[i + 1][j + 1].0, corner[i + 1][j + 1].1),
                    bilinear(frame, corner[i][j + 1].0, corner[i][j + 1].1),
                ];
                (child, ring)
            })
            .collect()
    }
}

/// A quadrilateral: corners at (u, v) = (0,0), (1,0), (1,1), (0,1).
type Frame = [Point; 4];

fn bilinear(f: &Frame, u: f64, v: f64) -> Point {
    let w = [(1.0 - u) * (1.0 - v), u * (1.0 - v), u * v, (1.0 - u) * v];
    Point::new(
        w[0] * f[0].lon + w[1] * f[1].lon + w[2] * f[2].lon + w[3] * f[3].lon,
        w[0] * f[0].lat + w[1] * f[1].lat + w[2] * f[2].lat + w[3] * f[3].lat,
    )
}

/// The closed, counter-clockwise ring of the square [lo, hi]² in the frame.
fn square_in(f: &Frame, lo: f64, hi: f64) -> Vec<Point> {
    [(lo, lo), (hi, lo), (hi, hi), (lo, hi), (lo, lo)]
        .iter()
        .map(|&(u, v)| bilinear(f, u, v))
        .collect()
}

/// Splits `total` among `k` parts at random, roughly evenly; with `allow_zero`, about one part in
/// ten gets nothing.
fn split(total: usize, k: usize, rng: &mut XorShift, allow_zero: bool) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let mut weights: Vec<f64> = (0..k)
        .map(|_| {
            if allow_zero && rng.unit() < 0.1 {
                0.0
            } else {
                rng.range(0.5, 1.5)
            }
        })
        .collect();
    if weights.iter().all(|&w| w == 0.0) {
        weights[0] = 1.0;
    }
    let sum: f64 = weights.iter().sum();
    let mut shares: Vec<usize> = weights
        .iter()
        .map(|w| (total as f64 * w / sum).floor() as usize)
        .collect();
    let mut left = total - shares.iter().sum::<usize>().min(total);
    let mut i = 0;
    while left > 0 {
        if weights[i % k] > 0.0 {
            shares[i % k] += 1;
            left -= 1;
        }
        i += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_makes_exactly_the_cells_asked_for_and_they_validate() {
        for (cells, seed) in [(1, 1), (5, 2), (37, 3), (1000, 4), (20_000, 5)] {
            let h = Synthetic::new(cells, seed).hierarchy().expect("valid");
            assert_eq!(h.len(), cells, "seed {seed}");
        }
    }

    #[test]
    fn the_generator_is_a_pure_function_of_its_seed() {
        assert_eq!(
            Synthetic::new(500, 9).specs(),
            Synthetic::new(500, 9).specs()
        );
        assert_ne!(
            Synthetic::new(500, 9).specs(),
            Synthetic::new(500, 10).specs()
        );
    }

    #[test]
    fn a_large_hierarchy_uses_every_level_holes_and_islands() {
        let specs = Synthetic::new(15_000, 7).specs();
        for level in Level::ALL {
            assert!(specs.iter().any(|s| s.level == level), "{level}");
        }
        assert!(
            specs
                .iter()
                .any(|s| !s.area.polygons()[0].holes().is_empty())
        );
        assert!(specs.iter().any(|s| s.area.polygons().len() > 1));
    }

    #[test]
    fn split_hands_out_the_whole_total() {
        let mut rng = XorShift::new(3);
        for total in [0, 1, 7, 100, 12_345] {
            for k in [1, 2, 9, 40] {
                assert_eq!(split(total, k, &mut rng, true).iter().sum::<usize>(), total);
            }
        }
    }
}
