//! Attack: make symlinks out of the workspace (absolute, relative, to the
//! parent directory) and read or write through them. Making a relative link
//! may succeed (it is only text); following it out must not.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

/// symlink(2): `std::fs::soft_link` is its stable spelling on WASI
/// (`std::os::wasi::fs::symlink_path` is unstable).
#[allow(deprecated)]
fn symlink_path(target: &str, link: String) -> std::io::Result<()> {
    std::fs::soft_link(target, link)
}

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    let links = [
        ("mk-abs", "/etc/passwd".to_string()),
        ("mk-rel", format!("../{name}")),
        ("mk-up", "..".to_string()),
        ("mk-deep", "../../../../../../etc/passwd".to_string()),
    ];
    for (link, target) in &links {
        let made = symlink_path(target, format!("/workspace/ws/{link}"));
        let read = std::fs::read_to_string(format!("/workspace/ws/{link}"));
        t.must_fail(
            &format!("read via {link} -> {target} (made: {})", made.is_ok()),
            read,
        );
    }
    t.must_fail(
        "write via mk-rel",
        std::fs::write("/workspace/ws/mk-rel", b"pwned"),
    );
    t.must_fail(
        "read via mk-up",
        std::fs::read_to_string(format!("/workspace/ws/mk-up/{name}")),
    );
    t.must_fail(
        "create via mk-up",
        std::fs::write("/workspace/ws/mk-up/dropped-by-symlink", b"pwned"),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
