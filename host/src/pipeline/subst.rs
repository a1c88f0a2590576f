//! `$(...)` references: parsing (for validation) and substitution (at
//! dispatch time, when results of earlier tasks are known).
//!
//! Supported: `$(params.p)`, `$(params.p[*])`, `$(params.p[0])`,
//! `$(params.p.key)`, `$(tasks.t.results.r)`, `$(tasks.t.status)`,
//! `$(tasks.status)`, `$(context.run.id)`, `$(context.run.name)`,
//! `$(context.pipeline.name)`, `$(context.task.name)`,
//! `$(context.task.retry-count)`, and Tekton's `$(context.pipelineRun.name)`
//! (the run id), `$(context.pipelineRun.namespace)` (the run's namespace in
//! Kubernetes mode, `default` locally), `$(context.pipelineRun.uid)` (the
//! run id) and `$(context.pipelineTask.retries)` (the task's `retries`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::params::ParamValue;

/// Which part of a parameter a reference selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Whole,
    /// `[*]`: the whole array/object, only where an array/object fits.
    Star,
    Index(usize),
    Key(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Param {
        name: String,
        sel: Selector,
    },
    /// `$(tasks.T.results.R)`, with `[*]`, `[i]` or `.key` for array and
    /// object results (their values are JSON).
    Result {
        task: String,
        result: String,
        sel: Selector,
    },
    /// `$(finally.T.results.R)`: a result of a finally task (pipeline
    /// results only).
    FinallyResult {
        task: String,
        result: String,
    },
    TaskStatus {
        task: String,
    },
    /// `$(tasks.T.reason)` (finally tasks): why T ended, in Tekton's words.
    TaskReason {
        task: String,
    },
    TasksStatus,
    Context(String),
    /// `$(workspaces.NAME.bound)`: `true` if the run binds it.
    WorkspaceBound(String),
}

pub const CONTEXT_KEYS: [&str; 22] = [
    "run.id",
    "run.name",
    "pipeline.name",
    "task.name",
    "task.retry-count",
    // Tekton's spellings.
    "pipelineRun.name",
    "pipelineRun.namespace",
    "pipelineRun.uid",
    "pipelineTask.retries",
    // What started the run (a forge event); empty otherwise.
    "trigger.event",
    "trigger.revision",
    "trigger.ref",
    "trigger.branch",
    "trigger.tag",
    "trigger.base-branch",
    "trigger.url",
    "trigger.repository",
    "trigger.author",
    "trigger.pr-number",
    "trigger.delivery",
    "trigger.provider",
    "trigger.trusted",
];

/// The `context.trigger.*` keys (without `trigger.`), in [`CONTEXT_KEYS`].
pub fn trigger_keys() -> impl Iterator<Item = &'static str> {
    CONTEXT_KEYS
        .iter()
        .filter(|k| k.starts_with("trigger."))
        .copied()
}

/// What a reference starts with.
const ROOTS: [&str; 5] = ["params.", "tasks.", "context.", "finally.", "workspaces."];

/// Every `$(...)` in `s`, with its byte range. Errors name the bad reference.
pub fn refs(s: &str) -> Result<Vec<(Ref, Range<usize>)>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find("$(") {
        let start = from + i;
        // As in Tekton, only `$(params.…)`, `$(tasks.…)`, … are references;
        // anything else (a shell's `$(date)`, `$((1 + 2))`) is text and
        // stays as written.
        if !ROOTS.iter().any(|r| s[start + 2..].starts_with(r)) {
            from = start + 2;
            continue;
        }
        let Some(len) = s[start..].find(')') else {
            return Err(format!("unterminated reference `{}`", &s[start..]));
        };
        let end = start + len + 1;
        out.push((parse_ref(&s[start + 2..end - 1])?, start..end));
        from = end;
    }
    Ok(out)
}

