//! Container steps: a task that says `image:` + `script:` (or `command:` /
//! `args:`), with `env`, `workingDir` and `resources`, instead of `uses:`.
//! It is the `script` plugin with those params, so a Tekton step or a
//! GitHub Actions `run:` translates one to one. Desugared when the file is
//! parsed; everything after (validation, the lock file, the run) sees the
//! plugin task.
//!
//! - `$(results.NAME.path)` and `$(workspaces.NAME.path)` (Tekton's) become
//!   the paths in the container; other `$(...)` references are substituted
//!   at dispatch as everywhere.
//! - The image is granted as written (`grants.container: [{image}]`, no
//!   network) unless the task lists `grants.container` itself; an image
//!   with `$(...)` in it must be listed there (grants are never
//!   substituted).
//! - `env: [{name, secret}]` names a secret the host puts into the
//!   container's environment; the plugin never holds the value.
//!
//! Attacker's eye: a step cannot reach anything `uses: script` could not:
//! the same grants, policy and plugin; the implied grant is exactly the
//! image written in the file, never a pattern.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{Param, PipelineTask};
use crate::caps::container::{ContainerGrant, spec::check_env_name};
use crate::params::ParamValue;

/// The plugin a container step runs.
pub const SCRIPT_PLUGIN: &str = "script@0.1";
/// Where a container's results directory is (the `container` capability's).
pub const RESULTS_DIR: &str = "/capstan/results";

/// One `env` entry: a value, or a secret the host fills in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `resources:` (or Tekton v1's `computeResources:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// Checked, and used by the Kubernetes scheduler; the local engine has
    /// limits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
}

/// CPU and memory as Kubernetes writes them (`500m`, `2`; `512Mi`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_yaml::Value>,
}

/// A named cache: `{name: gomod, path: /root/go/pkg/mod}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDecl {
    pub name: String,
    pub path: String,
}

/// A result the task declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultDecl {
    pub name: String,
    /// Only `string` (Tekton's default).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A problem, at a field path relative to the task.
type Problems = Vec<(String, String)>;

/// Whether the task uses any of the container step's fields.
fn is_step(t: &PipelineTask) -> bool {
    t.image.is_some()
        || t.script.is_some()
        || !t.command.is_empty()
        || !t.args.is_empty()
        || !t.env.is_empty()
        || t.working_dir.is_some()
        || t.resources.is_some()
        || !t.caches.is_empty()
}

/// Turn a container step into the `script` plugin task it means, in
/// place. Problems come with the field they are in (relative to the task).
pub fn desugar(t: &mut PipelineTask) -> Problems {
    let mut p = Problems::new();
    for (i, r) in t.results.iter().enumerate() {
        if r.ty.as_deref().is_some_and(|ty| ty != "string") {
            p.push((
                format!("results[{i}].type"),
                "only `string` results are supported".into(),
            ));
        }
    }
    if !is_step(t) {
        if t.uses.is_empty() {
            p.push((
                String::new(),
                "needs `uses:` (a plugin) or `image:` (a container step)".into(),
            ));
        }
        return p;
    }
    let Some(image) = t.image.clone() else {
        p.push((
            String::new(),
            "`script`, `command`, `args`, `env`, `workingDir` and `resources` make a container step: it needs `image:`".into(),
        ));
        return p;
    };
    if !t.uses.is_empty() {
        p.push((
            "uses".into(),
            "a task has `uses:` (a plugin) or `image:` (a container step), not both".into(),
        ));
    }
    if !t.params.is_empty() {
        p.push((
            "params".into(),
            "a container step is set by its fields (`script`, `args`, `env`, `workingDir`, `resources`), not params; use $(params.NAME) of the pipeline in them".into(),
        ));
    }
    if t.matrix.is_some() {
        p.push((
            "matrix".into(),
            "a matrix fans out plugin params: use `uses: script@0.1` with a matrix over its params (`image`, `script`, …)".into(),
        ));
    }
    if !image.contains("$(")
        && let Err(e) = crate::caps::container::spec::normalize(&image)
    {
        p.push(("image".into(), e));
    }
    if let Some(w) = &t.working_dir
        && !w.starts_with('/')
        && !w.starts_with("$(")
    {
        p.push((
            "workingDir".into(),
            format!("`{w}` must be an absolute path in the container"),
        ));
    }
    let params = params(t, &image, &mut p);
    grant(t, &image, &mut p);
    if p.is_empty() {
        t.uses = SCRIPT_PLUGIN.to_string();
        t.params = params;
        t.image = None;
        t.script = None;
        t.command.clear();
        t.args.clear();
        t.env.clear();
        t.working_dir = None;
        t.resources = None;
        t.caches.clear();
    }
    p
}

