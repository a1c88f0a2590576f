//! Kill -9 soak of the embedded scheduler: many pipelines of mixed shape,
//! each run by a `capstan run` process that is SIGKILLed at random moments
//! and continued with `capstan runs resume` until the run ends.
//!
//! What must hold at the end ([`Report::check`]):
//! - every run is in a terminal state, and (the shapes are built to succeed)
//!   Succeeded;
//! - no task's plugin ran after its success was recorded: every task appends
//!   a line to a marker file in its run's workspace when it starts, and at
//!   every kill the soak snapshots (with the scheduler dead) which tasks the
//!   store says succeeded and how many marker lines each has; those counts
//!   never grow afterwards;
//! - the logs of every succeeded task's final attempt are complete (its
//!   first and last line are there).
//!
//! Used by `tests/soak.rs` (short, in CI) and the `soak` binary (long; see
//! docs/RELIABILITY.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan::store::{RunStatus, RunStore, TaskStatus};

/// Soak settings.
pub struct Settings {
    pub pipelines: usize,
    /// Keep killing (with a higher chance) until at least this many kills.
    pub min_kills: usize,
    pub seed: u64,
}

/// What the soak did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub runs: usize,
    pub kills: usize,
    pub resumes: usize,
    pub tasks: usize,
    /// Plugin executions beyond one per task (interrupted attempts re-run).
    pub reruns_of_interrupted: usize,
    pub problems: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn check(&self) {
        assert!(
            self.problems.is_empty(),
            "soak found {} problem(s):\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
    }
}

fn shape(i: usize, sleep: &str, fail: &str, rng: &mut fastrand::Rng) -> String {
    let ms = |rng: &mut fastrand::Rng| rng.u32(10..120);
    let task = |name: &str, after: &[&str], ms: u32| {
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("\n      runAfter: [{}]", after.join(", "))
        };
        format!(
            "    - name: {name}\n      uses: \"{sleep}\"{after}\n      \
             params: [{{ name: millis, value: \"{ms}\" }}, {{ name: marker, value: runs.txt }}]\n      \
             workspaces: [{{ name: log, workspace: log }}]\n"
        )
    };
    let mut tasks = String::new();
    let mut finally = String::new();
    match i % 3 {
        // A chain.
        0 => {
            for (n, after) in [
                ("a", vec![]),
                ("b", vec!["a"]),
                ("c", vec!["b"]),
                ("d", vec!["c"]),
            ] {
                tasks.push_str(&task(n, &after, ms(rng)));
            }
        }
        // Fan out and in.
        1 => {
            tasks.push_str(&task("src", &[], ms(rng)));
            for n in ["p1", "p2", "p3", "p4"] {
                tasks.push_str(&task(n, &["src"], ms(rng)));
            }
            tasks.push_str(&task("join", &["p1", "p2", "p3", "p4"], ms(rng)));
        }
        // A flaky task retried, and a finally task.
        _ => {
            tasks.push_str(&task("first", &[], ms(rng)));
            tasks.push_str(&format!(
                "    - name: flaky\n      uses: \"{fail}\"\n      runAfter: [first]\n      retries: 3\n      \
                 params: [{{ name: until-attempt, value: \"2\" }}]\n"
            ));
            tasks.push_str(&task("last", &["flaky"], ms(rng)));
            finally.push_str("  finally:\n");
            finally.push_str(&task("cleanup", &[], ms(rng)));
        }
    }
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: soak-{i} }}\nspec:\n  \
         workspaces: [{{ name: log }}]\n  tasks:\n{tasks}{finally}"
    )
}

fn marker_counts(ws: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in std::fs::read_to_string(ws.join("runs.txt"))
        .unwrap_or_default()
        .lines()
    {
        if let Some((task, _)) = line.split_once(" attempt ") {
            *m.entry(task.to_string()).or_default() += 1;
        }
    }
    m
}

fn spawn(cli: &str, state: &Path, args: &[&str]) -> Child {
    Command::new(cli)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting capstan")
}

/// Wait for `child` up to `d`; `true` if it exited.
fn wait_for(child: &mut Child, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.try_wait().unwrap().is_some()
}

