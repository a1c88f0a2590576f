//! `capstan plugin ...`: create and build plugin crates; inspect components;
//! publish, list, resolve, yank, deprecate, sign and pull them in a registry.

use crate::escape::for_terminal;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use capstan_registry::Reference;
use clap::Subcommand;

use super::output::ExitCode;
use super::{Cli, Output};
use crate::manifest::{self, ComponentInfo};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a component's manifest and WIT imports/exports, and check its
    /// imports against the capabilities it declares. Takes a .wasm file or
    /// a registry reference (name@range, name@sha256:…, oci://…/name:1.2.3).
    Inspect {
        /// A .wasm file or a registry reference.
        plugin: String,
    },
    /// Create a plugin crate: manifest (capstan.toml), the WIT contract, the
    /// plugin's code with a test, and a pipeline that runs it.
    New {
        /// The plugin's name (lowercase letters, digits, `-`).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 and print the component's path.
    Build {
        /// The crate's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check a component and publish it to the registry under the name and
    /// version its manifest declares. Versions are immutable. Given a plugin
    /// crate's directory, builds it first.
    Publish {
        /// A .wasm component, or a plugin crate directory.
        file: PathBuf,
        /// Sign the published digest with this secret key file.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
        /// If the version is already published (even with other bytes),
        /// keep it and succeed instead of failing.
        #[arg(long)]
        skip_existing: bool,
    },
    /// Create an ed25519 signing key: writes BASE.key (secret, mode 0600)
    /// and BASE.pub (put its line in the policy's [[trust.key]]).
    Keygen {
        /// The files' path without extension (writes BASE.key and BASE.pub).
        base: PathBuf,
    },
    /// Add a signature to a published version (`name@1.2.3`), e.g. with a
    /// new key during key rotation.
    Sign {
        /// The version to sign: `name@1.2.3`.
        reference: String,
        /// The secret key file (BASE.key from `plugin keygen`).
        #[arg(long, value_name = "KEY")]
        sign_key: PathBuf,
    },
    /// List the plugins in the registry.
    List,
    /// List a plugin's versions (with yanked and deprecated ones).
    Versions {
        /// The plugin's name.
        name: String,
    },
    /// Yank a version (`name@1.2.3`): never chosen by resolution again, but
    /// still usable through an existing capstan.lock.
    Yank {
        /// The version: `name@1.2.3`.
        reference: String,
        /// Un-yank instead.
        #[arg(long)]
        undo: bool,
    },
    /// Mark a version (`name@1.2.3`) deprecated; pipelines resolving to it
    /// get a warning with the message.
    Deprecate {
        /// The version: `name@1.2.3`.
        reference: String,
        /// What pipelines resolving to it are told (e.g. what to use instead).
        #[arg(long, short = 'm')]
        message: String,
    },
    /// Resolve a reference and write the component to a file.
    Pull {
        /// A registry reference (name@range, name@sha256:…, oci://…).
        reference: String,
        /// Where to write it (default: NAME-VERSION.wasm).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn exact(reference: &str) -> Result<(String, semver::Version)> {
    let bad = || {
        let name = reference.split('@').next().unwrap_or(reference);
        super::Invalid(format!(
            "`{reference}`: needs a name and an exact version, e.g. {name}@1.1.0"
        ))
    };
    let (name, version) = reference.split_once('@').ok_or_else(bad)?;
    let version = semver::Version::parse(version).map_err(|_| bad())?;
    Ok((name.to_string(), version))
}

pub fn plugin(cli: &Cli, cmd: &PluginCommand) -> Result<ExitCode> {
    let json = cli.output == Output::Json;
    match cmd {
        PluginCommand::Inspect { plugin } => {
            let (bytes, origin) = match plugin.parse::<Reference>() {
                Ok(
                    r @ (Reference::Range { .. } | Reference::Digest { .. } | Reference::Oci(_)),
                ) => {
                    let resolved = resolve(cli, &r.to_string())?;
                    (resolved.bytes, resolved.origin)
                }
                _ => (
                    std::fs::read(plugin).map_err(|e| {
                        super::Invalid(format!(
                            "cannot read `{plugin}` ({e}): give a component file (.wasm) or a \
                             registry reference (name@range, name@sha256:…, oci://…)"
                        ))
                    })?,
                    plugin.clone(),
                ),
            };
            let info = match manifest::inspect(&bytes, &origin) {
                Ok(i) => i,
                Err(e) => {
                    if json {
                        println!("{}", serde_json::json!({ "error": e.to_string() }));
                    }
                    eprintln!("error: {e}");
                    return Ok(ExitCode::Invalid);
                }
            };
            print_info(&info, json)?;
            Ok(ExitCode::Ok)
        }
        PluginCommand::Keygen { base } => {
            let key = capstan_registry::sign::SecretKey::generate()?;
            let (secret, public) = key.write(base)?;
            if json {
                let v = serde_json::json!({
                    "secret_key_file": secret, "public_key_file": public,
                    "key_id": key.public().id().to_string(), "public_key": key.public().to_text(),
                });
                println!("{v}");
                return Ok(ExitCode::Ok);
            }
            println!("secret key: {} (keep it private)", secret.display());
            println!("public key: {}  id {}", public.display(), key.public().id());
            println!(
                "trust it with, in the policy file:\n[[trust.key]]\npublic-key = \"{}\"",
                key.public().to_text()
            );
            Ok(ExitCode::Ok)
        }
        PluginCommand::Sign {
            reference,
            sign_key,
        } => {
            let (name, version) = exact(reference)?;
            let key = capstan_registry::sign::SecretKey::load(sign_key)?;
            let registry = cli.registry()?;
            let entry = registry.get(&name, &version)?;
            let sig = key.sign(&entry.digest);
            if json {
                let v = serde_json::json!({
                    "name": entry.name, "version": entry.version.to_string(),
                    "digest": entry.digest.to_string(), "key_id": sig.key_id.to_string(),
                });
                println!("{v}");
            } else {
                println!(
                    "{} {} ({}) signed by {}",
                    entry.name, entry.version, entry.digest, sig.key_id
                );
            }
            registry.add_signature(&entry, sig)?;
            Ok(ExitCode::Ok)
        }
        PluginCommand::New { name, path } => {
            if let Err(e) = super::template::check_name(name) {
                eprintln!("error: {e}");
                return Ok(ExitCode::Invalid);
            }
            let dir = path.clone().unwrap_or_else(|| PathBuf::from(name));
            let files = super::template::create(&dir, name)?;
            if json {
                println!("{}", serde_json::json!({ "dir": dir, "files": files }));
            } else {
                println!("created plugin {name} in {}", dir.display());
                println!(
                    "  cargo test --manifest-path {}/Cargo.toml   # its test",
                    dir.display()
                );
                println!(
                    "  capstan plugin build {}                    # → a .wasm component",
                    dir.display()
                );
                println!(
                    "  capstan plugin publish {}                  # build + publish 1.0.0",
                    dir.display()
                );
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Build { dir } => {
            let wasm = super::template::build(dir)?;
            if json {
                println!("{}", serde_json::json!({ "component": wasm }));
            } else {
                println!("{}", wasm.display());
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Publish {
            file,
            sign_key,
            skip_existing,
        } => {
            let key = match sign_key {
                Some(k) => Some(capstan_registry::sign::SecretKey::load(k)?),
                None => None,
            };
            let built;
            let file = if file.is_dir() {
                built = super::template::build(file)?;
                &built
            } else {
                file
            };
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let origin = file.display().to_string();
            let info = match manifest::inspect(&bytes, &origin) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: refusing to publish: {e}");
                    return Ok(ExitCode::Invalid);
                }
            };
            if let Err(e) = crate::runtime::check_compiles(&bytes, &origin) {
                eprintln!("error: refusing to publish: {e:#}");
                return Ok(ExitCode::Invalid);
            }
            let m = &info.manifest;
            let registry = cli.registry_for_write()?;
            let world = capstan_registry::ComponentWorld {
                imports: info.imports.clone(),
                exports: info.exports.clone(),
            };
            let entry = match registry.publish(
                &m.name,
                &m.version,
                &bytes,
                serde_json::to_value(m)?,
                &world,
            ) {
                Ok(e) => e,
                Err(capstan_registry::Error::AlreadyPublished { existing, .. })
                    if *skip_existing =>
                {
                    println!(
                        "skipped {} {}: already published ({existing})",
                        m.name, m.version
                    );
                    return Ok(ExitCode::Ok);
                }
                Err(e @ capstan_registry::Error::AlreadyPublished { .. }) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::Invalid);
                }
                Err(e) => return Err(e.into()),
            };
            let signer = match &key {
                Some(k) => {
                    let sig = k.sign(&entry.digest);
                    let id = sig.key_id.clone();
                    registry.add_signature(&entry, sig)?;
                    Some(id)
                }
                None => None,
            };
            if json {
                let mut v = serde_json::to_value(&entry)?;
                v["signer"] = serde_json::json!(signer);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let signed = signer
                    .map(|s| format!(", signed by {s}"))
                    .unwrap_or_default();
                println!(
                    "published {} {}  {}  ({} bytes{signed})",
                    entry.name, entry.version, entry.digest, entry.size
                );
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::List => {
            let registry = cli.registry()?;
            let mut rows = Vec::new();
            for name in registry.list()? {
                let versions = registry.versions(&name)?;
                let latest = versions
                    .iter()
                    .rev()
                    .find(|e| !e.yanked)
                    .map(|e| e.version.to_string());
                // What the component itself says, not the stored copy.
                let description = match versions.last().map(|e| embedded_manifest(&registry, e)) {
                    Some(Ok(m)) => m
                        .get("description")
                        .and_then(|d| d.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    Some(Err(why)) => format!("(refused: {why})"),
                    None => String::new(),
                };
                rows.push((name, latest, versions.len(), description));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, l, c, d)| serde_json::json!({"name": n, "latest": l, "versions": c, "description": d}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:24} {:12} {:8} DESCRIPTION", "NAME", "LATEST", "VERSIONS");
                for (n, l, c, d) in rows {
                    println!(
                        "{n:24} {:12} {c:8} {}",
                        l.unwrap_or_else(|| "(all yanked)".into()),
                        for_terminal(&d)
                    );
                }
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Versions { name } => {
            let registry = cli.registry()?;
            let mut versions = registry.versions(name)?;
            // Show each component's embedded manifest; a version whose
            // component disagrees with its listing is flagged (and would be
            // refused at resolve).
            let mut refused = Vec::new();
            for e in &mut versions {
                match embedded_manifest(&registry, e) {
                    Ok(m) => {
                        e.manifest = m;
                        refused.push(None);
                    }
                    Err(why) => refused.push(Some(why)),
                }
            }
            if json {
                let v: Vec<serde_json::Value> = versions
                    .iter()
                    .zip(&refused)
                    .map(|(e, r)| {
                        let mut v = serde_json::to_value(e).unwrap_or_default();
                        if let Some(r) = r {
                            v["refused"] = serde_json::Value::String(r.clone());
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (e, r) in versions.into_iter().zip(refused) {
                    let mut flags = String::new();
                    if let Some(r) = r {
                        flags.push_str(&format!("  REFUSED: {}", for_terminal(&r)));
                    }
                    if e.yanked {
                        flags.push_str("  yanked");
                    }
                    if let Some(d) = &e.deprecated {
                        flags.push_str(&format!("  deprecated: {}", for_terminal(d)));
                    }
                    println!(
                        "{} {}  {}  {}{flags}",
                        e.name, e.version, e.digest, e.published_at
                    );
                }
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Yank { reference, undo } => {
            let (name, version) = exact(reference)?;
            let e = cli.registry()?.set_yanked(&name, &version, !undo)?;
            if json {
                let v = serde_json::json!({ "name": e.name, "version": e.version.to_string(), "yanked": e.yanked });
                println!("{v}");
            } else {
                println!(
                    "{} {}: {}",
                    e.name,
                    e.version,
                    if e.yanked { "yanked" } else { "not yanked" }
                );
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Deprecate { reference, message } => {
            let (name, version) = exact(reference)?;
            let e = cli
                .registry()?
                .set_deprecated(&name, &version, Some(message.clone()))?;
            if json {
                let v = serde_json::json!({ "name": e.name, "version": e.version.to_string(), "deprecated": message });
                println!("{v}");
            } else {
                println!(
                    "{} {}: deprecated: {}",
                    e.name,
                    e.version,
                    for_terminal(message)
                );
            }
            Ok(ExitCode::Ok)
        }
        PluginCommand::Pull { reference, out } => {
            let resolved = resolve(cli, reference)?;
            let entry = resolved
                .entry
                .context("pull takes a registry reference (name@range or name@sha256:…)")?;
            let out = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}-{}.wasm", entry.name, entry.version)));
            std::fs::write(&out, &resolved.bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            if json {
                let v = serde_json::json!({
                    "name": entry.name, "version": entry.version.to_string(),
                    "digest": entry.digest.to_string(), "file": out,
                });
                println!("{v}");
                return Ok(ExitCode::Ok);
            }
            println!(
                "{} {} ({}) → {}",
                entry.name,
                entry.version,
                entry.digest,
                out.display()
            );
            Ok(ExitCode::Ok)
        }
    }
}

/// Resolve a registry reference with the CLI's registry and policy.
fn resolve(cli: &Cli, reference: &str) -> Result<crate::resolve::Resolved> {
    let registry = cli.registry()?;
    let oci = cli.oci_options();
    let policy = cli.policy()?;
    let resolver = crate::resolve::Resolver {
        registry: &registry,
        oci: &oci,
        base_dir: std::path::Path::new("."),
        lock: None,
        mode: crate::resolve::LockMode::Prefer,
        policy: &*policy,
    };
    resolver
        .resolve(reference, None)
        .map_err(anyhow::Error::msg)
}

fn print_info(info: &ComponentInfo, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(info)?);
        return Ok(());
    }
    let m = &info.manifest;
    // Manifest text is the plugin author's: escaped for the terminal.
    println!("{} {}  ({})", m.name, m.version, for_terminal(&m.world));
    if !m.description.is_empty() {
        println!("  {}", for_terminal(&m.description));
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
        let def = for_terminal(&def);
        println!(
            "  {}: {}{def}  {}",
            p.name,
            p.ty,
            for_terminal(&p.description)
        );
    }
    println!("results:");
    for r in &m.results {
        println!("  {}  {}", r.name, for_terminal(&r.description));
    }
    println!("workspaces:");
    for w in &m.workspaces {
        let ro = if w.read_only { " (read-only)" } else { "" };
        let opt = if w.optional { " (optional)" } else { "" };
        println!("  {}{ro}{opt}  {}", w.name, for_terminal(&w.description));
    }
    println!("imports:");
    for i in &info.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &info.exports {
        println!("  {e}");
    }
    Ok(())
}

/// The manifest embedded in a registry entry's component (fetched and
/// verified by digest), checked against the listing: `Err(why)` when the
/// component claims another identity or the stored manifest disagrees.
fn embedded_manifest(
    registry: &capstan_registry::Registry,
    e: &capstan_registry::Entry,
) -> Result<serde_json::Value, String> {
    let m = crate::identity::verified_manifest(registry, e)?;
    serde_json::to_value(&m).map_err(|err| err.to_string())
}
