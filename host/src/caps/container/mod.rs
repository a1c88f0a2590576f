//! The `capstan:plugin/container` capability: run the team's own build and
//! test commands in a toolchain image (`go test ./...` in a golang image),
//! on the host's container engine. The plugin describes the container; the
//! host decides everything that matters for isolation: which images
//! (`grants.container`), the mounts (the task's own workspaces, at the
//! paths it sees), no capabilities, no new privileges, no network unless
//! granted, the results directory, the timeout, and removal afterwards.
//!
//! Backends: the Docker Engine API over a Unix socket (`engine.rs`: Docker,
//! or `podman system service`). Pods in the cluster are not done yet.
//!
//! Attacker's eye (tests/container.rs): an image outside the grant, a
//! look-alike repository (`…-evil`), a registry-prefix trick; inside the
//! container, mounts, device nodes, chown, the host's network; a results
//! file that is a link to a host file, results too large; a container that
//! ignores SIGTERM or outlives its timeout, and a task whose own timeout
//! drops the call mid-run (its container must not survive). Known gap: the
//! engine looks a workspace's path up again when it mounts it, so a task
//! running at the same time with write access to a parent of another task's
//! `subPath` could swap a directory for a link in between.

mod engine;
mod host;
pub mod spec;

use std::sync::Arc;

use wasmtime::component::Linker;

use super::capability::{Capability, Data, PrepareCtx, TaskCtx, TaskData, view};
pub use engine::Engine;
pub use spec::ContainerGrant;

/// The container capability.
pub struct ContainerCap;

/// A task's container grants, resolved: normalized patterns and the engine.
pub struct Prepared {
    pub allowed: Vec<(String, bool)>,
    pub engine: Option<Arc<Engine>>,
}

impl Capability for ContainerCap {
    const NAME: &'static str = "container";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/container"];
    type Grant = ContainerGrant;
    type Prepared = Prepared;
    type State = ContainerState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::container::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn check(grant: &ContainerGrant, report: &mut dyn FnMut(&str, String)) {
        if let Err(e) = spec::normalize_pattern(&grant.image) {
            report("image", e);
        }
    }

    fn prepare(grants: &[ContainerGrant], _: &PrepareCtx<'_>) -> Result<Prepared, String> {
        if grants.is_empty() {
            return Ok(Prepared {
                allowed: Vec::new(),
                engine: None,
            });
        }
        let allowed = grants
            .iter()
            .map(|g| spec::normalize_pattern(&g.image).map(|p| (p, g.network)))
            .collect::<Result<_, _>>()?;
        Ok(Prepared {
            allowed,
            engine: Some(Arc::new(Engine::connect()?)),
        })
    }

    fn instantiate(prepared: Prepared, _: &TaskCtx) -> ContainerState {
        ContainerState { prepared }
    }
}

/// Per-attempt state: what the task may run, and where.
pub struct ContainerState {
    prepared: Prepared,
}