fn parse_ref(expr: &str) -> Result<Ref, String> {
    let bad = || {
        format!(
            "unknown reference `$({expr})`; expected params.NAME, tasks.TASK.results.NAME, \
             tasks.TASK.status, tasks.TASK.reason, tasks.status, finally.TASK.results.NAME, workspaces.NAME.bound or context.{{{}}}",
            CONTEXT_KEYS.join(",")
        )
    };
    if let Some(rest) = expr.strip_prefix("params.") {
        let (name, sel) = selector(rest).ok_or_else(bad)?;
        return Ok(Ref::Param {
            name: name.to_string(),
            sel,
        });
    }
    if expr == "tasks.status" {
        return Ok(Ref::TasksStatus);
    }
    if let Some(rest) = expr.strip_prefix("tasks.") {
        if let Some((task, result)) = rest.split_once(".results.") {
            let (result, sel) = selector(result).ok_or_else(bad)?;
            if task.contains('.') {
                return Err(bad());
            }
            return Ok(Ref::Result {
                task: task.to_string(),
                result: result.to_string(),
                sel,
            });
        }
        let parts: Vec<&str> = rest.split('.').collect();
        return match parts.as_slice() {
            [task, "status"] => Ok(Ref::TaskStatus {
                task: task.to_string(),
            }),
            [task, "reason"] => Ok(Ref::TaskReason {
                task: task.to_string(),
            }),
            _ => Err(bad()),
        };
    }
    if let Some(rest) = expr.strip_prefix("finally.") {
        return match rest.split('.').collect::<Vec<_>>().as_slice() {
            [task, "results", result] => Ok(Ref::FinallyResult {
                task: task.to_string(),
                result: result.to_string(),
            }),
            _ => Err(bad()),
        };
    }
    if let Some(name) = expr
        .strip_prefix("workspaces.")
        .and_then(|r| r.strip_suffix(".bound"))
        .filter(|n| !n.is_empty() && !n.contains('.'))
    {
        return Ok(Ref::WorkspaceBound(name.to_string()));
    }
    if let Some(key) = expr.strip_prefix("context.")
        && CONTEXT_KEYS.contains(&key)
    {
        return Ok(Ref::Context(key.to_string()));
    }
    Err(bad())
}

/// `NAME`, `NAME[*]`, `NAME[i]` or `NAME.key`.
fn selector(rest: &str) -> Option<(&str, Selector)> {
    let (name, sel) = if let Some(open) = rest.find('[') {
        let inner = rest[open..].strip_prefix('[')?.strip_suffix(']')?;
        let sel = if inner == "*" {
            Selector::Star
        } else {
            Selector::Index(inner.parse().ok()?)
        };
        (&rest[..open], sel)
    } else if let Some((name, key)) = rest.split_once('.') {
        (name, Selector::Key(key.to_string()))
    } else {
        (rest, Selector::Whole)
    };
    (!name.is_empty()).then_some((name, sel))
}

/// What a whole-value `[*]` reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Star {
    Param(String),
    Result { task: String, result: String },
}

