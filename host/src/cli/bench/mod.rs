//! `capstan bench`: task start latency, DAG throughput and dependent gap,
//! measured through the real scheduler path, with a process-spawn baseline
//! measured in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde::Serialize;

mod container;
mod load;
mod scale;

use super::output::ExitCode;
use super::{Cli, Output};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::scheduler::{RunOptions, Scheduler};
use crate::store::{RunStatus, RunStore};
use container::{ContainerBench, container_bench};
use load::{ApprovalBench, LoadBench, approvals_bench, load_bench};
use scale::{ScaleBench, scale_bench};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The no-op component to run (built by scripts/build-components.sh as
    /// target/guest/wasm32-wasip2/guest/noop.wasm).
    #[arg(long, env = "CAPSTAN_BENCH_PLUGIN", value_name = "FILE")]
    pub plugin: Option<PathBuf>,
    /// Independent tasks timed for start latency.
    #[arg(long, default_value_t = 2000)]
    pub start_samples: usize,
    /// Tasks in the DAG benchmark.
    #[arg(long, default_value_t = 1000)]
    pub dag_tasks: usize,
    /// Length of the dependent chain for the gap measurement.
    #[arg(long, default_value_t = 200)]
    pub chain: usize,
    /// `sh -c true` spawns for the baseline.
    #[arg(long, default_value_t = 300)]
    pub spawn_samples: usize,
    /// Also measure a cold pull from this OCI registry (oci://host:port/path):
    /// the bench plugin is published there, then resolved and pulled with an
    /// empty digest cache.
    #[arg(long, value_name = "oci://HOST/PATH")]
    pub oci_registry: Option<String>,
    /// Also suspend this many approval gates at once (measured first, in a
    /// fresh scheduler): RSS above idle, and the time from an approval to
    /// its task finishing.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub approvals: usize,
    /// Load: this many concurrent runs of --load-tasks no-op tasks each,
    /// --load-rounds times, in a fresh scheduler (measured first): total
    /// time, peak RSS, and RSS after each round (a leak shows as growth).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub load_runs: usize,
    /// Load: no-op tasks per run.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub load_tasks: usize,
    /// Load: how many times the --load-runs runs are repeated.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub load_rounds: usize,
    /// Also run the DAG at these sizes (comma-separated, e.g.
    /// 1000,10000,100000) and show the time per task against the smallest:
    /// flat means a scheduler turn does not cost the pipeline's size.
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub dag_scale: Vec<usize>,
    /// The approve plugin for --approvals (default:
    /// target/guest/wasm32-wasip2/guest/approve.wasm).
    #[arg(long, value_name = "FILE")]
    pub approve_plugin: Option<PathBuf>,
    /// Also time a container step running `true` in this image against the
    /// same container run directly on the engine (needs Docker or `podman
    /// system service`; see CAPSTAN_CONTAINER_HOST).
    #[arg(long, value_name = "IMAGE")]
    pub container: Option<String>,
    /// Runs of each kind for --container.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub container_samples: usize,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub warm_start_p50_us: f64,
    pub warm_start_p99_us: f64,
    pub spawn_p50_us: f64,
    pub spawn_p99_us: f64,
    pub start_speedup_vs_spawn: f64,
    pub dag_1000_tasks_ms: f64,
    pub dag_tasks: usize,
    pub dependent_gap_p50_us: f64,
    pub dependent_gap_p99_us: f64,
    pub cold_load_ms: f64,
    pub warm_load_ms: f64,
    /// Resolve `noop@0.1` in the local registry (index read, blob read and
    /// digest check) and load it in a new runtime whose compiled artifact is
    /// cached on disk: median of 50.
    pub registry_resolve_load_p50_ms: f64,
    /// With `--oci-registry`: resolve `noop@0.1` (tag list, manifests,
    /// status) and pull its component into an empty digest cache: median of 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_cold_pull_p50_ms: Option<f64>,
    /// The cold OCI pull over the local registry's cached resolve+load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_cold_pull_vs_local_cached: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerBench>,
}

