//! The `capstan:plugin/container` capability: run the team's own build and
//! test commands in a toolchain image (`go test ./...` in a golang image),
//! on the host's container engine. The plugin describes the container; the
//! host decides everything that matters for isolation: which images
//! (`grants.container`), the mounts (the task's own workspaces, at the
//! paths it sees), no capabilities, no new privileges, no network unless
//! granted, the results directory, the timeout, and removal afterwards.
//!
//! Backends: the Docker Engine API over a Unix socket (`engine.rs`: Docker,
//! or `podman system service`) for local runs; in the controller, a Pod
//! per container in the run's namespace (`pods.rs`).
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

pub mod cache;
mod engine;
mod host;
mod limits;
pub mod pods;
pub mod spec;

use std::sync::Arc;

use wasmtime::component::Linker;

use super::capability::{Capability, Data, PrepareCtx, TaskCtx, TaskData, view};
pub use engine::Engine;
pub use limits::Limits;
pub use pods::{PodSettings, StepOf};
pub use spec::ContainerGrant;

/// The container capability.
pub struct ContainerCap;

/// A task's container grants, resolved: normalized patterns with what
/// their containers get, the platform's ceilings, and the engine.
pub struct Prepared {
    pub allowed: Vec<Allowed>,
    /// The platform's ceilings; None without a policy file.
    pub limits: Option<Limits>,
    /// The state directory and pipeline name caches are kept under.
    pub caches: Option<(std::path::PathBuf, String)>,
    pub backend: Option<Backend>,
}

/// Where a task's containers run.
#[derive(Clone)]
pub enum Backend {
    /// The local engine (Docker or podman).
    Engine(Arc<Engine>),
    /// Pods in the run's namespace (the controller).
    Pods(Arc<pods::Pods>),
}

/// One container run's place: its scratch directory (the script and the
/// results) and its backend.
pub(crate) enum Call {
    Engine(Arc<Engine>, tempfile::TempDir),
    Pod(Arc<pods::Pods>, pods::PodCall),
}

impl Backend {
    pub(crate) fn call(&self) -> Result<Call, String> {
        Ok(match self {
            Backend::Engine(e) => {
                let dir = tempfile::Builder::new()
                    .prefix("capstan-container-")
                    .tempdir()
                    .map_err(|e| format!("container scratch directory: {e}"))?;
                Call::Engine(e.clone(), dir)
            }
            Backend::Pods(p) => Call::Pod(p.clone(), p.next_call()),
        })
    }
}

impl Call {
    pub(crate) fn scratch(&self) -> &std::path::Path {
        match self {
            Call::Engine(_, d) => d.path(),
            Call::Pod(_, c) => &c.scratch,
        }
    }

    pub(crate) async fn run(
        &self,
        job: engine::Job,
        out: &mut (dyn FnMut(engine::Stream, &[u8]) + Send),
    ) -> Result<engine::Ended, String> {
        match self {
            Call::Engine(e, _) => e.run(job, out).await,
            Call::Pod(p, c) => p.run(c, job, out).await,
        }
    }
}

/// One grant, resolved.
pub struct Allowed {
    /// The normalized image pattern.
    pub pattern: String,
    pub network: bool,
    /// Its containers run as root with the runtime's default capabilities.
    pub root: bool,
    /// Secrets its containers may be given as environment variables, with
    /// their values (read at dispatch; redacted from every log of the run).
    pub secrets: Vec<(String, Vec<u8>)>,
    /// Caches its containers may mount.
    pub caches: Vec<String>,
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
        for s in &grant.secrets {
            if let Err(e) = super::secrets::check_name(s) {
                report("secrets", e);
            }
        }
        for c in &grant.caches {
            if let Err(e) = cache::check_key("cache", c) {
                report("caches", e);
            }
        }
        if grant.root && !grant.caches.is_empty() {
            report(
                "caches",
                "a `root: true` grant mounts no cache (what root leaves there could not be measured or cleared)".into(),
            );
        }
    }

    const SECRETS_REACH_PLUGIN: bool = true;

    fn secret_names(grant: &ContainerGrant) -> Vec<&str> {
        grant.secrets.iter().map(String::as_str).collect()
    }

    fn prepare(grants: &[ContainerGrant], ctx: &PrepareCtx<'_>) -> Result<Prepared, String> {
        let limits = ctx.policy.container_limits().cloned();
        if grants.is_empty() {
            return Ok(Prepared {
                allowed: Vec::new(),
                limits,
                caches: None,
                backend: None,
            });
        }
        let mut allowed = Vec::new();
        for g in grants {
            let mut secrets = Vec::new();
            for name in &g.secrets {
                let value = (ctx.secret)(name)?;
                secrets.push((name.clone(), value));
            }
            allowed.push(Allowed {
                pattern: spec::normalize_pattern(&g.image)?,
                network: g.network,
                root: g.root,
                secrets,
                caches: g.caches.clone(),
            });
        }
        Ok(Prepared {
            allowed,
            limits,
            caches: ctx.caches.map(|(s, p)| (s.to_path_buf(), p.to_string())),
            backend: Some(backend(ctx)?),
        })
    }

    fn instantiate(prepared: Prepared, _: &TaskCtx) -> ContainerState {
        ContainerState { prepared }
    }
}

/// Pods where the controller runs the task, else the local engine.
fn backend(ctx: &PrepareCtx<'_>) -> Result<Backend, String> {
    match (ctx.pods, ctx.step) {
        (Some(settings), Some((run, task, attempt))) => {
            let target = (ctx.cluster)()
                .ok_or("container steps run as Pods here, but no Kubernetes API is configured")?;
            let step = StepOf {
                run: run.to_string(),
                task: task.to_string(),
                attempt,
            };
            Ok(Backend::Pods(Arc::new(pods::Pods::new(
                target, settings, step,
            )?)))
        }
        _ => Ok(Backend::Engine(Arc::new(Engine::connect()?))),
    }
}

/// Per-attempt state: what the task may run, and where.
pub struct ContainerState {
    prepared: Prepared,
}
