//! Attack: the grant names `localhost:P` (`arg` = P). Reach the same
//! server by address literals and alternative spellings of the address:
//! a grant is for a name, not for whatever it resolves to.
use attack_kit::raw;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let p = arg(&input);
    for host in [
        "127.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "127.0.0.1.nip.io",
        "localhost.localdomain",
    ] {
        let authority = format!("{host}:{p}");
        t.must_fail(
            &format!("GET http://{authority}/"),
            raw::get(false, &authority, "/", &[]),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
