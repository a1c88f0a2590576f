//! Attack: look around. List `/`, `.`, `/workspace`, `/workspace/..`,
//! and stat well-known host directories. All the task may see is its own
//! workspace.
use attack_kit::Tries;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    for d in ["/", ".", "/workspace", "/workspace/..", "/workspace/ws/.."] {
        match std::fs::read_dir(d) {
            Ok(rd) => {
                let names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                let escaped = names.iter().any(|n| n != "workspace" && n != "ws");
                t.check(&format!("list {d}"), escaped, format!("{names:?}"));
            }
            Err(e) => t.check(&format!("list {d}"), false, e),
        }
    }
    for d in [
        "/etc",
        "/usr",
        "/home",
        "/tmp",
        "/var/run/secrets/kubernetes.io",
    ] {
        t.must_fail(
            &format!("stat {d}"),
            std::fs::metadata(d).map(|m| m.is_dir()),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
