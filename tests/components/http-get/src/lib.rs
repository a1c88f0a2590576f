//! Test component: one GET through wasi:http, status and body as results.
use capstan_plugin_sdk::capstan::plugin::log::{Level, log};
use capstan_plugin_sdk::capstan::plugin::types::{
    Denial, GrantLayer, TaskError, TaskInput, TaskResult,
};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{http, param_str};

struct HttpGet;

impl Guest for HttpGet {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let url = param_str(&input, "url", None)?;
        let auth = param_str(&input, "authorization", Some(""))?;
        let mut headers = vec![("user-agent", "capstan-test")];
        if !auth.is_empty() {
            headers.push(("authorization", auth.as_str()));
        }
        let resp = match http::send("GET", &url, &headers, None) {
            Ok(r) => r,
            Err(http::Error::Denied(a)) => {
                return Err(TaskError::Denied(Denial {
                    capability: "http".into(),
                    target: a,
                    layer: GrantLayer::Pipeline,
                }));
            }
            Err(e) => return Err(TaskError::Failed(e.to_string())),
        };
        let status = resp.status;
        let body = resp
            .bytes(1 << 20)
            .map_err(|e| TaskError::Failed(e.to_string()))?;
        log(Level::Info, &format!("GET {url} -> {status}"));
        Ok(vec![
            TaskResult {
                name: "status".into(),
                value: status.to_string(),
            },
            TaskResult {
                name: "body".into(),
                value: String::from_utf8_lossy(&body).into_owned(),
            },
        ])
    }
}

capstan_plugin_sdk::export!(HttpGet with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
