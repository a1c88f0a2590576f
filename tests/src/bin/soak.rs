//! The kill -9 soak, long version (see `capstan_tests::soak`):
//!
//!     cargo build -p capstan-tests --bins && scripts/build-components.sh
//!     cargo run -p capstan-tests --bin soak -- [PIPELINES] [MIN_KILLS] [SEED]
//!
//! Defaults: 100 pipelines, at least 20 kills, seed from the clock.
//! Prints what it did and fails (exit 1) on any problem.

use capstan_tests::components;
use capstan_tests::soak::{self, Settings};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let seed = arg(
        2,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let s = Settings {
        pipelines: arg(0, 100) as usize,
        min_kills: arg(1, 20) as usize,
        seed,
    };
    let cli = std::env::current_exe()
        .unwrap()
        .with_file_name("capstan-cli");
    assert!(
        cli.exists(),
        "{} is missing: cargo build -p capstan-tests --bins",
        cli.display()
    );
    eprintln!(
        "soak: {} pipelines, at least {} kills, seed {seed}",
        s.pipelines, s.min_kills
    );
    let r = soak::run(
        cli.to_str().unwrap(),
        components::SLEEP,
        components::FAIL,
        &s,
    );
    println!(
        "soak: {} runs, {} tasks, {} SIGKILLs, {} resumes, {} re-runs of interrupted tasks, {} problems, {:.1} s (seed {seed})",
        r.runs,
        r.tasks,
        r.kills,
        r.resumes,
        r.reruns_of_interrupted,
        r.problems.len(),
        r.elapsed.as_secs_f64()
    );
    for p in &r.problems {
        println!("  {p}");
    }
    if !r.problems.is_empty() {
        std::process::exit(1);
    }
}
