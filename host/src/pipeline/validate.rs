//! Validation of a pipeline against the plugins it uses, before anything
//! runs: names, references, types, workspaces, grants, cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::subst::{self, Ref, Selector};
use super::{
    Diagnostic, Diagnostics, Document, PipelineResult, PipelineTask, WorkspaceDecl, duration,
};
use crate::manifest::{Manifest, is_name};
use crate::params::{ParamType, ParamValue, parse_cli_value};

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
}

const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// Validate `doc`. `manifest_of` gives the manifest of a task's plugin (by
/// `uses`), or an error already reported by the caller (None). `overrides`
/// are `-p name=value` values from the command line; `ceiling_of` is the
/// platform policy's capability ceiling for a task's plugin (by `uses`).
pub fn validate(
    doc: &Document,
    manifest_of: &dyn Fn(&str) -> Option<Manifest>,
    overrides: &[(String, String)],
    ceiling_of: &dyn Fn(&str, crate::manifest::Capability) -> Result<(), String>,
) -> Result<Plan, Diagnostics> {
    let mut d: Vec<Diagnostic> = Vec::new();
    let spec = &doc.spec;

    // Pipeline params and the values this run gives them.
    let mut decls: BTreeMap<String, ParamType> = BTreeMap::new();
    let mut params: BTreeMap<String, ParamValue> = BTreeMap::new();
    for (i, p) in spec.params.iter().enumerate() {
        let at = format!("params[{i}]");
        if !is_name(&p.name)
            && !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!("`{}` is not a valid param name", p.name),
            ));
        }
        if decls.insert(p.name.clone(), p.ty).is_some() {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!("param `{}` is declared twice", p.name),
            ));
        }
        if let Some(def) = &p.default {
            if def.ty() != p.ty {
                d.push(doc.diag(
                    &format!("{at}.default"),
                    format!("default is {} but the type is {}", def.ty(), p.ty),
                ));
            } else {
                params.insert(p.name.clone(), def.clone());
            }
        }
    }
    let mut warnings = Vec::new();
    // Params given a value (even a wrong one: no second "no value" error).
    let mut given: BTreeSet<String> = BTreeSet::new();
    if let Some((run, _)) = &doc.run {
        for (i, p) in run.params.iter().enumerate() {
            given.insert(p.name.clone());
            match decls.get(&p.name) {
                // As Tekton: a PipelineRun may pass params the pipeline
                // does not declare (triggers pass a fixed set); ignored.
                None => warnings.push(format!(
                    "PipelineRun param `{}` is not declared by the pipeline; ignored",
                    p.name
                )),
                Some(ty) if *ty != p.value.ty() => d.push(doc.run_diag(
                    &format!("params[{i}].value"),
                    format!(
                        "param `{}` is {ty} but the value is {}",
                        p.name,
                        p.value.ty()
                    ),
                )),
                Some(_) => {
                    params.insert(p.name.clone(), p.value.clone());
                }
            }
        }
    }
    for (name, raw) in overrides {
        given.insert(name.clone());
        match decls.get(name) {
            None => d.push(cli_diag(format!(
                "-p {name}: the pipeline has no param `{name}` (it has: {})",
                decls.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            Some(ty) => match parse_cli_value(*ty, raw) {
                Ok(v) => {
                    params.insert(name.clone(), v);
                }
                Err(e) => d.push(cli_diag(format!("-p {name}: {e}"))),
            },
        }
    }
    for (i, p) in spec.params.iter().enumerate() {
        if !params.contains_key(&p.name) && !given.contains(&p.name) {
            d.push(doc.diag(
                &format!("params[{i}]"),
                format!(
                    "param `{}` has no default and no value was given (use -p {}=VALUE)",
                    p.name, p.name
                ),
            ));
        }
    }

    // Workspaces.
    let mut ws_names = BTreeSet::new();
    for (i, w) in spec.workspaces.iter().enumerate() {
        if !ws_names.insert(w.name.as_str()) {
            d.push(doc.diag(
                &format!("workspaces[{i}].name"),
                format!("workspace `{}` is declared twice", w.name),
            ));
        }
    }
    if let Some((run, _)) = &doc.run {
        for (i, w) in run.workspaces.iter().enumerate() {
            if !ws_names.contains(w.name.as_str()) {
                d.push(doc.run_diag(
                    &format!("workspaces[{i}].name"),
                    format!(
                        "the pipeline declares no workspace `{}` (it declares: {})",
                        w.name,
                        ws_names.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }

    // Task names.
    let mut kinds: HashMap<&str, bool> = HashMap::new(); // name -> is finally
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
    let manifests: HashMap<&str, Option<Manifest>> = doc
        .all_tasks()
        .map(|(_, t)| (t.name.as_str(), manifest_of(&t.uses)))
        .collect();

    let mut planned = Vec::new();
    for (at, t) in doc.all_tasks() {
        let finally = at.starts_with("finally");
        let mut deps = BTreeSet::new();
        let mut result_deps = BTreeSet::new();
        let manifest = manifests.get(t.name.as_str()).cloned().flatten();
        let check_refs = |text: &str,
                          path: &str,
                          d: &mut Vec<Diagnostic>,
                          deps: &mut BTreeSet<String>,
                          rdeps: &mut BTreeSet<String>| {
            let refs = match subst::refs(text) {
                Ok(r) => r,
                Err(e) => {
                    d.push(doc.diag(path, e));
                    return;
                }
            };
            for (r, _) in refs {
                match r {
                    Ref::Param { name, sel } => {
                        match decls.get(&name) {
                            None => d.push(doc.diag(
                                path,
                                format!(
                                    "`$(params.{name}...)`: the pipeline has no param `{name}`"
                                ),
                            )),
                            Some(ty) => {
                                let ok = matches!(
                                    (ty, &sel),
                                    (ParamType::String, Selector::Whole)
                                        | (ParamType::Array, Selector::Index(_) | Selector::Star)
                                        | (ParamType::Object, Selector::Key(_) | Selector::Star)
                                );
                                if !ok {
                                    d.push(doc.diag(path, format!("param `{name}` is {ty}; that selector does not apply to it")));
                                }
                            }
                        }
                    }
                    Ref::Result { task, result } => match kinds.get(task.as_str()) {
                        None => d.push(doc.diag(
                            path,
                            format!("`$(tasks.{task}.results.{result})`: no task `{task}`"),
                        )),
                        Some(true) => d.push(doc.diag(
                            path,
                            format!("`{task}` is a finally task; its results cannot be referenced"),
                        )),
                        Some(false) if task == t.name => {
                            d.push(doc.diag(path, "a task cannot use its own results"))
                        }
                        Some(false) => {
                            if let Some(Some(m)) = manifests.get(task.as_str())
                                && m.results.iter().all(|r| r.name != result)
                            {
                                d.push(doc.diag(
                                    path,
                                    format!(
                                        "task `{task}` ({}) has no result `{result}` (it has: {})",
                                        m.name,
                                        m.results.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                                    ),
                                ));
                            }
                            if !finally {
                                deps.insert(task.clone());
                            }
                            rdeps.insert(task);
                        }
                    },
                    Ref::TaskStatus { task } => {
                        if !finally {
                            d.push(doc.diag(
                                path,
                                "`$(tasks.NAME.status)` is only available in finally tasks",
                            ));
                        } else if kinds.get(task.as_str()) != Some(&false) {
                            d.push(doc.diag(
                                path,
                                format!("`$(tasks.{task}.status)`: no (non-finally) task `{task}`"),
                            ));
                        }
                    }
                    Ref::TasksStatus => {
                        if !finally {
                            d.push(doc.diag(
                                path,
                                "`$(tasks.status)` is only available in finally tasks",
                            ));
                        }
                    }
                    Ref::Context(_) => {}
                }
            }
        };

        // Params against the plugin's manifest.
        let mut given = BTreeSet::new();
        for (i, p) in t.params.iter().enumerate() {
            let ppath = format!("{at}.params[{i}]");
            if !given.insert(p.name.as_str()) {
                d.push(doc.diag(
                    &format!("{ppath}.name"),
                    format!("param `{}` is given twice", p.name),
                ));
            }
            let texts: Vec<&str> = match &p.value {
                ParamValue::String(s) => vec![s.as_str()],
                ParamValue::Array(a) => a.iter().map(String::as_str).collect(),
                ParamValue::Object(o) => o.values().map(String::as_str).collect(),
            };
            for s in texts {
                check_refs(
                    s,
                    &format!("{ppath}.value"),
                    &mut d,
                    &mut deps,
                    &mut result_deps,
                );
            }
            if let Some(m) = &manifest {
                match m.param(&p.name) {
                    None => d.push(doc.diag(
                        &format!("{ppath}.name"),
                        format!(
                            "plugin `{}` has no param `{}` (it has: {})",
                            m.name,
                            p.name,
                            m.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                    Some(spec) => {
                        let ty = match &p.value {
                            ParamValue::String(s) => subst::whole_star(s)
                                .and_then(|n| decls.get(&n).copied())
                                .unwrap_or(ParamType::String),
                            v => v.ty(),
                        };
                        if ty != spec.ty {
                            d.push(doc.diag(
                                &format!("{ppath}.value"),
                                format!(
                                    "plugin `{}` param `{}` is {} but the value is {ty}",
                                    m.name, p.name, spec.ty
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(m) = &manifest {
            for p in &m.params {
                if p.default.is_none() && !given.contains(p.name.as_str()) {
                    d.push(doc.diag(
                        &format!("{at}.params"),
                        format!("plugin `{}` requires param `{}`", m.name, p.name),
                    ));
                }
            }
        }

        // Workspaces.
        let mut bound = BTreeSet::new();
        for (i, b) in t.workspaces.iter().enumerate() {
            let wpath = format!("{at}.workspaces[{i}]");
            if !ws_names.contains(b.pipeline_workspace()) {
                d.push(doc.diag(
                    &wpath,
                    format!(
                        "the pipeline declares no workspace `{}`",
                        b.pipeline_workspace()
                    ),
                ));
            }
            if let Some(sub) = &b.sub_path
                && (sub.starts_with('/') || sub.split('/').any(|c| c == ".."))
            {
                d.push(doc.diag(
                    &format!("{wpath}.subPath"),
                    "subPath must be relative and must not contain `..`",
                ));
            }
            if let Some(m) = &manifest
                && m.workspace(&b.name).is_none()
            {
                d.push(doc.diag(
                    &format!("{wpath}.name"),
                    format!("plugin `{}` has no workspace `{}`", m.name, b.name),
                ));
            }
            bound.insert(b.name.as_str());
        }
        if let Some(m) = &manifest {
            for w in &m.workspaces {
                if !w.optional && !bound.contains(w.name.as_str()) {
                    d.push(doc.diag(
                        &format!("{at}.workspaces"),
                        format!("plugin `{}` needs workspace `{}` bound", m.name, w.name),
                    ));
                }
            }
        }

        // Ordering.
        for (i, after) in t.run_after.iter().enumerate() {
            let rpath = format!("{at}.runAfter[{i}]");
            match kinds.get(after.as_str()) {
                None => d.push(doc.diag(&rpath, format!("no task `{after}`"))),
                Some(true) => d.push(doc.diag(
                    &rpath,
                    format!("`{after}` is a finally task; finally tasks run last"),
                )),
                Some(false) if finally => d.push(doc.diag(
                    &rpath,
                    "finally tasks run after all tasks; runAfter is not allowed",
                )),
                Some(false) if *after == t.name => {
                    d.push(doc.diag(&rpath, "a task cannot run after itself"))
                }
                Some(false) => {
                    deps.insert(after.clone());
                }
            }
        }
        for (i, w) in t.when.iter().enumerate() {
            let wpath = format!("{at}.when[{i}]");
            check_refs(
                &w.input,
                &format!("{wpath}.input"),
                &mut d,
                &mut deps,
                &mut result_deps,
            );
            for v in &w.values {
                check_refs(
                    v,
                    &format!("{wpath}.values"),
                    &mut d,
                    &mut deps,
                    &mut result_deps,
                );
            }
            if w.values.is_empty() {
                d.push(doc.diag(&format!("{wpath}.values"), "needs at least one value"));
            }
        }

        // Grants: manifest ∩ pipeline ∩ policy.
        if let Some(m) = &manifest {
            let ceiling = |cap| ceiling_of(&t.uses, cap);
            for r in crate::caps::grant::check(m, &t.grants, &ceiling) {
                d.push(doc.diag(&format!("{at}.grants.{}", r.field), r.message));
            }
        }
        for (j, g) in t.grants.http.iter().enumerate() {
            if let Err(e) = crate::caps::http::Authority::parse(g.url()) {
                d.push(doc.diag(&format!("{at}.grants.http[{j}]"), e));
            }
            if let Some((secret, _)) = g.secret()
                && let Err(e) = crate::caps::secrets::check_name(secret)
            {
                d.push(doc.diag(&format!("{at}.grants.http[{j}].secret"), e));
            }
        }
        for (j, g) in t.grants.ssh.iter().enumerate() {
            if let Err(e) = crate::caps::ssh::SshGrant::host_key(
                g.host_key.as_deref(),
                g.known_hosts.as_deref(),
            ) {
                d.push(doc.diag(&format!("{at}.grants.ssh[{j}]"), e));
            }
            if let Err(e) = crate::caps::secrets::check_name(&g.secret) {
                d.push(doc.diag(&format!("{at}.grants.ssh[{j}].secret"), e));
            }
        }
        for (j, g) in t.grants.kube.iter().enumerate() {
            if let Err(e) = g.check() {
                d.push(doc.diag(&format!("{at}.grants.kube[{j}]"), e));
            }
        }
        for (j, g) in t.grants.secrets.iter().enumerate() {
            if let Err(e) = crate::caps::secrets::check_name(g.name()) {
                d.push(doc.diag(&format!("{at}.grants.secrets[{j}]"), e));
            }
        }

        let timeout = match &t.timeout {
            Some(s) => match duration::parse_timeout(s) {
                Ok(t) => t,
                Err(e) => {
                    d.push(doc.diag(&format!("{at}.timeout"), e));
                    None
                }
            },
            None => None,
        };
        let backoff = match &t.retry_backoff {
            Some(s) => duration::parse(s).unwrap_or_else(|e| {
                d.push(doc.diag(&format!("{at}.retryBackoff"), e));
                DEFAULT_BACKOFF
            }),
            None => DEFAULT_BACKOFF,
        };
        planned.push(PlannedTask {
            spec: t.clone(),
            finally,
            deps,
            result_deps,
            timeout,
            backoff,
        });
    }

    for (i, r) in spec.results.iter().enumerate() {
        let path = format!("results[{i}].value");
        match subst::refs(&r.value) {
            Err(e) => d.push(doc.diag(&path, e)),
            Ok(refs) => {
                for (r, _) in refs {
                    match r {
                        Ref::Result { task, result } => match manifests.get(task.as_str()) {
                            None => d.push(doc.diag(&path, format!("no task `{task}`"))),
                            Some(Some(m)) if m.results.iter().all(|x| x.name != result) => d.push(
                                doc.diag(&path, format!("task `{task}` has no result `{result}`")),
                            ),
                            _ => {}
                        },
                        Ref::Param { name, .. } if decls.contains_key(&name) => {}
                        other => d.push(doc.diag(
                            &path,
                            format!(
                                "pipeline results may use task results and params, not {other:?}"
                            ),
                        )),
                    }
                }
            }
        }
    }

    // Cycles (over the main tasks; finally tasks have no edges).
    if let Some(cycle) = find_cycle(&planned) {
        let first = &cycle[0];
        let idx = planned
            .iter()
            .position(|t| &t.spec.name == first)
            .unwrap_or(0);
        d.push(doc.diag(
            &format!("tasks[{idx}]"),
            format!("dependency cycle: {}", cycle.join(" → ")),
        ));
    }

    let timeouts = run_timeouts(doc, &mut d);

    let workspace_budget = match &spec.workspace_budget {
        Some(s) => match super::size::parse(s) {
            Ok(0) => {
                d.push(doc.diag("workspaceBudget", "must be more than 0"));
                None
            }
            Ok(b) => Some(b),
            Err(e) => {
                d.push(doc.diag("workspaceBudget", e));
                None
            }
        },
        None => None,
    };

    if !d.is_empty() {
        return Err(Diagnostics(d));
    }
    Ok(Plan {
        name: doc.name.clone(),
        tasks: planned,
        params,
        workspaces: spec.workspaces.clone(),
        results: spec.results.clone(),
        timeouts,
        workspace_budget,
        warnings,
    })
}

/// `timeout` or `timeouts: {pipeline, tasks, finally}`, checked as Tekton
/// does: not both; `tasks` and `finally` within `pipeline` (together too);
/// "0" is no limit, and a zero `tasks`/`finally` needs a zero `pipeline`.
fn run_timeouts(doc: &Document, d: &mut Vec<Diagnostic>) -> Timeouts {
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

fn cli_diag(message: String) -> Diagnostic {
    Diagnostic {
        file: "<command line>".into(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }
}

fn find_cycle(tasks: &[PlannedTask]) -> Option<Vec<String>> {
    let deps: HashMap<&str, &BTreeSet<String>> = tasks
        .iter()
        .map(|t| (t.spec.name.as_str(), &t.deps))
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a BTreeSet<String>>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for dep in deps.get(n).into_iter().flat_map(|s| s.iter()) {
            match state.get(dep.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|s| s == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().rev().map(|s| s.to_string()).collect();
                    cycle.insert(0, dep.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    let key = deps.get_key_value(dep.as_str()).map(|(k, _)| *k)?;
                    if let Some(c) = visit(key, deps, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for t in tasks {
        if !state.contains_key(t.spec.name.as_str())
            && let Some(c) = visit(&t.spec.name, &deps, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}
