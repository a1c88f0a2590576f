//! Attack: the granted server (`arg` = its URL) answers 302 to a host
//! that is not granted. wasi:http must not follow it by itself, and
//! following it by hand must be refused.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::sdk::http;
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let url = arg(&input);
    let first = http::send("GET", &format!("{url}/start"), &[], None);
    let location = match first {
        Ok(r) => {
            let loc = r.header("location").unwrap_or_default().to_string();
            t.check(
                "the host does not follow the redirect itself",
                r.status != 302,
                format!("status {}, location {loc}", r.status),
            );
            loc
        }
        Err(e) => {
            return Err(TaskError::Failed(format!(
                "the granted request failed: {e}"
            )));
        }
    };
    t.must_fail(
        &format!("follow to {location}"),
        http::send("GET", &location, &[], None).map(|r| r.status),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