/// Run the soak with the CLI at `cli`, the `sleep` and `fail` components.
pub fn run(cli: &str, sleep: &str, fail: &str, s: &Settings) -> Report {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut rng = fastrand::Rng::with_seed(s.seed);
    let mut r = Report::default();
    // Succeeded tasks and their marker counts, as of a kill: (run, task) → lines.
    let mut frozen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut runs: Vec<(String, PathBuf)> = Vec::new();
    for i in 0..s.pipelines {
        let file = dir.path().join(format!("p{i}.yaml"));
        std::fs::write(&file, shape(i, sleep, fail, &mut rng)).unwrap();
        let ws = dir.path().join(format!("ws{i}"));
        std::fs::create_dir_all(&ws).unwrap();
        let before: BTreeSet<String> = RunStore::open(&state)
            .map(|st| {
                st.list_runs(100_000)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect()
            })
            .unwrap_or_default();
        let mut child = spawn(
            cli,
            &state,
            &[
                "run",
                file.to_str().unwrap(),
                "-w",
                &format!("log={}", ws.display()),
            ],
        );
        let mut run_id: Option<String> = None;
        loop {
            // Kill more often while short of the kill target.
            let left = s.pipelines - i;
            let need = s.min_kills.saturating_sub(r.kills);
            let behind = need * 2 >= left;
            let p = if behind { 0.95 } else { 0.35 };
            let finished = if rng.f64() < p {
                let after = Duration::from_millis(rng.u64(20..if behind { 250 } else { 700 }));
                if wait_for(&mut child, after) {
                    true
                } else {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    r.kills += 1;
                    false
                }
            } else {
                child.wait().unwrap();
                true
            };
            let store = RunStore::open(&state).unwrap();
            if run_id.is_none() {
                run_id = store
                    .list_runs(100_000)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .find(|id| !before.contains(id));
            }
            let Some(id) = run_id.clone() else {
                if finished {
                    r.problems
                        .push(format!("pipeline {i}: the run was never recorded"));
                    break;
                }
                // Killed before the run was created: start again.
                child = spawn(
                    cli,
                    &state,
                    &[
                        "run",
                        file.to_str().unwrap(),
                        "-w",
                        &format!("log={}", ws.display()),
                    ],
                );
                continue;
            };
            if !finished {
                // The scheduler is dead: freeze what the store says succeeded.
                let counts = marker_counts(&ws);
                for t in store.tasks(&id).unwrap() {
                    if t.status == TaskStatus::Succeeded {
                        let n = counts.get(&t.name).copied().unwrap_or(0);
                        frozen.entry((id.clone(), t.name.clone())).or_insert(n);
                    }
                }
            }
            if store.run(&id).unwrap().status.is_terminal() {
                break;
            }
            r.resumes += 1;
            child = spawn(cli, &state, &["runs", "resume", &id]);
        }
        if let Some(id) = run_id {
            runs.push((id, ws));
        }
    }
    // The checks.
    let store = RunStore::open(&state).unwrap();
    for (id, ws) in &runs {
        r.runs += 1;
        let rec = store.run(id).unwrap();
        if rec.status != RunStatus::Succeeded {
            r.problems
                .push(format!("run {id}: {} ({:?})", rec.status, rec.message));
        }
        let counts = marker_counts(ws);
        let logs = store.logs(id, None, None, 0, 1_000_000).unwrap();
        for t in store.tasks(id).unwrap() {
            r.tasks += 1;
            let n = counts.get(&t.name).copied().unwrap_or(0);
            r.reruns_of_interrupted += n.saturating_sub(1);
            if let Some(&frozen_n) = frozen.get(&(id.clone(), t.name.clone()))
                && n != frozen_n
            {
                r.problems.push(format!(
                    "run {id}: task {} ran again after its success was recorded ({frozen_n} → {n} starts)",
                    t.name
                ));
            }
            if t.status == TaskStatus::Succeeded && counts.contains_key(&t.name) {
                let last: Vec<&str> = logs
                    .iter()
                    .filter(|l| l.task == t.name && l.attempt == t.attempts)
                    .map(|l| l.message.as_str())
                    .collect();
                let complete =
                    last.iter().any(|m| m.starts_with("sleeping")) && last.contains(&"awake");
                if !complete {
                    r.problems.push(format!(
                        "run {id}: task {} attempt {} succeeded with incomplete logs: {last:?}",
                        t.name, t.attempts
                    ));
                }
            }
        }
    }
    r.elapsed = started.elapsed();
    r
}
