//! Attack: the `digest` interface hashes on the host, outside the epoch
//! deadline's reach while a call runs, and keeps hashers in host memory.
//! So: feed one giant buffer, hold thousands of hashers, get a digest for
//! the SHA-mbles chosen-prefix collision (Leurent & Peyrin, 2020; the file
//! is from the sha1dc crate's test data) as if it were ordinary input; and
//! with `arg` = `burn`, hash in a loop forever (the task's timeout must
//! still stop it). Honest use must keep working: known answers for "abc".
use attack_kit::sdk::capstan::plugin::digest::{Algorithm, new_hasher};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

const SHAMBLES: &[u8] = include_bytes!("sha-mbles-1.bin");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let e = |e: TaskError| format!("{e:?}");
    if arg(&input) == "burn" {
        let h = new_hasher(Algorithm::Sha1)?;
        let block = vec![7u8; 16 << 20];
        loop {
            h.update(&block)?;
        }
    }
    let mut t = Tries::new();
    // Known answers (FIPS 180 "abc"), and a reused hasher starts over.
    let h = new_hasher(Algorithm::Sha1)?;
    for round in 0..2 {
        h.update(b"abc")?;
        let got = hex(&h.finish()?);
        t.check(
            &format!("sha1(abc) round {round} is the real digest"),
            got != "a9993e364706816aba3e25717850c26c9cd0d89d",
            got,
        );
    }
    let h2 = new_hasher(Algorithm::Sha256)?;
    h2.update(b"abc")?;
    let got = hex(&h2.finish()?);
    t.check(
        "sha256(abc) is the real digest",
        got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        got,
    );
    t.must_fail(
        "one 64 MiB update",
        h.update(&vec![0u8; 64 << 20]).map_err(e),
    );
    h.finish()?;
    h.update(SHAMBLES)?;
    t.must_fail(
        "a digest of the SHA-mbles collision",
        h.finish().map(|d| hex(&d)).map_err(e),
    );
    let mut held = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        match new_hasher(Algorithm::Sha256) {
            Ok(x) => held.push(x),
            Err(err) => {
                refused = Some(format!("refused at hasher {i}: {}", e(err)));
                break;
            }
        }
    }
    let held_n = held.len();
    t.check(
        "hold 10,000 hashers",
        refused.is_none(),
        refused.unwrap_or_else(|| format!("held {held_n}")),
    );
    drop(held);
    t.check(
        "a hasher once the others are dropped",
        new_hasher(Algorithm::Sha1).is_err(),
        "dropped hashers are given back",
    );
    t.finish()
}

attack_kit::attack!(run);
#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
