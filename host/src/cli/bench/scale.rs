//! `capstan bench --dag-scale 1000,10000,100000`: the same DAG shape at
//! growing sizes, through the whole path (validate, record, schedule, run
//! no-op tasks). If a scheduler turn cost the size of the pipeline, the time
//! per task would grow with the size; it should stay flat. Each size is
//! printed as its time per task over the smallest size's, same run.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{pipeline_yaml, run_pipeline};
use crate::scheduler::Scheduler;

/// One size of the scaled DAG.
#[derive(Debug, Serialize)]
pub struct ScalePoint {
    pub tasks: usize,
    /// Validate and record the run (prepare + create).
    pub prepare_ms: f64,
    /// Execute it (no-op tasks, 10 lanes, parallelism 16).
    pub execute_ms: f64,
    pub us_per_task: f64,
    /// `us_per_task` over the smallest size's (≈ 1: linear).
    pub per_task_vs_smallest: f64,
}

#[derive(Debug, Serialize)]
pub struct ScaleBench {
    pub points: Vec<ScalePoint>,
}

/// Run the 10-lane DAG at each size in `sizes` on `sched`.
pub async fn scale_bench(
    sched: &Scheduler,
    plugin: &Path,
    dir: &Path,
    sizes: &[usize],
    say: &(dyn Fn(&str) + Sync),
) -> Result<ScaleBench> {
    let mut points: Vec<ScalePoint> = Vec::new();
    for &n in sizes {
        say(&format!("DAG scale: {n} no-op tasks in 10 lanes"));
        let yaml = pipeline_yaml(plugin, n, "dag");
        let t = Instant::now();
        let (_, execute_ms, prepare_ms) = run_pipeline(sched, dir, &yaml, 16).await?;
        let total_ms = t.elapsed().as_secs_f64() * 1000.0;
        let us_per_task = total_ms * 1000.0 / n as f64;
        let base = points.first().map_or(us_per_task, |p| p.us_per_task);
        points.push(ScalePoint {
            tasks: n,
            prepare_ms,
            execute_ms,
            us_per_task,
            per_task_vs_smallest: us_per_task / base,
        });
    }
    Ok(ScaleBench { points })
}
