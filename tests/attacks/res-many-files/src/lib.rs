//! Attack: open the same workspace file again and again, keeping every
//! handle, until something stops it (the process's descriptor limit is
//! ~20,000 here; reaching it would fail every other task's file I/O). The
//! host's per-task handle cap must stop it first; `arg` is how many opens
//! would count as an escape.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let escape_at: usize = arg(&input).parse().unwrap_or(5000);
    std::fs::write("/workspace/ws/one", b"x").map_err(|e| TaskError::Failed(e.to_string()))?;
    let mut held = Vec::new();
    let stopped = loop {
        match std::fs::File::open("/workspace/ws/one") {
            Ok(f) => held.push(f),
            Err(e) => break e.to_string(),
        }
        if held.len() >= 50_000 {
            break "never stopped".to_string();
        }
    };
    let mut t = Tries::new();
    t.check(
        "hold open files",
        held.len() >= escape_at,
        format!("{} held, then: {stopped}", held.len()),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
