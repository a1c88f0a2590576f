//! Attack: this component declares itself `git-clone` 1.0.0 (a name the
//! platform policy trusts with `secrets`) while being anything but; it is
//! run from a file, and from registries that list it under its own name
//! (`hs-evil`). If the policy believed the embedded name, it would reveal
//! the secret `arg`.
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let s = secrets::open(&arg(&input))?;
    let v = secrets::reveal(&s)?;
    outcome(format!("ESCAPED: revealed {} bytes as git-clone", v.len()))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
