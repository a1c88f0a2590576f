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

mod client;
mod host;
mod send;
mod spec;
pub use client::host_json_request;
pub use host::host_post_json;
pub use send::Proxy;
pub use spec::{HttpGrantEntry, HttpGrantSpec};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpCtx;

use super::TaskSink;
use super::capability::{Capability, PrepareCtx, TaskCtx, TaskData};

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

/// The `http` capability: wasi:http, to granted authorities only, with
/// credentials, proxies and CAs applied by the host.
pub struct HttpCap;

/// Per-attempt state: wasmtime-wasi-http's context and Capstan's hooks.
pub struct HttpState {
    pub ctx: WasiHttpCtx,
    pub hooks: HttpHooks,
}

impl Capability for HttpCap {
    const NAME: &'static str = "http";
    const INTERFACES: &'static [&'static str] = &["wasi:http/outgoing-handler", "wasi:http/types"];
    type Grant = HttpGrantSpec;
    type Prepared = Vec<HttpGrant>;
    type State = HttpState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }

    fn check(g: &HttpGrantSpec, report: &mut dyn FnMut(&str, String)) {
        let check_name = super::secrets::check_name;
        let mut push = |field: &str, r: Result<(), String>| {
            if let Err(e) = r {
                report(field, e);
            }
        };
        push("", Authority::parse(g.url()).map(|_| ()));
        if let Some((secret, _)) = g.secret() {
            push("secret", check_name(secret));
        }
        if let Some(ca) = g.ca_secret() {
            push("caSecret", check_name(ca));
        }
        if let Some(proxy) = g.proxy() {
            push("proxy", Proxy::parse(proxy).map(|_| ()));
        }
    }

    fn secret_names(g: &HttpGrantSpec) -> Vec<&str> {
        g.secret_names().collect()
    }

    fn prepare(grants: &[HttpGrantSpec], ctx: &PrepareCtx<'_>) -> Result<Vec<HttpGrant>, String> {
        let read = ctx.secret;
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            let authority = Authority::parse(g.url())?;
            let ca = g.ca_secret().map(|n| read(n).map(|v| (n, v))).transpose()?;
            let transport = Transport::new(g.proxy(), ca.as_ref().map(|(n, v)| (*n, &v[..])))?;
            let grant = match g.secret() {
                None => HttpGrant::new(authority, None, transport)?,
                Some((name, auth)) => {
                    let value = read(name)?;
                    HttpGrant::new(authority, Some((&value, auth)), transport)
                        .map_err(|e| format!("secret `{name}`: {e}"))?
                }
            };
            out.push(grant);
        }
        Ok(out)
    }

    fn instantiate(grants: Vec<HttpGrant>, task: &TaskCtx) -> HttpState {
        HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: HttpHooks {
                grants: Arc::new(grants),
                sink: task.sink.clone(),
                timeouts: HttpTimeouts::default(),
            },
        }
    }
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
