//! `capstan secret`: the local secret store (`STATE/secrets`). Values are
//! read from stdin or a file and never printed.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::{Cli, ExitCode, Output};
use crate::caps::secrets::{LocalSecrets, check_name};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret from stdin (or --from-file). For an HTTP grant with
    /// `auth: basic` the value is `user:password`; with `auth: bearer`, the
    /// token.
    Set {
        /// The secret's name (as pipelines grant it).
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List secret names (never values).
    List,
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
}

pub fn secret(cli: &Cli, cmd: &SecretCommand) -> Result<ExitCode> {
    let store = LocalSecrets::new(&cli.state_dir().join("secrets"));
    match cmd {
        SecretCommand::Set { name, from_file } => {
            if let Err(e) = check_name(name) {
                eprintln!("error: {e}");
                return Ok(ExitCode::Invalid);
            }
            let value = match from_file {
                Some(f) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .context("reading the value from stdin")?;
                    v
                }
            };
            // A trailing newline from `echo` or a file is not part of it.
            let value = value
                .strip_suffix(b"\n")
                .map(|v| v.strip_suffix(b"\r").unwrap_or(v))
                .unwrap_or(&value);
            if let Err(e) = crate::caps::redact::check_length(name, value) {
                eprintln!("error: {e}");
                return Ok(ExitCode::Invalid);
            }
            store.set(name, value)?;
            if cli.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({ "name": name, "bytes": value.len() })
                );
            } else {
                eprintln!("secret `{name}` set ({} bytes)", value.len());
            }
            Ok(ExitCode::Ok)
        }
        SecretCommand::List => {
            let names = store.list()?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
            Ok(ExitCode::Ok)
        }
        SecretCommand::Rm { name } => {
            if store.remove(name)? {
                if cli.output == Output::Json {
                    println!("{}", serde_json::json!({ "name": name, "removed": true }));
                }
                Ok(ExitCode::Ok)
            } else {
                eprintln!("error: no secret `{name}`");
                Ok(ExitCode::Invalid)
            }
        }
    }
}
