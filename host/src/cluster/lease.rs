//! Leader election on a `coordination.k8s.io/v1` Lease, through
//! `kube-lease-manager` (kube-rs has none built in). Only the leader runs
//! the controller; a standby waits for the lease, which it gets once the
//! leader stops renewing it (crash, kill, network loss) and its duration
//! passes.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

/// Where the lease lives and how long it lasts.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the Pod name in a cluster).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

/// Wait to become the leader, then run `work` while the lease is held.
/// Returns an error when leadership is lost (the caller exits and is
/// restarted as a standby): two replicas never execute runs at once.
pub async fn lead<F, Fut>(client: Client, s: &LeaseSettings, work: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let secs = s.duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &s.name)
        .with_namespace(&s.namespace)
        .with_identity(&s.identity)
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .build()
        .await
        .with_context(|| format!("the leader lease {}/{}", s.namespace, s.name))?;
    let (mut leader, task) = manager.watch().await;
    tracing::info!(identity = %s.identity, lease = %s.name, "waiting for the leader lease");
    while !*leader.borrow_and_update() {
        leader
            .changed()
            .await
            .context("the lease manager stopped")?;
    }
    tracing::info!(identity = %s.identity, "became the leader");
    let lost = async {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow() {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        r = work() => r,
        _ = lost => Err(anyhow::anyhow!("lost the leader lease; stopping so a standby can take over")),
    };
    drop(leader);
    let _ = task.await;
    outcome
}
