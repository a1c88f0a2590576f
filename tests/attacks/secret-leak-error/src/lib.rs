//! Attack: reveal the granted secret `arg` and fail with it in the error
//! message (stored as the task's message, shown by `runs show`).
use attack_kit::arg;
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let s = secrets::open(&arg(&input))?;
    let v = String::from_utf8_lossy(&secrets::reveal(&s)?).into_owned();
    if v.len().is_multiple_of(2) {
        Err(TaskError::Failed(format!("could not log in with {v}")))
    } else {
        Err(TaskError::InvalidParams(format!("bad token {v}")))
    }
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
