//! The host's single `bindgen!` over the top-level `wit/`.
//!
//! Imports are synchronous host calls (they never block on I/O for long);
//! the `task` export is called asynchronously so a task's execution yields
//! to the tokio scheduler at every epoch tick.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "base",
    exports: { default: async },
});

pub use self::capstan::plugin::log::Level;
pub use self::capstan::plugin::types::{
    Denial, GrantLayer, Param, ParamValue as WitParamValue, TaskError, TaskInfo, TaskInput,
    TaskResult, Workspace,
};
