//! Attack: read stdin to the end: it must be empty (the host's stdin is
//! not the task's), and must not block.
use attack_kit::outcome;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use std::io::Read;

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut buf = Vec::new();
    match std::io::stdin().read_to_end(&mut buf) {
        Ok(0) => outcome("denied 1/1\nstdin: empty"),
        Ok(n) => outcome(format!("ESCAPED: read {n} bytes of stdin")),
        Err(e) => outcome(format!("denied 1/1\nstdin: {e}")),
    }
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
