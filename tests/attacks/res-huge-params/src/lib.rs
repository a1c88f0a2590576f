//! Attack: a task whose `arg` is made huge by whoever supplies params (a
//! pipeline param, a webhook payload). Reports the size it received.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    outcome(format!("received {} bytes", arg(&input).len()))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