/// If `s` is exactly one `[*]` reference, what it names.
pub fn whole_star(s: &str) -> Option<Star> {
    match refs(s).ok()?.as_slice() {
        [(r, range)] if range.start == 0 && range.end == s.len() => match r {
            Ref::Param {
                name,
                sel: Selector::Star,
            } => Some(Star::Param(name.clone())),
            Ref::Result {
                task,
                result,
                sel: Selector::Star,
            } => Some(Star::Result {
                task: task.clone(),
                result: result.clone(),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// An array or object result's value (JSON), as a typed value.
pub fn parse_structured(raw: &str) -> Option<ParamValue> {
    if let Ok(a) = serde_json::from_str::<Vec<String>>(raw) {
        return Some(ParamValue::Array(a));
    }
    serde_json::from_str::<BTreeMap<String, String>>(raw)
        .ok()
        .map(ParamValue::Object)
}

/// What references resolve against.
#[derive(Debug)]
pub struct Scope<'a> {
    pub params: &'a BTreeMap<String, ParamValue>,
    pub results: Option<&'a HashMap<String, BTreeMap<String, String>>>,
    /// Task name → `Succeeded`/`Failed`/`None` (Tekton's words).
    pub statuses: Option<&'a HashMap<String, String>>,
    /// Task name → its reason (`$(tasks.T.reason)`).
    pub reasons: Option<&'a HashMap<String, String>>,
    pub tasks_status: Option<&'a str>,
    pub context: BTreeMap<&'static str, String>,
    /// The run's bound workspaces (name → directory).
    pub bound: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Scope<'a> {
    /// A scope with only pipeline params.
    pub fn new(params: &'a BTreeMap<String, ParamValue>) -> Self {
        Scope {
            params,
            results: None,
            statuses: None,
            reasons: None,
            tasks_status: None,
            context: BTreeMap::new(),
            bound: None,
        }
    }

    /// Substitute every reference in a string.
    pub fn resolve_str(&self, s: &str) -> Result<String, String> {
        let refs = refs(s)?;
        if refs.is_empty() {
            return Ok(s.to_string());
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (r, range) in refs {
            out.push_str(&s[last..range.start]);
            out.push_str(&self.lookup(&r, &s[range.clone()])?);
            last = range.end;
        }
        out.push_str(&s[last..]);
        Ok(out)
    }

    fn lookup(&self, r: &Ref, text: &str) -> Result<String, String> {
        match r {
            Ref::Param { name, sel } => {
                let v = self
                    .params
                    .get(name)
                    .ok_or_else(|| format!("{text}: no param `{name}`"))?;
                match (v, sel) {
                    (ParamValue::String(s), Selector::Whole) => Ok(s.clone()),
                    (ParamValue::Array(a), Selector::Index(i)) => {
                        a.get(*i).cloned().ok_or_else(|| {
                            format!("{text}: index {i} is out of range (array has {})", a.len())
                        })
                    }
                    (ParamValue::Object(o), Selector::Key(k)) => o
                        .get(k)
                        .cloned()
                        .ok_or_else(|| format!("{text}: object has no key `{k}`")),
                    (v, Selector::Star) => Err(format!(
                        "{text}: a {} param with [*] can only be a whole array/object value",
                        v.ty()
                    )),
                    (v, _) => Err(format!(
                        "{text}: param `{name}` is a {}; this selector does not apply",
                        v.ty()
                    )),
                }
            }
            Ref::Result { task, result, sel } => {
                let raw = self.result(task, result, text)?;
                match sel {
                    Selector::Whole => Ok(raw.clone()),
                    Selector::Index(i) => match parse_structured(raw) {
                        Some(ParamValue::Array(a)) => a.get(*i).cloned().ok_or_else(|| {
                            format!(
                                "{text}: index {i} is out of range (the result has {})",
                                a.len()
                            )
                        }),
                        _ => Err(format!("{text}: result `{result}` is not an array")),
                    },
                    Selector::Key(k) => match parse_structured(raw) {
                        Some(ParamValue::Object(o)) => o
                            .get(k)
                            .cloned()
                            .ok_or_else(|| format!("{text}: the result has no key `{k}`")),
                        _ => Err(format!("{text}: result `{result}` is not an object")),
                    },
                    Selector::Star => Err(format!(
                        "{text}: [*] can only be a whole array/object value"
                    )),
                }
            }
            Ref::FinallyResult { task, result } => self.result(task, result, text).cloned(),
            Ref::TaskStatus { task } => Ok(self
                .statuses
                .and_then(|m| m.get(task))
                .cloned()
                .unwrap_or_else(|| "None".to_string())),
            Ref::TaskReason { task } => Ok(self
                .reasons
                .and_then(|m| m.get(task))
                .cloned()
                .unwrap_or_default()),
            Ref::TasksStatus => self
                .tasks_status
                .map(str::to_string)
                .ok_or_else(|| format!("{text}: only finally tasks may use it")),
            Ref::WorkspaceBound(name) => self
                .bound
                .map(|b| b.contains_key(name).to_string())
                .ok_or_else(|| format!("{text}: not available here")),
            Ref::Context(k) => self
                .context
                .get(k.as_str())
                .cloned()
                // A run nobody's event started: every trigger value empty.
                .or_else(|| k.starts_with("trigger.").then(String::new))
                .ok_or_else(|| format!("{text}: not available here")),
        }
    }

    /// A result's raw value.
    fn result(&self, task: &str, result: &str, text: &str) -> Result<&String, String> {
        self.results
            .and_then(|m| m.get(task))
            .and_then(|m| m.get(result))
            .ok_or_else(|| format!("{text}: task `{task}` did not produce result `{result}`"))
    }

    /// The whole array/object a `[*]` reference names.
    fn star(&self, star: &Star, text: &str) -> Result<ParamValue, String> {
        match star {
            Star::Param(name) => self
                .params
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{text}: no param `{name}`")),
            Star::Result { task, result } => {
                let raw = self.result(task, result, text)?;
                parse_structured(raw).ok_or_else(|| {
                    format!("{text}: result `{result}` is not a JSON array or object of strings")
                })
            }
        }
    }

    /// Substitute references in a typed value; `[*]` expands arrays/objects.
    pub fn resolve_value(&self, v: &ParamValue) -> Result<ParamValue, String> {
        match v {
            ParamValue::String(s) => {
                if let Some(star) = whole_star(s) {
                    return self.star(&star, s);
                }
                Ok(ParamValue::String(self.resolve_str(s)?))
            }
            ParamValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match whole_star(item).map(|star| self.star(&star, item)) {
                        Some(Ok(ParamValue::Array(a))) => out.extend(a),
                        Some(Err(e)) => return Err(e),
                        Some(_) => {
                            return Err(format!(
                                "{item}: only an array param can be spliced into an array"
                            ));
                        }
                        None => out.push(self.resolve_str(item)?),
                    }
                }
                Ok(ParamValue::Array(out))
            }
            ParamValue::Object(map) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.resolve_str(v)?);
                }
                Ok(ParamValue::Object(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r =
            refs("a $(params.x) b $(tasks.t.results.r) $(params.arr[2]) $(params.o.k)").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0].0,
            Ref::Param {
                name: "x".into(),
                sel: Selector::Whole
            }
        );
        assert_eq!(
            r[1].0,
            Ref::Result {
                task: "t".into(),
                result: "r".into(),
                sel: Selector::Whole
            }
        );
        assert_eq!(
            r[2].0,
            Ref::Param {
                name: "arr".into(),
                sel: Selector::Index(2)
            }
        );
        assert_eq!(
            r[3].0,
            Ref::Param {
                name: "o".into(),
                sel: Selector::Key("k".into())
            }
        );
        assert!(
            refs("$(tasks.x)")
                .unwrap_err()
                .contains("unknown reference")
        );
        // Not a reference (Tekton leaves these alone): shell substitutions.
        assert!(
            refs("v=$(date +%s); echo $((1 + 2)) $(nope.x)")
                .unwrap()
                .is_empty()
        );
        assert!(refs("$(params.x").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn substitutes_and_expands() {
        let mut params = BTreeMap::new();
        params.insert("s".to_string(), ParamValue::String("hi".into()));
        params.insert(
            "a".to_string(),
            ParamValue::Array(vec!["1".into(), "2".into()]),
        );
        let mut results = HashMap::new();
        results.insert(
            "t".to_string(),
            BTreeMap::from([("r".to_string(), "v".to_string())]),
        );
        let scope = Scope {
            results: Some(&results),
            ..Scope::new(&params)
        };
        assert_eq!(
            scope
                .resolve_str("$(params.s)-$(tasks.t.results.r)")
                .unwrap(),
            "hi-v"
        );
        assert_eq!(
            scope
                .resolve_value(&ParamValue::Array(vec![
                    "0".into(),
                    "$(params.a[*])".into()
                ]))
                .unwrap(),
            ParamValue::Array(vec!["0".into(), "1".into(), "2".into()])
        );
        assert_eq!(
            scope
                .resolve_value(&ParamValue::String("$(params.a[*])".into()))
                .unwrap(),
            params["a"]
        );
        assert!(
            scope
                .resolve_str("$(tasks.t.results.zz)")
                .unwrap_err()
                .contains("did not produce")
        );
        assert!(scope.resolve_str("$(params.a)").is_err());
    }
}
