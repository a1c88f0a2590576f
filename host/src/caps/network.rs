//! Raw network access (wasi:sockets): linked so that components built with
//! std networking load, but every address is denied. Outbound traffic is the
//! `http` capability's job, which checks authorities; a denial is logged
//! with the layer that refused it.

use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;

use super::{LogLevel, TaskSink};

/// Deny every socket address, logging each attempt to the task log.
pub fn deny_all(builder: &mut WasiCtxBuilder, sink: Arc<dyn TaskSink>) {
    builder.allow_ip_name_lookup(false);
    builder.socket_addr_check(move |addr, usage| {
        sink.log(
            LogLevel::Warn,
            &format!(
                "denied: network {usage:?} {addr} (layer: host; raw sockets are never granted, \
                 use the http capability)"
            ),
        );
        Box::pin(async { false })
    });
}
