//! Plugin manifests and component inspection.
//!
//! A plugin's manifest travels *inside* its component, in a custom section
//! named [`MANIFEST_SECTION`] holding the plugin's `capstan.toml`, so the
//! digest of the `.wasm` covers it and no sidecar can drift from the code.
//! A Rust plugin embeds it with:
//!
//! ```ignore
//! #[used]
//! #[unsafe(link_section = "capstan-manifest")]
//! static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
//! ```
//!
//! [`inspect`] reads the manifest and the component's WIT imports/exports
//! without compiling it, and checks that every import is covered by a
//! capability the manifest declares.

use serde::{Deserialize, Serialize};
use wasmtime::wasmparser::{Encoding, Parser, Payload};

use crate::digest::Digest;
use crate::params::{ParamType, ParamValue};

/// Name of the custom section holding the manifest TOML.
pub const MANIFEST_SECTION: &str = "capstan-manifest";

/// Errors reading a plugin component. Each names the component's origin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{origin}: not a WebAssembly file (no `\\0asm` header)")]
    NotWasm { origin: String },
    #[error(
        "{origin}: this is a core WebAssembly module, not a component; build plugins with \
         `cargo build --target wasm32-wasip2` (which produces components)"
    )]
    CoreModule { origin: String },
    #[error("{origin}: malformed or truncated component at byte {offset}: {message}")]
    Malformed {
        origin: String,
        offset: usize,
        message: String,
    },
    #[error(
        "{origin}: no `{MANIFEST_SECTION}` custom section; embed the plugin's capstan.toml \
         (see the README, \"Writing a plugin\")"
    )]
    NoManifest { origin: String },
    #[error("{origin}: invalid manifest (capstan.toml): {message}")]
    BadManifest { origin: String, message: String },
    #[error(
        "{origin}: the component imports `{import}`, which needs capability `{capability}`, but its \
         manifest does not declare it (add `{capability}` to `capabilities` in capstan.toml)"
    )]
    UndeclaredImport {
        origin: String,
        import: String,
        capability: Capability,
    },
    #[error("{origin}: the component imports `{import}`, which no Capstan capability provides")]
    UnknownImport { origin: String, import: String },
    #[error(
        "{origin}: the component exports neither `capstan:plugin/task` nor \
         `capstan:plugin/suspendable-task`; it is not a Capstan plugin"
    )]
    NoTaskExport { origin: String },
}

pub use crate::caps::set::Capability;

/// What an import needs: nothing beyond the base world, or one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportClass {
    Base,
    Needs(Capability),
    Unknown,
}

