//! `capstan bench --load-runs` and `--approvals`: many runs at once, and
//! many suspended approval gates, in a fresh scheduler each.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{BenchArgs, fresh, percentile, pipeline_yaml};
use crate::scheduler::{RunOptions, Scheduler};
use crate::store::RunStatus;

/// `--load-runs N`: concurrent runs, several rounds.
#[derive(Debug, Serialize)]
pub struct LoadBench {
    pub runs: usize,
    pub tasks_per_run: usize,
    pub rounds: usize,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    /// RSS after each round, all runs finished.
    pub rss_after_round_mib: Vec<f64>,
    /// Wall time of each round (all runs, concurrently).
    pub round_ms: Vec<f64>,
    /// RSS after the last round over RSS after the first: growth across
    /// rounds (≈ 1.0: no leak).
    pub last_over_first_round_rss: f64,
}

/// `--approvals N`: N tasks waiting on approval at once.
#[derive(Debug, Serialize)]
pub struct ApprovalBench {
    pub waiting_tasks: usize,
    /// Process RSS before the run (scheduler, runtime, plugin loaded).
    pub idle_rss_mib: f64,
    /// Process RSS with every task waiting.
    pub waiting_rss_mib: f64,
    pub rss_above_idle_mib: f64,
    /// Time to suspend all of them (each ran `run` once).
    pub suspend_all_ms: f64,
    /// From recording an approval to its task's Succeeded event (20 samples).
    pub resume_p50_ms: f64,
    pub resume_max_ms: f64,
    /// A warm task start measured in the same run, for scale.
    pub resume_vs_warm_start: f64,
}

pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// `--load-runs`: rounds of concurrent runs in a fresh scheduler, RSS
/// sampled every 5 ms for the peak.
pub async fn load_bench(plugin: &Path, args: &BenchArgs, tmp: &Path) -> Result<LoadBench> {
    let state = tmp.join("load");
    let (store, runtime) = fresh(&state)?;
    runtime.load_file(plugin)?;
    let sched = Arc::new(Scheduler::new(runtime, store, state.clone())?);
    let file = tmp.join("load.yaml");
    std::fs::write(&file, pipeline_yaml(plugin, args.load_tasks, "dag"))?;
    let prepared = Arc::new(
        sched
            .prepare_file(&file, &[])
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let idle = rss_mib();
    let peak = Arc::new(std::sync::Mutex::new(idle));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = rss_mib();
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(r);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let mut rss_after = Vec::new();
    let mut round_ms = Vec::new();
    for _ in 0..args.load_rounds.max(1) {
        let t = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..args.load_runs {
            let id = sched.create(
                &prepared,
                &RunOptions {
                    parallelism: 4,
                    ..RunOptions::default()
                },
            )?;
            let (sched, prepared) = (sched.clone(), prepared.clone());
            handles.push(tokio::spawn(async move {
                sched.execute(&id, &prepared, None).await.map(|s| (id, s))
            }));
        }
        for h in handles {
            let (id, status) = h.await??;
            if status != RunStatus::Succeeded {
                bail!("load run {id} ended {status}");
            }
        }
        round_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        rss_after.push(rss_mib());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let peak = *peak.lock().unwrap();
    Ok(LoadBench {
        runs: args.load_runs,
        tasks_per_run: args.load_tasks,
        rounds: rss_after.len(),
        idle_rss_mib: idle,
        peak_rss_mib: peak,
        last_over_first_round_rss: rss_after.last().unwrap() / rss_after[0],
        rss_after_round_mib: rss_after,
        round_ms,
    })
}

/// `n` parallel approval gates in one run of a fresh scheduler: suspend them
/// all, read RSS, then approve 20 of them one by one and time each from the
/// recorded decision to the task's Succeeded event. The run is cancelled
/// afterwards.
pub async fn approvals_bench(plugin: &Path, n: usize, tmp: &Path) -> Result<ApprovalBench> {
    use crate::scheduler::Event;
    use crate::store::TaskStatus;
    let plugin = std::fs::canonicalize(plugin).with_context(|| format!("{}", plugin.display()))?;
    let state = tmp.join("approvals");
    let (store, runtime) = fresh(&state)?;
    runtime.load_file(&plugin)?;
    let sched = Arc::new(Scheduler::new(runtime, store.clone(), state.clone())?);
    let mut yaml = String::from(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: bench-approvals\nspec:\n  tasks:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "    - name: g{i}\n      uses: {}\n      params: [{{ name: approvers, value: [bench] }}, {{ name: timeout, value: 1h }}]\n",
            plugin.display()
        ));
    }
    let file = tmp.join("approvals.yaml");
    std::fs::write(&file, yaml)?;
    let idle = rss_mib();
    let prepared = sched
        .prepare_file(&file, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = sched.create(
        &prepared,
        &RunOptions {
            parallelism: 64,
            ..RunOptions::default()
        },
    )?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let run = {
        let (sched, id) = (sched.clone(), id.clone());
        tokio::spawn(async move { sched.execute(&id, &prepared, Some(tx)).await })
    };
    let mut waiting = 0;
    while waiting < n {
        match rx.recv().await {
            Some(Event::Task {
                status: TaskStatus::Waiting,
                ..
            }) => waiting += 1,
            Some(Event::Task {
                status: TaskStatus::Failed,
                message,
                task,
                ..
            }) => bail!("approval gate {task} failed: {message:?}"),
            Some(_) => {}
            None => bail!("the approvals run ended early"),
        }
    }
    let suspend_all_ms = started.elapsed().as_secs_f64() * 1000.0;
    let waiting_rss = rss_mib();
    let mut samples = Vec::new();
    for i in 0..20.min(n) {
        let task = format!("g{i}");
        let t = Instant::now();
        crate::scheduler::approval::decide(&store, &id, &task, "bench", &[], true, "")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sched.wake.send_modify(|v| *v += 1);
        loop {
            match rx.recv().await {
                Some(Event::Task {
                    task: ref done,
                    status: TaskStatus::Succeeded,
                    ..
                }) if *done == task => break,
                Some(_) => {}
                None => bail!("the approvals run ended early"),
            }
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    sched
        .cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = run.await;
    samples.sort_by(f64::total_cmp);
    Ok(ApprovalBench {
        waiting_tasks: n,
        idle_rss_mib: idle,
        waiting_rss_mib: waiting_rss,
        rss_above_idle_mib: waiting_rss - idle,
        suspend_all_ms,
        resume_p50_ms: percentile(&samples, 0.5),
        resume_max_ms: samples.last().copied().unwrap_or(f64::NAN),
        resume_vs_warm_start: f64::NAN,
    })
}
