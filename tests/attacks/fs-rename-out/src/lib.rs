//! Attack: rename a workspace file out of the workspace (`..`, absolute,
//! into the read-only workspace); `arg` names the destination beside the
//! workspace that must never appear.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    std::fs::write("/workspace/ws/f", b"moved").ok();
    for to in [
        format!("/workspace/ws/../{name}"),
        format!("/tmp/{name}"),
        "/workspace/ro/moved".to_string(),
        format!("/workspace/ws/sub/../../{name}"),
    ] {
        t.must_fail(
            &format!("rename to {to}"),
            std::fs::rename("/workspace/ws/f", &to),
        );
    }
    t.must_fail(
        "copy out",
        std::fs::copy("/workspace/ws/f", format!("/workspace/ws/../{name}")),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
