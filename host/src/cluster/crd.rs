//! The custom resources of Kubernetes mode, generated from these types with
//! kube's `CustomResource` derive: `Pipeline` and `PipelineRun` in
//! `capstan.dev/v1alpha1` — the same documents `capstan run` reads locally.
//!
//! The API server stores specs as given (`x-kubernetes-preserve-unknown-fields`
//! below the top-level fields) and the controller validates them with the
//! same validator as `capstan run`, so an invalid run gets a status condition
//! naming the field, not a rejection with a generic schema message (the
//! target apiserver, 1.20, has no CEL validation to do better).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Any JSON value, kept as given (`x-kubernetes-preserve-unknown-fields`).
fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Results: names to strings. Values are nullable because the 1.20
/// apiserver's server-side apply turns an empty string in a map into null.
fn results_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string", "nullable": true }
    })
}

/// A JSON object, kept as given.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// A list of JSON objects, kept as given.
fn any_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// `kind: Pipeline`: the spec is a pipeline spec as `capstan run` reads it.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    root = "PipelineResource",
    namespaced,
    shortname = "pl",
    category = "capstan"
)]
pub struct PipelineResourceSpec {
    #[serde(flatten)]
    #[schemars(schema_with = "any_object")]
    pub spec: serde_json::Map<String, serde_json::Value>,
}

/// `kind: PipelineRun`: runs a `Pipeline` of the same namespace
/// (`pipelineRef`) or an inline `pipelineSpec`.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "PipelineRun",
    root = "PipelineRunResource",
    namespaced,
    status = "PipelineRunStatus",
    shortname = "pr",
    category = "capstan",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Number","type":"integer","jsonPath":".status.number","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.startTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunResourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_ref: Option<PipelineRefSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub pipeline_spec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<RunParam>,
    /// Workspaces: `emptyDir: {}` (a sub-directory of the controller's
    /// volume, one per run and workspace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_objects")]
    pub workspaces: Vec<serde_json::Value>,
    /// Whole-run timeout (Go duration), `finally` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Tekton's `timeouts: {pipeline, tasks, finally}` (Go durations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub timeouts: Option<serde_json::Value>,
    /// Tekton's `spec.status`: `Cancelled` (stop every task now, no
    /// `finally`), `CancelledRunFinally` (stop every task, then `finally`),
    /// `StoppedRunFinally` (start nothing new, let running tasks finish,
    /// then `finally`), or `PipelineRunPending` (do not start yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The ServiceAccount (in the run's namespace) the `kube` capability
    /// impersonates. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PipelineRefSpec {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RunParam {
    pub name: String,
    /// A string, an array of strings, or an object of strings.
    #[schemars(schema_with = "any_value")]
    pub value: serde_json::Value,
}

/// What the controller reports. Written with server-side apply by the
/// controller only (field manager `capstan-controller`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunStatus {
    /// `Queued`, `Running`, `Succeeded`, `Failed`, `Cancelled`, `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The run's id in the controller's run store (`capstan logs ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run's number among its pipeline's runs (`#42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// What started it (`PipelineRun team-a/build-7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// `1m23s` once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskStatusEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "results_map")]
    pub results: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One task's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusEntry {
    pub name: String,
    pub status: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "results_map")]
    pub results: BTreeMap<String, Option<String>>,
}

/// A status condition in the Kubernetes convention.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Succeeded` (the run's outcome; `Unknown` while it runs).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_document_round_trips() {
        let r: PipelineRunResource = serde_yaml::from_str(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r, namespace: ci}\n\
             spec:\n  pipelineRef: {name: build}\n  params: [{name: rev, value: main}, {name: l, value: [a, b]}]\n",
        )
        .unwrap();
        assert_eq!(r.spec.pipeline_ref.as_ref().unwrap().name, "build");
        assert_eq!(r.spec.params[1].value, serde_json::json!(["a", "b"]));
    }
}
