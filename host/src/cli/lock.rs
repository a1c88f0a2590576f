//! `capstan lock`.

use std::path::PathBuf;

use anyhow::Result;
use capstan_registry::{LockFile, Locked, Reference};
use clap::Args;

use super::output::ExitCode;
use super::{Cli, Output};
use crate::pipeline::Document;
use crate::resolve::{LockMode, Resolver, lock_path};

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The pipeline file; capstan.lock is written beside it.
    pub file: PathBuf,
}

/// Resolve every registry reference afresh (highest non-yanked match) and
/// write capstan.lock. References that are files are not locked.
pub fn lock(cli: &Cli, args: &LockArgs) -> Result<ExitCode> {
    let doc = match Document::load(&args.file) {
        Ok(d) => d,
        Err(d) => {
            eprintln!(
                "error: {}",
                crate::escape::lines_for_terminal(&d.to_string())
            );
            return Ok(ExitCode::Invalid);
        }
    };
    let registry = cli.registry()?;
    let oci = cli.oci_options();
    let policy = cli.policy()?;
    let resolver = Resolver {
        registry: &registry,
        oci: &oci,
        base_dir: &doc.base_dir,
        lock: None,
        mode: LockMode::Prefer,
        policy: &*policy,
    };
    let mut lock = LockFile::default();
    let mut problems = Vec::new();
    for (at, t) in doc.all_tasks() {
        if lock.get(&t.uses).is_some() {
            continue;
        }
        match resolver.reference(&t.uses) {
            Ok(Reference::Range { .. } | Reference::Digest { .. } | Reference::Oci(_)) => {}
            Ok(_) => continue,
            Err(e) => {
                problems.push(doc.diag(&format!("{at}.uses"), e));
                continue;
            }
        }
        match resolver.resolve(&t.uses, None) {
            Ok(r) => {
                let e = r.entry.expect("registry reference");
                // Resolution never picks a yanked version: say which newer
                // matching ones were passed over.
                if let Ok(Reference::Range { name, req }) = resolver.reference(&t.uses) {
                    let skipped: Vec<String> = registry
                        .versions(&name)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|v| v.yanked && req.matches(&v.version) && v.version > e.version)
                        .map(|v| v.version.to_string())
                        .collect();
                    if !skipped.is_empty() {
                        eprintln!(
                            "note: `{}` locked to {} {}; skipped yanked {}",
                            t.uses,
                            e.name,
                            e.version,
                            skipped.join(", ")
                        );
                    }
                }
                lock.plugins.push(Locked {
                    reference: t.uses.clone(),
                    name: e.name,
                    version: e.version,
                    digest: e.digest,
                    registry: r.registry.expect("registry reference"),
                    signer: r.signer,
                });
            }
            Err(e) => problems.push(doc.diag(&format!("{at}.uses"), e)),
        }
    }
    if !problems.is_empty() {
        eprintln!("error: {}", crate::pipeline::Diagnostics(problems));
        return Ok(ExitCode::Invalid);
    }
    let path = lock_path(&doc.base_dir);
    lock.write(&path)?;
    if cli.output == Output::Json {
        let pins: Vec<_> = lock
            .plugins
            .iter()
            .map(|l| serde_json::json!({"reference": l.reference, "name": l.name, "version": l.version.to_string(), "digest": l.digest}))
            .collect();
        println!("{}", serde_json::json!({ "lock": path, "plugins": pins }));
    } else {
        println!("wrote {}", path.display());
        for l in &lock.plugins {
            println!(
                "  {:24} → {} {}  {}",
                l.reference, l.name, l.version, l.digest
            );
        }
    }
    Ok(ExitCode::Ok)
}
