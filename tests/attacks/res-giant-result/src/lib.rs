//! Attack: one result of `arg` MiB.
use attack_kit::arg;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mib = arg(&input).parse::<usize>().unwrap_or(64);
    Ok(vec![TaskResult {
        name: "outcome".into(),
        value: "z".repeat(mib << 20),
    }])
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
