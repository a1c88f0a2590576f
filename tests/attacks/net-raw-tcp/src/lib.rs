//! Attack: raw TCP through wasi:sockets, which std networking uses: connect
//! to a loopback listener (`arg`), the cloud metadata address, IPv6
//! loopback, and open a listening socket.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let target = arg(&input);
    let port = target.rsplit(':').next().unwrap_or("80").to_string();
    for addr in [
        target.clone(),
        "169.254.169.254:80".to_string(),
        format!("[::1]:{port}"),
        format!("0.0.0.0:{port}"),
        "10.96.0.1:443".to_string(),
    ] {
        let r = addr
            .parse()
            .map_err(|e| std::io::Error::other(format!("{e}")))
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)));
        t.must_fail(&format!("connect {addr}"), r.map(|_| ()));
    }
    t.must_fail(
        "listen 0.0.0.0:0",
        TcpListener::bind("0.0.0.0:0").map(|_| ()),
    );
    t.must_fail(
        "listen 127.0.0.1:0",
        TcpListener::bind("127.0.0.1:0").map(|_| ()),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
