//! The `http` capability: outbound HTTP through wasi:http, to granted
//! authorities only.
//!
//! - A request to an authority (scheme, host, port) the pipeline did not
//!   grant the task is refused before any connection is made: the guest gets
//!   `HTTP-request-denied` and the task log says which authority and layer.
//! - A grant may bind a secret to an authority; the host then sets the
//!   `Authorization` header itself. Guests may never set `Authorization`
//!   (or the hop-by-hop headers wasmtime already forbids), so the plugin
//!   never sees the token, and nothing logs it.
//! - TLS certificates are always verified: against the public web roots,
//!   or only against the grant's own CA bundle (`caSecret`). A grant may
//!   name an HTTP proxy (`proxy`); otherwise the proxy environment of the
//!   Capstan process applies (`send.rs`). Connect, first byte and
//!   between-bytes timeouts are bounded.

mod send;
pub use send::Proxy;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use super::{LogLevel, TaskSink};

/// `scheme://host:port`, lowercased, with the scheme's default port filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// Parse a granted URL (`https://git.example.com`, `http://127.0.0.1:8080/`).
    /// Paths, queries and user info are not part of an authority grant.
    pub fn parse(url: &str) -> Result<Authority, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| format!("`{url}`: needs a scheme (http:// or https://)"))?
            .to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{url}`: only http and https are supported"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("`{url}`: needs a host"))?;
        if auth.as_str().contains('@') {
            return Err(format!(
                "`{url}`: credentials do not go in the URL; bind a secret to the grant"
            ));
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(format!(
                "`{url}`: a grant is a scheme, host and port; leave out the path"
            ));
        }
        let port = auth
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Authority {
            host: auth.host().to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    /// `host:port`, for connecting.
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The authority a request goes to; none for a URI without one or
    /// with user info. `http` takes the host after the *last* `@`, but a
    /// proxy or front end may read `http://x@evil:80@granted/` as
    /// `evil:80`: credentials come from grants, so any `@` is refused.
    fn of_request(uri: &http::Uri) -> Option<Authority> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let auth = uri.authority()?;
        if auth.as_str().contains('@') {
            return None;
        }
        let port = auth
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some(Authority {
            host: auth.host().to_ascii_lowercase(),
            scheme,
            port,
        })
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// How a bound secret becomes the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// The secret is `user:password`: `Authorization: Basic base64(...)`.
    #[default]
    Basic,
    /// The secret is a token: `Authorization: Bearer TOKEN`.
    Bearer,
}

/// One granted authority, with its credential resolved.
#[derive(Clone)]
pub struct HttpGrant {
    pub authority: Authority,
    /// The `Authorization` header value, if a secret is bound.
    authorization: Option<http::HeaderValue>,
    /// The grant's own proxy and TLS roots, if it names them.
    route: Transport,
}

/// How a grant's requests travel, as the pipeline wrote it.
#[derive(Clone, Default)]
pub struct Transport {
    /// `proxy:` of the grant; none: the process environment decides.
    pub proxy: Option<Proxy>,
    /// `caSecret:` of the grant: its name and the TLS config built from it.
    pub ca: Option<(String, Arc<rustls::ClientConfig>)>,
}

impl Transport {
    /// Parse a grant's `proxy` URL and `caSecret` (name, PEM value).
    pub fn new(proxy: Option<&str>, ca: Option<(&str, &[u8])>) -> Result<Transport, String> {
        let proxy = proxy.map(Proxy::parse).transpose()?;
        let ca = match ca {
            None => None,
            Some((name, pem)) => Some((
                name.to_string(),
                send::own_roots(pem).map_err(|e| format!("secret `{name}` (caSecret): {e}"))?,
            )),
        };
        Ok(Transport { proxy, ca })
    }

    /// The route for a request to `uri`.
    fn route(&self, uri: &http::Uri) -> Result<send::Route, String> {
        let (tls, trust) = match &self.ca {
            Some((name, tls)) => (
                tls.clone(),
                format!("only the CA bundle in secret `{name}`"),
            ),
            None => (send::public_roots(), "the public web roots".to_string()),
        };
        let proxy = match &self.proxy {
            Some(p) => Some(p.clone()),
            None => Proxy::from_env(uri)?,
        };
        Ok(send::Route {
            proxy,
            tls,
            trust: trust.into(),
        })
    }
}

impl std::fmt::Debug for HttpGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGrant")
            .field("authority", &self.authority)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("proxy", &self.route.proxy)
            .field("ca", &self.route.ca.as_ref().map(|(name, _)| name))
            .finish()
    }
}

impl HttpGrant {
    pub fn new(
        authority: Authority,
        secret: Option<(&[u8], AuthScheme)>,
        route: Transport,
    ) -> Result<HttpGrant, String> {
        let authorization = match secret {
            None => None,
            Some((value, scheme)) => {
                let value = std::str::from_utf8(value)
                    .map_err(|_| "the secret is not UTF-8 text".to_string())?
                    .trim_end_matches(['\r', '\n']);
                let header = match scheme {
                    AuthScheme::Basic => {
                        if !value.contains(':') {
                            return Err(
                                "a basic-auth secret is `user:password` (for a token, use `auth: bearer` \
                                 or `x-access-token:TOKEN`)"
                                    .into(),
                            );
                        }
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(value)
                        )
                    }
                    AuthScheme::Bearer => format!("Bearer {value}"),
                };
                let mut h = http::HeaderValue::from_str(&header).map_err(|_| {
                    "the secret holds characters not allowed in a header".to_string()
                })?;
                h.set_sensitive(true);
                Some(h)
            }
        };
        Ok(HttpGrant {
            authority,
            authorization,
            route,
        })
    }
}

