//! Attack: look for the host's environment (tokens, paths) and argv.
use attack_kit::Tries;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    t.check("environment", !vars.is_empty(), format!("{vars:?}"));
    let args: Vec<String> = std::env::args().collect();
    t.check("arguments", !args.is_empty(), format!("{args:?}"));
    t.check(
        "cwd",
        false,
        format!("{:?}", std::env::current_dir().map_err(|e| e.to_string())),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