/// A run store and a runtime over a new state directory (the compiled
/// plugin cache inside it).
fn fresh(state: &Path) -> Result<(Arc<RunStore>, Arc<Runtime>)> {
    let store = Arc::new(RunStore::open(state)?);
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(state.join("cache")),
        ..Default::default()
    })?);
    Ok((store, runtime))
}

fn default_plugin() -> Option<PathBuf> {
    guest_component("noop")
}

fn guest_component(name: &str) -> Option<PathBuf> {
    let rel = PathBuf::from(format!("target/guest/wasm32-wasip2/guest/{name}.wasm"));
    let rel = rel.as_path();
    let mut candidates = vec![std::env::current_dir().ok()?.join(rel)];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/capstan → <root>/target/guest/...
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join(rel));
        }
    }
    candidates.into_iter().find(|p| p.exists())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn pipeline_yaml(plugin: &Path, tasks: usize, shape: &str) -> String {
    let mut s = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: bench-{shape}\nspec:\n  tasks:\n"
    );
    for i in 0..tasks {
        s.push_str(&format!(
            "    - name: t{i}\n      uses: {}\n",
            plugin.display()
        ));
        match shape {
            "chain" if i > 0 => s.push_str(&format!("      runAfter: [t{}]\n", i - 1)),
            // 10 parallel lanes; each task waits for the one 10 before it.
            "dag" if i >= 10 => s.push_str(&format!("      runAfter: [t{}]\n", i - 10)),
            _ => {}
        }
    }
    s
}

