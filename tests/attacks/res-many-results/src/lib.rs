//! Attack: 200,000 tiny results (the manifest declares one), then the same
//! with only the declared name repeated.
use attack_kit::param;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let same = param(&input, "arg") == "same";
    Ok((0..200_000)
        .map(|i| TaskResult {
            name: if same {
                "outcome".into()
            } else {
                format!("r{i}")
            },
            value: "v".into(),
        })
        .collect())
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
