//! Attack: the grant allows `get`/`create` pods in the run's namespace
//! (`arg`). Use subresources that are a shell or a credential: pods/exec,
//! pods/attach, pods/portforward, pods/proxy, pods/ephemeralcontainers,
//! pods/eviction, serviceaccounts/token.
use attack_kit::kube::{req, try_send};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ns = arg(&input);
    for (verb, resource, sub) in [
        ("create", "pods", "exec"),
        ("get", "pods", "exec"),
        ("create", "pods", "attach"),
        ("create", "pods", "portforward"),
        ("get", "pods", "proxy"),
        ("patch", "pods", "ephemeralcontainers"),
        ("create", "pods", "eviction"),
        ("create", "serviceaccounts", "token"),
        ("get", "pods", "log"),
        ("get", "pods", "exec?command=id"),
    ] {
        let mut r = req(
            verb,
            resource,
            &ns,
            Some(if resource == "pods" { "web" } else { "default" }),
        );
        r.subresource = Some(sub.into());
        if verb != "get" {
            r.body = Some("{}".into());
        }
        t.must_fail(&format!("{verb} {resource}/{sub}"), try_send(r));
    }
    let mut exec_as_resource = req("create", "pods/exec", &ns, Some("web"));
    exec_as_resource.body = Some("{}".into());
    t.must_fail("pods/exec as the resource", try_send(exec_as_resource));
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
