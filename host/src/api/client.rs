//! The CLI's side of the API (`capstan logs --server`, `capstan approve
//! --server`): plain HTTP/1.1 with hyper. Reach a controller in a cluster
//! with `kubectl port-forward` (the tunnel is the API server's TLS), or put
//! a TLS ingress in front of it.
//!
//! The bearer token is `--token`/`CAPSTAN_TOKEN`, else the current user's
//! token from the kubeconfig (`KUBECONFIG` or `~/.kube/config`), so the
//! same credentials as `kubectl` work against a controller.

use anyhow::{Context as _, Result, anyhow, bail};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub struct ApiClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<bytes::Bytes>>,
}

impl ApiClient {
    /// A client of `server` (`http://HOST:PORT`).
    pub fn new(server: &str, token: Option<String>) -> Result<ApiClient> {
        let base = server.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            bail!(
                "--server {server}: https is not supported by the CLI yet; use `kubectl port-forward` and http://127.0.0.1:PORT"
            );
        }
        if !base.starts_with("http://") {
            bail!("--server {server}: expected http://HOST:PORT");
        }
        let token = match token.filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => kubeconfig_token().context(
                "no API token: pass --token (or CAPSTAN_TOKEN), or use a kubeconfig whose user has a token",
            )?,
        };
        Ok(ApiClient {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        self.call("POST", path, Some(body)).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(bytes)))?;
        let res = self
            .http
            .request(req)
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = res.status();
        let body = http_body_util::Limited::new(res.into_body(), 64 << 20)
            .collect()
            .await
            .map_err(|e| anyhow!("{method} {url}: reading the answer: {e}"))?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({ "error": String::from_utf8_lossy(&body[..body.len().min(500)]) }),
        );
        if !status.is_success() {
            let msg = v["error"].as_str().unwrap_or("").to_string();
            return Err(ApiCallError {
                status: status.as_u16(),
                message: msg,
            })
            .with_context(|| format!("{method} {url}"));
        }
        Ok(v)
    }
}

/// A refusal or failure answered by the server.
#[derive(Debug, thiserror::Error)]
#[error("the server answered {status}: {message}")]
pub struct ApiCallError {
    pub status: u16,
    pub message: String,
}

/// The bearer token of the kubeconfig's current user, if it has one.
pub fn kubeconfig_token() -> Result<String> {
    let kc = kube::config::Kubeconfig::read().context("reading the kubeconfig")?;
    let ctx_name = kc
        .current_context
        .clone()
        .ok_or_else(|| anyhow!("the kubeconfig has no current context"))?;
    let user = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .ok_or_else(|| anyhow!("context `{ctx_name}` names no user"))?;
    let auth = kc
        .auth_infos
        .iter()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.as_ref())
        .ok_or_else(|| anyhow!("no user `{user}` in the kubeconfig"))?;
    if let Some(t) = &auth.token {
        use secrecy::ExposeSecret as _;
        return Ok(t.expose_secret().to_string());
    }
    if let Some(f) = &auth.token_file {
        return Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading token file {f}"))?
            .trim()
            .to_string());
    }
    bail!(
        "the kubeconfig user `{user}` has no bearer token (client certificates and exec plugins are not supported by --server yet)"
    )
}
