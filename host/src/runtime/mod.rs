//! The sandboxed Wasm host: one [`Runtime`] per process.
//!
//! - One wasmtime `Engine` with the pooling allocator and epoch interruption.
//! - One `Linker`: WASI and every capability ([`crate::caps::set::link_all`]);
//!   what a call may do is decided per use from the attempt's grants.
//! - One `InstancePre` cached per component digest; compiled artifacts are
//!   cached on disk keyed by digest and engine settings.
//! - Per task attempt: a fresh `Store` whose WASI context grants only the
//!   task's workspaces, clocks and random (no env, no args, no stdin, no
//!   network), a memory cap, a log budget, a result-size cap and a timeout.

pub use crate::bindings;
mod attempt;
mod limits;
mod load;

pub use load::check_compiles;

use std::collections::HashMap;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use self::limits::Limiter;
pub use self::limits::TaskLimits;
use crate::caps::capability::{TaskCtx, TaskData};
use crate::caps::log::{Budget, StdioCapture};
use crate::caps::network;
use crate::caps::redact::Redactor;
use crate::caps::set::{Prepared, States};
use crate::caps::workspace::WorkspaceMount;
use crate::caps::{LogLevel, TaskSink};
use crate::digest::Digest;
use crate::manifest::{self, ComponentInfo};
use crate::params::ParamValue;

/// Engine-wide settings. Defaults: 256 MiB memory per instance, 128
/// concurrently live instances in the pool, compiled-artifact cache off,
/// 10 ms epoch tick (the granularity of timeouts and of yielding).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub max_memory_bytes: usize,
    pub max_instances: u32,
    pub cache_dir: Option<PathBuf>,
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_memory_bytes: 256 << 20,
            max_instances: 128,
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// A loaded, type-checked plugin ready to instantiate.
pub struct Plugin {
    pub info: ComponentInfo,
    /// Where it was loaded from (for messages).
    pub origin: String,
    pre: Pre,
}

enum Pre {
    /// Exports `task`.
    Task(bindings::TaskPre<TaskState>),
    /// Exports `suspendable-task` (world `approval-task`).
    Suspendable(bindings::suspendable::SuspendablePre<TaskState>),
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Call {
    /// `run` (every plugin).
    Run,
    /// `resume` of a suspended task (suspendable plugins).
    Resume { state: String, outcome: Outcome },
}

/// What a suspended task is resumed with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// JSON describing the event (an approval decision).
    Event(String),
    TimedOut,
}

/// A task's request to be suspended (it holds no instance while it waits).
#[derive(Debug, Clone)]
pub struct Suspend {
    pub kind: String,
    pub state: String,
    pub detail: serde_json::Value,
    pub timeout: Duration,
}

/// The kinds of suspension this host understands.
pub const SUSPEND_KINDS: &[&str] = &["approval"];

impl Plugin {
    pub fn digest(&self) -> &Digest {
        &self.info.digest
    }
}

/// Store data for one task attempt: WASI, the memory limiter, and every
/// capability's state ([`crate::caps::set::States`]).
pub struct TaskState {
    wasi: WasiCtx,
    limiter: Limiter,
    pub(crate) caps: States,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.caps.table,
        }
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.caps.http_view()
    }
}

impl TaskData for TaskState {
    fn caps(&mut self) -> &mut States {
        &mut self.caps
    }
}

/// One task attempt to execute.
pub struct Invocation {
    pub run_id: String,
    pub task_name: String,
    pub attempt: u32,
    pub params: Vec<(String, ParamValue)>,
    pub workspaces: Vec<WorkspaceMount>,
    pub limits: TaskLimits,
    pub sink: Arc<dyn TaskSink>,
    /// The task's grants, resolved for this attempt (secrets read).
    pub grants: Prepared,
    /// Redacts the run's secret values from everything the task writes.
    pub redactor: Arc<Redactor>,
    /// Carries a message when the attempt must stop now (the run went over
    /// its workspace disk budget); it then fails as over a limit.
    pub abort: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// Results the pipeline task declares beyond the manifest's (for a
    /// plugin whose manifest says `task-results`; checked at validation).
    pub task_results: Vec<String>,
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin rejected its params (not retried).
    InvalidParams,
    /// A capability use was denied (not retried).
    Denied,
    /// The plugin returned a failure.
    Failed,
    /// The guest trapped (panic, out-of-bounds, stack overflow, ...).
    Trapped,
    /// Memory, log or result limits were exceeded.
    LimitExceeded,
    /// The task's timeout elapsed.
    TimedOut,
    /// The host could not set the task up (workspace missing, ...).
    Setup,
}

impl FailureKind {
    /// Whether the pipeline's `retries` apply.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FailureKind::Failed | FailureKind::Trapped | FailureKind::TimedOut
        )
    }
}

/// What one attempt produced.
#[derive(Debug)]
pub struct AttemptReport {
    pub outcome: Result<Vec<(String, String)>, (FailureKind, String)>,
    /// Set when a suspendable task asked to wait (then `outcome` is
    /// `Ok(vec![])`).
    pub suspend: Option<Suspend>,
    /// When the Store was being created.
    pub started: Instant,
    /// When the guest first called the host, if it did.
    pub entered: Option<Instant>,
    pub finished: Instant,
}

/// The process-wide Wasm host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<TaskState>,
    plugins: Mutex<HashMap<Digest, Arc<Plugin>>>,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 4)
            .total_stacks(config.max_instances)
            .max_memories_per_component(4)
            .max_memory_size(config.max_memory_bytes);
        let mut wcfg = Config::new();
        wcfg.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .memory_reservation(4 << 30);
        let engine = Engine::new(&wcfg)
            .map_err(anyhow::Error::from)
            .context("creating the Wasm engine")?;

        let mut linker = Linker::<TaskState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::caps::set::link_all(&mut linker).map_err(anyhow::Error::from)?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("capstan-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Runtime {
            engine,
            linker,
            plugins: Mutex::new(HashMap::new()),
            config,
            _ticker: EpochTicker { stop },
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }
}

/// Format a duration like `1m30s` / `250ms`.
pub fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}
