//! Attack: write the workspace full, 1 MiB at a time, `arg` MiB at most
//! (the workspace lies beside the run store, under the state directory).
//! The run's workspace budget must stop it; if the disk fills first, the
//! store must survive it.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};
use std::io::Write;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let max: usize = arg(&input).parse().unwrap_or(512);
    let chunk = vec![0x5au8; 1 << 20];
    let mut written = 0usize;
    let mut stopped = String::from("never stopped");
    'files: for n in 0.. {
        let mut f = match std::fs::File::create(format!("/workspace/ws/fill-{n}")) {
            Ok(f) => f,
            Err(e) => {
                stopped = e.to_string();
                break;
            }
        };
        for _ in 0..64 {
            if written >= max {
                break 'files;
            }
            if let Err(e) = f.write_all(&chunk) {
                stopped = e.to_string();
                break 'files;
            }
            written += 1;
        }
    }
    let mut t = Tries::new();
    t.check(
        "fill the disk",
        written >= max,
        format!("wrote {written} MiB, then: {stopped}"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
