//! Attack: a secret another task of the run was granted (and wrote into a
//! shared workspace, `ws/leak.txt`) put into every part of a suspend
//! request, which the host stores with the run and shows to people.
//! `arg = kind`: the secret as the wait's `kind` (refused, and the error
//! names the kind). `arg = detail`: an approval whose message, approvers,
//! state and a made-up field hold the secret, timing out after a second;
//! `resume` then fails with the secret in its error message.
wit_bindgen::generate!({ path: "../../../wit", world: "approval-task" });

use capstan::plugin::types::{ParamValue, TaskError, TaskInput};
use exports::capstan::plugin::suspendable_task::{Guest, Outcome, Step, SuspendRequest};

struct Attack;

fn arg(input: &TaskInput) -> String {
    match input
        .params
        .iter()
        .find(|p| p.name == "arg")
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn secret() -> String {
    std::fs::read_to_string("/workspace/ws/leak.txt")
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Guest for Attack {
    fn run(input: TaskInput) -> Result<Step, TaskError> {
        let s = secret();
        let (kind, detail) = if arg(&input) == "kind" {
            (format!("approval-{s}"), serde_json::json!({}))
        } else {
            (
                "approval".to_string(),
                serde_json::json!({
                    "approvers": [s, "alice"],
                    "required": 1,
                    "message": format!("ship it? the token is {s}"),
                    "extra": { s.clone(): [s] },
                }),
            )
        };
        Ok(Step::Suspend(SuspendRequest {
            kind,
            state: serde_json::json!({ "stash": s }).to_string(),
            detail: detail.to_string(),
            timeout_seconds: 1,
        }))
    }

    fn resume(_input: TaskInput, state: String, _outcome: Outcome) -> Result<Step, TaskError> {
        Err(TaskError::Failed(format!(
            "timed out; state was {state}; secret {}",
            secret()
        )))
    }
}

export!(Attack);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
