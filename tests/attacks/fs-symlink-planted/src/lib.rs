//! Attack: read and write through symlinks someone planted in the workspace
//! (a malicious repository, an earlier task): `abs` and `rel` point to a
//! host file outside, `root` to `/`, `chain` to `abs`, `up` to `..`.
//! `arg` is the outside file's name (it sits beside the workspace).
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    for link in [
        "abs",
        "rel",
        "chain",
        "root/etc/passwd",
        &format!("up/{name}"),
    ] {
        let p = format!("/workspace/ws/{link}");
        t.must_fail(&format!("read {p}"), std::fs::read_to_string(&p));
    }
    t.must_fail(
        "list /workspace/ws/root",
        std::fs::read_dir("/workspace/ws/root").map(|_| ()),
    );
    t.must_fail(
        "list /workspace/ws/up",
        std::fs::read_dir("/workspace/ws/up").map(|_| ()),
    );
    t.must_fail(
        "write through rel",
        std::fs::write("/workspace/ws/rel", b"pwned"),
    );
    t.must_fail(
        "append through abs",
        std::fs::OpenOptions::new()
            .append(true)
            .open("/workspace/ws/abs"),
    );
    t.must_fail(
        "create through up",
        std::fs::write("/workspace/ws/up/dropped-by-symlink", b"pwned"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
