//! One task against its plugin's manifest and the pipeline: params,
//! workspaces, ordering, `when`, grants, durations, `onError`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::super::{Diagnostic, OnError, PipelineTask, duration};
use super::refs::{Edges, Refs};
use super::{DEFAULT_BACKOFF, PlannedTask};
use crate::manifest::{Capability, Manifest};
use crate::params::ParamValue;

/// Check task `t` (at field path `at`) and plan it.
pub fn check(
    refs: &Refs<'_>,
    at: &str,
    t: &PipelineTask,
    matrix: Option<(&str, &BTreeSet<String>)>,
    ceiling: &dyn Fn(Capability) -> Result<(), String>,
    d: &mut Vec<Diagnostic>,
) -> PlannedTask {
    let finally = at.starts_with("finally");
    let name = matrix.map_or(t.name.as_str(), |(parent, _)| parent);
    let none = BTreeSet::new();
    let literal = matrix.map_or(&none, |(_, l)| l);
    let manifest = refs.manifests.get(name).cloned().flatten();
    let mut edges = Edges::default();
    let me = (t.name.as_str(), finally);
    params(refs, at, t, manifest.as_ref(), literal, &mut edges, d);
    workspaces(refs, at, t, manifest.as_ref(), &mut edges, d);
    ordering(refs, at, t, &mut edges, d);
    for (i, w) in t.when.iter().enumerate() {
        let wpath = format!("{at}.when[{i}]");
        refs.check(&w.input, &format!("{wpath}.input"), me, &mut edges, d);
        for v in &w.values {
            refs.check(v, &format!("{wpath}.values"), me, &mut edges, d);
        }
        if w.values.is_empty() {
            d.push(
                refs.doc
                    .diag(&format!("{wpath}.values"), "needs at least one value"),
            );
        }
    }
    if let Some(m) = &manifest {
        for r in crate::caps::grant::check(m, &t.grants, ceiling) {
            d.push(
                refs.doc
                    .diag(&format!("{at}.grants.{}", r.field), r.message),
            );
        }
    }
    grants(refs, at, t, d);
    if t.on_error == OnError::Continue && t.retries > 0 {
        d.push(refs.doc.diag(
            &format!("{at}.onError"),
            "`onError: continue` cannot be combined with `retries` (as in Tekton)",
        ));
    }
    let timeout = t.timeout.as_ref().and_then(|s| {
        duration::parse_timeout(s)
            .map_err(|e| d.push(refs.doc.diag(&format!("{at}.timeout"), e)))
            .ok()
            .flatten()
    });
    let backoff = match &t.retry_backoff {
        Some(s) => duration::parse(s).unwrap_or_else(|e| {
            d.push(refs.doc.diag(&format!("{at}.retryBackoff"), e));
            DEFAULT_BACKOFF
        }),
        None => DEFAULT_BACKOFF,
    };
    let uses_context = serde_json::to_string(t).is_ok_and(|s| s.contains("$(context."));
    PlannedTask {
        literal_params: BTreeSet::new(),
        group: None,
        uses_context,
        spec: t.clone(),
        finally,
        deps: edges.deps,
        result_deps: edges.result_deps,
        timeout,
        backoff: backoff.max(Duration::ZERO),
    }
}

/// Params against the plugin's manifest: known, given once, typed as it
/// says, within its enum; required ones given.
fn params(
    refs: &Refs<'_>,
    at: &str,
    t: &PipelineTask,
    m: Option<&Manifest>,
    literal: &BTreeSet<String>,
    edges: &mut Edges,
    d: &mut Vec<Diagnostic>,
) {
    let doc = refs.doc;
    let mut given = BTreeSet::new();
    for (i, p) in t.params.iter().enumerate() {
        let ppath = format!("{at}.params[{i}]");
        if !given.insert(p.name.as_str()) {
            let msg = format!("param `{}` is given twice", p.name);
            d.push(doc.diag(&format!("{ppath}.name"), msg));
        }
        // A matrix combination's values are final: no references in them.
        let texts = if literal.contains(&p.name) {
            None
        } else {
            Some(p.value.texts())
        };
        for s in texts.into_iter().flatten() {
            refs.check(
                s,
                &format!("{ppath}.value"),
                (&t.name, at.starts_with("finally")),
                edges,
                d,
            );
        }
        let Some(m) = m else { continue };
        let Some(spec) = m.param(&p.name) else {
            let has: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
            d.push(doc.diag(
                &format!("{ppath}.name"),
                format!(
                    "plugin `{}` has no param `{}` (it has: {})",
                    m.name,
                    p.name,
                    has.join(", ")
                ),
            ));
            continue;
        };
        let ty = refs.value_type(&p.value);
        if ty != spec.ty {
            d.push(doc.diag(
                &format!("{ppath}.value"),
                format!(
                    "plugin `{}` param `{}` is {} but the value is {ty}",
                    m.name, p.name, spec.ty
                ),
            ));
        } else if let Some(e) = enum_problem(refs, &spec.allowed, &p.value) {
            // The description says why the enum is what it is.
            let why = match spec.description.as_str() {
                "" => String::new(),
                d => format!(" ({d})"),
            };
            d.push(doc.diag(
                &format!("{ppath}.value"),
                format!("plugin `{}` param `{}`: {e}{why}", m.name, p.name),
            ));
        }
    }
    for p in m.iter().flat_map(|m| &m.params) {
        if p.default.is_none() && !given.contains(p.name.as_str()) {
            let name = &m.expect("iterating its params").name;
            d.push(doc.diag(
                &format!("{at}.params"),
                format!("plugin `{name}` requires param `{}`", p.name),
            ));
        }
    }
}

