//! `capstan serve` (the local API server) and `capstan token` (its tokens).

use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::{Cli, ExitCode, Output};
use crate::api::auth::TokenFile;
use crate::api::{ApiState, Auth};

/// `capstan serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub listen: String,

    /// Memory limit per task, MiB (for runs this server resumes).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub memory_limit: usize,

    #[command(flatten)]
    pub forge: ForgeArgs,

    #[command(flatten)]
    pub limits: crate::api::listener::ListenArgs,

    /// Print a one-time link that signs the person at this terminal in to
    /// the web UI (as $USER; valid ten minutes, one use), instead of
    /// signing in with a token.
    #[arg(long)]
    pub sign_in_link: bool,
}

/// How a server reports back to forges (`capstan serve`, `capstan controller`).
#[derive(Debug, Args)]
pub struct ForgeArgs {
    /// Attempts to report a commit status to a forge before giving up.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub status_retries: u32,

    /// The wait after a failed status report (doubling each time).
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub status_backoff: std::time::Duration,
}

impl ForgeArgs {
    pub fn retry(&self) -> crate::forge::report::Retry {
        crate::forge::report::Retry {
            attempts: self.status_retries.max(1),
            backoff: self.status_backoff,
            ..Default::default()
        }
    }
}

/// `capstan token ...`: bearer tokens of the local API (`capstan serve`).
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for USER; it is printed once and stored as a digest.
    Add {
        /// The user the token identifies (as approvers lists name users).
        user: String,
        /// A group the user is in (repeatable); approvers lists may name groups.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List the users that have tokens.
    List,
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let sched = Arc::new(super::run::scheduler(cli, args.memory_limit)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let public_url = cli.public_url.clone().unwrap_or_else(|| {
        format!(
            "http://{}",
            listener
                .local_addr()
                .map_or(args.listen.clone(), |a| a.to_string())
        )
    });
    let secure = public_url.starts_with("https://");
    let ui_base = public_url.trim_end_matches('/').to_string();
    let state = Arc::new(ApiState {
        auth: Auth::Tokens(TokenFile::path(&cli.state_dir())),
        forge: Some(crate::forge::intake::Forge::new(
            sched.clone(),
            Arc::new(crate::forge::source::LocalRepos {
                file: crate::forge::repo::RepoFile::path(&sched.state_dir),
                secrets: crate::caps::secrets::LocalSecrets::new(&sched.state_dir.join("secrets")),
            }),
            public_url,
            args.forge.retry(),
        )),
        ui: crate::api::ui::Sessions::new(secure),
        sched,
    });
    eprintln!(
        "capstan: API on http://{} (tokens: {})",
        listener.local_addr()?,
        TokenFile::path(&cli.state_dir()).display()
    );
    if args.sign_in_link {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "local".into());
        let who = crate::api::Identity {
            user,
            groups: Vec::new(),
        };
        let code = state
            .ui
            .sign_in_code(who.clone())
            .map_err(|e| anyhow::anyhow!(e.message))?;
        eprintln!(
            "capstan: web UI for `{}`: {ui_base}/ui/login?code={code}  (one use, 10 minutes)",
            who.user
        );
    }
    if let Some(f) = &state.forge {
        let n = f.recover().await;
        if n > 0 {
            eprintln!("capstan: {n} run(s) started by webhooks queued again");
        }
    }
    let schedules = state
        .forge
        .clone()
        .map(|f| tokio::spawn(crate::forge::schedule::run(f)));
    tokio::select! {
        r = crate::api::serve(listener, state, args.limits.limits()) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    if let Some(s) = schedules {
        s.abort();
    }
    Ok(ExitCode::Ok)
}

pub fn token(cli: &Cli, cmd: &TokenCommand) -> Result<ExitCode> {
    let path = TokenFile::path(&cli.state_dir());
    match cmd {
        TokenCommand::Add { user, groups } => {
            let token = TokenFile::add(&path, user, groups)?;
            if cli.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({ "user": user, "groups": groups, "token": token })
                );
            } else {
                println!("{token}");
                eprintln!(
                    "token for `{user}` stored (as a digest) in {}; it is not shown again",
                    path.display()
                );
            }
        }
        TokenCommand::List => {
            let file = TokenFile::load(&path)?;
            if cli.output == Output::Json {
                let v: Vec<_> = file
                    .tokens
                    .iter()
                    .map(|t| serde_json::json!({ "user": t.user, "groups": t.groups }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for t in &file.tokens {
                    println!("{}  {}", t.user, t.groups.join(","));
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}
