//! The fuzz targets (fuzz/src/lib.rs) over every input in fuzz/corpus/ and
//! fuzz/regressions/ — on stable, in CI. The libFuzzer runs themselves are
//! `cargo +nightly fuzz run TARGET` (docs/RELIABILITY.md); every crash they
//! find is kept under fuzz/regressions/TARGET/ and replayed here.

#[allow(dead_code, clippy::all)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seen = 0;
    for (name, target) in targets::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let started = std::time::Instant::now();
                let r = std::panic::catch_unwind(|| target(&data));
                assert!(r.is_ok(), "{name}: {} panicked", e.path().display());
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{name}: {} took {:?}",
                    e.path().display(),
                    started.elapsed()
                );
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no corpus for fuzz target {name}");
        seen += inputs;
    }
    assert!(seen >= 6);
}