/// Request timeouts (each bounded; the task's own timeout bounds the rest).
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        // plugins/sdk/src/http.rs names these in its timeout messages.
        HttpTimeouts {
            connect: Duration::from_secs(30),
            first_byte: Duration::from_secs(60),
            between_bytes: Duration::from_secs(60),
        }
    }
}

/// The per-task wasi:http hooks: authority check, credential injection.
pub struct HttpHooks {
    pub grants: Arc<Vec<HttpGrant>>,
    pub sink: Arc<dyn TaskSink>,
    pub timeouts: HttpTimeouts,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
)>;

impl WasiHttpHooks for HttpHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(|name| {
            *name == http::header::AUTHORIZATION
                || *name == http::header::PROXY_AUTHORIZATION
                || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let Some(authority) = Authority::of_request(request.uri()) else {
            self.sink.log(
                LogLevel::Warn,
                &super::log::one_line(&format!(
                    "denied: http {} {} (layer: host; no authority, or user info in it: \
                     credentials come from the grant)",
                    request.method(),
                    request.uri()
                )),
            );
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        };
        let Some(grant) = self.grants.iter().find(|g| g.authority == authority) else {
            self.sink.log(
                LogLevel::Warn,
                &format!(
                    "denied: http {} {authority} (layer: pipeline; not in this task's grants.http)",
                    request.method()
                ),
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        if let Some(h) = &grant.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, h.clone());
        }
        let t = self.timeouts;
        let bound = |asked: Option<Duration>, max: Duration| Some(asked.unwrap_or(max).min(max));
        let options = RequestOptions {
            connect_timeout: bound(options.and_then(|o| o.connect_timeout), t.connect),
            first_byte_timeout: bound(options.and_then(|o| o.first_byte_timeout), t.first_byte),
            between_bytes_timeout: bound(
                options.and_then(|o| o.between_bytes_timeout),
                t.between_bytes,
            ),
        };
        _ = fut;
        let route = match grant.route.route(request.uri()) {
            Ok(r) => r,
            Err(why) => {
                self.sink
                    .log(LogLevel::Error, &format!("http {authority}: {why}"));
                return Box::new(async { Err(HttpError::InternalError(Some(why))) });
            }
        };
        let (sink, method, uri) = (
            self.sink.clone(),
            request.method().clone(),
            request.uri().clone(),
        );
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = send::send(request, &route, options)
                .await
                .inspect_err(|e| {
                    if let HttpError::InternalError(Some(why)) = e {
                        sink.log(LogLevel::Warn, &format!("http {method} {uri}: {why}"));
                    }
                })?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A POST the host makes on a task's behalf (approval notifications),
/// under the same rules as the task's own requests: the URL's authority must
/// be in the task's `grants.http` (else a denial naming it), a bound
/// credential is sent as `Authorization`, every wait is bounded. Returns the
/// response status.
pub async fn host_post_json(
    grants: &[HttpGrant],
    url: &str,
    body: &serde_json::Value,
) -> Result<u16, String> {
    use http_body_util::{BodyExt as _, Full};
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let authority =
        Authority::of_request(&uri).ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let grant = grants
        .iter()
        .find(|g| g.authority == authority)
        .ok_or_else(|| {
            format!(
                "denied: http POST {authority} (layer: pipeline; not in this task's grants.http)"
            )
        })?;
    let body = Full::new(bytes::Bytes::from(body.to_string()))
        .map_err(|never: std::convert::Infallible| match never {});
    let mut req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "capstan")
        .body(body)
        .map_err(|e| e.to_string())?;
    if let Some(h) = &grant.authorization {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, h.clone());
    }
    let t = Duration::from_secs(10);
    let options = RequestOptions {
        connect_timeout: Some(t),
        first_byte_timeout: Some(t),
        between_bytes_timeout: Some(t),
    };
    let route = grant.route.route(req.uri())?;
    let (res, io) = send::send(req, &route, options)
        .await
        .map_err(|e| match e {
            HttpError::InternalError(Some(why)) => why,
            e => format!("{e:?}"),
        })?;
    let status = res.status().as_u16();
    drop(res);
    tokio::spawn(io);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_parse_and_normalize() {
        let a = Authority::parse("HTTPS://Git.Example.com").unwrap();
        assert_eq!(a.to_string(), "https://git.example.com:443");
        assert_eq!(
            Authority::parse("http://127.0.0.1:8080/")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "git.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/repo.git",
        ] {
            assert!(Authority::parse(bad).is_err(), "{bad}");
        }
        // A request's user info is refused, whatever host follows it.
        for uri in [
            "http://x@evil:80@granted/",
            "http://u@granted/",
            "http://granted:80@evil/",
        ] {
            assert_eq!(Authority::of_request(&uri.parse().unwrap()), None, "{uri}");
        }
        assert!(Authority::of_request(&"http://granted:8080/p".parse().unwrap()).is_some());
    }

    #[test]
    fn credentials_become_headers_and_stay_out_of_debug() {
        let a = Authority::parse("https://x").unwrap();
        let g = HttpGrant::new(
            a.clone(),
            Some((b"bob:pw\n", AuthScheme::Basic)),
            Transport::default(),
        )
        .unwrap();
        assert_eq!(
            g.authorization.as_ref().unwrap().to_str().unwrap(),
            "Basic Ym9iOnB3"
        );
        assert!(!format!("{g:?}").contains("Ym9i"));
        assert!(
            HttpGrant::new(
                a.clone(),
                Some((b"token", AuthScheme::Basic)),
                Transport::default()
            )
            .is_err()
        );
        let b =
            HttpGrant::new(a, Some((b"tok", AuthScheme::Bearer)), Transport::default()).unwrap();
        assert_eq!(b.authorization.unwrap().to_str().unwrap(), "Bearer tok");
    }
}
