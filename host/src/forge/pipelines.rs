//! The blocking half of a delivery: read the repository's pipeline files
//! at the commit, filter them by their own triggers, validate each as
//! `capstan run` does, and record the runs (not yet started).

use std::collections::BTreeMap;

use super::event::ForgeEvent;
use super::fetch;
use super::filter;
use super::intake::Forge;
use super::queue::Job;
use super::source::Entry;
use crate::pipeline::Document;
use crate::scheduler::{PrepareError, Prepared, RunOptions};
use crate::store::{DeliveryKey, TriggeredBy};

/// A pipeline file that became a run, or did not.
pub(super) struct Outcome {
    /// The commit the files were read at.
    pub commit: String,
    pub created: Vec<(String, Job, String)>,
    pub notes: Vec<String>,
    pub invalid: Vec<(String, String)>,
}

impl Forge {
    /// Read, validate and record the runs (blocking: git, the registry).
    pub(super) fn prepare_runs(
        &self,
        entry: &Entry,
        key: &DeliveryKey,
        e: &ForgeEvent,
        trusted: bool,
        token: Option<Vec<u8>>,
    ) -> Result<Outcome, String> {
        let (name, repo) = (entry.name.as_str(), &entry.spec);
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let git_dir = work.path().join("git");
        std::fs::create_dir(&git_dir).map_err(|e| e.to_string())?;
        let src = fetch::Source {
            url: &repo.url,
            provider: repo.provider,
            token: token.as_deref(),
        };
        let fetched = if e.revision.is_empty() {
            fetch::pipelines(&src, None, &e.git_ref, &repo.pipelines, &git_dir)?
        } else if trusted {
            fetch::pipelines(
                &src,
                Some(&e.revision),
                &e.git_ref,
                &repo.pipelines,
                &git_dir,
            )?
        } else {
            let base = format!("refs/heads/{}", e.base_branch.as_deref().unwrap_or("main"));
            fetch::pipelines(&src, None, &base, &repo.pipelines, &git_dir)?
        };
        if fetched.files.is_empty() {
            return Err(format!(
                "no file at {} matches {:?}",
                fetched.commit, repo.pipelines
            ));
        }
        // Files already made runs of (a delivery taken over after a crash).
        let done: Vec<String> = self
            .sched
            .store
            .delivery_runs(key)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| self.sched.store.run(r).ok().map(|r| r.spec.file))
            .collect();
        let mut out = Outcome {
            commit: fetched.commit.clone(),
            created: vec![],
            notes: vec![],
            invalid: vec![],
        };
        let mut e = e.clone();
        if e.revision.is_empty() {
            e.revision = fetched.commit.clone();
        }
        let e = &e;
        let context = e.context(&key.id, name, trusted);
        for (path, text) in &fetched.files {
            if done.contains(path) {
                continue;
            }
            if !e.files.is_empty() && !e.files.iter().any(|g| filter::matches(g, path)) {
                out.notes.push(format!("{path}: not one of {:?}", e.files));
                continue;
            }
            if let Some(why) = filter::pipeline_refuses(text, e) {
                out.notes.push(format!("{path}: {why}"));
                continue;
            }
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let base = work.path().join("src").join(dir);
            std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
            if let Some((_, lock)) = fetched.locks.iter().find(|(d, _)| d == dir) {
                std::fs::write(crate::resolve::lock_path(&base), lock)
                    .map_err(|e| e.to_string())?;
            }
            match self.prepare_one(path, text, &base) {
                Ok(prepared) => {
                    let run_id = self
                        .record(entry, key, e, &prepared, &context)
                        .map_err(|e| format!("{e:#}"))?;
                    let pipeline = prepared.plan.name.clone();
                    let group = super::queue::group(path, &context, &run_id);
                    out.created.push((
                        run_id.clone(),
                        Job {
                            run_id,
                            group,
                            prepared,
                            reporter: None,
                        },
                        pipeline,
                    ));
                }
                Err(why) => out.invalid.push((path.clone(), why)),
            }
        }
        Ok(out)
    }

    /// Validate one file as `capstan run` would; repository pipelines may
    /// use registry plugins only (a path would name a file of this server).
    fn prepare_one(
        &self,
        path: &str,
        text: &str,
        base: &std::path::Path,
    ) -> Result<Prepared, String> {
        let mut doc = Document::parse(path, text).map_err(|d| one_line(&d))?;
        doc.base_dir = base.to_path_buf();
        let mut diags = Vec::new();
        for (at, t) in doc.all_tasks() {
            if let Ok(capstan_registry::Reference::File(_)) =
                t.uses.parse::<capstan_registry::Reference>()
            {
                diags.push(doc.diag(
                    &format!("{at}.uses"),
                    format!(
                        "`{}`: a pipeline from a repository may use registry plugins only",
                        t.uses
                    ),
                ));
            }
        }
        if !diags.is_empty() {
            return Err(one_line(&crate::pipeline::Diagnostics(diags)));
        }
        match self.sched.prepare(doc, &[], None) {
            Ok(p) => Ok(p),
            Err(PrepareError::Invalid(d)) => Err(one_line(&d)),
            Err(PrepareError::Other(e)) => Err(format!("{path}: {e:#}")),
        }
    }

    fn record(
        &self,
        entry: &Entry,
        key: &DeliveryKey,
        e: &ForgeEvent,
        prepared: &Prepared,
        context: &BTreeMap<String, String>,
    ) -> anyhow::Result<String> {
        let name = &entry.name;
        let by = match &e.schedule {
            Some(cron) => TriggeredBy::Schedule {
                repository: name.to_string(),
                cron: cron.clone(),
            },
            None => TriggeredBy::Webhook {
                provider: e.provider.as_str().to_string(),
                repository: name.to_string(),
                delivery: key.id.clone(),
                event: e.name.clone(),
            },
        };
        let opts = RunOptions {
            triggered_by: Some(by),
            trigger: context.clone(),
            kube: entry.kube.clone(),
            ..RunOptions::default()
        };
        let id = self.sched.create(prepared, &opts)?;
        self.sched.store.add_delivery_run(key, &id)?;
        Ok(id)
    }
}

/// Diagnostics as one line each, `file:line:column: message`, joined.
fn one_line(d: &crate::pipeline::Diagnostics) -> String {
    d.0.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
