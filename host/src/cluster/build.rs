//! The pure steps of the controller (no client): a `PipelineRun` and its
//! `Pipeline` into the document `capstan run` would read, the run store's
//! records into a status, and the FIFO quota decision. Unit-tested from YAML
//! fixtures.

use super::crd::{
    Condition, PipelineResource, PipelineRunResource, PipelineRunStatus, TaskStatusEntry,
};
use crate::store::{RunRecord, RunStatus, TaskRecord};

/// Why a `PipelineRun` cannot run as written (shown in its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The file name diagnostics use for a run: `pipelinerun NS/NAME`.
pub fn source_name(run: &PipelineRunResource) -> String {
    format!(
        "pipelinerun {}/{}",
        run.metadata.namespace.as_deref().unwrap_or("default"),
        run.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pipeline document for a run: its `Pipeline` (when it has a
/// `pipelineRef`) and the run itself, as YAML in the local format, so the
/// same parser and validator check it. `pipeline` is what `pipelineRef`
/// named, if it exists.
pub fn document_text(
    run: &PipelineRunResource,
    pipeline: Option<&PipelineResource>,
) -> Result<String, Invalid> {
    let spec = &run.spec;
    let mut out = String::new();
    let mut run_spec = serde_json::Map::new();
    match (&spec.pipeline_ref, &spec.pipeline_spec) {
        (Some(r), None) => {
            let Some(p) = pipeline else {
                return Err(Invalid(format!(
                    "spec.pipelineRef: no Pipeline `{}` in namespace `{}`",
                    r.name,
                    run.metadata.namespace.as_deref().unwrap_or("default")
                )));
            };
            let doc = serde_json::json!({
                "apiVersion": crate::pipeline::API_VERSION,
                "kind": "Pipeline",
                "metadata": { "name": r.name },
                "spec": p.spec.spec,
            });
            out.push_str(&to_yaml(&doc));
            out.push_str("---\n");
            run_spec.insert("pipelineRef".into(), serde_json::json!({ "name": r.name }));
        }
        (None, Some(inline)) => {
            run_spec.insert("pipelineSpec".into(), inline.clone());
        }
        (Some(_), Some(_)) => {
            return Err(Invalid(
                "spec: give either pipelineRef or pipelineSpec, not both".into(),
            ));
        }
        (None, None) => {
            return Err(Invalid(
                "spec: a PipelineRun needs pipelineRef or pipelineSpec".into(),
            ));
        }
    }
    if !spec.params.is_empty() {
        run_spec.insert(
            "params".into(),
            serde_json::to_value(&spec.params).expect("params serialize"),
        );
    }
    if !spec.workspaces.is_empty() {
        for (i, w) in spec.workspaces.iter().enumerate() {
            if w.get("hostPath").is_some() {
                return Err(Invalid(format!(
                    "spec.workspaces[{i}].hostPath: not available in Kubernetes mode \
                     (workspaces are directories on the controller's volume; use `emptyDir: {{}}`)"
                )));
            }
        }
        run_spec.insert("workspaces".into(), spec.workspaces.clone().into());
    }
    if let Some(t) = &spec.timeout {
        run_spec.insert("timeout".into(), t.clone().into());
    }
    if let Some(t) = &spec.timeouts {
        run_spec.insert("timeouts".into(), t.clone());
    }
    let doc = serde_json::json!({
        "apiVersion": crate::pipeline::API_VERSION,
        "kind": "PipelineRun",
        "metadata": { "name": run.metadata.name.as_deref().unwrap_or("") },
        "spec": run_spec,
    });
    out.push_str(&to_yaml(&doc));
    Ok(out)
}

fn to_yaml(v: &serde_json::Value) -> String {
    serde_yaml::to_string(v).expect("JSON values serialize as YAML")
}

/// In Kubernetes mode a task's `uses:` must name a registry plugin
/// (`name@version`, `name@sha256:…`, `oci://…`): paths would read the
/// controller's own filesystem.
pub fn check_uses(doc: &crate::pipeline::Document) -> Result<(), Invalid> {
    for (at, t) in doc.all_tasks() {
        let ok = t
            .uses
            .parse::<capstan_registry::Reference>()
            .map(|r| r.is_registry())
            .unwrap_or(false);
        if !ok {
            return Err(Invalid(format!(
                "{at}.uses: `{}`: in Kubernetes mode a task uses a registry plugin \
                 (`name@version` or `oci://…`), not a file",
                t.uses
            )));
        }
    }
    Ok(())
}

/// RFC 3339 (seconds) of a store timestamp (µs since the epoch).
pub fn rfc3339(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `1m23s` from microseconds.
pub fn duration_text(us: i64) -> String {
    let secs = (us.max(0) / 1_000_000) as u64;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The `Succeeded` condition.
pub fn condition(status: &str, reason: &str, message: &str, now_us: i64) -> Condition {
    Condition {
        type_: "Succeeded".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(rfc3339(now_us)),
    }
}

/// A status for `run_id` from the store's records.
pub fn status_from_store(
    run_id: &str,
    run: &RunRecord,
    tasks: &[TaskRecord],
    generation: Option<i64>,
    now_us: i64,
) -> PipelineRunStatus {
    let (cond_status, reason) = match run.status {
        RunStatus::Succeeded => ("True", "Succeeded"),
        RunStatus::Failed => ("False", "Failed"),
        RunStatus::Cancelled => ("False", "Cancelled"),
        RunStatus::TimedOut => ("False", "TimedOut"),
        RunStatus::Running => ("Unknown", "Running"),
        RunStatus::Queued => ("Unknown", "Queued"),
    };
    let message = run.message.clone().unwrap_or_else(|| {
        let done = tasks.iter().filter(|t| t.status.is_terminal()).count();
        format!("{done} of {} tasks finished", tasks.len())
    });
    let duration = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => Some(duration_text(f - s)),
        _ => None,
    };
    PipelineRunStatus {
        phase: Some(run.status.as_str().into()),
        conditions: vec![condition(cond_status, reason, &message, now_us)],
        run_id: Some(run_id.to_string()),
        number: run.number,
        triggered_by: run.spec.triggered_by.as_ref().map(|t| t.describe()),
        start_time: run.started_at.map(rfc3339),
        completion_time: run.finished_at.map(rfc3339),
        duration,
        tasks: tasks
            .iter()
            .map(|t| TaskStatusEntry {
                name: t.name.clone(),
                status: format!("{:?}", t.status),
                attempts: t.attempts,
                start_time: t.started_at.map(rfc3339),
                completion_time: t.finished_at.map(rfc3339),
                message: t.message.clone(),
                results: t
                    .results
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect(),
            })
            .collect(),
        results: run
            .results
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
        observed_generation: generation,
    }
}

/// A run that has not started yet, for the FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Waiting {
    /// Creation time (RFC 3339 sorts as time), then name.
    pub created: String,
    pub name: String,
}

/// Whether `candidate` may start now: runs of one namespace start in
/// creation order (FIFO), at most `quota` at a time. `running` counts the
/// namespace's runs executing now; `waiting` holds every run of the
/// namespace that has not started (the candidate among them).
pub fn may_start(
    candidate: &Waiting,
    waiting: &[Waiting],
    running: usize,
    quota: Option<usize>,
) -> Result<(), usize> {
    let Some(quota) = quota else { return Ok(()) };
    let ahead = waiting.iter().filter(|w| *w < candidate).count();
    if running + ahead < quota {
        Ok(())
    } else {
        Err(ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> PipelineRunResource {
        serde_yaml::from_str(yaml).unwrap()
    }

    const PIPELINE: &str = "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\n\
        metadata: {name: build, namespace: ci}\nspec:\n  params: [{name: rev}]\n  tasks:\n    \
        - {name: a, uses: echo@0.1, params: [{name: message, value: $(params.rev)}]}\n";

    #[test]
    fn a_run_and_its_pipeline_become_one_document() {
        let r = run("apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\n\
                     metadata: {name: r1, namespace: ci, uid: x, resourceVersion: '5'}\n\
                     spec: {pipelineRef: {name: build}, params: [{name: rev, value: main}], serviceAccountName: builder}\n");
        let p: PipelineResource = serde_yaml::from_str(PIPELINE).unwrap();
        let text = document_text(&r, Some(&p)).unwrap();
        let doc = crate::pipeline::Document::parse(&source_name(&r), &text).unwrap();
        assert_eq!(doc.name, "build");
        assert_eq!(doc.run_name.as_deref(), Some("r1"));
        assert_eq!(doc.spec.tasks[0].uses, "echo@0.1");
        check_uses(&doc).unwrap();
    }

    #[test]
    fn what_cannot_run_is_explained() {
        let r = run(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r1, namespace: ci}\n\
                     spec: {pipelineRef: {name: nope}}\n",
        );
        let e = document_text(&r, None).unwrap_err().0;
        assert!(e.contains("no Pipeline `nope` in namespace `ci`"), "{e}");
        let r = run(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r1}\nspec: {}\n",
        );
        assert!(
            document_text(&r, None)
                .unwrap_err()
                .0
                .contains("needs pipelineRef")
        );
        let r = run(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r1}\n\
                     spec: {pipelineSpec: {tasks: [{name: a, uses: ./x.wasm}]}}\n",
        );
        let text = document_text(&r, None).unwrap();
        let doc = crate::pipeline::Document::parse("t", &text).unwrap();
        assert!(check_uses(&doc).unwrap_err().0.contains("registry plugin"));
        let r = run(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r1}\n\
                     spec: {pipelineSpec: {tasks: []}, workspaces: [{name: w, hostPath: /etc}]}\n",
        );
        assert!(document_text(&r, None).unwrap_err().0.contains("hostPath"));
        // A misspelt field is caught by the same parser as locally.
        let r = run(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r1}\n\
                     spec: {pipelineSpec: {tasks: [{name: a, uses: e@1, runAfterr: [b]}]}}\n",
        );
        let text = document_text(&r, None).unwrap();
        let e = crate::pipeline::Document::parse("t", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("runAfterr"), "{e}");
    }

    #[test]
    fn the_quota_is_fifo_per_namespace() {
        let w = |c: &str, n: &str| Waiting {
            created: c.into(),
            name: n.into(),
        };
        let all = [
            w("2026-01-01T00:00:01Z", "a"),
            w("2026-01-01T00:00:01Z", "b"),
            w("2026-01-01T00:00:02Z", "c"),
        ];
        assert_eq!(may_start(&all[0], &all, 1, Some(2)), Ok(()));
        assert_eq!(may_start(&all[1], &all, 1, Some(2)), Err(1));
        assert_eq!(may_start(&all[2], &all, 0, Some(2)), Err(2));
        assert_eq!(may_start(&all[2], &all, 5, None), Ok(()));
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(duration_text(3_000_000), "3s");
        assert_eq!(duration_text(83_000_000), "1m23s");
        assert_eq!(duration_text(3_723_000_000), "1h2m3s");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
