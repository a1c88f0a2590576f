//! `capstan crds` and `capstan controller`: Kubernetes mode.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{Cli, ExitCode};
use crate::cluster::{controller, lease};

/// `capstan controller`: execute PipelineRuns of the cluster in this process.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Watch PipelineRuns in this namespace only (default: all namespaces).
    #[arg(long, env = "CAPSTAN_WATCH_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Concurrent runs per namespace; later runs wait in `Queued`, first
    /// come first served. Default: no limit.
    #[arg(long, env = "CAPSTAN_NAMESPACE_QUOTA", value_name = "N")]
    pub quota: Option<usize>,

    /// Keep a finished run's workspaces this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub workspace_retention: Duration,

    /// Parallel tasks per run.
    #[arg(long, default_value_t = 16)]
    pub parallelism: usize,

    /// Memory limit per task, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_limit: usize,

    /// Run without leader election (a single replica).
    #[arg(long)]
    pub no_leader_election: bool,

    /// The namespace of the leader Lease (default: the Pod's namespace,
    /// else `default`).
    #[arg(long, env = "CAPSTAN_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,

    /// The leader Lease's name.
    #[arg(long, default_value = "capstan-controller")]
    pub lease_name: String,

    /// How long the lease lasts unrenewed: a standby takes over this long
    /// after the leader stops.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lease_duration: Duration,

    /// This replica's identity (default: `$POD_NAME`, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Serve the HTTP API (runs, logs, approvals, `/metrics`) on this
    /// address, on every replica (the state volume is shared). Callers
    /// authenticate with their Kubernetes bearer token (TokenReview). The
    /// leader also takes the webhooks of `Repository` resources
    /// (`/v1/hooks/github`, `/v1/hooks/gitlab`).
    #[arg(long, env = "CAPSTAN_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Run container steps (`image:` + `script:`) as Pods that mount the
    /// run's workspaces from this PersistentVolumeClaim, which must exist
    /// in each run's namespace and hold the same storage as the state
    /// directory (its root is the state directory). Without it, container
    /// steps fail with a message naming this flag.
    #[arg(long, env = "CAPSTAN_WORKSPACE_CLAIM", value_name = "CLAIM")]
    pub workspace_claim: Option<String>,

    #[command(flatten)]
    pub forge: super::serve::ForgeArgs,

    #[command(flatten)]
    pub limits: crate::api::listener::ListenArgs,
}

/// Aborts the task when dropped (the leader's tasks end with its lease).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The forge side of the controller: `Repository` resources, their
/// Secrets, and the runs their webhooks queued before a restart.
async fn forge(
    client: &kube::Client,
    sched: &Arc<crate::scheduler::Scheduler>,
    args: &ControllerArgs,
    public_url: String,
) -> Result<Arc<crate::forge::intake::Forge>> {
    let repos =
        crate::cluster::repository::KubeRepos::start(client.clone(), args.namespace.as_deref())
            .await?;
    let f = crate::forge::intake::Forge::new(sched.clone(), repos, public_url, args.forge.retry());
    let n = f.recover().await;
    if n > 0 {
        tracing::info!("{n} run(s) started by webhooks queued again");
    }
    Ok(f)
}

/// Print the CRDs (for `kubectl apply -f -`).
pub fn crds(_cli: &Cli) -> Result<ExitCode> {
    print!("{}", crate::cluster::crds::crds_yaml());
    Ok(ExitCode::Ok)
}

/// The namespace this Pod runs in, if it runs in one.
fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
}

pub async fn controller(cli: &Cli, args: &ControllerArgs) -> Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    // The API listens from the start (liveness), but serves `/v1` only once
    // this replica leads: only the leader opens the run store.
    let leader: crate::api::LeaderSlot = Default::default();
    let mut public_url = cli.public_url.clone();
    if let Some(addr) = &args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        if public_url.is_none() {
            let local = listener.local_addr()?;
            if local.ip().is_unspecified() {
                tracing::warn!(
                    "no --public-url: commit statuses will link to http://{local}, \
                     which nobody outside can open"
                );
            }
            public_url = Some(format!("http://{local}"));
        }
        let app = crate::api::until_leader(leader.clone());
        let limits = args.limits.limits();
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve_router(listener, app, limits).await {
                tracing::error!("API server: {e:#}");
            }
        });
    }
    let settings = controller::Settings {
        namespace: args.namespace.clone(),
        quota: args.quota,
        workspace_retention: args.workspace_retention,
        parallelism: args.parallelism,
    };
    let work = {
        let client = client.clone();
        move || async move {
            let mut sched = super::run::scheduler(cli, args.memory_limit)?;
            sched.kube_client = Some(client.clone());
            sched.pods = Some(crate::caps::container::PodSettings {
                claim: args.workspace_claim.clone().unwrap_or_default(),
                root: sched.state_dir.clone(),
            });
            let sched = Arc::new(sched);
            // With an API, webhooks of the Repository resources.
            // Without the Repository resource (or the right to watch it),
            // the controller still runs PipelineRuns; webhooks answer 404.
            let forge = match (&args.listen, &public_url) {
                (Some(_), Some(url)) => match forge(&client, &sched, args, url.clone()).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::error!("webhooks are off: {e:#}");
                        None
                    }
                },
                _ => None,
            };
            let _tasks = forge
                .as_ref()
                .map(|f| AbortOnDrop(tokio::spawn(crate::forge::schedule::run(f.clone()))));
            let state = Arc::new(crate::api::ApiState {
                sched: sched.clone(),
                auth: crate::api::Auth::kube(client.clone()),
                forge,
                ui: crate::api::ui::Sessions::new(
                    sched
                        .public_url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("https://")),
                ),
            });
            let _ = leader.set(crate::api::router(state));
            controller::run(client, sched, settings).await
        }
    };
    if args.no_leader_election {
        work().await?;
    } else {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "capstan".into());
            format!("{host}-{}", std::process::id())
        });
        let s = lease::LeaseSettings {
            namespace: args
                .lease_namespace
                .clone()
                .or_else(pod_namespace)
                .unwrap_or_else(|| "default".into()),
            name: args.lease_name.clone(),
            identity,
            duration: args.lease_duration,
        };
        lease::lead(client, &s, work).await?;
    }
    Ok(ExitCode::Ok)
}
