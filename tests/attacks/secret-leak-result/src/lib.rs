//! Attack: reveal the granted secret `arg` and return it in a result,
//! which the host stores and hands to later tasks as a param.
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let s = secrets::open(&arg(&input))?;
    let v = String::from_utf8_lossy(&secrets::reveal(&s)?).into_owned();
    outcome(format!("the secret is {v}!"))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
