//! Attack: allocate (and touch) `arg` MiB.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mib = arg(&input).parse::<usize>().unwrap_or(4096);
    let mut keep: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        keep.push(vec![1u8; 1 << 20]);
    }
    outcome(format!(
        "allocated {} MiB",
        std::hint::black_box(&keep).len()
    ))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
