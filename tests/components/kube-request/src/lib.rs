//! Test component: one Kubernetes API request through the `kube` capability.
//! A denial comes back as the task's error; an HTTP status >= 400 fails the
//! task with the status and the API server's message.
wit_bindgen::generate!({ path: "../../../wit", world: "kube-task" });

use capstan::plugin::kube::{Request, send};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct KubeRequest;

fn param(input: &TaskInput, name: &str) -> Option<String> {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl Guest for KubeRequest {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let req = Request {
            verb: param(&input, "verb").unwrap_or_default(),
            group: param(&input, "group").unwrap_or_default(),
            version: param(&input, "version").unwrap_or_else(|| "v1".into()),
            resource: param(&input, "resource").unwrap_or_default(),
            subresource: param(&input, "subresource"),
            namespace: param(&input, "namespace"),
            name: param(&input, "name"),
            body: param(&input, "body"),
            content_type: None,
        };
        let res = send(&req)?;
        if res.status >= 400 {
            return Err(TaskError::Failed(format!(
                "HTTP {}: {}",
                res.status,
                res.body.chars().take(500).collect::<String>()
            )));
        }
        Ok(vec![
            TaskResult {
                name: "status".into(),
                value: res.status.to_string(),
            },
            TaskResult {
                name: "body".into(),
                value: res.body.chars().take(2000).collect(),
            },
        ])
    }
}

export!(KubeRequest);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST_SECTION: [u8; include_bytes!("../capstan.toml").len()] =
    *include_bytes!("../capstan.toml");
