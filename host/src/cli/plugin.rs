//! `capstan plugin ...`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::output::ExitCode;
use super::{Cli, Output};
use crate::manifest;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a component's manifest and WIT imports/exports, and check its
    /// imports against the capabilities it declares.
    Inspect { file: PathBuf },
}

pub fn plugin(cli: &Cli, cmd: &PluginCommand) -> Result<ExitCode> {
    match cmd {
        PluginCommand::Inspect { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let info = match manifest::inspect(&bytes, &file.display().to_string()) {
                Ok(i) => i,
                Err(e) => {
                    if cli.output == Output::Json {
                        println!("{}", serde_json::json!({ "error": e.to_string() }));
                    }
                    eprintln!("error: {e}");
                    return Ok(ExitCode::Invalid);
                }
            };
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(ExitCode::Ok);
            }
            let m = &info.manifest;
            println!("{} {}  ({})", m.name, m.version, m.world);
            if !m.description.is_empty() {
                println!("  {}", m.description);
            }
            println!("digest: {}  ({} bytes)", info.digest, info.size);
            println!(
                "capabilities: {}",
                if m.capabilities.is_empty() {
                    "none".to_string()
                } else {
                    m.capabilities
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            println!("params:");
            for p in &m.params {
                let def = match &p.default {
                    Some(d) => format!(" = {}", serde_json::to_string(d)?),
                    None => " (required)".to_string(),
                };
                println!("  {}: {}{def}  {}", p.name, p.ty, p.description);
            }
            println!("results:");
            for r in &m.results {
                println!("  {}  {}", r.name, r.description);
            }
            println!("workspaces:");
            for w in &m.workspaces {
                let ro = if w.read_only { " (read-only)" } else { "" };
                let opt = if w.optional { " (optional)" } else { "" };
                println!("  {}{ro}{opt}  {}", w.name, w.description);
            }
            println!("imports:");
            for i in &info.imports {
                println!("  {i}");
            }
            println!("exports:");
            for e in &info.exports {
                println!("  {e}");
            }
            Ok(ExitCode::Ok)
        }
    }
}
