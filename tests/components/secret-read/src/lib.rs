//! Test component: open a secret, optionally reveal it, log the value (which
//! the host must redact) and return its length.
use capstan_plugin_sdk::capstan::plugin::log::{Level, log};
use capstan_plugin_sdk::capstan::plugin::secrets;
use capstan_plugin_sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::param_str;

struct SecretRead;

impl Guest for SecretRead {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let name = param_str(&input, "name", None)?;
        let secret = secrets::open(&name)?;
        log(Level::Info, &format!("opened secret {}", secret.name()));
        let mut length = 0;
        if param_str(&input, "reveal", Some("true"))? == "true" {
            let value = secrets::reveal(&secret)?;
            length = value.len();
            log(
                Level::Info,
                &format!("the value is {}", String::from_utf8_lossy(&value)),
            );
        }
        Ok(vec![TaskResult {
            name: "length".into(),
            value: length.to_string(),
        }])
    }
}

capstan_plugin_sdk::export!(SecretRead with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
