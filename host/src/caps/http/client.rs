//! Requests the host makes for itself (not for a task): a forge's commit
//! status API. Same connection code as granted requests ([`super::send`]):
//! TLS verified against the public web roots, the process's proxy
//! environment, every wait bounded.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

use super::send::{self, Proxy, Route};

/// The most of a response body kept (the rest is dropped).
const MAX_BODY: usize = 64 * 1024;

/// Send `method url` with `headers` and a JSON `body`; the status and up
/// to 64 KiB of the response body. `timeout` bounds connect, the first
/// byte and every gap between bytes.
pub async fn host_json_request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let body = Full::new(bytes::Bytes::from(body.to_string()))
        .map_err(|never: std::convert::Infallible| match never {});
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "capstan");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let route = Route {
        proxy: Proxy::from_env(&uri)?,
        tls: send::public_roots(),
        trust: "the public web roots".into(),
    };
    let options = RequestOptions {
        connect_timeout: Some(timeout),
        first_byte_timeout: Some(timeout),
        between_bytes_timeout: Some(timeout),
    };
    let (res, io) = send::send(req, &route, options)
        .await
        .map_err(|e| match e {
            HttpError::InternalError(Some(why)) => why,
            e => format!("{e:?}"),
        })?;
    tokio::spawn(io);
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e:?}"))?;
        if let Some(data) = frame.data_ref() {
            let room = MAX_BODY.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if room == 0 {
                break;
            }
        }
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}
