//! Attack: read another run's workspace. `arg` is `ABS|REL`: the other
//! workspace's host path, and the path from this workspace to it (what a
//! guesser would try). It holds `secret.txt`.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (abs, rel) = a.split_once('|').unwrap_or((&a, ""));
    for p in [
        format!("{abs}/secret.txt"),
        format!("/workspace/ws/{rel}/secret.txt"),
        format!("/workspace/{rel}/secret.txt"),
    ] {
        t.must_fail(&format!("read {p}"), std::fs::read_to_string(&p));
    }
    t.must_fail(&format!("list {abs}"), std::fs::read_dir(abs).map(|_| ()));
    t.must_fail(
        "write into it",
        std::fs::write(format!("/workspace/ws/{rel}/dropped"), b"pwned"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
