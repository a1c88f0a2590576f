//! How the host carries a granted request to its authority: straight there,
//! or through an HTTP proxy (`CONNECT` for https, the absolute-form request
//! for http), with TLS verified against the public web roots or against the
//! grant's own CA bundle. Every wait is bounded by the request's timeouts.
//!
//! Modelled on wasmtime-wasi-http's `default_send_request` (same timeouts,
//! same body wrapper semantics), which cannot take a proxy or other roots.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

use super::Authority;

/// Where a request goes on the way to its authority, and whom it trusts.
#[derive(Clone)]
pub struct Route {
    /// An `http://host:port` proxy, or none: connect directly.
    pub proxy: Option<Proxy>,
    /// The TLS roots: the public web roots, or the grant's CA bundle.
    pub tls: Arc<rustls::ClientConfig>,
    /// Said in errors: which roots `tls` holds.
    pub trust: Arc<str>,
}

/// An HTTP proxy (the connection to it is plain TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization`, from credentials in the proxy URL of the
    /// environment (never from a plugin).
    pub authorization: Option<http::HeaderValue>,
}

impl Proxy {
    /// Parse `http://host[:port]`; a path or an https proxy is refused.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("proxy `{url}` is not a URL: {e}"))?;
        if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("http") {
            return Err(format!(
                "proxy `{url}`: only http:// proxies are supported (https requests still use TLS \
                 end to end, through CONNECT)"
            ));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("proxy `{url}`: needs a host"))?;
        if auth.as_str().contains('@') {
            return Err(format!(
                "proxy `{url}`: credentials do not go in a grant's proxy URL"
            ));
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(format!(
                "proxy `{url}`: a proxy is a host and port; leave out the path"
            ));
        }
        Ok(Proxy {
            host: auth.host().to_ascii_lowercase(),
            port: auth.port_u16().unwrap_or(80),
            authorization: None,
        })
    }

    /// The proxy the environment of this process (`HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl and git read them)
    /// names for `uri`, if any. Read once per process: it is the platform's
    /// setting, not a task's.
    pub fn from_env(uri: &http::Uri) -> Result<Option<Proxy>, String> {
        static ENV: OnceLock<hyper_util::client::proxy::matcher::Matcher> = OnceLock::new();
        let Some(hit) = ENV
            .get_or_init(hyper_util::client::proxy::matcher::Matcher::from_env)
            .intercept(uri)
        else {
            return Ok(None);
        };
        let p = hit.uri();
        let host = p.host().unwrap_or_default().to_ascii_lowercase();
        // Never a silent direct connection where the platform wants a proxy.
        if p.scheme_str() != Some("http") || host.is_empty() {
            return Err(format!(
                "the proxy environment (HTTPS_PROXY/HTTP_PROXY/ALL_PROXY) names {}://{host} for \
                 this request: only http:// proxies are supported",
                p.scheme_str().unwrap_or("?")
            ));
        }
        Ok(Some(Proxy {
            host,
            port: p.port_u16().unwrap_or(80),
            authorization: hit.basic_auth().cloned(),
        }))
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// TLS trusting the public web roots (webpki-roots), built once.
pub fn public_roots() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// TLS trusting only the CA certificates in `pem` (as git's
/// `http.sslCAInfo` does), which must hold at least one.
pub fn own_roots(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {}: not PEM: {e:?}", i + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

/// Open the connection `req` needs (TCP, through the proxy if any, then
/// TLS for https), all of it by `deadline`.
async fn connect(
    target: &Authority,
    route: &Route,
    deadline: tokio::time::Instant,
) -> Result<Box<dyn Stream>, HttpError> {
    let tls = target.scheme == "https";
    let open = async {
        let Some(proxy) = &route.proxy else {
            return TcpStream::connect(target.addr())
                .await
                .map_err(HttpError::Connect);
        };
        let mut tcp = TcpStream::connect(proxy.addr()).await.map_err(|e| {
            HttpError::InternalError(Some(format!("proxy {proxy}: cannot connect: {e}")))
        })?;
        if tls {
            tunnel(&mut tcp, proxy, target).await?;
        }
        Ok(tcp)
    };
    let tcp = tokio::time::timeout_at(deadline, open)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    if !tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.trim_matches(['[', ']']))
        .map_err(|_| HttpError::HttpRequestUriInvalid)?
        .to_owned();
    let connector = tokio_rustls::TlsConnector::from(route.tls.clone());
    let stream = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(|e| tls_error(e, target, &route.trust))?;
    Ok(Box::new(stream))
}

/// A TLS failure, said with what was trusted.
fn tls_error(e: std::io::Error, target: &Authority, trust: &str) -> HttpError {
    let cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    let hint = if cert {
        " (to trust a private CA, put its PEM in a secret and name it as `caSecret` on the grant)"
    } else {
        ""
    };
    HttpError::InternalError(Some(format!(
        "TLS with {target}: {e}; trusted: {trust}{hint}"
    )))
}

/// Ask `proxy` for a tunnel to `target` (`CONNECT host:port`).
/// Hand-written (40 lines) rather than hyper-util's `Tunnel`, which drops the
/// proxy's status line: a user needs to see "403 Forbidden" from the proxy.
async fn tunnel(tcp: &mut TcpStream, proxy: &Proxy, target: &Authority) -> Result<(), HttpError> {
    let addr = target.addr();
    let mut req = format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(auth) = &proxy.authorization {
        req.push_str("Proxy-Authorization: ");
        req.push_str(auth.to_str().unwrap_or_default());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let fail = |what: String| HttpError::InternalError(Some(format!("proxy {proxy}: {what}")));
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| fail(format!("CONNECT {addr}: {e}")))?;
    // Read the response head byte by byte: anything after it belongs to TLS.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 8192 {
            return Err(fail(format!("CONNECT {addr}: response head over 8 KiB")));
        }
        let b = tcp.read_u8().await.map_err(|e| {
            fail(format!(
                "CONNECT {addr}: connection closed before a response ({e})"
            ))
        })?;
        head.push(b);
    }
    let status = String::from_utf8_lossy(&head);
    let status = status.lines().next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if !code.starts_with('2') || !status.starts_with("HTTP/1.") {
        return Err(fail(format!("CONNECT {addr} refused: {status}")));
    }
    Ok(())
}

