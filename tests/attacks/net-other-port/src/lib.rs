//! Attack: the task may reach `http://127.0.0.1:P`; try the same host on
//! another port (`arg` = `P|Q`, Q is a live listener), the default port,
//! and https on the granted port.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::sdk::http;
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (p, q) = a.split_once('|').unwrap_or((&a, "1"));
    for u in [
        format!("http://127.0.0.1:{q}/"),
        "http://127.0.0.1/".to_string(),
        format!("https://127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}0/"),
    ] {
        t.must_fail(
            &format!("GET {u}"),
            http::send("GET", &u, &[], None).map(|r| r.status),
        );
    }
    // The granted one works (the grant is real, just narrow).
    let ok = http::send("GET", &format!("http://127.0.0.1:{p}/"), &[], None);
    t.check(
        "the granted authority itself",
        false,
        match ok {
            Ok(r) => format!("allowed, status {}", r.status),
            Err(e) => format!("FAILED: {e}"),
        },
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
