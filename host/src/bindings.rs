//! The host's single `bindgen!` over the top-level `wit/`.
//!
//! Generated for the `capstan-host` world (http-task + ssh-task + kube-task:
//! everything the host links today); WASI and wasi:http types come from
//! wasmtime-wasi and wasmtime-wasi-http. Every plugin exports the same
//! `task` interface whatever its world, so one pre-instantiated export
//! lookup serves them all. Imports are synchronous host calls; the `task`
//! export is called asynchronously so a task's execution yields to the
//! tokio scheduler at every epoch tick.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "capstan-host",
    exports: { default: async },
    imports: {
        "capstan:plugin/ssh.connect": async,
        "capstan:plugin/ssh.[method]session.exec": async,
        "capstan:plugin/ssh.[method]session.exec-input": async,
        "capstan:plugin/ssh.[method]session.exec-files": async,
        "capstan:plugin/ssh.[method]session.put": async,
        "capstan:plugin/ssh.[method]session.get": async,
        "capstan:plugin/ssh.[method]session.start": async,
        "capstan:plugin/ssh.[method]process.write": async,
        "capstan:plugin/ssh.[method]process.close-stdin": async,
        "capstan:plugin/ssh.[method]process.read": async,
        "capstan:plugin/ssh.[method]process.wait": async,
        "capstan:plugin/files.write-files": async,
        "capstan:plugin/container.run": async,
        "capstan:plugin/kube.send": async,
        "capstan:plugin/kube.start-watch": async,
        "capstan:plugin/kube.[method]watch.next": async,
    },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "capstan:plugin/digest.hasher": crate::caps::digest::Hasher,
        "capstan:plugin/secrets.secret": crate::caps::secrets::Secret,
        "capstan:plugin/ssh.session": crate::caps::ssh::Session,
        "capstan:plugin/ssh.process": crate::caps::ssh::Process,
        "capstan:plugin/kube.watch": crate::caps::kube::Watch,
    },
});

pub use self::capstan::plugin::log::Level;
pub use self::capstan::plugin::types::{
    Denial, GrantLayer, Param, ParamValue as WitParamValue, TaskError, TaskInfo, TaskInput,
    TaskResult, Workspace,
};
/// Pre-instantiated plugin (the `task` export), for any world.
pub type TaskPre<T> = CapstanHostPre<T>;

/// Suspendable plugins (world `approval-task`): they export
/// `suspendable-task` instead of `task`. Types shared with the main
/// bindings.
pub mod suspendable {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "approval-task",
        exports: { default: async },
        with: {
            "capstan:plugin/types": super::capstan::plugin::types,
            "capstan:plugin/log": super::capstan::plugin::log,
        },
    });
    pub use exports::capstan::plugin::suspendable_task::{Outcome, Step, SuspendRequest};
    /// Pre-instantiated suspendable plugin.
    pub type SuspendablePre<T> = ApprovalTaskPre<T>;
}
