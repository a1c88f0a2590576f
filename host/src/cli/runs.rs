//! `capstan runs ...` and `capstan logs`.

use crate::escape::for_terminal;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::output::{ExitCode, duration, run_json, show_run, time};
use super::{Cli, Output};
use crate::scheduler::{PrepareError, StopOutcome};
use crate::store::{RunStatus, RunStore, StopMode};
use crate::view::LogLineJson;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    #[command(
        after_help = "Examples:\n  capstan runs list --limit 5\n  capstan runs list --status Failed --pipeline build\n  \
        capstan runs list -o json | jq '.[0].run_id'\n  capstan runs list --before \"$(capstan runs list -o json | jq -r '.[-1].cursor')\""
    )]
    List {
        /// How many runs to list (newest first).
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Only runs with this status (Queued, Running, Succeeded, Failed,
        /// Cancelled, TimedOut).
        #[arg(long, value_name = "STATUS", value_parser = |s: &str| s.parse::<crate::store::RunStatus>())]
        status: Option<crate::store::RunStatus>,
        /// Only runs of this pipeline.
        #[arg(long, value_name = "NAME")]
        pipeline: Option<String>,
        /// Only runs a webhook or schedule of this repository started.
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
        /// Only runs older than this one: a run's `cursor` (`-o json`), for
        /// the next page.
        #[arg(long, value_name = "CURSOR", value_parser = |s: &str| s.parse::<crate::store::Cursor>())]
        before: Option<crate::store::Cursor>,
    },
    /// Show a run: status, tasks, attempts, results.
    Show {
        /// The run's id (as `capstan runs list` shows it).
        run_id: String,
    },
    /// Continue a run interrupted by a crash or kill: succeeded tasks are
    /// kept; tasks that were running start a new attempt.
    Resume {
        /// The run's id (as `capstan runs list` shows it).
        run_id: String,
        /// Per-task memory limit in MiB.
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        memory_limit: usize,
    },
    /// Cancel a run: stop its running tasks now. Its `finally` tasks do
    /// not run unless --run-finally (Tekton's `Cancelled` and
    /// `CancelledRunFinally`).
    #[command(after_help = "Examples:\n  capstan runs cancel build-x2k4mzq7ab\n  \
        capstan runs cancel build-x2k4mzq7ab --run-finally")]
    Cancel {
        /// The run's id (as `capstan runs list` shows it).
        run_id: String,
        /// Stop the running tasks, then run the `finally` tasks.
        #[arg(long)]
        run_finally: bool,
    },
    /// Run a run again, as a new run: the same pipeline text, params and
    /// plugin digests. With --failed, the tasks that succeeded are not run
    /// again: their results are reused (and the run keeps its workspace
    /// directories), and `runs show` says where each came from.
    #[command(
        after_help = "Examples:\n  capstan runs rerun build-x2k4mzq7ab\n  capstan runs rerun build-x2k4mzq7ab --failed"
    )]
    Rerun {
        /// The run's id (as `capstan runs list` shows it).
        run_id: String,
        /// Only what did not succeed: reuse the results of the tasks that did.
        #[arg(long)]
        failed: bool,
    },
    /// Stop a run gracefully: start no new task, let running ones finish
    /// (with their retries), then run the `finally` tasks (Tekton's
    /// `StoppedRunFinally`).
    #[command(after_help = "Example:\n  capstan runs stop build-x2k4mzq7ab")]
    Stop {
        /// The run's id (as `capstan runs list` shows it).
        run_id: String,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  capstan logs build-x2k4mzq7ab --task test\n  capstan logs build-x2k4mzq7ab -f"
)]
pub struct LogsArgs {
    /// The run's id (as `capstan runs list` shows it).
    pub run_id: String,
    /// Only this task's lines.
    #[arg(long)]
    pub task: Option<String>,
    /// Keep printing new lines until the run ends.
    #[arg(long, short = 'f')]
    pub follow: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Talk to a scheduler's API (`capstan serve`, `capstan controller
/// --listen`) instead of reading the local state directory.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The API's address, `http://HOST:PORT`.
    #[arg(long, env = "CAPSTAN_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Bearer token for --server (default: the kubeconfig user's token).
    #[arg(
        long,
        env = "CAPSTAN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl RemoteArgs {
    pub fn client(&self) -> Result<Option<crate::api::client::ApiClient>> {
        self.server
            .as_deref()
            .map(|s| crate::api::client::ApiClient::new(s, self.token.clone()))
            .transpose()
    }
}

