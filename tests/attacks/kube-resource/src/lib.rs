//! Attack: the grant allows `get` on configmaps in the run's namespace
//! (`arg`); read secrets, pods, serviceaccounts, and configmaps under
//! other spellings and groups.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    for (resource, name) in [
        ("secrets", "db-password"),
        ("Secrets", "db-password"),
        ("secrets.", "db-password"),
        ("serviceaccounts", "default"),
        ("pods", "web"),
        ("configmaps/../secrets", "db-password"),
        ("configmaps%2F..%2Fsecrets", "db-password"),
    ] {
        t.must_fail(
            &format!("get {resource}/{name}"),
            try_send(req("get", resource, &ns, Some(name))),
        );
    }
    let mut grouped = req("get", "configmaps", &ns, Some("app-config"));
    grouped.group = "apps".into();
    t.must_fail("configmaps in group apps", try_send(grouped));
    let mut other_version = req("get", "secrets", &ns, Some("db-password"));
    other_version.version = "v1/namespaces/x/secrets".into();
    t.must_fail("path in the version", try_send(other_version));
    t.must_fail("list secrets", try_send(req("list", "secrets", &ns, None)));
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
