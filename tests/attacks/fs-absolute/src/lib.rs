//! Attack: open host files by absolute path (system files, /proc, /dev, and
//! the file the test names in `arg`), and write outside the workspace.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let target = arg(&input);
    for p in [
        target.as_str(),
        "/etc/passwd",
        "/etc/hostname",
        "/root/.ssh/id_rsa",
        "/proc/self/environ",
        "/proc/self/mem",
        "/proc/1/root/etc/passwd",
        "/dev/zero",
        "/sys/kernel/hostname",
    ] {
        t.must_fail(&format!("read {p}"), std::fs::read(p).map(|b| b.len()));
    }
    t.must_fail(
        "write /tmp/capstan-pwned",
        std::fs::write("/tmp/capstan-pwned", b"x"),
    );
    t.must_fail(
        "create dir /tmp/capstan-pwned-dir",
        std::fs::create_dir("/tmp/capstan-pwned-dir"),
    );
    t.must_fail(
        &format!("append {target}"),
        std::fs::OpenOptions::new().append(true).open(&target),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
