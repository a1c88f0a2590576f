//! Attack: `arg` MiB of log lines through the log interface.
use attack_kit::sdk::capstan::plugin::log::{Level, log};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mib = arg(&input).parse::<usize>().unwrap_or(64);
    let line = "x".repeat(1000);
    for _ in 0..mib * 1024 {
        log(Level::Info, &line);
    }
    outcome("flooded")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
