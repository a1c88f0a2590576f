//! The API's accept loop, built to stay up under hostile clients: idle,
//! half-sent and unauthenticated connections by the thousand must not
//! exhaust descriptors or starve `/healthz`.
//!
//! - **Connection limit**: at most [`ConnLimits::max_connections`] are
//!   served at once. Past that, a small reserve of slots serves only
//!   `/healthz` (everything else gets 503), with a short header timeout so a
//!   flood cannot hold them; past the reserve a connection is closed as soon
//!   as it is accepted (its descriptor freed at once).
//! - **Header-read timeout** (hyper's, with a tokio timer): a connection
//!   that has not sent a complete request head in time — a slow-loris, or
//!   an idle keep-alive connection — is closed.
//! - **Stalled peers**: every read and write of a connection must make
//!   progress within [`ConnLimits::io_timeout`] (a client that pipelines
//!   requests and never reads the answers would otherwise hold its slot
//!   forever); reserve slots serve one request and close.
//! - **Body limit**: request bodies over [`ConnLimits::max_body_bytes`] get
//!   413 before they are read; header size and count are bounded too.
//! - Accept errors (EMFILE when the process is out of descriptors) back off
//!   instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the API listener. Defaults: 512 connections (+16 for health
/// checks), 10 s to send a request head (2 s on a reserve slot), 30 s for
/// any one read or write, 64 KiB bodies, 64 headers in 64 KiB.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub health_reserve: usize,
    pub header_read_timeout: Duration,
    pub reserve_header_timeout: Duration,
    pub max_body_bytes: usize,
    /// Longest a single read or write may wait for the peer.
    pub io_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 512,
            health_reserve: 16,
            header_read_timeout: Duration::from_secs(10),
            reserve_header_timeout: Duration::from_secs(2),
            max_body_bytes: 64 * 1024,
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// Listener limits on the command line (`capstan serve`,
/// `capstan controller --listen`).
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Most API connections served at once; past it only /healthz is
    /// answered (on a small reserve), then connections are closed.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,

    /// Time a client has to send a complete request head (also how long an
    /// idle keep-alive connection is kept), e.g. 10s; any single read or
    /// write may stall three times as long.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
}

impl ListenArgs {
    pub fn limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: self.header_timeout,
            reserve_header_timeout: self.header_timeout.min(Duration::from_secs(2)),
            io_timeout: self.header_timeout * 3,
            ..ConnLimits::default()
        }
    }
}

fn builder(header_timeout: Duration, keep_alive: bool) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive)
        .max_buf_size(64 * 1024)
        .max_headers(64);
    b
}

/// Serve `app` on `listener` under `limits` until the future is dropped.
pub async fn serve_limited(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let max = limits.max_body_bytes;
    let app =
        app.layer(axum::extract::DefaultBodyLimit::max(max))
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                    // A declared length over the limit is refused before any of
                    // the body is read (chunked bodies are cut while read).
                    let declared = req
                        .headers()
                        .get(axum::http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    // Forge webhooks may be larger (GitHub's cap is 25 MB);
                    // they are checked by signature before anything else.
                    let max = if req.uri().path().starts_with("/v1/hooks/") {
                        max.max(crate::api::hooks::MAX_PAYLOAD)
                    } else {
                        max
                    };
                    if declared.is_some_and(|n| n > max as u64) {
                        let msg = format!("{{\"error\":\"request body over {max} bytes\"}}\n");
                        return (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response();
                    }
                    next.run(req).await
                },
            ));
    let probe = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, "server busy; try again\n") });
    let main = Arc::new(builder(limits.header_read_timeout, true));
    let reserve = Arc::new(builder(limits.reserve_header_timeout, false));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(limits.health_reserve));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("API accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (permit, svc, conn, io_timeout) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, app.clone(), main.clone(), limits.io_timeout),
            Err(_) => match spare.clone().try_acquire_owned() {
                Ok(p) => (
                    p,
                    probe.clone(),
                    reserve.clone(),
                    limits.reserve_header_timeout,
                ),
                Err(_) => {
                    tracing::debug!(%peer, "API: connection limit reached; closed");
                    continue; // dropping `tcp` closes it
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
        io.set_read_timeout(Some(io_timeout));
        io.set_write_timeout(Some(io_timeout));
        tokio::spawn(async move {
            let _permit = permit;
            let svc = TowerToHyperService::new(svc);
            let io = TokioIo::new(Box::pin(io));
            if let Err(e) = conn.serve_connection(io, svc).await {
                tracing::debug!(%peer, "API connection: {e}");
            }
        });
    }
}
