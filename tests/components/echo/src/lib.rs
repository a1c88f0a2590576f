//! Test component: echoes its params back as results.
wit_bindgen::generate!({ path: "../../../wit", world: "base" });

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Echo;

impl Guest for Echo {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let mut out = Vec::new();
        for p in input.params {
            let value = match p.value {
                ParamValue::String(s) => s,
                ParamValue::Array(a) => a.join(","),
                ParamValue::Object(o) => o
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            log(Level::Info, &format!("{} = {}", p.name, value));
            out.push(TaskResult {
                name: p.name,
                value,
            });
        }
        out.push(TaskResult {
            name: "attempt".into(),
            value: input.info.attempt.to_string(),
        });
        Ok(out)
    }
}

export!(Echo);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
