//! `capstan run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, Result};
use clap::Args;

use super::output::{ExitCode, show_run};
use super::progress::Renderer;
use super::{Cli, Output};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::scheduler::{PrepareError, RunOptions, Scheduler};
use crate::store::RunStore;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  capstan run examples/hello/pipeline.yaml\n  \
    capstan run ci.yaml -p revision=v1.2.0 -w source=./checkout\n  \
    capstan run ci.yaml --locked -o json"
)]
pub struct RunArgs {
    /// The pipeline file (a Pipeline, a PipelineRun, or both).
    pub file: PathBuf,
    /// A pipeline param: `-p name=value` (arrays/objects as JSON).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// Bind a pipeline workspace to a directory: `--workspace name=DIR`.
    /// Unbound workspaces get a fresh directory under the state dir.
    #[arg(short = 'w', long = "workspace", value_name = "NAME=DIR", value_parser = parse_kv)]
    pub workspaces: Vec<(String, String)>,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = 16)]
    pub parallelism: usize,
    /// Per-task memory limit in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub memory_limit: usize,
    /// Validate the pipeline and its plugins, then stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse to run unless capstan.lock pins every registry reference.
    #[arg(long)]
    pub locked: bool,
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}`: expected NAME=VALUE"))
}

/// The runtime + store + scheduler every command that executes runs uses.
pub(crate) fn scheduler(cli: &Cli, memory_mib: usize) -> Result<Scheduler> {
    let state = cli.state_dir();
    let store = Arc::new(RunStore::open(&state)?);
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        max_memory_bytes: memory_mib.max(1) << 20,
        cache_dir: Some(state.join("cache")),
        ..RuntimeConfig::default()
    })?);
    let mut s = Scheduler::new(runtime, store, state)?;
    s.registry = cli.registry()?;
    s.oci = cli.oci_options();
    s.policy = cli.policy()?;
    s.limits.memory_bytes = memory_mib.max(1) << 20;
    s.public_url = cli.public_url.clone();
    Ok(s)
}

/// Locally, the kube capability uses the kubeconfig (`KUBECONFIG` or
/// `~/.kube/config`); a client is made only if some task is granted `kube`.
pub(crate) async fn kube_client_for(
    prepared: &crate::scheduler::Prepared,
) -> Result<Option<kube::Client>> {
    if prepared
        .plan
        .tasks
        .iter()
        .all(|t| t.spec.grants.kube.is_empty())
    {
        return Ok(None);
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "a task is granted `kube`, but no Kubernetes API is reachable from the kubeconfig: {e}"
        )
    })?;
    Ok(Some(client))
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    let mut sched = scheduler(cli, args.memory_limit)?;
    if args.locked {
        sched.lock_mode = crate::resolve::LockMode::Require;
    }
    let prepared = match sched.prepare_file(&args.file, &args.params) {
        Ok(p) => p,
        Err(PrepareError::Invalid(d)) => {
            if cli.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({ "error": "invalid", "problems": d.0 })
                );
            }
            eprintln!(
                "error: {}",
                crate::escape::lines_for_terminal(&d.to_string())
            );
            return Ok(ExitCode::Invalid);
        }
        Err(PrepareError::Other(e)) => return Err(e),
    };
    for w in &prepared.warnings {
        eprintln!("warning: {}", crate::escape::lines_for_terminal(w));
    }
    if !args.dry_run {
        sched.kube_client = kube_client_for(&prepared).await?;
    }
    if args.dry_run {
        if cli.output == Output::Json {
            println!(
                "{}",
                serde_json::json!({ "valid": true, "pipeline": prepared.plan.name, "tasks": prepared.plan.tasks.len() })
            );
        } else {
            println!(
                "{}: valid ({} tasks)",
                args.file.display(),
                prepared.plan.tasks.len()
            );
        }
        return Ok(ExitCode::Ok);
    }
    let opts = RunOptions {
        parallelism: args.parallelism,
        workspaces: args
            .workspaces
            .iter()
            .map(|(k, v)| (k.clone(), PathBuf::from(v)))
            .collect::<BTreeMap<_, _>>(),
        triggered_by: Some(crate::store::TriggeredBy::Cli {
            user: super::local_user(),
        }),
        ..RunOptions::default()
    };
    let id = match sched.create(&prepared, &opts) {
        Ok(id) => id,
        Err(e) => match e.downcast::<PrepareError>() {
            Ok(PrepareError::Invalid(d)) => {
                eprintln!(
                    "error: {}",
                    crate::escape::lines_for_terminal(&d.to_string())
                );
                return Ok(ExitCode::Invalid);
            }
            Ok(PrepareError::Other(e)) => return Err(e),
            Err(e) => return Err(e),
        },
    };
    execute(cli, &sched, &id, &prepared).await
}

/// Execute a recorded run with live progress, then print its summary.
pub(crate) async fn execute(
    cli: &Cli,
    sched: &Scheduler,
    id: &str,
    prepared: &crate::scheduler::Prepared,
) -> Result<ExitCode> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let renderer = Renderer::start(id, prepared, rx, cli.output == Output::Text, cli.verbose);
    let cancel = sched.cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: cancelling the run (Ctrl-C again to leave it for `capstan runs resume`)"
            );
            cancel.store(true, Ordering::Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let result = sched.execute(id, prepared, Some(tx)).await;
    ctrl_c.abort();
    renderer.finish().await;
    let status = result.with_context(|| format!("executing run {id}"))?;
    show_run(&sched.store, id, cli.output == Output::Json)?;
    Ok(ExitCode::for_status(status))
}
