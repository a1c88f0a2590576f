//! Test component: fails in the chosen way until attempt `until-attempt`.
wit_bindgen::generate!({ path: "../../../wit", world: "base" });

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{Denial, GrantLayer, ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Fail;

fn param(input: &TaskInput, name: &str) -> String {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

impl Guest for Fail {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let until: u32 = param(&input, "until-attempt").parse().unwrap_or(u32::MAX);
        let attempt = input.info.attempt;
        if attempt >= until {
            log(Level::Info, &format!("attempt {attempt}: succeeding"));
            if param(&input, "mode") == "silent" {
                return Ok(Vec::new());
            }
            return Ok(vec![TaskResult {
                name: "attempt".into(),
                value: attempt.to_string(),
            }]);
        }
        let message = param(&input, "message");
        log(Level::Error, &format!("attempt {attempt}: {message}"));
        match param(&input, "mode").as_str() {
            "trap" => panic!("{message}"),
            "invalid-params" => Err(TaskError::InvalidParams(message)),
            "denied" => Err(TaskError::Denied(Denial {
                capability: "secrets".into(),
                target: "prod-token".into(),
                layer: GrantLayer::Pipeline,
            })),
            _ => Err(TaskError::Failed(message)),
        }
    }
}

export!(Fail);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