type Response = http::Response<TimedBody>;

/// Send `req` along `route` with the (already bounded) `options`. Returns
/// the response and the future driving the connection.
pub async fn send<B>(
    mut req: http::Request<B>,
    route: &Route,
    options: RequestOptions,
) -> Result<
    (
        Response,
        impl Future<Output = Result<(), HttpError>> + Send + use<B>,
    ),
    HttpError,
>
where
    B: Body<Data = Bytes, Error = HttpError> + Send + 'static,
{
    let target = Authority::of_request(req.uri()).ok_or(HttpError::HttpRequestUriInvalid)?;
    let long = Duration::from_secs(600);
    let connect_timeout = options.connect_timeout.unwrap_or(long);
    let first_byte = options.first_byte_timeout.unwrap_or(long);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(long)
        .max(Duration::from_nanos(1));
    // One deadline for TCP, the proxy's tunnel, TLS and the HTTP handshake.
    let deadline = tokio::time::Instant::now() + connect_timeout;
    let stream = connect(&target, route, deadline).await?;
    let (mut sender, conn) = tokio::time::timeout_at(
        deadline,
        hyper::client::conn::http1::Builder::new().handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // Origin-form on the wire, except plain http through a proxy, which
    // takes the absolute form.
    if route.proxy.is_none() || target.scheme == "https" {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    } else if let Some(auth) = &route.proxy.as_ref().and_then(|p| p.authorization.clone()) {
        req.headers_mut()
            .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
    }
    let mut conn = Box::pin(conn);
    let mut send = Box::pin(tokio::time::timeout(first_byte, sender.send_request(req)));
    let mut conn_done = false;
    // Drive the connection while waiting for the response head.
    let res = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = send.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
            conn_done = true;
            if let Err(e) = r {
                return Poll::Ready(Ok(Err(e)));
            }
            return send.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
    .map_err(|_| HttpError::ConnectionReadTimeout)?
    .map_err(HttpError::from)?;
    let mut timer = tokio::time::interval(between_bytes);
    timer.reset();
    let res = res.map(|incoming| TimedBody { incoming, timer });
    Ok((res, async move {
        if conn_done {
            return Ok(());
        }
        conn.await.map_err(|e| {
            if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                e.into()
            }
        })
    }))
}

/// A response body whose frames must arrive within `between_bytes`.
pub struct TimedBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