/// The `script` plugin's params for step `t`.
fn params(t: &PipelineTask, image: &str, p: &mut Problems) -> Vec<Param> {
    let local = |field: String, text: &str, p: &mut Problems| match local_refs(t, text) {
        Ok(s) => s,
        Err(e) => {
            p.push((field, e));
            text.to_string()
        }
    };
    let mut out = vec![param("image", ParamValue::String(image.into()))];
    if let Some(script) = &t.script {
        if !t.command.is_empty() {
            p.push((
                "command".into(),
                "`command` and `script` cannot both be set (as in Tekton)".into(),
            ));
        }
        out.push(param(
            "script",
            ParamValue::String(local("script".into(), script, p)),
        ));
    }
    // Kubernetes' rules: `command` replaces the image's entrypoint, `args`
    // are its arguments (or the script's `$1`…).
    for (field, list) in [("command", &t.command), ("args", &t.args)] {
        let items: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, a)| local(format!("{field}[{i}]"), a, p))
            .collect();
        if !items.is_empty() {
            out.push(param(field, ParamValue::Array(items)));
        }
    }
    out.extend(env_params(t, &local, p));
    out.extend(cache_param(t, p));
    // The task's timeout is the container's too (a Pod's
    // activeDeadlineSeconds); a bad one is reported by validation.
    if let Some(Ok(Some(d))) = t.timeout.as_deref().map(super::duration::parse_timeout) {
        out.push(param(
            "timeout",
            ParamValue::String(format!("{}s", d.as_secs().max(1))),
        ));
    }
    if let Some(w) = &t.working_dir {
        let w = local("workingDir".into(), w, p);
        out.push(param("workingDir", ParamValue::String(w)));
    }
    if let Some(r) = &t.resources {
        for (which, list) in [("requests", &r.requests), ("limits", &r.limits)] {
            let Some(list) = list else { continue };
            if let Some(c) = quantity(
                &list.cpu,
                &format!("resources.{which}.cpu"),
                |c| super::size::cpu_millis(c).map(drop),
                p,
            ) && which == "limits"
            {
                out.push(param("cpu", ParamValue::String(c)));
            }
            if let Some(m) = quantity(
                &list.memory,
                &format!("resources.{which}.memory"),
                |m| match super::size::parse(m) {
                    Ok(0) => Err(format!("`{m}`: a memory limit of 0")),
                    r => r.map(drop),
                },
                p,
            ) && which == "limits"
            {
                out.push(param("memory", ParamValue::String(m)));
            }
        }
    }
    out
}

/// `env` as the `env` and `secretEnv` params.
fn env_params(
    t: &PipelineTask,
    local: &dyn Fn(String, &str, &mut Problems) -> String,
    p: &mut Problems,
) -> Vec<Param> {
    let mut out = Vec::new();
    let (mut env, mut secret_env) = (BTreeMap::new(), BTreeMap::new());
    let mut names = BTreeSet::new();
    for (i, e) in t.env.iter().enumerate() {
        if let Err(m) = check_env_name(&e.name) {
            p.push((format!("env[{i}].name"), m));
        }
        if !names.insert(e.name.as_str()) {
            p.push((
                format!("env[{i}].name"),
                format!("`{}` is set twice", e.name),
            ));
        }
        match (&e.value, &e.secret) {
            (Some(v), None) => {
                let v = local(format!("env[{i}].value"), v, p);
                env.insert(e.name.clone(), v);
            }
            (None, Some(s)) => {
                if let Err(m) = crate::caps::secrets::check_name(s) {
                    p.push((format!("env[{i}].secret"), m));
                }
                secret_env.insert(e.name.clone(), s.clone());
            }
            _ => p.push((
                format!("env[{i}]"),
                "give `value` or `secret` (a secret's name), one of them".into(),
            )),
        }
    }
    if !env.is_empty() {
        out.push(param("env", ParamValue::Object(env)));
    }
    if !secret_env.is_empty() {
        out.push(param("secretEnv", ParamValue::Object(secret_env)));
    }
    out
}

