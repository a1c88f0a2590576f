//! Validation of a pipeline against the plugins it uses, before anything
//! runs: names, references, types, workspaces, grants, cycles. Every
//! problem is reported, each with its file, line and column. One module
//! per concern; this one puts them together.

mod graph;
mod matrix;
mod params;
mod refs;
mod run;
mod task;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::subst;
use super::{Diagnostic, Diagnostics, Document, PipelineResult, PipelineTask, WorkspaceDecl};
use crate::manifest::{Capability, Manifest, is_name};
use crate::params::ParamValue;
pub use params::RUN_CONTEXT;

/// A validated pipeline, ready for the scheduler.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// Main tasks then finally tasks, in file order.
    pub tasks: Vec<PlannedTask>,
    /// Pipeline params with defaults applied.
    pub params: BTreeMap<String, ParamValue>,
    pub workspaces: Vec<WorkspaceDecl>,
    pub results: Vec<PipelineResult>,
    pub timeouts: Timeouts,
    /// `spec.workspaceBudget`, bytes (None: the default).
    pub workspace_budget: Option<u64>,
    /// What is accepted but worth saying (extra PipelineRun params).
    pub warnings: Vec<String>,
    /// Matrix tasks by name.
    pub groups: BTreeMap<String, Group>,
}

/// A matrix task: its children, in combination order.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub children: Vec<String>,
    /// At most this many children run at once.
    pub max_parallel: Option<usize>,
}

/// The run's timeouts (None: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole run, `finally` included.
    pub pipeline: Option<Duration>,
    /// The main tasks, from the run's start.
    pub tasks: Option<Duration>,
    /// The `finally` tasks, from when they start.
    pub finally: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct PlannedTask {
    pub spec: PipelineTask,
    pub finally: bool,
    /// Tasks that must finish first (runAfter and result references).
    pub deps: BTreeSet<String>,
    /// Tasks whose results this task reads: if one of them did not succeed,
    /// this task is skipped.
    pub result_deps: BTreeSet<String>,
    pub timeout: Option<Duration>,
    pub backoff: Duration,
    /// Whether any of its fields uses `$(context…)` (the scheduler builds
    /// the context only for those).
    pub uses_context: bool,
    /// The matrix task it is a child of.
    pub group: Option<String>,
    /// Params whose values are final (a matrix combination's, substituted
    /// when the matrix was expanded): not substituted again.
    pub literal_params: BTreeSet<String>,
}

const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// The manifest a task is checked against: its plugin's, with the results
/// the task declares (`results:`, for plugins that pass on a command's).
fn with_task_results(
    doc: &Document,
    at: &str,
    t: &PipelineTask,
    mut m: Manifest,
    d: &mut Vec<Diagnostic>,
) -> Manifest {
    if t.results.is_empty() {
        return m;
    }
    if !m.task_results {
        d.push(doc.diag(
            &format!("{at}.results"),
            format!(
                "plugin `{}` has the results its manifest declares; only a container step (or `uses: script`) declares its own",
                m.name
            ),
        ));
        return m;
    }
    for (i, r) in t.results.iter().enumerate() {
        let path = format!("{at}.results[{i}].name");
        if !is_name(&r.name) {
            d.push(doc.diag(
                &path,
                format!("`{}`: lowercase letters, digits, `-` and `_`", r.name),
            ));
        } else if m.results.iter().any(|x| x.name == r.name) {
            d.push(doc.diag(
                &path,
                format!(
                    "`{}` is declared twice (also {})",
                    r.name,
                    if t.results[..i].iter().any(|x| x.name == r.name) {
                        "above"
                    } else {
                        "by the plugin"
                    }
                ),
            ));
        } else {
            m.results.push(crate::manifest::ResultSpec {
                name: r.name.clone(),
                ty: Default::default(),
                description: r.description.clone(),
            });
        }
    }
    m
}

/// Validate `doc`. `manifest_of` gives the manifest of a task's plugin (by
/// `uses`), or an error already reported by the caller (None). `overrides`
/// are `-p name=value` values from the command line; `ceiling_of` is the
/// platform policy's capability ceiling for a task's plugin (by `uses`).
pub fn validate(
    doc: &Document,
    manifest_of: &dyn Fn(&str) -> Option<Manifest>,
    overrides: &[(String, String)],
    ceiling_of: &dyn Fn(&str, Capability) -> Result<(), String>,
) -> Result<Plan, Diagnostics> {
    let mut d: Vec<Diagnostic> = Vec::new();
    let params = params::check(doc, overrides, &mut d);
    run::workspaces(doc, &mut d);
    let kinds = task_names(doc, &mut d);
    let manifests: HashMap<&str, Option<Manifest>> = doc
        .all_tasks()
        .map(|(at, t)| {
            let m = manifest_of(&t.uses).map(|m| with_task_results(doc, &at, t, m, &mut d));
            (t.name.as_str(), m)
        })
        .collect();
    let matrixed: BTreeSet<&str> = doc
        .all_tasks()
        .filter(|(_, t)| t.matrix.is_some())
        .map(|(_, t)| t.name.as_str())
        .collect();
    let refs = refs::Refs {
        doc,
        params: &params,
        kinds: &kinds,
        manifests: &manifests,
        matrixed: &matrixed,
    };
    let (planned, groups) = plan_tasks(&refs, ceiling_of, &mut d);
    results(&refs, &mut d);
    // Cycles (over the main tasks; finally tasks have no edges).
    if let Some(cycle) = graph::find_cycle(&planned) {
        let idx = planned
            .iter()
            .position(|t| t.spec.name == cycle[0])
            .unwrap_or(0);
        d.push(doc.diag(
            &format!("tasks[{idx}]"),
            format!("dependency cycle: {}", cycle.join(" → ")),
        ));
    }
    let timeouts = run::timeouts(doc, &mut d);
    let workspace_budget = run::workspace_budget(doc, &mut d);
    if !d.is_empty() {
        return Err(Diagnostics(d));
    }
    Ok(Plan {
        name: doc.name.clone(),
        tasks: planned,
        params: params.values,
        workspaces: doc.spec.workspaces.clone(),
        results: doc.spec.results.clone(),
        timeouts,
        workspace_budget,
        warnings: params.warnings,
        groups,
    })
}

