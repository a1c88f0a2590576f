//! Capstan: a Kubernetes-native CI/CD task runtime where every task is a
//! sandboxed WebAssembly component.
//!
//! - [`pipeline`]: `Pipeline`/`PipelineRun` YAML, parsed with source spans and
//!   validated before anything runs.
//! - [`runtime`]: the wasmtime host — one engine, a cached `InstancePre` per
//!   component digest, a fresh deny-by-default store per task attempt.
//! - [`caps`]: capabilities a task may be granted.
//! - [`scheduler`]: the tokio DAG executor.
//! - [`store`]: the durable run store (SQLite, WAL).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use capstan::{runtime::{Runtime, RuntimeConfig}, store::RunStore};
//! let runtime = std::sync::Arc::new(Runtime::new(RuntimeConfig::default())?);
//! let store = RunStore::open(std::path::Path::new("/tmp/capstan-state"))?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod bindings;
pub mod caps;
pub mod cli;
pub mod cluster;
pub use capstan_registry::digest;
pub mod escape;
pub mod forge;
pub mod identity;
pub mod manifest;
pub mod metrics;
pub mod params;
pub mod pipeline;
pub mod policy;
pub mod resolve;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod view;
