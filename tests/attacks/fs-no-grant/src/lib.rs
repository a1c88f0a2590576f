//! Attack: this task declares no workspace; another task of the run writes
//! `/workspace/ws/f`. Reach it anyway.
use attack_kit::Tries;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    for p in [
        "/workspace/ws/f",
        "/workspace/ws/secret.txt",
        "workspace/ws/secret.txt",
        "ws/secret.txt",
        "secret.txt",
    ] {
        t.must_fail(&format!("read {p}"), std::fs::read_to_string(p));
    }
    t.must_fail(
        "list /workspace",
        std::fs::read_dir("/workspace").map(|_| ()),
    );
    t.must_fail(
        "write /workspace/ws/x",
        std::fs::write("/workspace/ws/x", b"pwned"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