/// Plan every task, a matrix task as its children (`TASK-0`, …), whose
/// parent name other tasks' edges then point to all of.
fn plan_tasks(
    refs: &refs::Refs<'_>,
    ceiling_of: &dyn Fn(&str, Capability) -> Result<(), String>,
    d: &mut Vec<Diagnostic>,
) -> (Vec<PlannedTask>, BTreeMap<String, Group>) {
    let doc = refs.doc;
    let mut planned = Vec::new();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (at, t) in doc.all_tasks() {
        let ceiling = |cap| ceiling_of(&t.uses, cap);
        if t.matrix.is_none() {
            planned.push(task::check(refs, &at, t, None, &ceiling, d));
            continue;
        }
        let mut diag = |field: &str, msg: String| d.push(doc.diag(&format!("{at}.{field}"), msg));
        let Some(combos) = matrix::combinations(t, refs.params, &mut diag) else {
            continue;
        };
        let mut children = Vec::new();
        for (i, combo) in combos.iter().enumerate() {
            let child = matrix::child(t, i, combo);
            if refs.kinds.contains_key(child.name.as_str()) {
                d.push(doc.diag(
                    &format!("{at}.name"),
                    format!("matrix child `{}` has the name of another task", child.name),
                ));
            }
            children.push(child.name.clone());
            let literal: BTreeSet<String> = combo.keys().cloned().collect();
            let mut p = task::check(refs, &at, &child, Some((&t.name, &literal)), &ceiling, d);
            p.group = Some(t.name.clone());
            p.literal_params = literal;
            planned.push(p);
        }
        let max_parallel = t.matrix.as_ref().and_then(|m| m.max_parallel);
        if max_parallel == Some(0) {
            d.push(doc.diag(&format!("{at}.matrix.maxParallel"), "must be at least 1"));
        }
        groups.insert(
            t.name.clone(),
            Group {
                children,
                max_parallel,
            },
        );
    }
    // Edges to a matrix task are edges to each of its children.
    for p in &mut planned {
        for set in [&mut p.deps, &mut p.result_deps] {
            let parents: Vec<String> = set
                .iter()
                .filter(|n| groups.contains_key(*n))
                .cloned()
                .collect();
            for parent in parents {
                set.remove(&parent);
                set.extend(groups[&parent].children.iter().cloned());
            }
        }
    }
    // A matrix task's children repeat the same problems: report each once.
    let mut seen = std::collections::HashSet::new();
    d.retain(|x| seen.insert((x.path.clone(), x.message.clone())));
    (planned, groups)
}

/// Task names: valid and unique. Name → whether it is a finally task.
fn task_names<'a>(doc: &'a Document, d: &mut Vec<Diagnostic>) -> HashMap<&'a str, bool> {
    let mut kinds = HashMap::new();
    for (at, t) in doc.all_tasks() {
        if !is_name(&t.name) {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!(
                    "`{}`: task names use lowercase letters, digits, `-` and `_`",
                    t.name
                ),
            ));
        }
        if kinds
            .insert(t.name.as_str(), at.starts_with("finally"))
            .is_some()
        {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!("task `{}` is defined twice", t.name),
            ));
        }
    }
    kinds
}

/// Pipeline results: task results (main tasks) and params.
fn results(refs: &refs::Refs<'_>, d: &mut Vec<Diagnostic>) {
    let doc = refs.doc;
    for (i, r) in doc.spec.results.iter().enumerate() {
        let path = format!("results[{i}].value");
        let found = match subst::refs(&r.value) {
            Err(e) => {
                d.push(doc.diag(&path, e));
                continue;
            }
            Ok(found) => found,
        };
        for (r, _) in found {
            let finally = matches!(r_kind(&r), Some(true));
            let problem = match r {
                subst::Ref::Result { task, result, .. }
                | subst::Ref::FinallyResult { task, result } => {
                    match (
                        refs.kinds.get(task.as_str()),
                        refs.manifests.get(task.as_str()),
                    ) {
                        (None, _) => Some(format!("no task `{task}`")),
                        (Some(f), _) if *f != finally => Some(if finally {
                            format!(
                                "`{task}` is not a finally task: use $(tasks.{task}.results.{result})"
                            )
                        } else {
                            format!(
                                "`{task}` is a finally task: use $(finally.{task}.results.{result})"
                            )
                        }),
                        (_, Some(Some(m))) if m.results.iter().all(|x| x.name != result) => {
                            Some(format!("task `{task}` has no result `{result}`"))
                        }
                        _ => None,
                    }
                }
                subst::Ref::Param { name, .. } if refs.params.decls.contains_key(&name) => None,
                other => Some(format!(
                    "pipeline results may use task results and params, not {other:?}"
                )),
            };
            if let Some(p) = problem {
                d.push(doc.diag(&path, p));
            }
        }
    }
}

/// Whether a result reference names a finally task's result (None: not a
/// result reference).
fn r_kind(r: &subst::Ref) -> Option<bool> {
    match r {
        subst::Ref::Result { .. } => Some(false),
        subst::Ref::FinallyResult { .. } => Some(true),
        _ => None,
    }
}

fn cli_diag(message: String) -> Diagnostic {
    Diagnostic {
        file: "<command line>".into(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }
}
