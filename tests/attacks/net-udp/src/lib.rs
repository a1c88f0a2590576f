//! Attack: UDP through wasi:sockets: bind, send to a host socket (`arg`),
//! to a DNS resolver, and "connect" a UDP socket.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};
use std::net::UdpSocket;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let target = arg(&input);
    t.must_fail("bind 0.0.0.0:0", UdpSocket::bind("0.0.0.0:0").map(|_| ()));
    t.must_fail(
        "bind 127.0.0.1:0",
        UdpSocket::bind("127.0.0.1:0").map(|_| ()),
    );
    for dest in [target.as_str(), "8.8.8.8:53", "127.0.0.53:53"] {
        let r = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"exfiltrated", dest));
        t.must_fail(&format!("send_to {dest}"), r);
        let r = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(dest));
        t.must_fail(&format!("connect {dest}"), r);
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