/// Run a pipeline: its id, the execution time and the time to validate and
/// record it (ms).
async fn run_pipeline(
    sched: &Scheduler,
    dir: &Path,
    yaml: &str,
    parallelism: usize,
) -> Result<(String, f64, f64)> {
    let file = dir.join(format!("p{}.yaml", yaml.len()));
    std::fs::write(&file, yaml)?;
    let t = Instant::now();
    let prepared = sched
        .prepare_file(&file, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = sched.create(
        &prepared,
        &RunOptions {
            parallelism,
            ..RunOptions::default()
        },
    )?;
    let prepare_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let status = sched.execute(&id, &prepared, None).await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status != RunStatus::Succeeded {
        bail!("benchmark run {id} ended {status}");
    }
    Ok((id, ms, prepare_ms))
}

pub async fn bench(cli: &Cli, args: &BenchArgs) -> Result<ExitCode> {
    let plugin = args.plugin.clone().or_else(default_plugin).context(
        "no benchmark component: run scripts/build-components.sh (builds target/guest/wasm32-wasip2/guest/noop.wasm) \
         or pass --plugin FILE",
    )?;
    let plugin = std::fs::canonicalize(&plugin).with_context(|| format!("{}", plugin.display()))?;
    let tmp = tempdir()?;
    let load = if args.load_runs > 0 {
        if cli.output == Output::Text {
            eprintln!(
                "load: {} concurrent runs of {} tasks, {} rounds…",
                args.load_runs, args.load_tasks, args.load_rounds
            );
        }
        Some(load_bench(&plugin, args, &tmp).await?)
    } else {
        None
    };
    let approvals = if args.approvals > 0 {
        let approve = args
            .approve_plugin
            .clone()
            .or_else(|| guest_component("approve"))
            .context("no approve component: run scripts/build-components.sh or pass --approve-plugin FILE")?;
        if cli.output == Output::Text {
            eprintln!("approvals: suspending {} approval gates…", args.approvals);
        }
        Some(approvals_bench(&approve, args.approvals, &tmp).await?)
    } else {
        None
    };
    let state = tmp.join("state");
    let (store, runtime) = fresh(&state)?;
    let text = cli.output == Output::Text;
    let say = |s: &str| {
        if text {
            eprintln!("{s}");
        }
    };

    // Plugin load: cold (compile + cache write) and warm (cache hit in a new runtime).
    let t = Instant::now();
    runtime.load_file(&plugin)?;
    let cold_load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let runtime2 = Runtime::new(RuntimeConfig {
        cache_dir: Some(state.join("cache")),
        ..Default::default()
    })?;
    let t = Instant::now();
    runtime2.load_file(&plugin)?;
    let warm_load_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(runtime2);

    // Registry: resolve + load an already cached version.
    let registry = capstan_registry::Registry::Local(capstan_registry::LocalRegistry::open(
        &state.join("registry"),
    )?);
    let oci = crate::resolve::oci_options(&state, None);
    let bytes = std::fs::read(&plugin)?;
    let info = crate::manifest::inspect(&bytes, &plugin.display().to_string())?;
    registry.publish(
        &info.manifest.name,
        &info.manifest.version,
        &bytes,
        serde_json::to_value(&info.manifest)?,
        &capstan_registry::ComponentWorld::default(),
    )?;
    let reference = format!("{}@{}", info.manifest.name, info.manifest.version);
    let mut resolve_load = Vec::new();
    for _ in 0..50 {
        let fresh = Runtime::new(RuntimeConfig {
            cache_dir: Some(state.join("cache")),
            max_instances: 4,
            ..Default::default()
        })?;
        let t = Instant::now();
        let resolver = crate::resolve::Resolver {
            registry: &registry,
            oci: &oci,
            base_dir: &tmp,
            lock: None,
            mode: crate::resolve::LockMode::Prefer,
            policy: &crate::caps::grant::NoCeilings,
        };
        let resolved = resolver
            .resolve(&reference, None)
            .map_err(anyhow::Error::msg)?;
        fresh.load_bytes(&resolved.bytes, &resolved.origin)?;
        resolve_load.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    resolve_load.sort_by(f64::total_cmp);

    let oci_cold_pull = match &args.oci_registry {
        Some(url) => {
            say(&format!("registry: cold pulls from {url}"));
            Some(oci_cold_pull(url, &tmp, &bytes, &info, &reference)?)
        }
        None => None,
    };

    let sched = Scheduler::new(runtime, store.clone(), state.clone())?;

    // Baseline: spawn `sh -c true` and wait.
    say(&format!(
        "baseline: spawning `sh -c true` {} times",
        args.spawn_samples
    ));
    let mut spawn = Vec::with_capacity(args.spawn_samples);
    for _ in 0..args.spawn_samples {
        let t = Instant::now();
        let st = std::process::Command::new("sh")
            .args(["-c", "true"])
            .status()?;
        spawn.push(t.elapsed().as_secs_f64() * 1e6);
        if !st.success() {
            bail!("`sh -c true` failed");
        }
    }
    spawn.sort_by(f64::total_cmp);

    // Warm start: independent tasks, one at a time, dispatch → plugin entered.
    say(&format!(
        "warm start: {} no-op tasks, parallelism 1",
        args.start_samples
    ));
    run_pipeline(&sched, &tmp, &pipeline_yaml(&plugin, 50, "warmup"), 1).await?;
    let (id, ..) = run_pipeline(
        &sched,
        &tmp,
        &pipeline_yaml(&plugin, args.start_samples, "start"),
        1,
    )
    .await?;
    let mut starts: Vec<f64> = store
        .attempts(&id)?
        .iter()
        .filter_map(|a| a.entered_at.map(|e| (e - a.dispatched_at) as f64))
        .collect();
    starts.sort_by(f64::total_cmp);
    if starts.len() != args.start_samples {
        bail!(
            "only {} of {} tasks reported entering the plugin",
            starts.len(),
            args.start_samples
        );
    }

    say(&format!(
        "DAG: {} no-op tasks in 10 lanes, parallelism 16",
        args.dag_tasks
    ));
    let (_, dag_ms, _) = run_pipeline(
        &sched,
        &tmp,
        &pipeline_yaml(&plugin, args.dag_tasks, "dag"),
        16,
    )
    .await?;

    say(&format!("dependent gap: a chain of {} tasks", args.chain));
    let (id, ..) = run_pipeline(
        &sched,
        &tmp,
        &pipeline_yaml(&plugin, args.chain, "chain"),
        16,
    )
    .await?;
    let attempts = store.attempts(&id)?;
    let by_task: std::collections::HashMap<&str, &crate::store::AttemptRecord> =
        attempts.iter().map(|a| (a.task.as_str(), a)).collect();
    let mut gaps = Vec::new();
    for i in 1..args.chain {
        let prev = by_task[format!("t{}", i - 1).as_str()];
        let cur = by_task[format!("t{i}").as_str()];
        if let (Some(end), Some(entered)) = (prev.finished_at, cur.entered_at) {
            gaps.push((entered - end) as f64);
        }
    }
    gaps.sort_by(f64::total_cmp);

    let scale = if args.dag_scale.is_empty() {
        None
    } else {
        Some(scale_bench(&sched, &plugin, &tmp, &args.dag_scale, &say).await?)
    };

    let container = match &args.container {
        None => None,
        Some(image) => {
            let script = guest_component("script")
                .context("no script component: run scripts/build-components.sh plugins")?;
            let n = args.container_samples.max(1);
            Some(container_bench(&sched, &script, image, n, &tmp, &say).await?)
        }
    };

    let report = BenchReport {
        scale,
        container,
        warm_start_p50_us: percentile(&starts, 0.5),
        warm_start_p99_us: percentile(&starts, 0.99),
        spawn_p50_us: percentile(&spawn, 0.5),
        spawn_p99_us: percentile(&spawn, 0.99),
        start_speedup_vs_spawn: percentile(&spawn, 0.5) / percentile(&starts, 0.5),
        dag_1000_tasks_ms: dag_ms * 1000.0 / args.dag_tasks as f64,
        dag_tasks: args.dag_tasks,
        dependent_gap_p50_us: percentile(&gaps, 0.5),
        dependent_gap_p99_us: percentile(&gaps, 0.99),
        cold_load_ms,
        warm_load_ms,
        registry_resolve_load_p50_ms: percentile(&resolve_load, 0.5),
        oci_cold_pull_p50_ms: oci_cold_pull,
        oci_cold_pull_vs_local_cached: oci_cold_pull.map(|ms| ms / percentile(&resolve_load, 0.5)),
        load,
        approvals: approvals.map(|mut a| {
            a.resume_vs_warm_start = a.resume_p50_ms * 1000.0 / percentile(&starts, 0.5);
            a
        }),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::Ok)
}

/// The report for people.
fn print_text(r: &BenchReport) {
    print_core(r);
    if let Some(sc) = &r.scale {
        for p in &sc.points {
            println!(
                "  DAG of {:>7} tasks  {:>8.0} ms run + {:>6.0} ms validate/record   {:>6.1} µs/task   ({:.2}× the smallest per task)",
                p.tasks, p.execute_ms, p.prepare_ms, p.us_per_task, p.per_task_vs_smallest
            );
        }
    }
    if let Some(c) = &r.container {
        c.print();
    }
}

fn print_core(r: &BenchReport) {
    println!(
        "capstan bench ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "  warm task start      p50 {:>9.1} µs   p99 {:>9.1} µs   (target p50 ≤ 50 µs)",
        r.warm_start_p50_us, r.warm_start_p99_us
    );
    println!(
        "  spawn `sh -c true`   p50 {:>9.1} µs   p99 {:>9.1} µs",
        r.spawn_p50_us, r.spawn_p99_us
    );
    println!(
        "  start vs spawn       {:.1}× faster   (target ≥ 20×)",
        r.start_speedup_vs_spawn
    );
    println!(
        "  1,000-task DAG       {:>9.1} ms   (target ≤ 1000 ms; measured {} tasks)",
        r.dag_1000_tasks_ms, r.dag_tasks
    );
    println!(
        "  dependent gap        p50 {:>9.1} µs   p99 {:>9.1} µs   (target p99 ≤ 1000 µs)",
        r.dependent_gap_p50_us, r.dependent_gap_p99_us
    );
    println!(
        "  plugin load          cold {:.1} ms (compile)   warm {:.2} ms (cached artifact)",
        r.cold_load_ms, r.warm_load_ms
    );
    println!(
        "  registry resolve+load p50 {:.2} ms   (cached version; target ≤ 1 ms)",
        r.registry_resolve_load_p50_ms
    );
    if let (Some(ms), Some(x)) = (r.oci_cold_pull_p50_ms, r.oci_cold_pull_vs_local_cached) {
        println!("  OCI cold pull        p50 {ms:.2} ms   ({x:.1}× the cached local resolve+load)");
    }
    if let Some(l) = &r.load {
        println!(
            "  load                 {} runs × {} tasks concurrently, {} rounds: {:.0} ms per round (median), peak RSS {:.1} MiB (idle {:.1})",
            l.runs,
            l.tasks_per_run,
            l.rounds,
            {
                let mut v = l.round_ms.clone();
                v.sort_by(f64::total_cmp);
                percentile(&v, 0.5)
            },
            l.peak_rss_mib,
            l.idle_rss_mib
        );
        println!(
            "  load RSS per round   {} MiB (last/first {:.2})",
            l.rss_after_round_mib
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            l.last_over_first_round_rss
        );
    }
    if let Some(a) = &r.approvals {
        println!(
            "  {} waiting approvals  RSS {:.1} MiB above idle ({:.1} → {:.1} MiB; target ≤ 100 MiB); all suspended in {:.0} ms",
            a.waiting_tasks,
            a.rss_above_idle_mib,
            a.idle_rss_mib,
            a.waiting_rss_mib,
            a.suspend_all_ms
        );
        println!(
            "  approve → resumed    p50 {:.2} ms   max {:.2} ms   (target ≤ 10 ms; {:.0}× a warm task start)",
            a.resume_p50_ms, a.resume_max_ms, a.resume_vs_warm_start
        );
    }
}

/// Publish the bench plugin to an OCI registry, then time resolve + pull
/// with an empty digest cache each time.
fn oci_cold_pull(
    url: &str,
    tmp: &Path,
    bytes: &[u8],
    info: &crate::manifest::ComponentInfo,
    reference: &str,
) -> Result<f64> {
    let options = |n: usize| crate::resolve::oci_options(&tmp.join(format!("oci-{n}")), None);
    let registry = capstan_registry::Registry::open(url, &options(0))?;
    registry.publish(
        &info.manifest.name,
        &info.manifest.version,
        bytes,
        serde_json::to_value(&info.manifest)?,
        &capstan_registry::ComponentWorld {
            imports: info.imports.clone(),
            exports: info.exports.clone(),
        },
    )?;
    let mut pulls = Vec::new();
    for n in 1..=10 {
        let opts = options(n);
        let t = Instant::now();
        let registry = capstan_registry::Registry::open(url, &opts)?;
        let resolver = crate::resolve::Resolver {
            registry: &registry,
            oci: &opts,
            base_dir: tmp,
            lock: None,
            mode: crate::resolve::LockMode::Prefer,
            policy: &crate::caps::grant::NoCeilings,
        };
        let resolved = resolver
            .resolve(reference, None)
            .map_err(anyhow::Error::msg)?;
        pulls.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(resolved.bytes == bytes, "pulled other bytes than published");
    }
    pulls.sort_by(f64::total_cmp);
    Ok(percentile(&pulls, 0.5))
}

fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("capstan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
