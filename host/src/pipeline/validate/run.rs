//! What the PipelineRun decides: timeouts, workspace bindings, the
//! workspace budget.

use std::collections::BTreeSet;
use std::time::Duration;

use super::super::{Diagnostic, Document, duration};
use super::Timeouts;

/// Workspace declarations (no duplicates) and the PipelineRun's bindings
/// (each of a declared workspace).
pub fn workspaces(doc: &Document, d: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, w) in doc.spec.workspaces.iter().enumerate() {
        // The name is a directory of the run (`STATE/workspaces/RUN/NAME`).
        if !crate::manifest::is_name(&w.name) {
            d.push(doc.diag(
                &format!("workspaces[{i}].name"),
                format!(
                    "workspace name `{}` must be lowercase letters, digits, `-` and `_`, starting with a letter",
                    crate::caps::log::one_line(&w.name)
                ),
            ));
        }
        if !names.insert(w.name.as_str()) {
            d.push(doc.diag(
                &format!("workspaces[{i}].name"),
                format!("workspace `{}` is declared twice", w.name),
            ));
        }
    }
    let Some((run, _)) = &doc.run else { return };
    for (i, w) in run.workspaces.iter().enumerate() {
        if !names.contains(w.name.as_str()) {
            d.push(doc.run_diag(
                &format!("workspaces[{i}].name"),
                format!(
                    "the pipeline declares no workspace `{}` (it declares: {})",
                    w.name,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
}

/// `spec.workspaceBudget`, bytes.
pub fn workspace_budget(doc: &Document, d: &mut Vec<Diagnostic>) -> Option<u64> {
    let s = doc.spec.workspace_budget.as_ref()?;
    match super::super::size::parse(s) {
        Ok(0) => {
            d.push(doc.diag("workspaceBudget", "must be more than 0"));
            None
        }
        Ok(b) => Some(b),
        Err(e) => {
            d.push(doc.diag("workspaceBudget", e));
            None
        }
    }
}

/// `timeout` or `timeouts: {pipeline, tasks, finally}`, checked as Tekton
/// does: not both; `tasks` and `finally` within `pipeline` (together too);
/// "0" is no limit, and a zero `tasks`/`finally` needs a zero `pipeline`.
pub fn timeouts(doc: &Document, d: &mut Vec<Diagnostic>) -> Timeouts {
    let Some((run, _)) = &doc.run else {
        return Timeouts::default();
    };
    let mut errors = Vec::new();
    let mut parse = |s: &Option<String>, field: &str| -> (bool, Option<Duration>) {
        match s {
            None => (false, None),
            Some(s) => match duration::parse_timeout(s) {
                Ok(t) => (true, t),
                Err(e) => {
                    errors.push(doc.run_diag(field, e));
                    (false, None)
                }
            },
        }
    };
    let (_, single) = parse(&run.timeout, "timeout");
    let Some(ts) = &run.timeouts else {
        d.extend(errors);
        return Timeouts {
            pipeline: single,
            ..Timeouts::default()
        };
    };
    if run.timeout.is_some() {
        d.push(doc.run_diag("timeouts", "set `timeout` or `timeouts`, not both"));
    }
    let (_, pipeline) = parse(&ts.pipeline, "timeouts.pipeline");
    let (t_set, tasks) = parse(&ts.tasks, "timeouts.tasks");
    let (f_set, finally) = parse(&ts.finally, "timeouts.finally");
    d.extend(errors);
    if let Some(p) = pipeline {
        for (set, v, field) in [(t_set, tasks, "tasks"), (f_set, finally, "finally")] {
            match v {
                Some(v) if v > p => d.push(doc.run_diag(
                    &format!("timeouts.{field}"),
                    format!(
                        "is longer than timeouts.pipeline ({})",
                        ts.pipeline.as_deref().unwrap_or_default()
                    ),
                )),
                None if set => d.push(doc.run_diag(
                    &format!("timeouts.{field}"),
                    "\"0\" (no limit) needs timeouts.pipeline \"0\" too",
                )),
                _ => {}
            }
        }
        if let (Some(t), Some(f)) = (tasks, finally)
            && t + f > p
        {
            d.push(doc.run_diag("timeouts", "tasks + finally is longer than pipeline"));
        }
    }
    // As Tekton: with two of the three set, the third is what is left.
    let tasks = tasks.or_else(|| Some(pipeline? - finally?));
    Timeouts {
        pipeline,
        tasks,
        finally,
    }
}