/// Classify a component import name (`wasi:cli/environment@0.2.3`).
///
/// The base world is the Capstan log plus WASI cli, clocks, filesystem, io,
/// random and sockets. Sockets are linked but every address is denied at run
/// time: raw network access is never granted (outbound traffic goes through
/// the `http` capability, which checks authorities).
pub fn classify_import(name: &str) -> ImportClass {
    let iface = name.split('@').next().unwrap_or(name);
    if crate::caps::set::is_base_interface(iface) {
        ImportClass::Base
    } else if let Some(cap) = Capability::for_interface(iface) {
        ImportClass::Needs(cap)
    } else {
        ImportClass::Unknown
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type", default)]
    pub ty: ParamType,
    /// Absent means the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    /// The only values a string param may take (Tekton's `enum`); empty:
    /// any.
    #[serde(rename = "enum", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A declared result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResultSpec {
    pub name: String,
    /// `string` (the default), or `array` / `object`: the value is then a
    /// JSON array / object of strings, checked when the task ends.
    #[serde(rename = "type", default)]
    pub ty: ParamType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A declared workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkspaceSpec {
    pub name: String,
    /// The plugin only reads it; the host mounts it read-only.
    #[serde(default)]
    pub read_only: bool,
    /// The pipeline may leave it unbound.
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A plugin manifest (`capstan.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The WIT world the plugin targets (`base`, `http-task`, ...).
    #[serde(default = "default_world")]
    pub world: String,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    #[serde(default)]
    pub results: Vec<ResultSpec>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceSpec>,
    /// Capabilities the plugin may ask for (the first grant layer).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The pipeline task declares further results (`results:`) that the
    /// plugin passes on from what it runs (the `script` plugin: a
    /// container's results directory).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_results: bool,
}

fn default_world() -> String {
    "base".to_string()
}

impl Manifest {
    /// Parse and check a manifest's TOML text.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if !is_name(&self.name) {
            return Err(format!(
                "name `{}`: use lowercase letters, digits and `-` (e.g. `git-clone`)",
                self.name
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.params {
            if !seen.insert(("param", p.name.as_str())) {
                return Err(format!("params: `{}` is declared twice", p.name));
            }
            if let Some(d) = &p.default
                && d.ty() != p.ty
            {
                return Err(format!(
                    "params.{}: default is {} but the type is {}",
                    p.name,
                    d.ty(),
                    p.ty
                ));
            }
        }
        for r in &self.results {
            if !seen.insert(("result", r.name.as_str())) {
                return Err(format!("results: `{}` is declared twice", r.name));
            }
        }
        for w in &self.workspaces {
            if !seen.insert(("workspace", w.name.as_str())) {
                return Err(format!("workspaces: `{}` is declared twice", w.name));
            }
        }
        Ok(())
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn workspace(&self, name: &str) -> Option<&WorkspaceSpec> {
        self.workspaces.iter().find(|w| w.name == name)
    }
}

/// Names of plugins, tasks, params, results and workspaces.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

/// What [`inspect`] finds in a component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    pub digest: Digest,
    pub size: usize,
    pub manifest: Manifest,
    /// Top-level imports (WIT interface names with versions).
    pub imports: Vec<String>,
    /// Top-level exports.
    pub exports: Vec<String>,
}

/// Read a component's manifest, imports and exports, and check that its
/// imports are within the capabilities the manifest declares. Does not
/// compile it. `origin` names the file in errors.
pub fn inspect(bytes: &[u8], origin: &str) -> Result<ComponentInfo, PluginError> {
    let origin = origin.to_string();
    if !bytes.starts_with(b"\0asm") {
        return Err(PluginError::NotWasm { origin });
    }
    let mut depth = 0usize;
    let mut manifest_text: Option<Vec<u8>> = None;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| PluginError::Malformed {
            origin: origin.clone(),
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(PluginError::CoreModule { origin });
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| PluginError::Malformed {
                        origin: origin.clone(),
                        offset: e.offset(),
                        message: e.message().to_string(),
                    })?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| PluginError::Malformed {
                        origin: origin.clone(),
                        offset: e.offset(),
                        message: e.message().to_string(),
                    })?;
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::CustomSection(reader) if reader.name() == MANIFEST_SECTION => {
                if manifest_text.is_some() {
                    return Err(PluginError::BadManifest {
                        origin,
                        message: format!("more than one `{MANIFEST_SECTION}` section"),
                    });
                }
                manifest_text = Some(reader.data().to_vec());
            }
            _ => {}
        }
    }
    let text = manifest_text.ok_or_else(|| PluginError::NoManifest {
        origin: origin.clone(),
    })?;
    let text = String::from_utf8(text).map_err(|_| PluginError::BadManifest {
        origin: origin.clone(),
        message: "not UTF-8".into(),
    })?;
    let manifest = Manifest::parse(&text).map_err(|message| PluginError::BadManifest {
        origin: origin.clone(),
        message,
    })?;

    for import in &imports {
        match classify_import(import) {
            ImportClass::Base => {}
            ImportClass::Needs(cap) if manifest.capabilities.contains(&cap) => {}
            ImportClass::Needs(capability) => {
                return Err(PluginError::UndeclaredImport {
                    origin,
                    import: import.clone(),
                    capability,
                });
            }
            ImportClass::Unknown => {
                return Err(PluginError::UnknownImport {
                    origin,
                    import: import.clone(),
                });
            }
        }
    }
    if !exports.iter().any(|e| {
        let iface = e.split('@').next().unwrap_or(e);
        iface == "capstan:plugin/task" || iface == "capstan:plugin/suspendable-task"
    }) {
        return Err(PluginError::NoTaskExport { origin });
    }
    // Suspending is the `approval` capability: a plugin that exports
    // `suspendable-task` must say so.
    if let Some(e) = exports
        .iter()
        .find(|e| e.split('@').next() == Some("capstan:plugin/suspendable-task"))
        && !manifest.capabilities.contains(&Capability::Approval)
    {
        return Err(PluginError::UndeclaredImport {
            origin,
            import: e.clone(),
            capability: Capability::Approval,
        });
    }
    Ok(ComponentInfo {
        digest: Digest::of(bytes),
        size: bytes.len(),
        manifest,
        imports,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_imports() {
        assert_eq!(
            classify_import("wasi:cli/environment@0.2.3"),
            ImportClass::Base
        );
        assert_eq!(
            classify_import("capstan:plugin/log@0.1.0"),
            ImportClass::Base
        );
        assert_eq!(
            classify_import("wasi:http/outgoing-handler@0.2.0"),
            ImportClass::Needs(Capability::Http)
        );
        assert_eq!(
            classify_import("wasi:http/types@0.2.12"),
            ImportClass::Needs(Capability::Http)
        );
        // Only what the host links: another wasi:http interface is unknown.
        assert_eq!(
            classify_import("wasi:http/incoming-handler@0.2.12"),
            ImportClass::Unknown
        );
        assert_eq!(
            classify_import("capstan:plugin/ssh@0.1.0"),
            ImportClass::Needs(Capability::Ssh)
        );
        assert_eq!(classify_import("evil:thing/x"), ImportClass::Unknown);
    }

    #[test]
    fn manifest_checks_defaults_and_names() {
        let ok = "name = \"x\"\nversion = \"1.0.0\"\n[[params]]\nname = \"a\"\ntype = \"array\"\ndefault = [\"1\"]\n";
        assert_eq!(Manifest::parse(ok).unwrap().params[0].ty, ParamType::Array);
        let bad = "name = \"x\"\nversion = \"1.0.0\"\n[[params]]\nname = \"a\"\ntype = \"array\"\ndefault = \"1\"\n";
        assert!(
            Manifest::parse(bad)
                .unwrap_err()
                .contains("default is string")
        );
        assert!(
            Manifest::parse("name = \"X Y\"\nversion = \"1.0.0\"")
                .unwrap_err()
                .contains("lowercase")
        );
        assert!(Manifest::parse("name = \"x\"\nversion = \"one\"").is_err());
        assert!(
            Manifest::parse("name = \"x\"\nversion = \"1.0.0\"\nbogus = 1")
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn rejects_non_components() {
        assert!(matches!(
            inspect(b"hello", "f"),
            Err(PluginError::NotWasm { .. })
        ));
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            inspect(core, "f"),
            Err(PluginError::CoreModule { .. })
        ));
        let truncated = b"\0asm\x0d\0\x01\0\x01\x05";
        assert!(matches!(
            inspect(truncated, "f"),
            Err(PluginError::Malformed { .. })
        ));
    }
}
