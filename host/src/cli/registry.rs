//! `capstan registry`: operations on whole registries (platform teams).

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use capstan_registry::sign::PublicKey;
use capstan_registry::{Entry, Registry};

use super::{Cli, ExitCode, Output};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Copy plugin versions, with their signatures, yanks and deprecations,
    /// from one registry to another (directories or oci://…). Versions the
    /// target already holds with the same digest are brought up to date;
    /// a version it holds with different content is reported, never
    /// overwritten.
    Mirror {
        /// Source registry: a directory or oci://host[:port][/path].
        #[arg(long, value_name = "REGISTRY")]
        from: String,
        /// Target registry: a directory or oci://host[:port][/path].
        #[arg(long, value_name = "REGISTRY")]
        to: String,
        /// Only these plugins: NAME or NAME@RANGE, `*` globs in NAME
        /// (e.g. `git-clone@^1`, `kaniko-*`). Repeatable; default all.
        #[arg(long, value_name = "NAME[@RANGE]")]
        filter: Vec<String>,
    },
}

struct Filter {
    name: String,
    req: Option<semver::VersionReq>,
}

impl Filter {
    fn parse(s: &str) -> Result<Filter> {
        let (name, req) = match s.split_once('@') {
            Some((n, r)) => (
                n,
                Some(
                    semver::VersionReq::parse(r)
                        .with_context(|| format!("--filter `{s}`: version range `{r}`"))?,
                ),
            ),
            None => (s, None),
        };
        anyhow::ensure!(
            !name.is_empty(),
            "--filter `{s}`: expected NAME or NAME@RANGE"
        );
        Ok(Filter {
            name: name.to_string(),
            req,
        })
    }

    fn matches(&self, e: &Entry) -> bool {
        crate::policy::glob(&self.name, &e.name)
            && self.req.as_ref().is_none_or(|r| r.matches(&e.version))
    }
}

#[derive(Debug, Serialize)]
struct Copied {
    name: String,
    version: String,
    digest: String,
    /// copied | updated | conflict
    action: &'static str,
    signatures: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn registry(cli: &Cli, cmd: &RegistryCommand) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::Mirror { from, to, filter } => mirror(cli, from, to, filter),
    }
}

fn mirror(cli: &Cli, from: &str, to: &str, filters: &[String]) -> Result<ExitCode> {
    let filters = filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    let source = cli.open_registry(Some(from), false)?;
    let target = cli.open_registry(Some(to), true)?;
    let json = cli.output == Output::Json;
    let mut report = Vec::new();
    for name in source.list()? {
        if !filters.is_empty() && !filters.iter().any(|f| crate::policy::glob(&f.name, &name)) {
            continue;
        }
        for entry in source.versions(&name)? {
            if !filters.is_empty() && !filters.iter().any(|f| f.matches(&entry)) {
                continue;
            }
            let row = match copy_version(&source, &target, &entry) {
                Ok((action, signatures)) => Copied {
                    name: entry.name.clone(),
                    version: entry.version.to_string(),
                    digest: entry.digest.to_string(),
                    action,
                    signatures,
                    error: None,
                },
                Err(e) => Copied {
                    name: entry.name.clone(),
                    version: entry.version.to_string(),
                    digest: entry.digest.to_string(),
                    action: "conflict",
                    signatures: 0,
                    error: Some(format!("{e:#}")),
                },
            };
            if !json {
                match &row.error {
                    None => eprintln!(
                        "{} {} {}  {}  ({} signature{})",
                        row.action,
                        row.name,
                        row.version,
                        row.digest,
                        row.signatures,
                        if row.signatures == 1 { "" } else { "s" }
                    ),
                    Some(e) => eprintln!("FAILED {} {}: {e}", row.name, row.version),
                }
            }
            report.push(row);
        }
    }
    let failed = report.iter().filter(|r| r.error.is_some()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "mirrored {} version(s) from {} to {}{}",
            report.len() - failed,
            source.location(),
            target.location(),
            if failed > 0 {
                format!("; {failed} failed")
            } else {
                String::new()
            }
        );
    }
    Ok(if failed > 0 {
        ExitCode::Error
    } else {
        ExitCode::Ok
    })
}

/// Copy one version and its metadata; returns what was done and how many
/// signatures the target now has from the source.
fn copy_version(source: &Registry, target: &Registry, e: &Entry) -> Result<(&'static str, usize)> {
    let existing = match target.get(&e.name, &e.version) {
        Ok(t) => Some(t),
        Err(
            capstan_registry::Error::NoSuchPlugin(_)
            | capstan_registry::Error::NoSuchVersion { .. },
        ) => None,
        Err(err) => return Err(err.into()),
    };
    let (action, mut copied) = match existing {
        Some(t) if t.digest == e.digest => ("updated", t),
        Some(t) => anyhow::bail!(
            "the target holds {} {} with digest {}, the source {}; versions are immutable",
            e.name,
            e.version,
            t.digest,
            e.digest
        ),
        None => {
            // A mirror never carries a component that claims another
            // identity than its listing (or a divergent stored manifest).
            let bytes = source.fetch(e)?;
            let what = format!("{} {} from {}", e.name, e.version, source.location());
            let info = crate::manifest::inspect(&bytes, &what)?;
            crate::identity::check_embedded(
                &info.manifest,
                &e.name,
                &e.version,
                &e.manifest,
                &what,
            )
            .map_err(|m| anyhow::anyhow!(m))?;
            let copied = match (source, target) {
                // OCI to OCI: the same manifest bytes, so the same
                // manifest digest (and signature tag) on both sides.
                (Registry::Oci(s), Registry::Oci(t)) => {
                    t.copy_from(s, e)?;
                    target.get(&e.name, &e.version)?
                }
                _ => {
                    let world = capstan_registry::ComponentWorld {
                        imports: info.imports,
                        exports: info.exports,
                    };
                    let manifest = serde_json::to_value(&info.manifest)?;
                    target.publish(&e.name, &e.version, &bytes, manifest, &world)?
                }
            };
            ("copied", copied)
        }
    };
    // Signatures: only valid ones travel (a mirror never launders a bad one).
    let mut signatures = 0;
    let mut changed = false;
    let present = target.signatures(&copied)?;
    for sig in source.signatures(e)? {
        let valid = PublicKey::parse(&sig.public_key)
            .map(|k| k.verifies(&e.digest, &sig))
            .unwrap_or(false);
        if !valid {
            tracing::warn!(plugin = %e.name, version = %e.version, key = %sig.key_id, "skipping an invalid signature");
            continue;
        }
        if !present.iter().any(|p| p == &sig) {
            target.add_signature(&copied, sig)?;
            changed = true;
        }
        signatures += 1;
    }
    if copied.yanked != e.yanked {
        copied = target.set_yanked(&e.name, &e.version, e.yanked)?;
        changed = true;
    }
    if copied.deprecated != e.deprecated {
        target.set_deprecated(&e.name, &e.version, e.deprecated.clone())?;
        changed = true;
    }
    // Held already: `updated` only if something about it changed.
    let action = match action {
        "updated" if !changed => "unchanged",
        a => a,
    };
    Ok((action, signatures))
}
