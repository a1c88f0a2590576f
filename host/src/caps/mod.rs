//! Capabilities: what a task may use beyond its own memory.
//!
//! Each capability is one module with one shape: its grant config (validated
//! from the pipeline), its per-task state, and its generated `Host` impl in
//! `host.rs`. The host enforces the intersection of three layers:
//! the plugin manifest ∩ the pipeline's grant ∩ the platform policy.
//!
//! Implemented here: `log` (every task), `workspace` (WASI preopens),
//! `http` (wasi:http to granted authorities, host-side credentials) and
//! `secrets` (opaque handles, values only when granted). The `ssh`, `kube`
//! and `approval` capabilities are part of the WIT contract and the grant
//! model, and are refused at load time by this build (see
//! [`crate::manifest::Capability::implemented`]).

pub mod files;
pub mod grant;
pub mod http;
pub mod kube;
pub mod log;
pub mod network;
pub mod redact;
pub mod secrets;
pub mod spec;
pub mod ssh;
pub mod workspace;

pub use log::{LogLevel, TaskSink};
