//! Attack: unbounded recursion with a large frame.
use attack_kit::outcome;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

#[inline(never)]
fn recurse(n: u64, buf: [u8; 256]) -> u64 {
    let b = std::hint::black_box(buf);
    if n == 0 {
        b[0] as u64
    } else {
        recurse(n + 1, b) + b[1] as u64
    }
}

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    outcome(format!("{}", recurse(1, [1u8; 256])))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
