//! Attack: `arg` MiB on stdout in lines, then as much again on stderr as
//! one line with no newline (the host must not buffer it without bound).
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};
use std::io::Write;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mib = arg(&input).parse::<usize>().unwrap_or(64);
    let line = "y".repeat(1000);
    for _ in 0..mib * 1024 {
        println!("{line}");
    }
    let chunk = vec![b'z'; 64 << 10];
    let mut err = std::io::stderr();
    for _ in 0..mib * 16 {
        let _ = err.write_all(&chunk);
    }
    outcome("flooded")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
