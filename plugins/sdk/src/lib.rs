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
