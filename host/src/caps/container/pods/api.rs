//! Requests to a run's namespace as its ServiceAccount (impersonated):
//! Pods, their log, their deletion.

use http_body_util::BodyExt as _;
use serde_json::Value;

use super::CONTAINER;
use crate::caps::container::engine::Stream;

/// Requests to the run's namespace, as the run's ServiceAccount.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) client: kube::Client,
    pub(super) namespace: String,
    pub(super) impersonate: Option<String>,
}

impl Api {
    pub(super) fn request(
        &self,
        method: http::Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Request<kube::client::Body>, String> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(who) = &self.impersonate {
            b = b.header("Impersonate-User", who);
        }
        if body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.body(body.map_or_else(kube::client::Body::empty, kube::client::Body::from))
            .map_err(|e| e.to_string())
    }

    pub(super) async fn send(
        &self,
        method: http::Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let res = self
            .client
            .send(self.request(method, uri, body)?)
            .await
            .map_err(|e| format!("Kubernetes API: {e}"))?;
        let status = res.status().as_u16();
        let body = http_body_util::Limited::new(res.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| format!("Kubernetes API response: {e}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    }

    pub(super) fn refused(&self, status: u16, body: &[u8], what: &str) -> String {
        let who = self.impersonate.as_deref().unwrap_or("the controller");
        let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let detail = msg["message"].as_str().unwrap_or("");
        if status == 403 {
            format!(
                "{who} may not {what} in namespace `{}` (RBAC: bind the run's ServiceAccount to the `capstan-step` Role, deploy/rbac.yaml): {detail}",
                self.namespace
            )
        } else {
            format!("Kubernetes API answered {status} to {what}: {detail}")
        }
    }

    pub(super) async fn pod(&self, name: &str) -> Result<Value, String> {
        let (status, body) = self
            .send(
                http::Method::GET,
                &format!("/api/v1/namespaces/{}/pods/{name}", self.namespace),
                None,
            )
            .await?;
        if status == 404 {
            return Err(format!("Pod {name} is gone (deleted by someone else)"));
        }
        if status != 200 {
            return Err(self.refused(status, &body, "get Pods"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("Pod {name}: {e}"))
    }

    /// The container's log (followed to its end if `follow`). A log that
    /// cannot be read is noted in the task log, not fatal: the exit code
    /// still decides.
    pub(super) async fn log(
        &self,
        name: &str,
        follow: bool,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) {
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{name}/log?container={CONTAINER}&follow={follow}",
            self.namespace
        );
        let res = match self.request(http::Method::GET, &uri, None) {
            Ok(req) => self.client.send(req).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut body = match res {
            Ok(r) if r.status().is_success() => r.into_body(),
            Ok(r) => {
                let s = r.status().as_u16();
                out(
                    Stream::Err,
                    format!("capstan: the Pod's log: HTTP {s}\n").as_bytes(),
                );
                return;
            }
            Err(e) => {
                out(
                    Stream::Err,
                    format!("capstan: the Pod's log: {e}\n").as_bytes(),
                );
                return;
            }
        };
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(data) = f.data_ref() {
                        out(Stream::Out, data);
                    }
                }
                Err(e) => {
                    out(
                        Stream::Err,
                        format!("capstan: the Pod's log broke off: {e}\n").as_bytes(),
                    );
                    return;
                }
            }
        }
    }

    pub(super) async fn delete(&self, name: &str) {
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{name}?gracePeriodSeconds=0",
            self.namespace
        );
        match self.send(http::Method::DELETE, &uri, None).await {
            Ok((s, _)) if s < 300 || s == 404 => {}
            Ok((s, body)) => {
                tracing::warn!(pod = name, status = s, error = %self.refused(s, &body, "delete Pods"), "deleting a step Pod failed")
            }
            Err(e) => tracing::warn!(pod = name, error = %e, "deleting a step Pod failed"),
        }
    }
}

/// Deletes a step Pod when dropped (a cancelled or timed-out task drops
/// the call mid-way), or now.
pub(super) struct Deletion {
    pub(super) api: Option<Api>,
    pub(super) name: String,
}

impl Deletion {
    pub(super) async fn now(mut self) {
        if let Some(api) = self.api.take() {
            let name = std::mem::take(&mut self.name);
            let _ = tokio::spawn(async move { api.delete(&name).await }).await;
        }
    }
}

impl Drop for Deletion {
    fn drop(&mut self) {
        if let (Some(api), Ok(rt)) = (self.api.take(), tokio::runtime::Handle::try_current()) {
            let name = std::mem::take(&mut self.name);
            rt.spawn(async move { api.delete(&name).await });
        }
    }
}