/// A run the store says is Running but no process executes (its executor
/// was killed): `runs resume` continues it.
fn orphaned(cli: &Cli, r: &crate::store::RunRecord) -> bool {
    r.status == RunStatus::Running && !crate::scheduler::run_is_active(&cli.state_dir(), &r.id)
}

pub async fn runs(cli: &Cli, cmd: &RunsCommand) -> Result<ExitCode> {
    let json = cli.output == Output::Json;
    match cmd {
        RunsCommand::List {
            limit,
            status,
            pipeline,
            repository,
            before,
        } => {
            let store = RunStore::open(&cli.state_dir())?;
            let filter = crate::store::RunFilter {
                status: *status,
                pipeline: pipeline.clone(),
                repository: repository.clone(),
                before: before.clone(),
                ..Default::default()
            };
            let runs = store.list_runs_page(&filter, *limit)?;
            if json {
                let all: Vec<_> = runs
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "run_id": r.id, "pipeline": r.pipeline, "status": r.status.as_str(),
                            "orphaned": orphaned(cli, r), "number": r.number,
                            "triggered_by": r.spec.triggered_by,
                            "cursor": crate::store::Cursor::of(r).to_string(),
                            "created": time(r.created_at), "start": r.started_at.map(time), "end": r.finished_at.map(time),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:40}  {:20}  {:>5}  {:9}  {:24}  {:9}  BY",
                    "RUN", "PIPELINE", "#", "STATUS", "CREATED", "DURATION"
                );
                let mut any_orphan = false;
                for r in runs {
                    let status = if orphaned(cli, &r) {
                        any_orphan = true;
                        "Orphaned".to_string()
                    } else {
                        r.status.as_str().to_string()
                    };
                    println!(
                        "{:40}  {:20}  {:>5}  {:9}  {:24}  {:9}  {}",
                        r.id,
                        for_terminal(&r.pipeline),
                        r.number.map_or("-".to_string(), |n| n.to_string()),
                        status,
                        time(r.created_at),
                        duration(r.started_at, r.finished_at),
                        for_terminal(
                            &r.spec
                                .triggered_by
                                .as_ref()
                                .map_or("-".to_string(), |t| t.describe())
                        )
                    );
                }
                if any_orphan {
                    eprintln!(
                        "Orphaned: the store says Running but no process is executing the run \
                         (its scheduler was killed); continue it with `capstan runs resume RUN`"
                    );
                }
            }
            Ok(ExitCode::Ok)
        }
        RunsCommand::Show { run_id } => {
            let store = RunStore::open(&cli.state_dir())?;
            if json {
                let run = store.run(run_id)?;
                let tasks = store.tasks(run_id)?;
                let attempts = store.attempts(run_id)?;
                let mut v = serde_json::to_value(run_json(&run, &tasks))?;
                v["orphaned"] = serde_json::Value::Bool(orphaned(cli, &run));
                v["attempts"] = serde_json::to_value(crate::view::attempts_json(&attempts))?;
                v["approvals"] = approvals_json(&store, run_id)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let run = show_run(&store, run_id, false)?;
                if orphaned(cli, &run) {
                    println!(
                        "  orphaned: no process is executing this run (its scheduler was killed); \
                         continue it with `capstan runs resume {run_id}`"
                    );
                }
                let attempts = store.attempts(run_id)?;
                if !attempts.is_empty() {
                    println!("attempts:");
                    for a in attempts {
                        println!(
                            "  {}#{}  {}  {}  {}",
                            a.task,
                            a.attempt,
                            a.status,
                            duration(Some(a.dispatched_at), a.finished_at),
                            for_terminal(&a.message.unwrap_or_default())
                        );
                    }
                }
                let decisions = store.decisions(run_id)?;
                for w in store.waits_of_run(run_id)? {
                    println!(
                        "approval {}: {} (since {})",
                        w.task,
                        for_terminal(&w.phase),
                        time(w.since)
                    );
                    for d in decisions.iter().filter(|d| d.task == w.task) {
                        let refused = d
                            .reason
                            .as_deref()
                            .map(|r| format!("  REFUSED: {}", for_terminal(r)))
                            .unwrap_or_default();
                        println!(
                            "  {}  {} by {}  {}{refused}",
                            time(d.at),
                            d.decision,
                            for_terminal(&d.user),
                            for_terminal(&d.comment)
                        );
                    }
                }
            }
            Ok(ExitCode::Ok)
        }
        RunsCommand::Resume {
            run_id,
            memory_limit,
        } => {
            let mut sched = super::run::scheduler(cli, *memory_limit)?;
            let rec = sched.store.run(run_id)?;
            if rec.status.is_terminal() {
                eprintln!("run {run_id} already finished: {}", rec.status);
                show_run(&sched.store, run_id, json)?;
                return Ok(ExitCode::for_status(rec.status));
            }
            execute_recorded(cli, &mut sched, run_id, "resume").await
        }
        RunsCommand::Cancel {
            run_id,
            run_finally,
        } => {
            let mode = if *run_finally {
                StopMode::CancelRunFinally
            } else {
                StopMode::Cancel
            };
            stop(cli, run_id, mode, json).await
        }
        RunsCommand::Stop { run_id } => stop(cli, run_id, StopMode::Stop, json).await,
        RunsCommand::Rerun { run_id, failed } => {
            let mut sched = super::run::scheduler(cli, 256)?;
            let (id, prepared) = match sched.rerun(run_id, *failed, &super::local_user()) {
                Ok(x) => x,
                Err(e) if sched.store.run(run_id).is_ok() => {
                    return Err(super::Invalid(format!("{e:#}")).into());
                }
                Err(e) => return Err(e),
            };
            if !json {
                eprintln!(
                    "run {id}: a re-run of {run_id}{}",
                    if *failed { " (failed tasks only)" } else { "" }
                );
            }
            sched.kube_client = super::run::kube_client_for(&prepared).await?;
            super::run::execute(cli, &sched, &id, &prepared).await
        }
    }
}

