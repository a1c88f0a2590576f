//! `capstan approve` and `capstan approvals list`.

use crate::escape::for_terminal;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::runs::RemoteArgs;
use super::{Cli, ExitCode, Output};
use crate::scheduler::approval::{self, DecideError};
use crate::store::RunStore;

/// `capstan approve RUN_ID --task NAME`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  capstan approve release-x2k4mzq7ab --task gate --comment lgtm\n  \
    capstan approve release-x2k4mzq7ab --task gate --reject --comment 'not today'"
)]
pub struct ApproveArgs {
    /// The run's id (as `capstan approvals list` shows it).
    pub run_id: String,
    /// The waiting task.
    #[arg(long)]
    pub task: String,
    /// Reject instead of approving.
    #[arg(long)]
    pub reject: bool,
    /// Why (stored with the decision, shown by `runs show`).
    #[arg(long, default_value = "")]
    pub comment: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Tasks waiting for approval: for whom, since when, until when.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Who decides locally: the OS account (whoever can write the state
/// directory can edit the store anyway; use `capstan serve` and tokens
/// when several people share a scheduler).
fn local_user() -> Result<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return Ok(u);
        }
    }
    bail!("cannot tell who you are (USER and LOGNAME are unset); use --server with a token")
}

pub async fn approve(cli: &Cli, args: &ApproveArgs) -> Result<ExitCode> {
    let json = cli.output == Output::Json;
    let verb = if args.reject { "reject" } else { "approve" };
    if let Some(api) = args.remote.client()? {
        let v = api
            .post(
                &format!("/v1/runs/{}/tasks/{}/{verb}", args.run_id, args.task),
                &serde_json::json!({ "comment": args.comment }),
            )
            .await?;
        if json {
            println!("{v}");
        } else {
            println!(
                "{} {}ed task {} of run {}",
                for_terminal(v["user"].as_str().unwrap_or("")),
                verb.trim_end_matches('e'),
                args.task,
                args.run_id
            );
        }
        return Ok(ExitCode::Ok);
    }
    let store = RunStore::open(&cli.state_dir())?;
    store.run(&args.run_id)?;
    let user = local_user()?;
    match approval::decide(
        &store,
        &args.run_id,
        &args.task,
        &user,
        &[],
        !args.reject,
        &args.comment,
    ) {
        Ok(d) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "run_id": args.run_id, "task": args.task, "user": user,
                        "decision": d.decision, "accepted": true })
                );
            } else {
                println!(
                    "{user} {}ed task {} of run {}; the scheduler executing the run applies it \
                     (or `capstan runs resume {}` if none is)",
                    verb.trim_end_matches('e'),
                    args.task,
                    args.run_id,
                    args.run_id
                );
            }
            Ok(ExitCode::Ok)
        }
        Err(DecideError::Refused(why)) => {
            eprintln!("error: refused: {}", for_terminal(&why.to_string()));
            Ok(ExitCode::Denied)
        }
        Err(DecideError::NotWaiting(why)) => {
            eprintln!("error: {}", for_terminal(&why.to_string()));
            Ok(ExitCode::Invalid)
        }
        Err(DecideError::Store(e)) => Err(e.into()),
    }
}

pub async fn approvals(cli: &Cli, cmd: &ApprovalsCommand) -> Result<ExitCode> {
    let ApprovalsCommand::List { remote } = cmd;
    let list: Vec<serde_json::Value> = match remote.client()? {
        Some(api) => serde_json::from_value(api.get("/v1/approvals").await?)?,
        None => {
            let store = RunStore::open(&cli.state_dir())?;
            let mut out = Vec::new();
            for w in store.open_waits()? {
                let decisions = store.decisions(&w.run_id)?;
                out.push(approval::pending_json(&w, &decisions));
            }
            out
        }
    };
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::Ok);
    }
    println!(
        "{:40}  {:16}  {:8}  {:24}  {:24}  APPROVERS",
        "RUN", "TASK", "NEEDS", "SINCE", "UNTIL"
    );
    for a in &list {
        let approvals = a["decisions"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter(|d| d["accepted"] == true && d["decision"] == "approve")
                    .count()
            })
            .unwrap_or(0);
        let approvers: Vec<&str> = a["approvers"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        println!(
            "{:40}  {:16}  {:8}  {:24}  {:24}  {}",
            for_terminal(a["run_id"].as_str().unwrap_or("")),
            for_terminal(a["task"].as_str().unwrap_or("")),
            format!("{approvals}/{}", a["required"]),
            for_terminal(a["since"].as_str().unwrap_or("")),
            for_terminal(a["deadline"].as_str().unwrap_or("")),
            for_terminal(&approvers.join(","))
        );
        if let Some(m) = a["message"].as_str().filter(|m| !m.is_empty()) {
            println!("    {}", for_terminal(m));
        }
    }
    Ok(ExitCode::Ok)
}
