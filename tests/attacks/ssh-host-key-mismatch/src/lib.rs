//! Attack: the grant pins a host key the server does not have (a
//! man-in-the-middle, or a rebuilt machine). Connect repeatedly (no trust on
//! first or fifth use) and try to run a command that leaves a mark.
//! `arg` = `P|U|MARK`: port, user, and the file the command would create.
use attack_kit::sdk::capstan::plugin::ssh;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let mut parts = a.split('|');
    let p: u16 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(22);
    let user = parts.next().unwrap_or("root").to_string();
    let mark = parts.next().unwrap_or("/tmp/capstan-pwned").to_string();
    for i in 1..=5 {
        let r =
            ssh::connect("127.0.0.1", p, &user).and_then(|s| s.exec(&format!("touch {mark}"), &[]));
        t.must_fail(
            &format!("connect #{i}"),
            r.map(|x| x.exit_code).map_err(|e| format!("{e:?}")),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