/// Execute a recorded run here (resume it, or carry out a stop): reload
/// it from the text and digests stored with it.
async fn execute_recorded(
    cli: &Cli,
    sched: &mut crate::scheduler::Scheduler,
    run_id: &str,
    verb: &str,
) -> Result<ExitCode> {
    let prepared = match sched.reload(run_id) {
        Ok(p) => p,
        Err(PrepareError::Invalid(d)) => {
            eprintln!("error: cannot {verb} {run_id}: {d}");
            return Ok(ExitCode::Invalid);
        }
        Err(PrepareError::Other(e)) => return Err(e),
    };
    sched.kube_client = super::run::kube_client_for(&prepared).await?;
    super::run::execute(cli, sched, run_id, &prepared).await
}

/// `runs cancel` and `runs stop`: ask, and if no process executes the run
/// and its `finally` tasks must run, execute it here.
async fn stop(cli: &Cli, run_id: &str, mode: StopMode, json: bool) -> Result<ExitCode> {
    let mut sched = super::run::scheduler(cli, 256)?;
    let what = match mode {
        StopMode::Stop => "stop",
        _ => "cancellation",
    };
    match sched.stop_run(run_id, mode)? {
        StopOutcome::Ended(status) => {
            if json {
                show_run(&sched.store, run_id, true)?;
            } else {
                println!("run {run_id}: {status}");
            }
            Ok(ExitCode::Ok)
        }
        StopOutcome::Requested => {
            if json {
                show_run(&sched.store, run_id, true)?;
            } else {
                println!(
                    "run {run_id}: {what} requested ({}); the executing process carries it out",
                    mode.as_str()
                );
            }
            Ok(ExitCode::Ok)
        }
        StopOutcome::NeedsExecution => {
            if !json {
                eprintln!("run {run_id}: no process executes it; running its finally tasks here");
            }
            match execute_recorded(cli, &mut sched, run_id, "execute").await? {
                ExitCode::Invalid => Ok(ExitCode::Invalid),
                _ => Ok(ExitCode::Ok),
            }
        }
    }
}

