//! The kill -9 soak, short version (the long one is the `soak` binary; see
//! docs/RELIABILITY.md): 12 pipelines of three shapes, the scheduler
//! SIGKILLed at random moments at least 6 times and resumed each time.

use capstan_tests::components;
use capstan_tests::soak::{self, Settings};

#[test]
fn sigkilled_at_random_moments_nothing_is_lost_or_run_twice() {
    let r = soak::run(
        env!("CARGO_BIN_EXE_capstan-cli"),
        components::SLEEP,
        components::FAIL,
        &Settings {
            pipelines: 12,
            min_kills: 6,
            seed: 0x5eed,
        },
    );
    eprintln!("{r:?}");
    r.check();
    assert_eq!(r.runs, 12);
    assert!(r.kills >= 6, "{r:?}");
}
