//! Attack: the task may reach one SSH server (`arg` = `P|U`). Use the
//! host-side `exec-files` (which tars workspace files as the host reads
//! them) to ship files from outside the workspace to it: `..` paths, a
//! directory outside, absolute paths, and a planted symlink (`abs`).
use attack_kit::sdk::capstan::plugin::ssh;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (p, user) = a.split_once('|').unwrap_or((&a, "root"));
    let p: u16 = p.parse().unwrap_or(22);
    let s = ssh::connect("127.0.0.1", p, user)?;
    for (dir, path) in [
        ("/workspace/ws", "../outside.txt"),
        ("/workspace/ws/..", "outside.txt"),
        ("/workspace/ws", "/etc/passwd"),
        ("/workspace/ws", "abs"),
        ("/workspace/ws", "root/etc/passwd"),
        ("/etc", "passwd"),
    ] {
        let r = s.exec_files(
            "cat > /dev/null; echo received",
            &[],
            dir,
            &[path.to_string()],
        );
        t.must_fail(
            &format!("exec-files {dir} [{path}]"),
            r.map(|x| x.stdout_tail).map_err(|e| format!("{e:?}")),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