/// `caches` as the `caches` param.
fn cache_param(t: &PipelineTask, p: &mut Problems) -> Option<Param> {
    let mut caches = BTreeMap::new();
    for (i, c) in t.caches.iter().enumerate() {
        if let Err(e) = crate::caps::container::cache::check_key("cache", &c.name) {
            p.push((format!("caches[{i}].name"), e));
        }
        if !c.path.starts_with('/') || c.path == "/" {
            p.push((
                format!("caches[{i}].path"),
                format!("`{}`: an absolute path in the container", c.path),
            ));
        }
        if caches.insert(c.name.clone(), c.path.clone()).is_some() {
            p.push((format!("caches[{i}].name"), format!("`{}` twice", c.name)));
        }
    }
    (!caches.is_empty()).then(|| param("caches", ParamValue::Object(caches)))
}

fn param(name: &str, value: ParamValue) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

/// A quantity field as text (YAML may write `cpu: 2` as a number).
fn quantity(
    v: &Option<serde_yaml::Value>,
    field: &str,
    check: impl Fn(&str) -> Result<(), String>,
    p: &mut Problems,
) -> Option<String> {
    let text = match v.as_ref()? {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => {
            p.push((
                field.into(),
                "must be a quantity (`500m`, `2`, `512Mi`)".into(),
            ));
            return None;
        }
    };
    match check(&text) {
        Ok(()) => Some(text),
        Err(e) => {
            p.push((field.into(), e));
            None
        }
    }
}

/// The image granted as written, unless the task grants containers itself;
/// secrets named in `env` and caches must be in a grant allowing it.
fn grant(t: &mut PipelineTask, image: &str, p: &mut Problems) {
    let secrets: Vec<(usize, &String)> = t
        .env
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.secret.as_ref().map(|s| (i, s)))
        .collect();
    if t.grants.container.is_empty() {
        if image.contains("$(") {
            p.push((
                "image".into(),
                "an image chosen by `$(...)` must be granted in `grants.container` (grants are never substituted)".into(),
            ));
            return;
        }
        let mut names: Vec<String> = secrets.iter().map(|(_, s)| (*s).clone()).collect();
        names.sort();
        names.dedup();
        t.grants.container.push(ContainerGrant {
            image: image.to_string(),
            network: false,
            secrets: names,
            caches: t.caches.iter().map(|c| c.name.clone()).collect(),
            root: false,
        });
        return;
    }
    use crate::caps::container::spec::{matches, normalize, normalize_pattern};
    let allows = |g: &ContainerGrant| {
        // An image chosen at run time: any grant may be the one.
        image.contains("$(")
            || matches!((normalize_pattern(&g.image), normalize(image)), (Ok(pat), Ok(img)) if matches(&pat, &img))
    };
    for (i, c) in t.caches.iter().enumerate() {
        if !t
            .grants
            .container
            .iter()
            .any(|g| allows(g) && g.caches.contains(&c.name))
        {
            p.push((
                format!("caches[{i}].name"),
                format!("cache `{}` is not in the `caches` of a `grants.container` entry allowing `{image}`", c.name),
            ));
        }
    }
    for (i, s) in secrets {
        if !t
            .grants
            .container
            .iter()
            .any(|g| allows(g) && g.secrets.contains(s))
        {
            p.push((
                format!("env[{i}].secret"),
                format!("secret `{s}` is not in the `secrets` of a `grants.container` entry allowing `{image}`"),
            ));
        }
    }
}

/// `$(results.NAME.path)` and `$(workspaces.NAME.path)` as paths in the
/// container; other references are left for dispatch.
fn local_refs(t: &PipelineTask, text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let expr = &after[..end];
        // `results.NAME.path`, or Tekton's `results['NAME'].path` /
        // `results["NAME"].path`.
        let path = |kind: &str| {
            let inner = expr.strip_prefix(kind)?.strip_suffix(".path")?;
            let quoted = ["['", "[\""].iter().find_map(|open| {
                let close = if *open == "['" { "']" } else { "\"]" };
                inner.strip_prefix(open)?.strip_suffix(close)
            });
            quoted.or_else(|| inner.strip_prefix('.'))
        };
        if let Some(name) = path("results") {
            if !t.results.iter().any(|r| r.name == name) {
                return Err(format!(
                    "`$({expr})`: the task declares no result `{name}` (add it to `results:`)"
                ));
            }
            out.push_str(&format!("{RESULTS_DIR}/{name}"));
        } else if let Some(name) = path("workspaces") {
            if !t.workspaces.iter().any(|w| w.name == name) {
                return Err(format!(
                    "`$({expr})`: the task binds no workspace `{name}` (source or cache)"
                ));
            }
            out.push_str(&format!("/workspace/{name}"));
        } else {
            // Not ours: keep the `$(` and look inside it (nested
            // references are substituted too, as Tekton does).
            out.push_str("$(");
            rest = after;
            continue;
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
