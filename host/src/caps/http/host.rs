//! The wasi:http hooks (wasmtime-wasi-http's `Host` side for Capstan):
//! every request's authority is checked against the grants, credentials
//! are added by the host, and the connection is Capstan's own
//! ([`super::send`]).

use std::sync::Arc;

use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpCtxView,
    WasiHttpHooks,
};

use super::*;
use crate::caps::LogLevel;
use crate::caps::set::States;

impl States {
    /// The wasi:http view of the store (its table is the store's).
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
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
                &crate::caps::log::one_line(&format!(
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
