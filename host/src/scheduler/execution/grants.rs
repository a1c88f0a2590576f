//! A task's grants with their secrets read, and the run's redactor.

use super::*;
use crate::caps::capability::PrepareCtx;

impl<'a> Execution<'a> {
    /// A task's grants resolved for one attempt (each capability's
    /// `prepare`), secrets read from the secret store. A missing secret
    /// fails the task before it starts, naming the secret.
    pub(super) fn grants_of(
        &self,
        grants: &crate::pipeline::Grants,
        step: Option<(&str, u32)>,
    ) -> Result<crate::caps::set::Prepared, String> {
        // Caches are kept per pipeline name; in the cluster per namespace
        // too (`STATE/tenants/NS/caches/…`), so a team cannot name its
        // pipeline like another team's and share (poison) its caches.
        let cache_root: std::borrow::Cow<std::path::Path> = match &self.kube {
            Some(id) if self.sched.tenanted() => {
                crate::scheduler::tenant_root(&self.sched.state_dir, &id.namespace).into()
            }
            _ => self.sched.state_dir.as_path().into(),
        };
        grants.prepare(&PrepareCtx {
            secret: &|name| self.secrets.require(name),
            cluster: &|| self.kube_target(),
            policy: &*self.sched.policy,
            caches: Some((&cache_root, &self.prepared.doc.name)),
            pods: self.sched.pods.as_ref(),
            step: step.map(|(task, attempt)| (self.run_id.as_str(), task, attempt)),
        })
    }

    /// In cluster mode, read the Secrets the run's tasks are granted (as
    /// the run's ServiceAccount). Read at each (re)start, so a resumed run
    /// sees the Secrets as they are then.
    pub(in crate::scheduler) async fn read_cluster_secrets(&mut self) {
        let Some(target) = self.kube.as_ref().and(self.kube_target()) else {
            return;
        };
        if matches!(self.secrets, SecretSource::Withheld(_)) {
            return;
        }
        let names = self.granted_secret_names();
        self.redactor = None;
        self.secrets = SecretSource::cluster(
            &target.client,
            &target.namespace,
            target.impersonate.as_deref(),
            names,
        )
        .await;
    }

    /// Where this run's kube requests go, and as whom.
    pub(super) fn kube_target(&self) -> Option<crate::caps::kube::KubeTarget> {
        let client = self.sched.kube_client.clone()?;
        let (namespace, impersonate) = match &self.kube {
            Some(id) => (
                id.namespace.clone(),
                id.service_account
                    .as_ref()
                    .map(|sa| format!("system:serviceaccount:{}:{sa}", id.namespace)),
            ),
            None => (client.default_namespace().to_string(), None),
        };
        Some(crate::caps::kube::KubeTarget {
            client,
            namespace,
            impersonate,
        })
    }

    /// The names of every secret any task of the run is granted.
    pub(super) fn granted_secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for t in &self.prepared.plan.tasks {
            names.extend(t.spec.grants.secret_names().into_iter().map(str::to_string));
        }
        names.sort();
        names.dedup();
        names
    }

    /// The run's redactor: every granted secret value that can be read
    /// (one that cannot fails its task at dispatch anyway).
    pub(super) fn redactor(&mut self) -> Arc<Redactor> {
        if let Some(r) = &self.redactor {
            return r.clone();
        }
        let values: Vec<Vec<u8>> = self
            .granted_secret_names()
            .iter()
            .filter_map(|n| self.secrets.require(n).ok())
            .collect();
        let r = Redactor::shared(values.iter().map(Vec::as_slice));
        self.redactor = Some(r.clone());
        r
    }
}
