//! Attack: the grant allows `get` and `list` on configmaps in the run's
//! namespace (`arg`); create, update, patch, delete and watch them.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted"},"data":{"a":"b"}}"#;
    let mut create = req("create", "configmaps", &ns, None);
    create.body = Some(body.into());
    t.must_fail("create", try_send(create));
    let mut update = req("update", "configmaps", &ns, Some("app-config"));
    update.body = Some(body.replace("planted", "app-config"));
    t.must_fail("update", try_send(update));
    let mut patch = req("patch", "configmaps", &ns, Some("app-config"));
    patch.body = Some(r#"{"data":{"pwned":"yes"}}"#.into());
    t.must_fail("patch", try_send(patch));
    t.must_fail(
        "delete",
        try_send(req("delete", "configmaps", &ns, Some("app-config"))),
    );
    t.must_fail(
        "deletecollection-style delete",
        try_send(req("delete", "configmaps", &ns, Some(""))),
    );
    t.must_fail(
        "escalate",
        try_send(req("escalate", "configmaps", &ns, Some("app-config"))),
    );
    t.must_fail(
        "impersonate",
        try_send(req("impersonate", "configmaps", &ns, Some("app-config"))),
    );
    t.must_fail(
        "GET (case)",
        try_send(req("GET", "configmaps", &ns, Some("app-config"))),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
