//! `capstan repo`: the repositories whose webhooks `capstan serve` takes
//! (`STATE/repositories.yaml`), and what their deliveries did.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Cli, ExitCode, Invalid, Output, time};
use crate::escape::for_terminal;
use crate::forge::repo::{
    Concurrency, EventKind, RepoFile, RepositorySpec, Schedule, check_repo_name,
};

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add (or replace, with --replace) a repository.
    #[command(
        after_help = "Examples:\n  capstan secret set shop-hook < hook-secret\n  \
        capstan repo add shop --provider github --url https://github.com/acme/shop.git \\\n    \
        --webhook-secret shop-hook --token shop-token --branch main"
    )]
    Add(Box<AddArgs>),
    /// List the repositories.
    List,
    /// Remove a repository (its deliveries stay recorded).
    Rm {
        /// The repository's name.
        name: String,
    },
    /// Approve a run of an untrusted pull request (`/ok-to-test`): the pull
    /// request's own pipelines run at that run's commit, with the
    /// repository's secrets. Asks the server that took the webhook.
    #[command(
        after_help = "Example:\n  capstan repo ok-to-test ci-x2k4mzq7ab --server http://127.0.0.1:7070 --token $TOKEN"
    )]
    OkToTest {
        /// The untrusted run's id (its commit is the one approved).
        run_id: String,
        #[command(flatten)]
        remote: super::runs::RemoteArgs,
    },
    /// What the repository's webhook deliveries did, newest first.
    Deliveries {
        /// The repository's name.
        name: String,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A name for it (lowercase letters, digits, `-`).
    pub name: String,
    /// The forge.
    #[arg(long, value_parser = ["github", "gitlab"])]
    pub provider: String,
    /// The clone URL (http or https).
    #[arg(long)]
    pub url: String,
    /// The forge's project name (`owner/repo`); default: the URL's path.
    #[arg(long)]
    pub project: Option<String>,
    /// The forge's API URL; default: api.github.com, or the GitLab host's /api/v4.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// The secret (`capstan secret set`) holding the webhook's secret.
    #[arg(long, value_name = "SECRET")]
    pub webhook_secret: String,
    /// The secret holding the API token (read the repository, report statuses).
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,
    /// An event that starts runs (repeatable; default all).
    #[arg(long = "event", value_parser = ["push", "pull_request", "tag"])]
    pub events: Vec<String>,
    /// A branch glob pushes and pull requests' targets must match (repeatable).
    #[arg(long = "branch", value_name = "GLOB")]
    pub branches: Vec<String>,
    /// A tag glob (repeatable).
    #[arg(long = "tag", value_name = "GLOB")]
    pub tags: Vec<String>,
    /// A path glob one changed file of a push must match (repeatable).
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// Where the pipeline files are (repeatable; default `.capstan/*.yaml`).
    #[arg(long = "pipelines", value_name = "GLOB")]
    pub pipelines: Vec<String>,
    /// A user whose pull requests from forks run their own pipelines (repeatable).
    #[arg(long = "trusted", value_name = "USER")]
    pub trusted: Vec<String>,
    /// How many of its runs execute at once (the rest queue).
    #[arg(long, default_value_t = 2)]
    pub concurrency: u32,
    /// A schedule, `NAME=CRON` (`nightly=0 3 * * *`), on the tip of --schedule-branch (repeatable).
    #[arg(long = "schedule", value_name = "NAME=CRON", value_parser = super::run::parse_kv)]
    pub schedules: Vec<(String, String)>,
    /// The time zone of the schedules (IANA name).
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    pub time_zone: String,
    /// The branch the schedules run.
    #[arg(long, default_value = "main", value_name = "BRANCH")]
    pub schedule_branch: String,
    /// Keep older runs of a branch or pull request when a new event comes.
    #[arg(long)]
    pub no_cancel_in_progress: bool,
    /// Replace a repository of that name.
    #[arg(long)]
    pub replace: bool,
}

fn spec(a: &AddArgs) -> RepositorySpec {
    let events = a
        .events
        .iter()
        .map(|e| match e.as_str() {
            "push" => EventKind::Push,
            "tag" => EventKind::Tag,
            _ => EventKind::PullRequest,
        })
        .collect::<Vec<_>>();
    RepositorySpec {
        provider: a.provider.parse().expect("clap checked it"),
        url: a.url.clone(),
        project: a.project.clone(),
        api_url: a.api_url.clone(),
        webhook_secret: a.webhook_secret.clone(),
        token: a.token.clone(),
        events: if events.is_empty() {
            vec![EventKind::Push, EventKind::PullRequest, EventKind::Tag]
        } else {
            events
        },
        branches: a.branches.clone(),
        tags: a.tags.clone(),
        paths: a.paths.clone(),
        pipelines: if a.pipelines.is_empty() {
            vec![".capstan/*.yaml".into()]
        } else {
            a.pipelines.clone()
        },
        trusted: a.trusted.clone(),
        concurrency: Concurrency {
            limit: a.concurrency,
            cancel_in_progress: !a.no_cancel_in_progress,
        },
        schedules: a
            .schedules
            .iter()
            .map(|(name, cron)| Schedule {
                name: name.clone(),
                cron: cron.clone(),
                time_zone: a.time_zone.clone(),
                branch: a.schedule_branch.clone(),
                pipelines: Vec::new(),
                starting_deadline: "1h".into(),
            })
            .collect(),
        service_account_name: None,
    }
}

