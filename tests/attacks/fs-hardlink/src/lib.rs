//! Attack: hard links. Link an outside file into the workspace, link a
//! planted symlink (`abs`, pointing outside) and read the link, and link a
//! file of the read-only workspace `ro` into the writable `ws` to write
//! it. `arg` is the outside file's name (beside the workspace).
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    t.must_fail(
        "link /etc/passwd",
        std::fs::hard_link("/etc/passwd", "/workspace/ws/h-passwd"),
    );
    t.must_fail(
        "link ../outside",
        std::fs::hard_link(
            format!("/workspace/ws/../{name}"),
            "/workspace/ws/h-outside",
        ),
    );
    let made = std::fs::hard_link("/workspace/ws/abs", "/workspace/ws/h-abs");
    t.must_fail(
        &format!(
            "read a hard link to the planted symlink (made: {})",
            made.is_ok()
        ),
        std::fs::read_to_string("/workspace/ws/h-abs"),
    );
    t.must_fail(
        "link ro/file into ws",
        std::fs::hard_link("/workspace/ro/file", "/workspace/ws/h-ro"),
    );
    t.must_fail(
        "write the ro file through the link",
        std::fs::write("/workspace/ws/h-ro", b"pwned").and_then(|_| {
            // Only an escape if the read-only original changed.
            match std::fs::read("/workspace/ro/file") {
                Ok(b) if b == b"pwned" => Ok(()),
                _ => Err(std::io::Error::other("the read-only file is unchanged")),
            }
        }),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
