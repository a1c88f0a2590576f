//! The one shape of a capability, after spin's factors
//! (`crates/factors/src/factor.rs` in spinframework/spin): a capability links its WIT bindings,
//! declares its grant type (one entry of `grants.<name>` in a pipeline) and
//! checks it, prepares what an attempt needs when the task is dispatched
//! (secrets read, a cluster client chosen), and builds its per-attempt state,
//! on which its generated `Host` traits are implemented (in `caps/X/host.rs`,
//! on [`View`]).
//!
//! The set of capabilities is listed once, in [`super::set`]: the manifest's
//! capability names, which imports need which capability, the pipeline's
//! `grants` type and its validation, the prepared grants an attempt carries
//! and the store's per-attempt state are all derived from that list.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{HasData, Linker, ResourceTable};

use super::TaskSink;
use super::log::Budget;
use super::set::States;
use super::workspace::WorkspaceMount;

/// A capability: what a task may use beyond its own memory and the base
/// WASI world.
pub trait Capability: Sized + Send + 'static {
    /// Its name in a manifest's `capabilities` and a pipeline's `grants`.
    const NAME: &'static str;
    /// The WIT interfaces (`package/interface`, no version) that need it: a
    /// component importing one must declare the capability.
    const INTERFACES: &'static [&'static str];
    /// One entry of `grants.<NAME>`, as a pipeline writes it.
    type Grant: Clone
        + std::fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// What one attempt is given, resolved at dispatch from its grants.
    type Prepared: Send + 'static;
    /// Per-attempt state in the wasmtime store.
    type State: Send + 'static;

    /// Link the capability's bindings (every plugin gets the same linker;
    /// what a call may do is decided per use from the state).
    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// Check one grant's shape when the pipeline is validated; each problem
    /// is reported with the field it is in (`""` for the entry itself).
    fn check(_grant: &Self::Grant, _report: &mut dyn FnMut(&str, String)) {}

    /// The secrets one grant names (read at run start; their values are
    /// redacted from everything the run's tasks write).
    fn secret_names(_grant: &Self::Grant) -> Vec<&str> {
        Vec::new()
    }

    /// Whether the secrets a grant names can reach the plugin (a container
    /// runs what the plugin writes, so it can hand them back): such a grant
    /// also needs the `secrets` capability in the manifest and the policy.
    const SECRETS_REACH_PLUGIN: bool = false;

    /// Resolve a task's grants for one attempt. An error fails the task
    /// before it starts (e.g. a missing secret, by name).
    fn prepare(grants: &[Self::Grant], ctx: &PrepareCtx<'_>) -> Result<Self::Prepared, String>;

    /// The attempt's state. Runs for every attempt of every task, granted or
    /// not: keep it cheap (the dispatch path is benchmarked).
    fn instantiate(prepared: Self::Prepared, task: &TaskCtx) -> Self::State;
}

/// The grant type of a capability every task has (nothing to grant): no
/// value of it exists, so `grants` never carries one.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub enum NoGrant {}

/// What [`Capability::prepare`] may use.
pub struct PrepareCtx<'a> {
    /// A secret's value by name; the error names the secret.
    pub secret: &'a dyn Fn(&str) -> Result<Vec<u8>, String>,
    /// Where the run's cluster requests go and as whom (cluster mode, or a
    /// local run given a kubeconfig); `None` without a cluster.
    pub cluster: &'a dyn Fn() -> Option<super::kube::KubeTarget>,
    /// The platform policy (ceilings within a capability, such as which
    /// registries containers may come from).
    pub policy: &'a dyn super::grant::Policy,
    /// The state directory and the pipeline's name, for what is kept
    /// across its runs (container caches); None where nothing is kept.
    pub caches: Option<(&'a std::path::Path, &'a str)>,
    /// Where containers run as Pods (the controller); None: the local
    /// engine.
    pub pods: Option<&'a super::container::PodSettings>,
    /// The attempt being prepared: (run, task, attempt); None outside one
    /// (e.g. a notification).
    pub step: Option<(&'a str, &'a str, u32)>,
}

/// The attempt's context every capability may read: its log, its
/// workspaces, its memory cap.
pub struct TaskCtx {
    /// The task's log (already redacting).
    pub sink: Arc<dyn TaskSink>,
    /// The task's log budget, with the run's redactor.
    pub budget: Arc<Budget>,
    /// The task's workspaces, as it sees them.
    pub mounts: Arc<[WorkspaceMount]>,
    /// The most memory the task may use: no host call collects more for it.
    pub memory_cap: usize,
}

/// What a capability's generated `Host` impls see: its state, the store's
/// resource table, and the attempt's context.
pub struct View<'a, S> {
    pub state: &'a mut S,
    pub table: &'a mut ResourceTable,
    pub task: &'a TaskCtx,
}

/// `HasData` for capability `C`'s bindings: a [`View`] of its state.
pub struct Data<C>(PhantomData<C>);

impl<C: Capability> HasData for Data<C> {
    type Data<'a> = View<'a, C::State>;
}

/// The store's data, as capabilities need it: their states, and the
/// wasi:http view the `http` capability links against.
pub trait TaskData: wasmtime_wasi_http::WasiHttpView + Send + 'static {
    fn caps(&mut self) -> &mut States;
}

/// Access to one capability's state in [`States`] (derived by the set).
pub trait Slot<C: Capability> {
    fn view(&mut self) -> View<'_, C::State>;
}

/// The getter capabilities hand to their generated `add_to_linker`.
pub fn view<C: Capability, T: TaskData>(t: &mut T) -> View<'_, C::State>
where
    States: Slot<C>,
{
    Slot::<C>::view(t.caps())
}
