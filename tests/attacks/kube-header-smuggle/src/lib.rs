//! Attack: on a granted request (`get`/`create` configmaps in the run's
//! namespace, `arg`), smuggle `Impersonate-User: system:admin` (or a
//! second request) through every string field that reaches the HTTP
//! request: content type, group, version, resource, name, subresource.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    let inject = "\r\nImpersonate-User: system:admin\r\nImpersonate-Group: system:masters";
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"smuggled"},"data":{"a":"b"}}"#;
    let mut ct = req("create", "configmaps", &ns, None);
    ct.body = Some(body.into());
    ct.content_type = Some(format!("application/json{inject}"));
    t.must_fail("content type", try_send(ct));
    let mut ct2 = req("create", "configmaps", &ns, None);
    ct2.body = Some(body.into());
    ct2.content_type = Some("application/json; Impersonate-User=system:admin".into());
    t.must_fail("content type parameter", try_send(ct2));
    let mut g = req("get", "configmaps", &ns, Some("app-config"));
    g.group = format!("apps{inject}");
    t.must_fail("group", try_send(g));
    let mut v = req("get", "configmaps", &ns, Some("app-config"));
    v.version = format!("v1{inject}");
    t.must_fail("version", try_send(v));
    let mut r = req(
        "get",
        &format!("configmaps{inject}"),
        &ns,
        Some("app-config"),
    );
    r.version = "v1".into();
    t.must_fail("resource", try_send(r));
    t.must_fail(
        "name",
        try_send(req(
            "get",
            "configmaps",
            &ns,
            Some(&format!("app-config{inject}")),
        )),
    );
    t.must_fail(
        "namespace",
        try_send(req(
            "get",
            "configmaps",
            &format!("{ns}{inject}"),
            Some("app-config"),
        )),
    );
    let mut sub = req("get", "configmaps", &ns, Some("app-config"));
    sub.subresource = Some(format!("status HTTP/1.1{inject}"));
    t.must_fail("subresource", try_send(sub));
    let mut q = req("get", "configmaps", &ns, Some("app-config"));
    q.subresource = Some("?as=system:admin".into());
    t.must_fail("query string", try_send(q));
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
