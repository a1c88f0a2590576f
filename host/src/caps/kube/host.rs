//! Generated `Host` impls for `capstan:plugin/kube`.

use futures::{AsyncBufReadExt as _, StreamExt as _};
use http_body_util::BodyExt as _;
use wasmtime::component::Resource;

use super::*;
use crate::bindings::capstan::plugin::kube::{Host, HostWatch, Response};

impl Host for KubeView<'_> {
    async fn send(&mut self, req: Request) -> Result<Response, TaskError> {
        self.state.check(&req)?;
        if req.verb == "watch" {
            return Err(TaskError::InvalidParams(
                "use start-watch for `watch`".into(),
            ));
        }
        let http_req = self.state.http_request(&req, false)?;
        let client = self.state.target.as_ref().expect("checked").client.clone();
        let res = client
            .send(http_req.map(kube::client::Body::from))
            .await
            .map_err(|e| failed(format!("Kubernetes API: {e}")))?;
        let status = res.status().as_u16();
        let body = http_body_util::Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| failed(format!("Kubernetes API response: {e}")))?
            .to_bytes();
        if status == 403 {
            self.state.sink.log(
                LogLevel::Warn,
                &format!(
                    "kube: the API server refused `{} {}` (RBAC of the run's ServiceAccount)",
                    req.verb,
                    resource_key(&req)
                ),
            );
        }
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn start_watch(&mut self, mut req: Request) -> Result<Resource<Watch>, TaskError> {
        req.verb = "watch".into();
        self.state.check(&req)?;
        let http_req = self.state.http_request(&req, true)?;
        let client = self.state.target.as_ref().expect("checked").client.clone();
        let stream = client
            .request_stream(http_req)
            .await
            .map_err(|e| failed(format!("Kubernetes API watch: {e}")))?;
        let reader: std::pin::Pin<Box<dyn futures::AsyncBufRead + Send>> = Box::pin(stream);
        self.table
            .push(Watch {
                lines: reader.lines(),
            })
            .map_err(failed)
    }
}

impl HostWatch for KubeView<'_> {
    async fn next(&mut self, w: Resource<Watch>) -> Result<Option<String>, TaskError> {
        let watch = self.table.get_mut(&w).map_err(failed)?;
        match watch.lines.next().await {
            None => Ok(None),
            Some(Ok(line)) if line.len() > MAX_BODY => Err(failed("watch event too large")),
            Some(Ok(line)) => Ok(Some(line)),
            Some(Err(e)) => Err(failed(format!("Kubernetes API watch: {e}"))),
        }
    }

    fn drop(&mut self, w: Resource<Watch>) -> wasmtime::Result<()> {
        self.table.delete(w)?;
        Ok(())
    }
}
