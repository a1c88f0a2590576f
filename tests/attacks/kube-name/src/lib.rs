//! Attack: the grant allows `get`/`update` configmap `app-config` only,
//! in the run's namespace (`arg`). Reach other objects by name.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    for name in [
        "other-config",
        "APP-CONFIG",
        "app-config/..",
        "app-config/../other-config",
        "app-config?name=other-config",
        "app-config%2F..%2Fother-config",
        "app-config ",
        "",
    ] {
        t.must_fail(
            &format!("get {name:?}"),
            try_send(req("get", "configmaps", &ns, Some(name))),
        );
    }
    t.must_fail(
        "list (not by name)",
        try_send(req("list", "configmaps", &ns, None)),
    );
    // Update the granted name with a body naming another object.
    let mut update = req("update", "configmaps", &ns, Some("app-config"));
    update.body = Some(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other-config"},"data":{"pwned":"yes"}}"#.into(),
    );
    t.must_fail("update with another name in the body", try_send(update));
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
