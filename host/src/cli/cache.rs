//! `capstan cache`: the named caches container steps keep across runs of a
//! pipeline (`STATE/caches/PIPELINE/NAME`).

use anyhow::Result;
use clap::Subcommand;

use super::{Cli, ExitCode, Output};
use crate::caps::container::cache;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the caches: pipeline, name, size on disk, when last used.
    List,
    /// Remove caches (all, or those of --pipeline and/or NAME).
    Clear {
        /// Only caches of this name.
        name: Option<String>,
        /// Only this pipeline's caches.
        #[arg(long, value_name = "PIPELINE")]
        pipeline: Option<String>,
    },
}

pub fn cache(cli: &Cli, cmd: &CacheCommand) -> Result<ExitCode> {
    let state = cli.state_dir();
    let (caches, verb) = match cmd {
        CacheCommand::List => (cache::list(&state)?, None),
        CacheCommand::Clear { name, pipeline } => (
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
