//! A blocking HTTP/1.1 client over `wasi:http/outgoing-handler`.
//!
//! The host decides what may be reached: a request to an authority the task
//! was not granted fails with [`Error::Denied`] before any connection is
//! made, and credentials for granted authorities are added by the host.

use std::io::Read;

use crate::wasi::http::outgoing_handler;
use crate::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use crate::wasi::io::streams::{InputStream, StreamError};

#[derive(Debug)]
pub enum Error {
    /// The URL could not be used.
    BadUrl(String),
    /// The host refused the request (authority not granted).
    Denied(String),
    /// Transport failure (connect, TLS, timeout, protocol).
    Transport(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadUrl(m) => write!(f, "bad URL: {m}"),
            Error::Denied(a) => write!(
                f,
                "the host denied the request to {a}: it is not in this task's grants.http (see the task log)"
            ),
            Error::Transport(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A parsed `http(s)://authority/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub authority: String,
    pub path_and_query: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, Error> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::BadUrl(format!(
                "`{url}`: only http:// and https:// URLs"
            )));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::BadUrl(format!(
                "`{url}`: needs a host, and no credentials in the URL"
            )));
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }
}

/// A response whose body is read as it arrives.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    // Drop order matters: the stream before its body, the body before the
    // response.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The whole body (up to `limit` bytes).
    pub fn bytes(mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        (&mut self)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Transport(e.to_string()))?;
        if out.len() > limit {
            return Err(Error::Transport(format!(
                "response body over {limit} bytes"
            )));
        }
        Ok(out)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(stream) = &self.stream else {
            return Ok(0);
        };
        match stream.blocking_read(buf.len().min(64 * 1024) as u64) {
            Ok(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(0)
            }
            Err(StreamError::LastOperationFailed(e)) => {
                let why = match crate::wasi::http::types::http_error_code(&e) {
                    // Mid-body, a read timeout is the between-bytes one.
                    Some(ErrorCode::ConnectionReadTimeout) => {
                        describe(&ErrorCode::HttpResponseTimeout)
                    }
                    Some(code) => describe(&code),
                    None => e.to_debug_string(),
                };
                Err(std::io::Error::other(format!(
                    "reading the response: {why}"
                )))
            }
        }
    }
}

/// The timeouts this client asks for: the host's ceilings (see
/// `HttpTimeouts` in `host/src/caps/http.rs`), which it cannot raise, named
/// here so that a timeout's message can say the limit.
pub const CONNECT_TIMEOUT_SECS: u64 = 30;
pub const FIRST_BYTE_TIMEOUT_SECS: u64 = 60;
pub const BETWEEN_BYTES_TIMEOUT_SECS: u64 = 60;

/// A wasi:http error in words (the enum's name is not a message).
pub fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::ConnectionTimeout => {
            format!("could not connect within {CONNECT_TIMEOUT_SECS} s (connect timeout)")
        }
        ErrorCode::ConnectionReadTimeout => format!(
            "the server sent no response within {FIRST_BYTE_TIMEOUT_SECS} s (first-byte timeout)"
        ),
        ErrorCode::HttpResponseTimeout => format!(
            "the server stopped sending for {BETWEEN_BYTES_TIMEOUT_SECS} s (between-bytes timeout)"
        ),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTerminated => "the server closed the connection".into(),
        ErrorCode::ConnectionLimitReached => "too many connections".into(),
        ErrorCode::DestinationNotFound | ErrorCode::DnsError(_) => {
            "the name does not resolve".into()
        }
        ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            "the destination cannot be reached".into()
        }
        ErrorCode::TlsCertificateError => {
            "the server's TLS certificate is not trusted (the host always verifies)".into()
        }
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => {
            "the TLS handshake failed".into()
        }
        ErrorCode::HttpResponseIncomplete => "the response ended early".into(),
        ErrorCode::HttpResponseBodySize(_) | ErrorCode::HttpResponseHeaderSize(_) => {
            "the response is too large".into()
        }
        ErrorCode::HttpProtocolError => "the server broke the HTTP protocol".into(),
        ErrorCode::InternalError(Some(m)) => m.clone(),
        other => format!("{other:?}"),
    }
}

fn error_code(url: &Url, e: ErrorCode) -> Error {
    match e {
        ErrorCode::HttpRequestDenied => Error::Denied(url.origin()),
        other => Error::Transport(format!("{}: {}", url.origin(), describe(&other))),
    }
}

/// The request options: this client's timeouts, in nanoseconds.
fn options() -> RequestOptions {
    let o = RequestOptions::new();
    let ns = |secs: u64| Some(secs * 1_000_000_000);
    // The host bounds them; setting them names the limits we report.
    let _ = o.set_connect_timeout(ns(CONNECT_TIMEOUT_SECS));
    let _ = o.set_first_byte_timeout(ns(FIRST_BYTE_TIMEOUT_SECS));
    let _ = o.set_between_bytes_timeout(ns(BETWEEN_BYTES_TIMEOUT_SECS));
    o
}

/// Send a request and wait for the response head.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, Error> {
    let u = Url::parse(url)?;
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&list).map_err(|e| Error::BadUrl(format!("header: {e:?}")))?;
    let req = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        other => Method::Other(other.to_string()),
    };
    let bad = |what: &str| Error::BadUrl(format!("`{url}`: invalid {what}"));
    req.set_method(&method).map_err(|_| bad("method"))?;
    req.set_scheme(Some(if u.https {
        &Scheme::Https
    } else {
        &Scheme::Http
    }))
    .map_err(|_| bad("scheme"))?;
    req.set_authority(Some(&u.authority))
        .map_err(|_| bad("authority"))?;
    req.set_path_with_query(Some(&u.path_and_query))
        .map_err(|_| bad("path"))?;
    let outgoing = req.body().map_err(|_| bad("body"))?;
    let future = outgoing_handler::handle(req, Some(options())).map_err(|e| error_code(&u, e))?;
    {
        let stream = outgoing.write().map_err(|_| bad("body stream"))?;
        if let Some(body) = body {
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| Error::Transport(format!("sending the request body: {e:?}")))?;
            }
        }
    }
    OutgoingBody::finish(outgoing, None)
        .map_err(|e| Error::Transport(format!("finishing the request body: {e:?}")))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(error_code(&u, e)),
        Some(Err(())) | None => {
            return Err(Error::Transport(format!("{}: no response", u.origin())));
        }
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = response
        .consume()
        .map_err(|_| Error::Transport("response body already taken".into()))?;
    let stream = body
        .stream()
        .map_err(|_| Error::Transport("response body stream".into()))?;
    Ok(Response {
        status,
        headers,
        stream: Some(stream),
        _body: Some(body),
        _response: response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        let u =
            Url::parse("http://127.0.0.1:8080/repo.git/info/refs?service=git-upload-pack").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(
            u.path_and_query,
            "/repo.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(Url::parse("https://h").unwrap().path_and_query, "/");
        assert!(Url::parse("ftp://h").is_err());
        assert!(Url::parse("https://u:p@h/").is_err());
    }
}