/// A run's approvals: each wait with its phase history and decisions.
pub fn approvals_json(store: &RunStore, run_id: &str) -> Result<serde_json::Value> {
    let decisions = store.decisions(run_id)?;
    let mut out = Vec::new();
    for w in store.waits_of_run(run_id)? {
        let history: Vec<serde_json::Value> = w
            .history
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut h| {
                if let Some(at) = h["at"].as_i64() {
                    h["at"] = time(at).into();
                }
                h
            })
            .collect();
        let ds: Vec<serde_json::Value> = decisions
            .iter()
            .filter(|d| d.task == w.task)
            .map(|d| {
                serde_json::json!({
                    "user": d.user, "groups": d.groups, "decision": d.decision,
                    "comment": d.comment, "at": time(d.at), "accepted": d.accepted,
                    "reason": d.reason, "applied": d.applied,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "task": w.task, "phase": w.phase, "since": time(w.since),
            "deadline": time(w.deadline), "approvers": crate::scheduler::approval::approvers(&w.detail),
            "required": w.detail["required"], "history": history, "decisions": ds,
        }));
    }
    Ok(serde_json::Value::Array(out))
}

/// `--task` naming no task of the run: an error listing the run's tasks.
fn unknown_task(run_id: &str, task: &str, names: &[String]) -> Option<ExitCode> {
    if names.iter().any(|n| n == task) {
        return None;
    }
    eprintln!(
        "error: run {run_id} has no task `{}`; its tasks: {}",
        for_terminal(task),
        names.join(", ")
    );
    Some(ExitCode::Invalid)
}

/// `capstan logs --server`: the same, through the API.
async fn remote_logs(
    cli: &Cli,
    args: &LogsArgs,
    api: &crate::api::client::ApiClient,
) -> Result<ExitCode> {
    if let Some(task) = &args.task {
        let run = api
            .get(&format!(
                "/v1/runs/{}",
                form_urlencoded::byte_serialize(args.run_id.as_bytes()).collect::<String>()
            ))
            .await?;
        let names: Vec<String> = run["tasks"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(code) = unknown_task(&args.run_id, task, &names) {
            return Ok(code);
        }
    }
    let mut after = 0;
    loop {
        // Both come from the command line: encoded, so `&`, `/` or `#` in
        // them cannot change the request.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut path = format!("/v1/runs/{}/logs?after={after}", enc(&args.run_id));
        if let Some(t) = &args.task {
            path.push_str(&format!("&task={}", enc(t)));
        }
        let v = api.get(&path).await?;
        let lines: Vec<LogLineJson> = serde_json::from_value(v["lines"].clone())?;
        for l in &lines {
            print_line(cli, l)?;
            after = l.id;
        }
        if lines.len() >= 1000 {
            continue;
        }
        if !args.follow || v["terminal"].as_bool() == Some(true) {
            return Ok(ExitCode::Ok);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn logs(cli: &Cli, args: &LogsArgs) -> Result<ExitCode> {
    if let Some(api) = args.remote.client()? {
        return remote_logs(cli, args, &api).await;
    }
    let store = RunStore::open(&cli.state_dir())?;
    store.run(&args.run_id)?;
    if let Some(task) = &args.task {
        let names: Vec<String> = store
            .tasks(&args.run_id)?
            .into_iter()
            .map(|t| t.name)
            .collect();
        if let Some(code) = unknown_task(&args.run_id, task, &names) {
            return Ok(code);
        }
    }
    let mut after = 0;
    loop {
        // The status is read before the lines: the executor writes a terminal
        // status after a run's last log line, so then every line is seen.
        let status = store.run(&args.run_id)?.status;
        loop {
            let lines = store.logs(&args.run_id, args.task.as_deref(), None, after, 1000)?;
            for l in &lines {
                print_line(cli, &l.into())?;
                after = l.id;
            }
            if lines.len() < 1000 {
                break;
            }
        }
        if !args.follow || status.is_terminal() {
            return Ok(ExitCode::Ok);
        }
        let orphaned = status == RunStatus::Running
            && !crate::scheduler::run_is_active(&cli.state_dir(), &args.run_id)
            && !store.run(&args.run_id)?.status.is_terminal();
        if orphaned {
            eprintln!(
                "run {} is {status} but no process is executing it; continue it with `capstan runs resume {}`",
                args.run_id, args.run_id
            );
            return Ok(ExitCode::RunFailed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_line(cli: &Cli, l: &LogLineJson) -> Result<()> {
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string(l)?);
    } else {
        println!(
            "{} {}#{} {:5} {}",
            l.time,
            l.task,
            l.attempt,
            l.level.as_str(),
            for_terminal(&l.message)
        );
    }
    Ok(())
}
