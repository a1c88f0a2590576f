//! Attack: 300,000 progress calls over 1,000 distinct step names.
use attack_kit::outcome;
use attack_kit::sdk::capstan::plugin::log::progress;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    for i in 0..300_000u64 {
        progress(&format!("step-{}", i % 1000), i, Some(300_000));
    }
    outcome("flooded")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
