//! `capstan cache`: the named caches container steps keep across runs of a
//! pipeline (`STATE/caches/PIPELINE/NAME`; in cluster mode with a
//! workspace claim, a namespace's own: `STATE/tenants/NS/caches/…`).

use clap::Args;

use anyhow::Result;
use clap::Subcommand;

use super::{Cli, ExitCode, Output};
use crate::caps::container::cache;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the caches: pipeline, name, size on disk, when last used.
    List(Scope),
    /// Remove caches (all, or those of --pipeline and/or NAME).
    Clear {
        /// Only caches of this name.
        name: Option<String>,
        /// Only this pipeline's caches.
        #[arg(long, value_name = "PIPELINE")]
        pipeline: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
}

/// Whose caches.
#[derive(Debug, Args)]
pub struct Scope {
    /// The caches of this namespace's runs in cluster mode (the controller
    /// with --workspace-claim keeps them under STATE/tenants/NS); default:
    /// the local runs' caches.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
}

pub fn cache(cli: &Cli, cmd: &CacheCommand) -> Result<ExitCode> {
    let scope = match cmd {
        CacheCommand::List(s) | CacheCommand::Clear { scope: s, .. } => s,
    };
    let state = match &scope.namespace {
        None => cli.state_dir(),
        Some(ns) => {
            // A DNS label, as Kubernetes names namespaces: never a path.
            let label = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !label {
                eprintln!(
                    "error: --namespace `{}` is not a namespace name (lowercase letters, digits and `-`)",
                    crate::escape::for_terminal(ns)
                );
                return Ok(ExitCode::Invalid);
            }
            crate::scheduler::tenant_root(&cli.state_dir(), ns)
        }
    };
    let (caches, verb) = match cmd {
        CacheCommand::List(_) => (cache::list(&state)?, None),
        CacheCommand::Clear { name, pipeline, .. } => (
            cache::clear(&state, pipeline.as_deref(), name.as_deref())?,
            Some("cleared"),
        ),
    };
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string(&caches)?);
        return Ok(ExitCode::Ok);
    }
    if caches.is_empty() {
        eprintln!("no caches{}", if verb.is_some() { " matched" } else { "" });
    }
    for c in &caches {
        println!(
            "{}{:<24} {:<16} {:>10}  last used {}",
            verb.map(|v| format!("{v} ")).unwrap_or_default(),
            crate::escape::for_terminal(&c.pipeline),
            crate::escape::for_terminal(&c.name),
            crate::pipeline::size::show(c.bytes),
            c.last_used
        );
    }
    Ok(ExitCode::Ok)
}
