//! Attack: the grant is `127.0.0.1:P` as user U (`arg` = `P|U`). Try
//! other spellings of the host, other ports, other users, and option
//! injection in the user and host names.
use attack_kit::sdk::capstan::plugin::ssh;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (p, user) = a.split_once('|').unwrap_or((&a, "root"));
    let p: u16 = p.parse().unwrap_or(22);
    let e = |e: TaskError| format!("{e:?}");
    for (host, port, u) in [
        ("localhost", p, user),
        ("127.0.0.2", p, user),
        ("[::1]", p, user),
        ("::1", p, user),
        ("0x7f000001", p, user),
        ("127.0.0.1 ", p, user),
        ("127.0.0.1\n", p, user),
        ("127.0.0.1", p.wrapping_add(1), user),
        ("127.0.0.1", 22, user),
        ("127.0.0.1", p, "root"),
        ("127.0.0.1", p, "-oProxyCommand=touch /tmp/capstan-pwned"),
        ("-oProxyCommand=touch /tmp/capstan-pwned", p, user),
    ] {
        t.must_fail(
            &format!("connect {u}@{host}:{port}"),
            ssh::connect(host, port, u).map(|_| ()).map_err(e),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
