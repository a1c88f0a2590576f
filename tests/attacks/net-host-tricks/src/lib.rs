//! Attack: the grant is `http://localhost:P`; a listener the task must not
//! reach is on Q (`arg` = `P|Q`). Try authorities that parsers disagree
//! on, a Host header that names the granted server while the request goes
//! elsewhere, and names that would resolve to the granted address (DNS
//! rebinding style: the grant must match the name, not an address).
use attack_kit::raw;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let a = arg(&input);
    let (p, q) = a.split_once('|').unwrap_or((&a, "1"));
    for authority in [
        format!("localhost:{p}@127.0.0.1:{q}"),
        // The host after the last `@` is granted; a proxy reading up to the
        // first `@` would go to Q.
        format!("127.0.0.1:{q}@localhost:{p}"),
        format!("x@127.0.0.1:{q}@localhost:{p}"),
        format!("localhost%3A{p}@127.0.0.1:{q}"),
        format!("localhost:{p}%40127.0.0.1:{q}"),
        format!("127.0.0.1:{q}#@localhost:{p}"),
        format!("127.0.0.1:{q}?@localhost:{p}"),
        format!("127.0.0.1:{q}\\@localhost:{p}"),
        format!("localhost.:{q}"),
        format!("LOCALHOST:{q}"),
        format!("localhost:{q}"),
        format!("localhost:{p}.127.0.0.1.nip.io:{q}"),
        format!("localhost:{p}:{q}"),
        format!("127.0.0.1:{q} localhost:{p}"),
    ] {
        t.must_fail(
            &format!("GET http://{authority}/"),
            raw::get(false, &authority, "/", &[]),
        );
    }
    let host_header = format!("localhost:{p}");
    t.must_fail(
        "Host header naming the granted server, request to Q",
        raw::get(
            false,
            &format!("127.0.0.1:{q}"),
            "/",
            &[("host", host_header.as_str())],
        ),
    );
    t.must_fail(
        "Host header on a granted request",
        raw::get(
            false,
            &format!("localhost:{p}"),
            "/host-header",
            &[("host", "evil.example")],
        ),
    );
    t.must_fail(
        "path that is really an absolute URL",
        // Contained if refused, or if it went to the granted server after
        // all (which answers 200; the test's tripwire on Q sees nothing).
        raw::get(
            false,
            &format!("localhost:{p}"),
            &format!("http://127.0.0.1:{q}/"),
            &[],
        )
        .and_then(|s| match s {
            200 => Err("went to the granted server".to_string()),
            s => Ok(s),
        }),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
