//! Attack: the grant allows `get`/`list` configmaps in the run's
//! namespace (`arg`) only. Read kube-system and default, list across all
//! namespaces, and smuggle another namespace through the name.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    for other in [
        "kube-system",
        "default",
        "kube-public",
        "KUBE-SYSTEM",
        "*",
        "_all",
    ] {
        t.must_fail(
            &format!("list in {other}"),
            try_send(req("list", "configmaps", other, None)),
        );
    }
    t.must_fail(
        "namespace with a path",
        try_send(req(
            "list",
            "configmaps",
            &format!("{ns}/../kube-system"),
            None,
        )),
    );
    t.must_fail(
        "name with a path",
        try_send(req(
            "get",
            "configmaps",
            &ns,
            Some("../../kube-system/configmaps/extension-apiserver-authentication"),
        )),
    );
    let mut all = req("list", "configmaps", "", None);
    all.namespace = Some(String::new());
    t.must_fail("list with an empty namespace", try_send(all));
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
