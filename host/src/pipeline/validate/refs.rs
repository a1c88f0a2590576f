//! `$(...)` references in a task's fields: each must name something that
//! exists and fits where it is used; result references add edges.

use std::collections::{BTreeSet, HashMap};

use super::super::subst::{self, Ref, Selector};
use super::super::{Diagnostic, Document};
use super::params::Params;
use crate::manifest::Manifest;
use crate::params::{ParamType, ParamValue};

/// What references are checked against.
pub struct Refs<'a> {
    pub doc: &'a Document,
    pub params: &'a Params,
    /// Task name → whether it is a finally task.
    pub kinds: &'a HashMap<&'a str, bool>,
    /// Task name → its plugin's manifest (None: not loaded; reported
    /// elsewhere).
    pub manifests: &'a HashMap<&'a str, Option<Manifest>>,
    /// Tasks with a `matrix` (their results are arrays, one item per
    /// combination).
    pub matrixed: &'a BTreeSet<&'a str>,
}

/// The edges a task's references add.
#[derive(Debug, Default)]
pub struct Edges {
    /// Tasks that must end first.
    pub deps: BTreeSet<String>,
    /// Tasks whose results it reads.
    pub result_deps: BTreeSet<String>,
}

impl Refs<'_> {
    /// Check every reference in `text` (at field `path`) of task `task`.
    pub fn check(
        &self,
        text: &str,
        path: &str,
        task: (&str, bool),
        edges: &mut Edges,
        d: &mut Vec<Diagnostic>,
    ) {
        let refs = match subst::refs(text) {
            Ok(r) => r,
            Err(e) => return d.push(self.doc.diag(path, e)),
        };
        for (r, _) in refs {
            if let Err(e) = self.one(r, task, edges) {
                d.push(self.doc.diag(path, e));
            }
        }
    }

    fn one(&self, r: Ref, (name, finally): (&str, bool), edges: &mut Edges) -> Result<(), String> {
        match r {
            Ref::Param { name: p, sel } => self.param(&p, &sel),
            Ref::Result { task, result, sel } => {
                match self.kinds.get(task.as_str()) {
                    None => {
                        return Err(format!(
                            "`$(tasks.{task}.results.{result})`: no task `{task}`"
                        ));
                    }
                    Some(true) => {
                        return Err(format!(
                            "`{task}` is a finally task; its results cannot be referenced"
                        ));
                    }
                    Some(false) if task == name => {
                        return Err("a task cannot use its own results".into());
                    }
                    Some(false) => {}
                }
                if let Some(Some(m)) = self.manifests.get(task.as_str()) {
                    let Some(spec) = m.results.iter().find(|r| r.name == result) else {
                        let has: Vec<&str> = m.results.iter().map(|r| r.name.as_str()).collect();
                        return Err(format!(
                            "task `{task}` ({}) has no result `{result}` (it has: {})",
                            m.name,
                            has.join(", ")
                        ));
                    };
                    if self.matrixed.contains(task.as_str()) {
                        let ok = spec.ty == ParamType::String
                            && matches!(sel, Selector::Star | Selector::Index(_));
                        if !ok {
                            return Err(format!(
                                "`{task}` has a matrix: its result `{result}` is an array, one item per \
                                 combination (use $(tasks.{task}.results.{result}[*]) or [i]; string results only)"
                            ));
                        }
                    }
                    let fits = self.matrixed.contains(task.as_str())
                        || matches!(
                            (spec.ty, &sel),
                            (ParamType::String, Selector::Whole)
                                | (ParamType::Array, Selector::Index(_) | Selector::Star)
                                | (ParamType::Object, Selector::Key(_) | Selector::Star)
                        );
                    if !fits {
                        return Err(format!(
                            "result `{result}` of task `{task}` is {}; that selector does not apply to it",
                            spec.ty
                        ));
                    }
                }
                if !finally {
                    edges.deps.insert(task.clone());
                }
                edges.result_deps.insert(task);
                Ok(())
            }
            Ref::TaskStatus { .. } | Ref::TaskReason { .. } if !finally => Err(
                "`$(tasks.NAME.status)` and `$(tasks.NAME.reason)` are only available in finally tasks"
                    .into(),
            ),
            Ref::TaskStatus { task } | Ref::TaskReason { task }
                if self.kinds.get(task.as_str()) != Some(&false) =>
            {
                Err(format!("`$(tasks.{task}…)`: no (non-finally) task `{task}`"))
            }
            Ref::TasksStatus if !finally => {
                Err("`$(tasks.status)` is only available in finally tasks".into())
            }
            Ref::WorkspaceBound(w) if self.doc.spec.workspaces.iter().all(|x| x.name != w) => Err(
                format!("`$(workspaces.{w}.bound)`: the pipeline declares no workspace `{w}`"),
            ),
            Ref::FinallyResult { .. } => {
                Err("`$(finally.T.results.R)` is only available in pipeline results".into())
            }
            Ref::TaskReason { .. }
            | Ref::TaskStatus { .. }
            | Ref::TasksStatus
            | Ref::Context(_)
            | Ref::WorkspaceBound(_) => Ok(()),
        }
    }

    /// A param reference: declared, a selector that fits its type, and an
    /// index within the array this run gives it.
    fn param(&self, name: &str, sel: &Selector) -> Result<(), String> {
        let Some(ty) = self.params.decls.get(name) else {
            return Err(format!(
                "`$(params.{name}...)`: the pipeline has no param `{name}`"
            ));
        };
        let fits = matches!(
            (ty, sel),
            (ParamType::String, Selector::Whole)
                | (ParamType::Array, Selector::Index(_) | Selector::Star)
                | (ParamType::Object, Selector::Key(_) | Selector::Star)
        );
        if !fits {
            return Err(format!(
                "param `{name}` is {ty}; that selector does not apply to it"
            ));
        }
        match (self.params.values.get(name), sel) {
            (Some(ParamValue::Array(a)), Selector::Index(i)) if *i >= a.len() => Err(format!(
                "`$(params.{name}[{i}])`: index {i} is out of range: `{name}` has {} item(s) in this run",
                a.len()
            )),
            (Some(ParamValue::Object(o)), Selector::Key(k)) if !o.contains_key(k) => Err(format!(
                "`$(params.{name}.{k})`: `{name}` has no key `{k}` in this run (it has: {})",
                o.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            _ => Ok(()),
        }
    }
}

impl Refs<'_> {
    /// A value's type once a whole `[*]` reference (a param's or a
    /// result's) is known.
    pub fn value_type(&self, v: &ParamValue) -> ParamType {
        let ParamValue::String(s) = v else {
            return v.ty();
        };
        match subst::whole_star(s) {
            Some(subst::Star::Param(n)) => self.params.decls.get(&n).copied(),
            Some(subst::Star::Result { task, .. }) if self.matrixed.contains(task.as_str()) => {
                Some(ParamType::Array)
            }
            Some(subst::Star::Result { task, result }) => self
                .manifests
                .get(task.as_str())
                .and_then(|m| m.as_ref())
                .and_then(|m| m.results.iter().find(|r| r.name == result))
                .map(|r| r.ty),
            None => None,
        }
        .unwrap_or(ParamType::String)
    }
}