/// `capstan repo …`: `ok-to-test` asks the server; the rest is local.
pub async fn run(cli: &Cli, cmd: &RepoCommand) -> Result<ExitCode> {
    let RepoCommand::OkToTest { run_id, remote } = cmd else {
        return repo(cli, cmd);
    };
    let Some(api) = remote.client()? else {
        return Err(Invalid(
            "ok-to-test asks the server that took the webhook: give --server URL (and --token)"
                .into(),
        )
        .into());
    };
    let v = api
        .post(
            &format!("/v1/runs/{run_id}/ok-to-test"),
            &serde_json::json!({}),
        )
        .await?;
    if cli.output == Output::Json {
        println!("{v}");
    } else {
        let runs: Vec<&str> = v["runs"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        println!(
            "approved {run_id}: {}",
            for_terminal(v["outcome"].as_str().unwrap_or(""))
        );
        for r in runs {
            println!("  {}", for_terminal(r));
        }
    }
    Ok(ExitCode::Ok)
}

fn repo(cli: &Cli, cmd: &RepoCommand) -> Result<ExitCode> {
    let state = cli.state_dir();
    let path = RepoFile::path(&state);
    let json = cli.output == Output::Json;
    match cmd {
        RepoCommand::Add(a) => add(&path, a, json)?,
        RepoCommand::List => {
            let file = RepoFile::load(&path)?;
            if json {
                let v: Vec<_> = file
                    .repositories
                    .iter()
                    .map(|(n, s)| serde_json::json!({ "name": n, "spec": s }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:20}  {:7}  {:30}  URL", "NAME", "FORGE", "PROJECT");
                for (n, s) in &file.repositories {
                    println!(
                        "{:20}  {:7}  {:30}  {}",
                        n,
                        s.provider,
                        for_terminal(&s.project()),
                        for_terminal(&s.url)
                    );
                }
            }
        }
        RepoCommand::Rm { name } => {
            let mut file = RepoFile::load(&path)?;
            if file.repositories.remove(name).is_none() {
                return Err(
                    Invalid(format!("no repository `{name}` (see `capstan repo list`)")).into(),
                );
            }
            file.save(&path)?;
            if !json {
                eprintln!("repository `{name}` removed");
            }
        }
        RepoCommand::OkToTest { .. } => unreachable!("`run` handles it"),
        RepoCommand::Deliveries { name, limit } => {
            let store = crate::store::RunStore::open(&state)?;
            let list = store.deliveries(Some(name), *limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:38}  {:24}  {:18}  {:4}  OUTCOME",
                    "DELIVERY", "RECEIVED", "EVENT", "HTTP"
                );
                for d in list {
                    println!(
                        "{:38}  {:24}  {:18}  {:4}  {}{}",
                        for_terminal(&d.id),
                        time(d.received_at),
                        for_terminal(&d.event),
                        d.status.map_or("-".into(), |s| s.to_string()),
                        for_terminal(d.outcome.as_deref().unwrap_or(&d.state)),
                        if d.runs.is_empty() {
                            String::new()
                        } else {
                            format!(" (runs: {})", d.runs.join(", "))
                        }
                    );
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// `capstan repo add`.
fn add(path: &std::path::Path, a: &AddArgs, json: bool) -> Result<()> {
    check_repo_name(&a.name).map_err(Invalid)?;
    let s = spec(a);
    let problems = s.problems();
    if !problems.is_empty() {
        return Err(Invalid(problems.join("; ")).into());
    }
    let mut file = RepoFile::load(path)?;
    if file.repositories.contains_key(&a.name) && !a.replace {
        return Err(Invalid(format!(
            "repository `{}` exists (--replace to replace it)",
            a.name
        ))
        .into());
    }
    if let Some((other, _)) = file
        .find(s.provider, &s.project())
        .filter(|(n, _)| **n != a.name)
    {
        return Err(Invalid(format!(
            "repository `{other}` already takes {} events of `{}`",
            s.provider,
            s.project()
        ))
        .into());
    }
    let project = s.project();
    file.repositories.insert(a.name.clone(), s);
    file.save(path)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "name": a.name, "project": project })
        );
    } else {
        eprintln!(
            "repository `{}` ({project}) added; point the forge's webhook at \
             http(s)://THIS-SERVER/v1/hooks/{}",
            a.name, a.provider
        );
    }
    Ok(())
}
