//! A task's grants with their secrets read, and the run's redactor.

use super::*;

impl<'a> Execution<'a> {
    /// A task's grants with their secrets read from the secret store. A
    /// missing secret fails the task before it starts, naming the secret.
    pub(super) fn grants_of(
        &self,
        grants: &crate::pipeline::Grants,
    ) -> Result<ResolvedGrants, String> {
        let read = |name: &str| self.secrets.require(name);
        let mut http = Vec::new();
        for g in &grants.http {
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
            http.push(grant);
        }
        let mut secrets = Vec::new();
        for g in &grants.secrets {
            secrets.push(SecretGrant {
                name: g.name().to_string(),
                reveal: g.reveal(),
                value: Arc::new(read(g.name())?),
            });
        }
        let mut ssh = Vec::new();
        for g in &grants.ssh {
            let value = read(&g.secret)?;
            ssh.push(SshGrant {
                host: g.host.clone(),
                port: g.port,
                user: g.user.clone(),
                credential: SshGrant::credential(
                    &value,
                    g.auth == crate::pipeline::SshAuth::Password,
                )
                .map_err(|e| format!("secret `{}`: {e}", g.secret))?,
                host_key: SshGrant::host_key(g.host_key.as_deref(), g.known_hosts.as_deref())?,
            });
        }
        Ok(ResolvedGrants { http, secrets, ssh })
    }

    /// In cluster mode, read the Secrets the run's tasks are granted (as
    /// the run's ServiceAccount). Read at each (re)start, so a resumed run
    /// sees the Secrets as they are then.
    pub(in crate::scheduler) async fn read_cluster_secrets(&mut self) {
        let Some(target) = self.kube.as_ref().and(self.kube_target()) else {
            return;
        };
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
            let g = &t.spec.grants;
            names.extend(
                g.http
                    .iter()
                    .flat_map(|h| h.secret_names())
                    .map(str::to_string),
            );
            names.extend(g.secrets.iter().map(|s| s.name().to_string()));
            names.extend(g.ssh.iter().map(|s| s.secret.clone()));
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
