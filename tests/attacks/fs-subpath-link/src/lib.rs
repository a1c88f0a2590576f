//! Attack in two steps. `arg = plant`: as a task with no grants, leave
//! symlinks in the workspace that climb out of it — `to-state -> ../../..`
//! (from `STATE/workspaces/RUN/ws`, the state directory with its secret
//! store), `to-root -> /`, and a chain whose every target is lexically
//! inside (`n/a/b/l -> ..`, `chain -> n/a/b/l/../../../../..`) — for a
//! later task that binds the workspace with `subPath: to-state` (or one of
//! the others). `arg = read`: that later task reads and writes what its
//! mount shows; it must never run, because the host refuses the subPath.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg, outcome};

#[allow(deprecated)]
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    std::fs::soft_link(target, format!("/workspace/ws/{link}"))
}

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    if arg(&input) == "plant" {
        std::fs::create_dir_all("/workspace/ws/n/a/b")
            .map_err(|e| TaskError::Failed(e.to_string()))?;
        let mut made = Vec::new();
        for (link, target) in [
            ("to-state", "../../.."),
            ("to-root", "/"),
            ("n/a/b/l", ".."),
            ("chain", "n/a/b/l/../../../../.."),
            ("inside", "n"),
        ] {
            made.push(format!("{link}: {}", symlink(target, link).is_ok()));
        }
        return outcome(format!("planted {}", made.join(", ")));
    }
    // Only reached if the host mounted a linked subPath.
    let mut t = Tries::new();
    t.must_fail(
        "list the mount",
        std::fs::read_dir("/workspace/ws").map(|d| d.count()),
    );
    t.must_fail(
        "read secrets/deploy-token",
        std::fs::read_to_string("/workspace/ws/secrets/deploy-token"),
    );
    t.must_fail(
        "read etc/passwd",
        std::fs::read_to_string("/workspace/ws/etc/passwd"),
    );
    t.must_fail(
        "write pwned",
        std::fs::write("/workspace/ws/pwned-by-subpath", b"pwned"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
