//! Attack: read or change the scheduler's state directory. `arg` is
//! `ABS|REL`: its host path and the path to it from this workspace.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (abs, rel) = a.split_once('|').unwrap_or((&a, ""));
    for base in [abs.to_string(), format!("/workspace/ws/{rel}")] {
        t.must_fail(
            &format!("list {base}"),
            std::fs::read_dir(&base).map(|_| ()),
        );
        for f in ["capstan.db", "api-tokens.toml", "secrets.toml"] {
            let p = format!("{base}/{f}");
            t.must_fail(&format!("read {p}"), std::fs::read(&p).map(|b| b.len()));
        }
        t.must_fail(
            &format!("write {base}/capstan.db"),
            std::fs::write(format!("{base}/capstan.db"), b"pwned"),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
