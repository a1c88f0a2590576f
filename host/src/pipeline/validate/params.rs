//! Pipeline params: their declarations, and the values a run gives them
//! (defaults, the PipelineRun, `-p` on the command line).

use std::collections::{BTreeMap, BTreeSet};

use super::super::subst::{self, Ref};
use super::super::{Diagnostic, Document};
use super::cli_diag;
use crate::manifest::is_name;
use crate::params::{ParamType, ParamValue, parse_cli_value};

/// Context keys a pipeline param's default may use: the run's, not a
/// task's (a default is one value for the whole run).
/// The `context.trigger.*` keys ([`crate::pipeline::subst::trigger_keys`])
/// may be used too.
pub const RUN_CONTEXT: [&str; 6] = [
    "run.id",
    "run.name",
    "pipeline.name",
    "pipelineRun.name",
    "pipelineRun.namespace",
    "pipelineRun.uid",
];

/// Whether a param default may use `context.KEY`.
fn is_run_context(key: &str) -> bool {
    RUN_CONTEXT.contains(&key) || subst::trigger_keys().any(|k| k == key)
}

/// The pipeline's params, checked.
#[derive(Debug, Default)]
pub struct Params {
    /// Declared name → type.
    pub decls: BTreeMap<String, ParamType>,
    /// Declared name → allowed values (`enum`), when it has some.
    pub enums: BTreeMap<String, Vec<String>>,
    /// The values of this run (defaults applied).
    pub values: BTreeMap<String, ParamValue>,
    pub warnings: Vec<String>,
}

/// Check the declarations and the values given. A param given a wrong
/// value gets one diagnostic, not a second "no value was given".
pub fn check(doc: &Document, overrides: &[(String, String)], d: &mut Vec<Diagnostic>) -> Params {
    let mut p = Params::default();
    declarations(doc, &mut p, d);
    let mut given: BTreeSet<String> = BTreeSet::new();
    if let Some((run, _)) = &doc.run {
        for (i, rp) in run.params.iter().enumerate() {
            given.insert(rp.name.clone());
            let at = format!("params[{i}].value");
            match p.decls.get(&rp.name).copied() {
                // As Tekton: a PipelineRun may pass params the pipeline
                // does not declare (triggers pass a fixed set); ignored.
                None => p.warnings.push(format!(
                    "PipelineRun param `{}` is not declared by the pipeline; ignored",
                    rp.name
                )),
                Some(ty) if ty != rp.value.ty() => d.push(doc.run_diag(
                    &at,
                    format!(
                        "param `{}` is {ty} but the value is {}",
                        rp.name,
                        rp.value.ty()
                    ),
                )),
                Some(_) => match p.enum_problem(&rp.name, &rp.value) {
                    Some(e) => d.push(doc.run_diag(&at, e)),
                    None => {
                        p.values.insert(rp.name.clone(), rp.value.clone());
                    }
                },
            }
        }
    }
    for (name, raw) in overrides {
        given.insert(name.clone());
        let Some(ty) = p.decls.get(name).copied() else {
            d.push(cli_diag(format!(
                "-p {name}: the pipeline has no param `{name}` (it has: {})",
                p.decls.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
            continue;
        };
        match parse_cli_value(ty, raw) {
            Ok(v) => match p.enum_problem(name, &v) {
                Some(e) => d.push(cli_diag(format!("-p {name}: {e}"))),
                None => {
                    p.values.insert(name.clone(), v);
                }
            },
            Err(e) => d.push(cli_diag(format!("-p {name}: {e}"))),
        }
    }
    for (i, decl) in doc.spec.params.iter().enumerate() {
        if !p.values.contains_key(&decl.name) && !given.contains(&decl.name) {
            d.push(doc.diag(
                &format!("params[{i}]"),
                format!(
                    "param `{}` has no default and no value was given (use -p {}=VALUE)",
                    decl.name, decl.name
                ),
            ));
        }
    }
    p
}

/// Names, duplicates, default types, enums, and what defaults reference.
fn declarations(doc: &Document, p: &mut Params, d: &mut Vec<Diagnostic>) {
    for (i, decl) in doc.spec.params.iter().enumerate() {
        let at = format!("params[{i}]");
        let name = &decl.name;
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !is_name(name) && !name.chars().all(plain) {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!("`{name}` is not a valid param name"),
            ));
        }
        if p.decls.insert(name.clone(), decl.ty).is_some() {
            d.push(doc.diag(
                &format!("{at}.name"),
                format!("param `{name}` is declared twice"),
            ));
        }
        if !decl.allowed.is_empty() {
            if decl.ty != ParamType::String {
                d.push(doc.diag(&format!("{at}.enum"), "only string params may have an enum"));
            }
            let unique: BTreeSet<&String> = decl.allowed.iter().collect();
            if unique.len() != decl.allowed.len() {
                d.push(doc.diag(&format!("{at}.enum"), "has a value twice"));
            }
            p.enums.insert(name.clone(), decl.allowed.clone());
        }
        let Some(def) = &decl.default else { continue };
        if def.ty() != decl.ty {
            d.push(doc.diag(
                &format!("{at}.default"),
                format!("default is {} but the type is {}", def.ty(), decl.ty),
            ));
            continue;
        }
        if let Some(e) = p.enum_problem(name, def) {
            d.push(doc.diag(&format!("{at}.default"), e));
        }
        for text in def.texts() {
            default_refs(doc, &format!("{at}.default"), text, d);
        }
        p.values.insert(name.clone(), def.clone());
    }
}

/// A default may use the run's context (`$(context.pipelineRun.name)`),
/// substituted when the run starts; nothing else.
fn default_refs(doc: &Document, at: &str, text: &str, d: &mut Vec<Diagnostic>) {
    match subst::refs(text) {
        Err(e) => d.push(doc.diag(at, e)),
        Ok(refs) => {
            for (r, range) in refs {
                let ok = matches!(&r, Ref::Context(k) if is_run_context(k));
                if !ok {
                    d.push(doc.diag(
                        at,
                        format!(
                            "`{}`: a default may only use the run's context ({})",
                            &text[range],
                            RUN_CONTEXT.map(|k| format!("context.{k}")).join(", ")
                                + ", context.trigger.*"
                        ),
                    ));
                }
            }
        }
    }
}

impl Params {
    /// Why `value` is not allowed for `name` by its enum, if it is not.
    fn enum_problem(&self, name: &str, value: &ParamValue) -> Option<String> {
        let allowed = self.enums.get(name)?;
        match value {
            ParamValue::String(s) if allowed.contains(s) => None,
            // A reference is checked when it is substituted.
            ParamValue::String(s) if s.contains("$(") => None,
            v => Some(format!(
                "param `{name}`: `{}` is not one of its enum values: {}",
                v.texts().collect::<Vec<_>>().join(","),
                allowed.join(", ")
            )),
        }
    }
}
