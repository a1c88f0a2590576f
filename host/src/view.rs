//! How runs are shown: one JSON shape for the API and the CLI (snake_case
//! keys; times in RFC 3339, UTC, milliseconds).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{AttemptRecord, LogLevel, LogLine, RunRecord, SkipReason, TaskRecord};

/// RFC 3339 time for a unix-microsecond timestamp.
pub fn time(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Serialize)]
pub struct TaskJson<'a> {
    pub name: &'a str,
    pub finally: bool,
    pub status: &'a str,
    pub attempts: u32,
    pub results: &'a BTreeMap<String, String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub message: Option<&'a str>,
    /// Why it was skipped, in Tekton's words (Skipped tasks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<&'static str>,
    /// The run whose result it reuses (`runs rerun --failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<&'a str>,
    /// What it waited for: `runAfter` and result references.
    pub deps: &'a [String],
    /// The matrix task it is a child of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix_of: Option<&'a str>,
}

#[derive(Serialize)]
pub struct RunJson<'a> {
    pub run_id: &'a str,
    pub pipeline: &'a str,
    pub status: &'a str,
    pub message: Option<&'a str>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub results: &'a BTreeMap<String, String>,
    /// What each `uses:` ran: the component's name, version and digest.
    pub plugins: Vec<PluginJson<'a>>,
    /// The run this one re-runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<&'a str>,
    /// Its number among its pipeline's runs.
    pub number: Option<i64>,
    /// What started it.
    pub triggered_by: Option<&'a crate::store::TriggeredBy>,
    /// The forge event's values (`context.trigger.*`), if one started it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub trigger: &'a BTreeMap<String, String>,
    pub tasks: Vec<TaskJson<'a>>,
}

#[derive(Serialize)]
pub struct PluginJson<'a> {
    pub uses: &'a str,
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
    pub digest: &'a str,
}

/// The plugins a run loaded, by `uses`.
pub fn plugins_json(run: &RunRecord) -> Vec<PluginJson<'_>> {
    run.spec
        .plugins
        .iter()
        .map(|(uses, digest)| {
            let nv = run.spec.plugin_versions.get(uses);
            PluginJson {
                uses,
                name: nv.map(|(n, _)| n.as_str()),
                version: nv.map(|(_, v)| v.as_str()),
                digest,
            }
        })
        .collect()
}

pub fn run_json<'a>(run: &'a RunRecord, tasks: &'a [TaskRecord]) -> RunJson<'a> {
    RunJson {
        run_id: &run.id,
        pipeline: &run.pipeline,
        status: run.status.as_str(),
        message: run.message.as_deref(),
        start: run.started_at.map(time),
        end: run.finished_at.map(time),
        results: &run.results,
        plugins: plugins_json(run),
        rerun_of: run.spec.rerun_of.as_deref(),
        number: run.number,
        triggered_by: run.spec.triggered_by.as_ref(),
        trigger: &run.spec.trigger,
        tasks: tasks
            .iter()
            .map(|t| TaskJson {
                name: &t.name,
                finally: t.finally,
                status: t.status.as_str(),
                attempts: t.attempts,
                results: &t.results,
                start: t.started_at.map(time),
                end: t.finished_at.map(time),
                message: t.message.as_deref(),
                skip_reason: t.skip_reason.map(SkipReason::as_str),
                reused_from: t.reused_from.as_deref(),
                deps: &t.deps,
                matrix_of: t.matrix_of.as_deref(),
            })
            .collect(),
    }
}

/// One attempt of a task.
#[derive(Serialize)]
pub struct AttemptJson<'a> {
    pub task: &'a str,
    pub attempt: u32,
    pub status: &'a str,
    /// When it was dispatched.
    pub start: String,
    /// When the plugin first called the host.
    pub entered: Option<String>,
    pub end: Option<String>,
    pub message: Option<&'a str>,
}

pub fn attempts_json(attempts: &[AttemptRecord]) -> Vec<AttemptJson<'_>> {
    attempts
        .iter()
        .map(|a| AttemptJson {
            task: &a.task,
            attempt: a.attempt,
            status: a.status.as_str(),
            start: time(a.dispatched_at),
            entered: a.entered_at.map(time),
            end: a.finished_at.map(time),
            message: a.message.as_deref(),
        })
        .collect()
}

/// One log line. `id` is the cursor (`?after=ID` continues after it).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LogLineJson {
    pub id: i64,
    pub task: String,
    pub attempt: u32,
    pub time: String,
    pub level: LogLevel,
    pub message: String,
}

impl From<&LogLine> for LogLineJson {
    fn from(l: &LogLine) -> Self {
        LogLineJson {
            id: l.id,
            task: l.task.clone(),
            attempt: l.attempt,
            time: time(l.ts),
            level: l.level,
            message: l.message.clone(),
        }
    }
}
