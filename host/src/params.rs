//! Typed parameter values shared by manifests, pipelines and the runtime.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a parameter, as Tekton spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A single string (the default).
    #[default]
    String,
    /// A list of strings.
    Array,
    /// A map of string keys to string values.
    Object,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Array => "array",
            ParamType::Object => "object",
        })
    }
}

/// A parameter value. Deserializes from a YAML/JSON/TOML string, sequence of
/// strings or map of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Array(Vec<String>),
    Object(BTreeMap<String, String>),
}

impl ParamValue {
    /// Every string it holds (array items, object values).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&str>, Vec<&str>) = match self {
            ParamValue::String(s) => (Some(s), Vec::new()),
            ParamValue::Array(a) => (None, a.iter().map(String::as_str).collect()),
            ParamValue::Object(o) => (None, o.values().map(String::as_str).collect()),
        };
        one.into_iter().chain(many)
    }

    pub fn ty(&self) -> ParamType {
        match self {
            ParamValue::String(_) => ParamType::String,
            ParamValue::Array(_) => ParamType::Array,
            ParamValue::Object(_) => ParamType::Object,
        }
    }

    /// Total bytes of text held, used to cap parameter sizes.
    pub fn byte_len(&self) -> usize {
        match self {
            ParamValue::String(s) => s.len(),
            ParamValue::Array(a) => a.iter().map(String::len).sum(),
            ParamValue::Object(o) => o.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            other => f.write_str(&serde_json::to_string(other).unwrap_or_default()),
        }
    }
}

/// Parse a `-p name=value` command-line value for a parameter of type `ty`:
/// strings are taken as-is; arrays and objects are JSON
/// (`-p 'files=["a","b"]'`, `-p 'env={"A":"1"}'`).
pub fn parse_cli_value(ty: ParamType, raw: &str) -> Result<ParamValue, String> {
    match ty {
        ParamType::String => Ok(ParamValue::String(raw.to_string())),
        ParamType::Array => serde_json::from_str::<Vec<String>>(raw)
            .map(ParamValue::Array)
            .map_err(|e| format!("expected a JSON array of strings (e.g. '[\"a\",\"b\"]'): {e}")),
        ParamType::Object => serde_json::from_str::<BTreeMap<String, String>>(raw)
            .map(ParamValue::Object)
            .map_err(|e| {
                format!("expected a JSON object of strings (e.g. '{{\"k\":\"v\"}}'): {e}")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values_are_typed() {
        assert_eq!(
            parse_cli_value(ParamType::String, "[x]").unwrap(),
            ParamValue::String("[x]".into())
        );
        assert_eq!(
            parse_cli_value(ParamType::Array, r#"["a","b"]"#).unwrap(),
            ParamValue::Array(vec!["a".into(), "b".into()])
        );
        assert!(
            parse_cli_value(ParamType::Object, "nope")
                .unwrap_err()
                .contains("JSON object")
        );
    }
}
