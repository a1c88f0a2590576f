//! Loading a plugin: inspect its manifest and imports, compile it (or
//! reuse the cached artifact), check its exports against this host's
//! contract, and pre-instantiate it.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::*;

impl Runtime {
    /// Load a plugin from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Load a plugin from its bytes: inspect (its imports against its
    /// manifest's capabilities), compile (or reuse the cached
    /// artifact) and pre-instantiate. Cached per digest.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Arc<Plugin>> {
        let digest = Digest::of(bytes);
        if let Some(p) = self.plugins.lock().unwrap().get(&digest) {
            return Ok(p.clone());
        }
        let info = manifest::inspect(bytes, origin)?;
        let component = self.compile(bytes, &digest, origin)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("{origin}: the component's imports cannot be satisfied by this host")
            })?;
        let suspendable = info
            .exports
            .iter()
            .any(|e| e.split('@').next() == Some("capstan:plugin/suspendable-task"));
        check_export_types(&self.engine, &component, suspendable, origin)?;
        let pre = if suspendable {
            Pre::Suspendable(
                bindings::suspendable::SuspendablePre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("{origin}: the component does not export `capstan:plugin/suspendable-task` as expected")
                    })?,
            )
        } else {
            Pre::Task(bindings::TaskPre::new(pre)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("{origin}: the component does not export `capstan:plugin/task` as expected")
                })?)
        };
        let plugin = Arc::new(Plugin {
            info,
            origin: origin.to_string(),
            pre,
        });
        self.plugins.lock().unwrap().insert(digest, plugin.clone());
        Ok(plugin)
    }

    fn compile(&self, bytes: &[u8], digest: &Digest, origin: &str) -> Result<Component> {
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("{origin}: invalid component"));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let path = dir.join(format!("{}-{:016x}.cwasm", digest.hex(), h.finish()));
        if path.exists() {
            match deserialize_cached(&self.engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("ignoring unusable compiled cache {}: {e:#}", path.display())
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{origin}: invalid component"))?;
        // The cache only saves compile time: failing to write it is logged,
        // not fatal. Each writer has its own temp file (several threads or
        // processes may compile the same component at once; the last rename
        // wins, and every one of them wrote the same bytes).
        let write = || -> Result<()> {
            use std::io::Write as _;
            let serialized = component.serialize().map_err(anyhow::Error::from)?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating cache dir {}", dir.display()))?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&serialized)?;
            tmp.persist(&path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write compiled cache {}: {e:#}", path.display());
        }
        Ok(component)
    }
}

/// Check at load time that the exported functions have the types of this
/// host's contract (wasmtime would otherwise only notice at the first call):
/// a plugin built against another `capstan:plugin` is refused by name.
fn check_export_types(
    engine: &Engine,
    component: &Component,
    suspendable: bool,
    origin: &str,
) -> Result<()> {
    use bindings::suspendable::{Outcome, Step};
    use wasmtime::component::types::ComponentItem;
    let ty = component.component_type();
    let cx = ty.instance_type();
    let iface = if suspendable {
        "capstan:plugin/suspendable-task@0.1.0"
    } else {
        "capstan:plugin/task@0.1.0"
    };
    // A missing export is reported by the bindings' own lookup.
    let Some(ComponentItem::ComponentInstance(inst)) = ty.get_export(engine, iface).map(|e| e.ty)
    else {
        return Ok(());
    };
    let func = |name: &str| match inst.get_export(engine, name).map(|e| e.ty) {
        Some(ComponentItem::ComponentFunc(f)) => Ok(f),
        _ => Err(anyhow::anyhow!(
            "{origin}: the component's `{iface}` has no function `{name}`"
        )),
    };
    let wrong = |name: &str, e: wasmtime::Error| {
        anyhow::anyhow!(
            "{origin}: the component's `{iface}` function `{name}` has the wrong type ({e}); \
             rebuild the plugin against this host's wit/ (capstan:plugin@0.1.0)"
        )
    };
    if suspendable {
        func("run")?
            .typecheck::<(bindings::TaskInput,), (Result<Step, bindings::TaskError>,)>(&cx)
            .map_err(|e| wrong("run", e))?;
        func("resume")?
            .typecheck::<(bindings::TaskInput, String, Outcome), (Result<Step, bindings::TaskError>,)>(
                &cx,
            )
            .map_err(|e| wrong("resume", e))?;
    } else {
        func("run")?
            .typecheck::<(bindings::TaskInput,), (Result<Vec<bindings::TaskResult>, bindings::TaskError>,)>(
                &cx,
            )
            .map_err(|e| wrong("run", e))?;
    }
    Ok(())
}

/// Compile `bytes` once with a plain engine to check that it is a valid
/// component (used when publishing; nothing is instantiated).
pub fn check_compiles(bytes: &[u8], origin: &str) -> Result<()> {
    let engine = Engine::default();
    Component::new(&engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{origin}: invalid component"))?;
    Ok(())
}

#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the file was written by `Component::serialize` of this engine
    // configuration into the cache dir under the state directory, which no
    // task can reach (tasks see only their workspaces). wasmtime checks the
    // engine/version header before using it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}
