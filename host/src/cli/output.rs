//! Exit codes and shared printing helpers.

pub use crate::escape::for_terminal;

/// Input the command cannot use (a malformed reference, a missing file):
/// exit code 2, with a message that says what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
use crate::store::{RunRecord, RunStatus, RunStore, TaskRecord};
pub use crate::view::{plugins_json, run_json, time};

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The command worked; a run succeeded.
    Ok = 0,
    /// A run finished but did not succeed (Failed, Cancelled, TimedOut).
    RunFailed = 1,
    /// Invalid input: the pipeline, params, plugin or arguments.
    Invalid = 2,
    /// Something else went wrong (I/O, state store).
    Error = 3,
    /// The API server refused the caller (401/403), or an approval was
    /// refused (not a listed approver).
    Denied = 4,
}

impl ExitCode {
    pub fn for_status(s: RunStatus) -> ExitCode {
        if s == RunStatus::Succeeded {
            ExitCode::Ok
        } else {
            ExitCode::RunFailed
        }
    }
}

pub fn duration(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => {
            let d = std::time::Duration::from_micros((e - s).max(0) as u64);
            if d.as_millis() < 10_000 {
                format!("{}ms", d.as_millis())
            } else {
                crate::runtime::humantime(d)
            }
        }
        _ => "-".to_string(),
    }
}

/// Print a run summary (text) to stdout.
pub fn print_run(run: &RunRecord, tasks: &[TaskRecord]) {
    println!(
        "run {}  pipeline {}  {}  ({})",
        run.id,
        for_terminal(&run.pipeline),
        run.status,
        duration(run.started_at, run.finished_at)
    );
    if let Some(m) = &run.message {
        println!("  {}", for_terminal(m));
    }
    if let Some(of) = &run.spec.rerun_of {
        println!("  a re-run of {of}");
    }
    if let Some(n) = run.number {
        println!("  build #{n} of {}", for_terminal(&run.pipeline));
    }
    if let Some(by) = &run.spec.triggered_by {
        println!("  triggered by {}", for_terminal(&by.describe()));
    }
    for (k, v) in &run.spec.trigger {
        println!("  trigger.{k} = {}", for_terminal(v));
    }
    let label = |t: &TaskRecord| {
        if t.finally {
            format!("{} (finally)", t.name)
        } else {
            t.name.clone()
        }
    };
    let w = tasks
        .iter()
        .map(|t| label(t).len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "  {:w$}  {:9}  {:8}  {:>8}  MESSAGE",
        "TASK", "STATUS", "ATTEMPTS", "DURATION"
    );
    for t in tasks {
        println!(
            "  {:w$}  {:9}  {:8}  {:>8}  {}",
            label(t),
            t.status.as_str(),
            t.attempts,
            duration(t.started_at, t.finished_at),
            for_terminal(t.message.as_deref().unwrap_or(""))
        );
    }
    let plugins = plugins_json(run);
    if !plugins.is_empty() {
        println!("plugins:");
        for p in plugins {
            let nv = match (p.name, p.version) {
                (Some(n), Some(v)) => format!("{n} {v}  "),
                _ => String::new(),
            };
            println!("  {}  {nv}{}", for_terminal(p.uses), p.digest);
        }
    }
    let task_results: Vec<_> = tasks
        .iter()
        .flat_map(|t| {
            t.results
                .iter()
                .map(move |(k, v)| (format!("{}.{k}", t.name), v))
        })
        .collect();
    if !task_results.is_empty() {
        println!("task results:");
        for (k, v) in task_results {
            println!("  {} = {}", for_terminal(&k), one_line(v));
        }
    }
    if !run.results.is_empty() {
        println!("pipeline results:");
        for (k, v) in &run.results {
            println!("  {} = {}", for_terminal(k), one_line(v));
        }
    }
}

/// A result value on one line, escaped for the terminal, cut at 200 bytes.
fn one_line(v: &str) -> String {
    let v = for_terminal(v).into_owned();
    if v.len() > 200 {
        format!("{}…", &v[..v.floor_char_boundary(200)])
    } else {
        v
    }
}

pub fn show_run(store: &RunStore, id: &str, json: bool) -> anyhow::Result<RunRecord> {
    let run = store.run(id)?;
    let tasks = store.tasks(id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run_json(&run, &tasks))?);
    } else {
        print_run(&run, &tasks);
    }
    Ok(run)
}
