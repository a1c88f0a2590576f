//! Raw network access (wasi:sockets): linked so that components built with
//! std networking load, but every address is denied. Outbound traffic is the
//! `http` capability's job, which checks authorities; a denial is logged
//! with the layer that refused it.

use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::{LogLevel, TaskSink};

/// Deny every socket address, logging each attempt to the task log.
///
/// Creating a TCP/UDP socket is allowed so that every bind, connect and send
/// reaches the address check, which refuses it and says so in the task log;
/// an unbound, unconnected socket can do nothing. Name lookup stays off (DNS
/// would be an exfiltration channel).
pub fn deny_all(builder: &mut WasiCtxBuilder, sink: Arc<dyn TaskSink>) {
    builder
        .allow_ip_name_lookup(false)
        .allow_tcp(true)
        .allow_udp(true);
    builder.socket_addr_check(move |addr, usage| {
        let what = match usage {
            SocketAddrUse::TcpBind => "tcp bind",
            SocketAddrUse::TcpConnect => "tcp connect",
            SocketAddrUse::TcpListen => "tcp listen",
            SocketAddrUse::TcpAccept => "tcp accept",
            SocketAddrUse::UdpBind => "udp bind",
            SocketAddrUse::UdpSend => "udp send",
            SocketAddrUse::UdpReceive => "udp receive",
        };
        sink.log(
            LogLevel::Warn,
            &format!(
                "denied: network {what} {addr} (layer: host; raw sockets are never granted, \
                 use the http capability)"
            ),
        );
        Box::pin(async { false })
    });
}
