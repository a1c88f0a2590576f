//! Guest-side helpers for Capstan plugins built in this repository.
//!
//! - The WIT bindings for every interface the host offers (the
//!   `capstan-host` world: base + http + secrets + ssh), so plugins share
//!   one set of generated types. A component imports only the interfaces it
//!   actually calls, so a plugin that never makes a request still targets
//!   `base`.
//! - [`http`]: a small blocking HTTP client over `wasi:http`, with a
//!   streaming response body (`std::io::Read`).
//!
//! A plugin implements `exports::capstan::plugin::task::Guest` and calls
//! `capstan_plugin_sdk::export!(MyTask with_types_in capstan_plugin_sdk);`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "capstan-host",
    pub_export_macro: true,
    default_bindings_module: "capstan_plugin_sdk",
    generate_all,
});

pub mod http;

use capstan::plugin::types::{ParamValue, TaskError, TaskInput};

/// A string param, or `default` when absent.
pub fn param_str(
    input: &TaskInput,
    name: &str,
    default: Option<&str>,
) -> Result<String, TaskError> {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => Ok(s.clone()),
        Some(_) => Err(TaskError::InvalidParams(format!(
            "`{name}` must be a string"
        ))),
        None => default
            .map(str::to_string)
            .ok_or_else(|| TaskError::InvalidParams(format!("`{name}` is required"))),
    }
}

/// An array-of-strings param; absent is empty.
pub fn param_list(input: &TaskInput, name: &str) -> Result<Vec<String>, TaskError> {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::Array(a)) => Ok(a.clone()),
        Some(_) => Err(TaskError::InvalidParams(format!(
            "`{name}` must be an array"
        ))),
        None => Ok(vec![]),
    }
}

/// The guest path of a granted workspace.
pub fn workspace(input: &TaskInput, name: &str) -> Result<String, TaskError> {
    input
        .workspaces
        .iter()
        .find(|w| w.name == name)
        .map(|w| w.path.clone())
        .ok_or_else(|| TaskError::InvalidParams(format!("workspace `{name}` is not bound")))
}

/// `90s`, `10m`, `1h`, `1h30m` → seconds.
pub fn seconds(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("timeout `{s}`: like `90s`, `10m`, `1h30m`");
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    u32::try_from(total).map(Some).map_err(|_| bad())
}
