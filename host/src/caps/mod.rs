//! Capabilities: what a task may use beyond its own memory.
//!
//! Each capability has one shape ([`capability::Capability`], after spin's
//! factors): it links its bindings, declares and checks its grant type,
//! prepares what an attempt needs at dispatch, and builds its per-attempt
//! state, on which its generated `Host` impls live (`caps/X/host.rs`). The
//! set of capabilities is listed once, in [`set`], and everything else —
//! manifest names, the pipeline's `grants`, the store's state, the linker —
//! is derived from it. The host enforces the intersection of three layers:
//! the plugin manifest ∩ the pipeline's grant ∩ the platform policy
//! ([`grant`]).
//!
//! Every task has `log` and `files` (its workspaces); `http`, `secrets`,
//! `ssh` and `kube` are granted per task. Raw sockets are linked but every
//! address is denied ([`network`]).

pub mod capability;
pub mod container;
pub mod digest;
pub mod files;
pub mod grant;
pub mod http;
pub mod kube;
pub mod log;
pub mod network;
pub mod redact;
pub mod secrets;
pub mod set;
pub mod ssh;
pub mod workspace;

pub use log::{LogLevel, TaskSink};
pub use set::Grants;
