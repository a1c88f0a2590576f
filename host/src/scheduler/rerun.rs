//! Re-running a recorded run: the same pipeline text, params and plugin
//! digests, in a new run. With `failed_only`, the main tasks that
//! succeeded are not run again: the new run reuses their results (and
//! runs in the same workspace directories, where their files are), and
//! records where each came from. Approval gates are never reused: an
//! approval is for its run, and is asked again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

use super::{Prepared, RunOptions, Scheduler};
use crate::pipeline::Document;
use crate::store::{RunStatus, TaskStatus};

impl Scheduler {
    /// Record a re-run of `run_id` and return its id and plan (to execute).
    /// The run must have ended.
    pub fn rerun(&self, run_id: &str, failed_only: bool, user: &str) -> Result<(String, Prepared)> {
        let rec = self.store.run(run_id)?;
        if !rec.status.is_terminal() {
            bail!(
                "run {run_id} is {} and has not ended: cancel or resume it first",
                rec.status
            );
        }
        if failed_only && rec.status == RunStatus::Succeeded {
            bail!(
                "run {run_id} succeeded: nothing failed to run again (drop --failed to run it all again)"
            );
        }
        let mut doc = Document::parse(&rec.spec.file, &rec.spec.source)
            .map_err(|d| anyhow::anyhow!("the recorded pipeline no longer parses: {d}"))?;
        doc.base_dir = PathBuf::from(&rec.spec.base_dir);
        // The digests that ran: a re-run runs the same plugins.
        let prepared = self
            .prepare(doc, &rec.spec.overrides, Some(&rec.spec.plugins))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Directories Capstan made for a run (this one's, or the one it
        // re-ran): a full re-run gets fresh ones.
        let managed = self.workspaces_root(rec.spec.kube.as_ref());
        let workspaces: BTreeMap<String, PathBuf> = rec
            .spec
            .workspaces
            .iter()
            .map(|(k, v)| (k.clone(), PathBuf::from(v)))
            // A full re-run gets fresh directories where the run had its
            // own; a --failed one keeps them (the reused tasks' files).
            .filter(|(_, dir)| failed_only || !dir.starts_with(&managed))
            .collect();
        let opts = RunOptions {
            parallelism: rec.spec.parallelism,
            workspaces,
            kube: rec.spec.kube.clone(),
            rerun_of: Some(run_id.to_string()),
            triggered_by: Some(crate::store::TriggeredBy::Rerun {
                run: run_id.to_string(),
                user: user.to_string(),
            }),
            // The same event's context: a re-run builds the same revision.
            trigger: rec.spec.trigger.clone(),
            ..RunOptions::default()
        };
        let id = self.create(&prepared, &opts)?;
        if failed_only {
            // An approval is for its run: a gate is asked again, never reused.
            let gates: Vec<String> = self
                .store
                .waits_of_run(run_id)?
                .into_iter()
                .map(|w| w.task)
                .collect();
            for t in self.store.tasks(run_id)? {
                if !t.finally && t.status == TaskStatus::Succeeded && !gates.contains(&t.name) {
                    let from = t.reused_from.as_deref().unwrap_or(run_id);
                    self.store.reuse_task(&id, &t.name, &t.results, from)?;
                }
            }
        }
        Ok((id, prepared))
    }
}
