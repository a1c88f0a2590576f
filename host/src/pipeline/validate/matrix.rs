//! `matrix`: a task fanned out into one child per combination of param
//! values, as Tekton does — the product of `matrix.params`, then
//! `matrix.include` (an entry adds its params to every combination it does
//! not contradict, or is a combination of its own if it contradicts all).
//! The values must be known before the run (literals or pipeline params);
//! children are named `TASK-0`, `TASK-1`, … in combination order.

use std::collections::BTreeMap;

use super::super::subst::{self, Star};
use super::super::{Param, PipelineTask};
use super::params::Params;
use crate::params::ParamValue;

/// Tekton's default limit on combinations.
pub const MAX_COMBINATIONS: usize = 256;

/// One combination: param name → value.
pub type Combination = BTreeMap<String, String>;

/// The combinations of `t`'s matrix (None if it has none). Problems are
/// reported through `diag(field, message)`.
pub fn combinations(
    t: &PipelineTask,
    params: &Params,
    diag: &mut dyn FnMut(&str, String),
) -> Option<Vec<Combination>> {
    let m = t.matrix.as_ref()?;
    // Count before building: a hostile product must not be built to be
    // refused.
    let mut count: usize = if m.params.is_empty() { 0 } else { 1 };
    for p in &m.params {
        let n = values_of(&p.value, params).map_or(1, |v| v.len());
        count = count.saturating_mul(n);
    }
    let count = count.saturating_add(m.include.len());
    if count > MAX_COMBINATIONS {
        diag(
            "matrix",
            format!("{count} combinations; at most {MAX_COMBINATIONS}"),
        );
        return None;
    }
    let mut combos: Vec<Combination> = vec![Combination::new()];
    for (i, p) in m.params.iter().enumerate() {
        let Some(values) = values_of(&p.value, params) else {
            diag(
                &format!("matrix.params[{i}].value"),
                format!(
                    "matrix param `{}`: an array of strings known before the run \
                     (literals or `$(params.NAME[*])`)",
                    p.name
                ),
            );
            return None;
        };
        if values.is_empty() {
            diag(
                &format!("matrix.params[{i}].value"),
                "an empty array: no combination would run".into(),
            );
            return None;
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(p.name.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    if m.params.is_empty() {
        combos.clear();
    }
    for (i, inc) in m.include.iter().enumerate() {
        let mut entry = Combination::new();
        for (j, p) in inc.params.iter().enumerate() {
            match resolve_string(&p.value, params) {
                Some(v) => {
                    entry.insert(p.name.clone(), v);
                }
                None => diag(
                    &format!("matrix.include[{i}].params[{j}].value"),
                    "a string known before the run".into(),
                ),
            }
        }
        if m.params.is_empty() {
            combos.push(entry); // `include` alone: explicit combinations
        } else {
            include(&mut combos, &m.params, entry);
        }
    }
    if combos.is_empty() {
        diag(
            "matrix",
            "no combination: give `params` or `include`".into(),
        );
        return None;
    }
    if combos.len() > MAX_COMBINATIONS {
        diag(
            "matrix",
            format!("{} combinations; at most {MAX_COMBINATIONS}", combos.len()),
        );
        return None;
    }
    Some(combos)
}

/// Tekton's `include`: add the entry's params to each combination whose
/// matrix params it does not contradict; if it contradicts every one, it is
/// a combination of its own.
fn include(combos: &mut Vec<Combination>, matrix_params: &[Param], entry: Combination) {
    let is_matrix = |k: &str| matrix_params.iter().any(|p| p.name == k);
    let mut matched = false;
    for c in combos.iter_mut() {
        let fits = entry
            .iter()
            .all(|(k, v)| !is_matrix(k) || c.get(k).is_some_and(|cv| cv == v));
        if fits {
            matched = true;
            for (k, v) in &entry {
                c.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if !matched {
        combos.push(entry);
    }
}

/// A matrix param's values: a literal array (items may splice
/// `$(params.a[*])` or use `$(params.p)`), or a whole `$(params.a[*])`.
fn values_of(v: &ParamValue, params: &Params) -> Option<Vec<String>> {
    let scope = subst::Scope::new(&params.values);
    match v {
        ParamValue::String(s) => match subst::whole_star(s)? {
            Star::Param(_) => match scope.resolve_value(v).ok()? {
                ParamValue::Array(a) => Some(a),
                _ => None,
            },
            Star::Result { .. } => None,
        },
        ParamValue::Array(_) => match scope.resolve_value(v).ok()? {
            ParamValue::Array(a) => Some(a),
            _ => None,
        },
        ParamValue::Object(_) => None,
    }
}

fn resolve_string(v: &ParamValue, params: &Params) -> Option<String> {
    match v {
        ParamValue::String(s) => subst::Scope::new(&params.values).resolve_str(s).ok(),
        _ => None,
    }
}

/// Child `i` of `t`: its params with the combination's values.
pub fn child(t: &PipelineTask, i: usize, combo: &Combination) -> PipelineTask {
    let mut c = t.clone();
    c.name = format!("{}-{i}", t.name);
    c.matrix = None;
    for (k, v) in combo {
        c.params.retain(|p| &p.name != k);
        c.params.push(Param {
            name: k.clone(),
            value: ParamValue::String(v.clone()),
        });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(yaml: &str) -> PipelineTask {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn combos(yaml: &str) -> Vec<Combination> {
        let mut problems = Vec::new();
        let out = combinations(&task(yaml), &Params::default(), &mut |f, m| {
            problems.push(format!("{f}: {m}"))
        });
        assert!(problems.is_empty(), "{problems:?}");
        out.unwrap()
    }

    fn show(c: &[Combination]) -> Vec<String> {
        c.iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn the_product_in_order() {
        let c = combos(
            "{name: b, uses: x, matrix: {params: [{name: os, value: [linux, mac]}, {name: arch, value: [amd64, arm64]}]}}",
        );
        assert_eq!(
            show(&c),
            [
                "arch=amd64 os=linux",
                "arch=arm64 os=linux",
                "arch=amd64 os=mac",
                "arch=arm64 os=mac"
            ]
        );
    }

    /// Tekton's docs example (docs/matrix.md, "include"): an entry that
    /// fits some combinations extends them; one that fits none is new.
    #[test]
    fn include_extends_or_adds() {
        let c = combos(
            "{name: b, uses: x, matrix: {params: [{name: GOARCH, value: [linux/amd64, linux/ppc64le, linux/s390x]}, {name: version, value: [go1.17, go1.18.1]}], \
             include: [{name: common-package, params: [{name: package, value: path/to/common/package/}]}, \
                       {name: s390x-no-race, params: [{name: GOARCH, value: linux/s390x}, {name: flags, value: -cover -v}]}, \
                       {name: go117-context, params: [{name: version, value: go1.17}, {name: context, value: path/to/go117/context}]}, \
                       {name: non-existent-arch, params: [{name: GOARCH, value: I-do-not-exist}]}]}}",
        );
        let p = "package=path/to/common/package/";
        let ctx = "context=path/to/go117/context";
        assert_eq!(
            show(&c),
            [
                format!("GOARCH=linux/amd64 {ctx} {p} version=go1.17"),
                format!("GOARCH=linux/amd64 {p} version=go1.18.1"),
                format!("GOARCH=linux/ppc64le {ctx} {p} version=go1.17"),
                format!("GOARCH=linux/ppc64le {p} version=go1.18.1"),
                format!("GOARCH=linux/s390x {ctx} flags=-cover -v {p} version=go1.17"),
                format!("GOARCH=linux/s390x flags=-cover -v {p} version=go1.18.1"),
                "GOARCH=I-do-not-exist".to_string(),
            ]
        );
    }

    #[test]
    fn include_alone_and_limits() {
        let c = combos(
            "{name: b, uses: x, matrix: {include: [{name: a, params: [{name: h, value: one}]}, {name: b, params: [{name: h, value: two}]}]}}",
        );
        assert_eq!(show(&c), ["h=one", "h=two"]);
        let many: Vec<String> = (0..17).map(|i| format!("v{i}")).collect();
        let yaml = format!(
            "{{name: b, uses: x, matrix: {{params: [{{name: p, value: [{}]}}, {{name: q, value: [{}]}}]}}}}",
            many.join(","),
            many.join(",")
        );
        let mut problems = Vec::new();
        assert!(
            combinations(&task(&yaml), &Params::default(), &mut |_, m| problems
                .push(m))
            .is_none()
        );
        assert!(
            problems[0].contains("289 combinations; at most 256"),
            "{problems:?}"
        );
    }

    /// A hostile product (20 values in each of 8 params: 2.56e10
    /// combinations) is refused by counting, without building it.
    #[test]
    fn a_huge_product_is_refused_before_it_is_built() {
        let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        let params: Vec<String> = (0..8)
            .map(|p| format!("{{name: p{p}, value: [{}]}}", values.join(",")))
            .collect();
        let yaml = format!(
            "{{name: b, uses: x, matrix: {{params: [{}]}}}}",
            params.join(", ")
        );
        let started = std::time::Instant::now();
        let mut problems = Vec::new();
        assert!(
            combinations(&task(&yaml), &Params::default(), &mut |_, m| problems
                .push(m))
            .is_none()
        );
        assert!(
            problems[0].contains("25600000000 combinations"),
            "{problems:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    /// Values are final once expanded: a PipelineRun value that looks like
    /// a reference stays text in the child (substituted once, as Tekton).
    #[test]
    fn values_are_substituted_once() {
        let mut p = Params::default();
        p.values.insert(
            "targets".into(),
            ParamValue::Array(vec!["$(tasks.creds.results.token)".into()]),
        );
        let t = task(
            "{name: b, uses: x, matrix: {params: [{name: t, value: \"$(params.targets[*])\"}]}}",
        );
        let c = combinations(&t, &p, &mut |_, m| panic!("{m}")).unwrap();
        let child = child(&t, 0, &c[0]);
        assert_eq!(
            child.params[0].value,
            ParamValue::String("$(tasks.creds.results.token)".into())
        );
    }
}
