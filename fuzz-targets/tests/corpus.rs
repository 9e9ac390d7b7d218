//! Every fuzz target over its committed corpus and over mutations of it, in the ordinary test
//! run: a parser change that breaks a target's property on a known input (a seed, or a crash
//! found once) fails here, without building the instrumented libFuzzer binaries.
//!
//! This is not coverage-guided fuzzing (that is `cargo xtask fuzz`); the mutations are random
//! edits of the corpus (bit flips, byte changes, inserts, deletions, repeats, splices with
//! another input), from a fixed seed so a failure reproduces, bounded in count and time.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fuzz_targets::TARGETS;

/// Mutated inputs per target, and the most time they may take (a slow machine runs fewer).
const MUTATIONS: usize = 100_000;
const BUDGET: Duration = Duration::from_secs(5);
/// libFuzzer's default `-max_len` for inputs it makes up.
const MAX_LEN: usize = 4_096;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// xorshift64*: deterministic, and enough for picking edits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits of `input` (`other` is another corpus input, for splices).
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                // Values parsers treat specially, more often than chance would.
                const SPECIAL: [u8; 8] = [0, 0xFF, 0x7F, 0x80, b'\r', b'\n', b',', b'"'];
                v[i] = if rng.below(2) == 0 {
                    SPECIAL[rng.below(SPECIAL.len())]
                } else {
                    rng.next() as u8
                };
            }
            2 => v.insert(at, rng.next() as u8),
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(32)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[start..end].iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v.truncate(MAX_LEN);
    v
}

/// Runs `input`; on a panic, keeps the input in a file named in the failure.
fn run(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{what}"));
        std::fs::write(&file, input).unwrap();
        panic!(
            "fuzz target {target} failed on {what} ({} bytes), kept in {}; copy it into \
             fuzz/corpus/{target}/ once fixed",
            input.len(),
            file.display()
        );
    }
}

fn check(target: &str) {
    let f = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
    for (i, input) in inputs.iter().enumerate() {
        run(target, f, input, &format!("corpus-{i}"));
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    let started = Instant::now();
    let mut done = 0;
    while done < MUTATIONS && started.elapsed() < BUDGET {
        let input = &inputs[rng.below(inputs.len())];
        let other = &inputs[rng.below(inputs.len())];
        let m = mutate(&mut rng, input, other);
        run(target, f, &m, &format!("mutation-{done}"));
        done += 1;
    }
    // A target so slow that a handful of inputs fill the budget is not being exercised.
    assert!(done >= 200, "{target}: only {done} mutations in {BUDGET:?}");
    eprintln!(
        "{target}: {} corpus inputs and {done} mutations in {:.1} s",
        inputs.len(),
        started.elapsed().as_secs_f64()
    );
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test_a_corpus_and_a_libfuzzer_binary() {
            let tested = [$(stringify!($name)),*];
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, tested, "a target without its test here (or the reverse)");
            let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
            for name in names {
                assert!(
                    manifest.contains(&format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"")),
                    "fuzz/Cargo.toml has no [[bin]] {name}"
                );
                let entry = std::fs::read_to_string(
                    repo().join(format!("fuzz/fuzz_targets/{name}.rs")),
                )
                .unwrap();
                assert!(
                    entry.contains(&format!("fuzz_targets::{name}::run(data)")),
                    "fuzz/fuzz_targets/{name}.rs does not run fuzz_targets::{name}"
                );
                assert!(repo().join("fuzz/corpus").join(name).is_dir(), "no corpus for {name}");
            }
        }
    };
}

targets!(
    digest_challenge,
    gateway_packet,
    geojson,
    mjpeg,
    protocol,
    roster_csv,
    tag_read,
);
