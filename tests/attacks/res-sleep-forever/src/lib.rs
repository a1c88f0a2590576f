//! Attack: sleep for a year inside a host call (a poll on a monotonic-clock
//! pollable), which CPU-based interruption never sees.
use attack_kit::outcome;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    std::thread::sleep(std::time::Duration::from_secs(365 * 24 * 3600));
    outcome("woke up")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
