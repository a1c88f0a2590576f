//! The `Pipeline` and `PipelineRun` documents (`capstan.dev/v1alpha1`).
//!
//! Field names and meanings follow Tekton where they mean the same thing.
//! Unknown fields are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::caps::Grants;
use crate::params::ParamValue;

pub const API_VERSION: &str = "capstan.dev/v1alpha1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    /// A PipelineRun's name prefix (Kubernetes' `generateName`): the run id
    /// is the prefix and a random suffix. Not with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `kind: Pipeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pipeline {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PipelineSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub params: Vec<ParamDecl>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceDecl>,
    #[serde(default)]
    pub tasks: Vec<PipelineTask>,
    #[serde(default)]
    pub finally: Vec<PipelineTask>,
    /// Pipeline results, from task results: `value: $(tasks.t.results.r)`.
    #[serde(default)]
    pub results: Vec<PipelineResult>,
    /// Most disk the run's own workspaces (under the state directory) may
    /// use, as a Kubernetes quantity (`2Gi`). Default 10Gi, at most the
    /// platform policy's ceiling, and never more than the disk can spare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_budget: Option<String>,
}

/// A pipeline param declaration: the same shape as a plugin manifest's
/// (`name`, `type`, `default` — absent means required — and `description`).
pub type ParamDecl = crate::manifest::ParamSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkspaceDecl {
    pub name: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineResult {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// One entry of `tasks` or `finally`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineTask {
    pub name: String,
    /// The plugin: a registry reference (`git-clone@0.1`) or a path to a
    /// `.wasm` (relative to the pipeline file). Empty for a container step
    /// (`image:`), which is the `script` plugin.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uses: String,
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceBinding>,
    #[serde(default)]
    pub run_after: Vec<String>,
    #[serde(default)]
    pub when: Vec<WhenExpression>,
    /// Extra attempts after a retryable failure (default 0).
    #[serde(default)]
    pub retries: u32,
    /// Delay before the first retry, doubled for each further one, capped at
    /// 5 minutes. Go duration syntax; default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<String>,
    /// Per-attempt timeout, Go duration syntax (`30s`, `1h30m`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Capability grants for this task (the second grant layer).
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
    /// Fan the task out: one run of the plugin per combination of these
    /// param values (Tekton's `matrix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// What a failure of this task does to the run (Tekton's `onError`):
    /// `stopAndFail` (the default) or `continue`.
    #[serde(default, skip_serializing_if = "OnError::is_default")]
    pub on_error: OnError,
    /// A container step instead of `uses:` (Tekton's step fields; see
    /// [`super::step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<super::step::EnvEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        alias = "computeResources",
        skip_serializing_if = "Option::is_none"
    )]
    pub resources: Option<super::step::Resources>,
    /// Results the task declares (a container step's, written to
    /// `$(results.NAME.path)`); only for plugins whose manifest says
    /// `task-results = true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<super::step::ResultDecl>,
    /// Named caches a container step mounts, kept across runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<super::step::CacheDecl>,
}

/// `matrix:` of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Matrix {
    /// Each param's values (arrays); the combinations are their product.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Extra params for matching combinations, or extra combinations.
    #[serde(default)]
    pub include: Vec<MatrixInclude>,
    /// At most this many combinations run at once (default: no limit but
    /// the run's parallelism). A Capstan extension (Argo's `parallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
}

/// One `matrix.include` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatrixInclude {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub params: Vec<Param>,
}

/// A task's `onError`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// The run stops taking new tasks and fails.
    #[default]
    StopAndFail,
    /// The failure is recorded; the run goes on as if the task had ended
    /// (tasks using its results are skipped: they are missing).
    Continue,
}

impl OnError {
    pub fn is_default(&self) -> bool {
        *self == OnError::StopAndFail
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Param {
    pub name: String,
    pub value: ParamValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkspaceBinding {
    /// The plugin's workspace name.
    pub name: String,
    /// The pipeline workspace bound to it (defaults to `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// A sub-directory of the pipeline workspace (created if missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Mount read-only even if the plugin could write.
    #[serde(default)]
    pub read_only: bool,
}

impl WorkspaceBinding {
    pub fn pipeline_workspace(&self) -> &str {
        self.workspace.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenOperator {
    In,
    Notin,
}

/// `when: [{input, operator, values}]`: all must hold, or the task is skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhenExpression {
    pub input: String,
    pub operator: WhenOperator,
    pub values: Vec<String>,
}

/// `kind: PipelineRun`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineRun {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: PipelineRunSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineRunSpec {
    /// A `Pipeline` in the same file (or, in Kubernetes, the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_ref: Option<PipelineRef>,
    /// Or the pipeline inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_spec: Option<PipelineSpec>,
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub workspaces: Vec<RunWorkspace>,
    /// Whole-run timeout (Go duration), `finally` included; the same as
    /// `timeouts.pipeline`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Tekton's `timeouts: {pipeline, tasks, finally}` (Go durations; "0"
    /// is none). Not together with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsSpec>,
}

/// `spec.timeouts` of a PipelineRun.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimeoutsSpec {
    /// The whole run, `finally` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// The main tasks; `finally` runs when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<String>,
    /// The `finally` tasks, from when they start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finally: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineRef {
    pub name: String,
}

/// Binds a pipeline workspace: `hostPath` (a directory, locally) or
/// `emptyDir: {}` (a fresh directory under the state dir, the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunWorkspace {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<serde_yaml::Mapping>,
}