/// A value for a param with an enum: a literal must be one of it; a whole
/// `$(params.x)` must have an enum that is a subset of it (Tekton).
/// Anything else is checked when it is substituted.
fn enum_problem(refs: &Refs<'_>, allowed: &[String], v: &ParamValue) -> Option<String> {
    let ParamValue::String(s) = v else {
        return None;
    };
    if allowed.is_empty() {
        return None;
    }
    let whole = s
        .strip_prefix("$(params.")
        .and_then(|r| r.strip_suffix(')'));
    match whole.filter(|n| refs.params.decls.contains_key(*n)) {
        Some(n) => match refs.params.enums.get(n) {
            Some(theirs) if theirs.iter().all(|x| allowed.contains(x)) => None,
            Some(_) => Some(format!(
                "the enum of pipeline param `{n}` is not a subset of {}",
                allowed.join(", ")
            )),
            None => match refs.params.values.get(n) {
                Some(ParamValue::String(v)) if !allowed.contains(v) => Some(format!(
                    "`{v}` (pipeline param `{n}`) is not one of {}",
                    allowed.join(", ")
                )),
                _ => None,
            },
        },
        None if s.contains("$(") => None,
        None if allowed.contains(s) => None,
        None => Some(format!("`{s}` is not one of {}", allowed.join(", "))),
    }
}

/// Workspace bindings: the pipeline and the plugin declare them; a
/// subPath is relative and may use references; required plugin
/// workspaces are bound, and not to an optional pipeline workspace.
fn workspaces(
    refs: &Refs<'_>,
    at: &str,
    t: &PipelineTask,
    m: Option<&Manifest>,
    edges: &mut Edges,
    d: &mut Vec<Diagnostic>,
) {
    let doc = refs.doc;
    let mut bound = BTreeSet::new();
    for (i, b) in t.workspaces.iter().enumerate() {
        let wpath = format!("{at}.workspaces[{i}]");
        let decl = doc
            .spec
            .workspaces
            .iter()
            .find(|w| w.name == b.pipeline_workspace());
        if decl.is_none() {
            let msg = format!(
                "the pipeline declares no workspace `{}`",
                b.pipeline_workspace()
            );
            d.push(doc.diag(&wpath, msg));
        }
        if let Some(sub) = &b.sub_path {
            let spath = format!("{wpath}.subPath");
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                d.push(doc.diag(&spath, "subPath must be relative and must not contain `..`"));
            }
            refs.check(sub, &spath, (&t.name, at.starts_with("finally")), edges, d);
        }
        let Some(m) = m else { continue };
        match m.workspace(&b.name) {
            None => d.push(doc.diag(
                &format!("{wpath}.name"),
                format!(
                    "plugin `{}` has no workspace `{}` (its workspaces: {})",
                    m.name,
                    b.name,
                    if m.workspaces.is_empty() {
                        "none".to_string()
                    } else {
                        m.workspaces
                            .iter()
                            .map(|w| format!("`{}`", w.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )),
            Some(w) if !w.optional && decl.is_some_and(|p| p.optional) => d.push(doc.diag(
                &wpath,
                format!(
                    "plugin `{}` needs workspace `{}`, but pipeline workspace `{}` is optional",
                    m.name,
                    b.name,
                    b.pipeline_workspace()
                ),
            )),
            Some(_) => {}
        }
        bound.insert(b.name.as_str());
    }
    for w in m.iter().flat_map(|m| &m.workspaces) {
        if !w.optional && !bound.contains(w.name.as_str()) {
            let name = &m.expect("iterating its workspaces").name;
            d.push(doc.diag(
                &format!("{at}.workspaces"),
                format!("plugin `{name}` needs workspace `{}` bound", w.name),
            ));
        }
    }
}

/// `runAfter`: existing main tasks, not itself, not from `finally`.
fn ordering(
    refs: &Refs<'_>,
    at: &str,
    t: &PipelineTask,
    edges: &mut Edges,
    d: &mut Vec<Diagnostic>,
) {
    let finally = at.starts_with("finally");
    for (i, after) in t.run_after.iter().enumerate() {
        let rpath = format!("{at}.runAfter[{i}]");
        let problem = match refs.kinds.get(after.as_str()) {
            None => Some(format!("no task `{after}`")),
            Some(true) => Some(format!(
                "`{after}` is a finally task; finally tasks run last"
            )),
            Some(false) if finally => {
                Some("finally tasks run after all tasks; runAfter is not allowed".into())
            }
            Some(false) if *after == t.name => Some("a task cannot run after itself".into()),
            Some(false) => {
                edges.deps.insert(after.clone());
                None
            }
        };
        if let Some(p) = problem {
            d.push(refs.doc.diag(&rpath, p));
        }
    }
}

/// Grant entries that parse on their own: authorities, secret names, host
/// keys, kube rules. Grants are never substituted: they are checked against
/// the policy before the run, as written.
fn grants(refs: &Refs<'_>, at: &str, t: &PipelineTask, d: &mut Vec<Diagnostic>) {
    let doc = refs.doc;
    let g = &t.grants;
    let mut push = |path: String, r: Result<(), String>| {
        if let Err(e) = r {
            d.push(doc.diag(&path, e));
        }
    };
    g.check(&mut |path, message| push(format!("{at}.grants.{path}"), Err(message)));
    let text = serde_json::to_string(g).unwrap_or_default();
    if text.contains("$(") {
        push(
            format!("{at}.grants"),
            Err("grants are not substituted (`$(...)`): they are checked against the policy as written".into()),
        );
    }
}
