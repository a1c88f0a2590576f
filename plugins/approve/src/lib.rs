//! The `approve` plugin: a durable manual approval gate.
//!
//! `run` checks the params and returns a suspend request (kind `approval`):
//! the host stores it, drops the instance, authorizes decisions against the
//! `approvers` in the detail and sends the notification. Each accepted
//! decision comes back through `resume`: one rejection rejects at once; an
//! approval counts once per user (a decision delivered twice after a crash
//! is not counted twice); `required` approvals finish the task. At the
//! deadline `resume` gets `timed-out` and `on-timeout` decides.
wit_bindgen::generate!({ path: "../../wit", world: "approval-task" });

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::suspendable_task::{Guest, Outcome, Step, SuspendRequest};
use serde_json::{Value, json};

struct Approve;

fn invalid(m: impl Into<String>) -> TaskError {
    TaskError::InvalidParams(m.into())
}

fn param<'a>(input: &'a TaskInput, name: &str) -> Option<&'a ParamValue> {
    input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
}

fn string(input: &TaskInput, name: &str, default: &str) -> Result<String, TaskError> {
    match param(input, name) {
        None => Ok(default.to_string()),
        Some(ParamValue::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid(format!("`{name}` must be a string"))),
    }
}

/// `90s`, `30m`, `24h`, `2d`, `1h30m` → seconds.
fn duration(text: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (like 30m, 24h, 2d)"))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("`{text}`: unknown unit `{c}` (s, m, h, d)")),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() || total == 0 {
        return Err(format!(
            "`{text}` is not a duration (like 30m, 24h, 2d; a number needs a unit)"
        ));
    }
    Ok(total)
}

fn suspend(state: &Value, detail: &Value, timeout: u64) -> Result<Step, TaskError> {
    Ok(Step::Suspend(SuspendRequest {
        kind: "approval".into(),
        state: state.to_string(),
        detail: detail.to_string(),
        timeout_seconds: timeout,
    }))
}

fn result(name: &str, value: impl Into<String>) -> TaskResult {
    TaskResult {
        name: name.into(),
        value: value.into(),
    }
}

impl Guest for Approve {
    fn run(input: TaskInput) -> Result<Step, TaskError> {
        let approvers: Vec<String> = match param(&input, "approvers") {
            Some(ParamValue::Array(a)) => a.clone(),
            Some(ParamValue::String(s)) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            _ => return Err(invalid("`approvers` must list user or group names")),
        };
        if approvers.is_empty() || approvers.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                "`approvers` must list at least one user or group name",
            ));
        }
        let required_text = string(&input, "required", "1")?;
        let required: usize = required_text
            .trim()
            .parse()
            .map_err(|_| invalid(format!("`required`: `{required_text}` is not a number")))?;
        if required == 0 || required > approvers.len() {
            return Err(invalid(format!(
                "`required` is {required}, but {} approver(s) are listed",
                approvers.len()
            )));
        }
        let timeout = duration(&string(&input, "timeout", "24h")?)
            .map_err(|e| invalid(format!("`timeout`: {e}")))?;
        let on_timeout = string(&input, "on-timeout", "reject")?;
        if on_timeout != "reject" && on_timeout != "approve" {
            return Err(invalid(format!(
                "`on-timeout` is `{on_timeout}`; use reject or approve"
            )));
        }
        let message = string(&input, "message", "")?;
        let notify_url = string(&input, "notify-url", "")?;
        let mut format = string(&input, "notify-format", "")?;
        if format.is_empty() {
            format = if notify_url.contains("hooks.slack.com") {
                "slack".into()
            } else {
                "generic".into()
            };
        }
        if format != "slack" && format != "generic" {
            return Err(invalid(format!(
                "`notify-format` is `{format}`; use slack or generic"
            )));
        }
        log(
            Level::Info,
            &format!(
                "waiting for {required} of [{}] to approve{}",
                approvers.join(", "),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ),
        );
        let state = json!({
            "required": required,
            "on-timeout": on_timeout,
            "timeout": timeout,
            "approved-by": [],
            "comments": [],
            "last-at": "",
        });
        let detail = json!({
            "approvers": approvers,
            "required": required,
            "message": message,
            "notify-url": notify_url,
            "notify-format": format,
        });
        suspend(&state, &detail, timeout)
    }

    fn resume(_input: TaskInput, state: String, outcome: Outcome) -> Result<Step, TaskError> {
        let mut state: Value = serde_json::from_str(&state)
            .map_err(|e| TaskError::Failed(format!("unreadable approval state: {e}")))?;
        let required = state["required"].as_u64().unwrap_or(1) as usize;
        let event = match outcome {
            Outcome::TimedOut => {
                let secs = state["timeout"].as_u64().unwrap_or(0);
                if state["on-timeout"] == "approve" {
                    log(
                        Level::Warn,
                        &format!("no decision within {secs} s: approved (on-timeout: approve)"),
                    );
                    return Ok(Step::Done(vec![
                        result("decision", "approved"),
                        result("decided-by", ""),
                        result("decided-at", ""),
                        result("comment", "approved on timeout"),
                    ]));
                }
                return Err(TaskError::Failed(format!(
                    "no decision within {secs} s: rejected (on-timeout: reject)"
                )));
            }
            Outcome::Event(e) => e,
        };
        let event: Value = serde_json::from_str(&event)
            .map_err(|e| TaskError::Failed(format!("unreadable decision: {e}")))?;
        let user = event["user"].as_str().unwrap_or("").to_string();
        let comment = event["comment"].as_str().unwrap_or("").to_string();
        match event["decision"].as_str() {
            Some("reject") => {
                let why = if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                };
                log(Level::Warn, &format!("rejected by {user}{why}"));
                Err(TaskError::Failed(format!("rejected by {user}{why}")))
            }
            Some("approve") => {
                let by = state["approved-by"].as_array_mut().expect("state");
                if by.iter().any(|u| u == &Value::from(user.as_str())) {
                    log(
                        Level::Info,
                        &format!("{user} already approved; counted once"),
                    );
                } else {
                    by.push(user.clone().into());
                    if !comment.is_empty() {
                        state["comments"]
                            .as_array_mut()
                            .expect("state")
                            .push(format!("{user}: {comment}").into());
                    }
                }
                state["last-at"] = event["at"].clone();
                let by: Vec<String> = state["approved-by"]
                    .as_array()
                    .expect("state")
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                log(
                    Level::Info,
                    &format!("approved by {user} ({} of {required})", by.len()),
                );
                if by.len() >= required {
                    let comments: Vec<String> = state["comments"]
                        .as_array()
                        .expect("state")
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect();
                    return Ok(Step::Done(vec![
                        result("decision", "approved"),
                        result("decided-by", by.join(",")),
                        result("decided-at", state["last-at"].as_str().unwrap_or("")),
                        result("comment", comments.join("; ")),
                    ]));
                }
                let timeout = state["timeout"].as_u64().unwrap_or(1);
                // The detail is the host's already; it keeps the deadline.
                suspend(&state, &json!({}), timeout)
            }
            other => Err(TaskError::Failed(format!("unknown decision {other:?}"))),
        }
    }
}

export!(Approve);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
