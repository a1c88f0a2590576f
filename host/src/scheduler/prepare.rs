//! Preparing a run: resolve and load its plugins, validate, record it.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use crate::digest::Digest;
use crate::pipeline::Diagnostic;
use crate::store::RunSpec;

/// The plugins of a document, resolved and loaded.
#[derive(Default)]
struct Loaded {
    plugins: HashMap<String, Arc<crate::runtime::Plugin>>,
    identities: HashMap<String, crate::identity::PluginIdentity>,
    diags: Vec<Diagnostic>,
    warnings: Vec<String>,
}

impl Scheduler {
    /// Resolve (through the lock file, or the recorded digests on resume),
    /// admit by policy, and load each task's plugin. Problems are
    /// diagnostics at the task's `uses`.
    fn load_plugins(
        &self,
        doc: &Document,
        expect_digests: Option<&BTreeMap<String, String>>,
    ) -> Result<Loaded, PrepareError> {
        let mut out = Loaded::default();
        let lock_file = crate::resolve::lock_path(&doc.base_dir);
        let lock = match (expect_digests, capstan_registry::LockFile::read(&lock_file)) {
            (Some(_), _) => None, // resume: the recorded digests decide
            (None, Ok(lock)) => lock,
            (None, Err(e)) => return Err(PrepareError::Other(e.into())),
        };
        let resolver = crate::resolve::Resolver {
            registry: &self.registry,
            oci: &self.oci,
            base_dir: &doc.base_dir,
            lock,
            mode: self.lock_mode,
            policy: &*self.policy,
        };
        for (at, t) in doc.all_tasks() {
            if out.plugins.contains_key(&t.uses) {
                continue;
            }
            let pinned = match expect_digests.and_then(|m| m.get(&t.uses)) {
                Some(d) => {
                    Some(Digest::try_from(d.clone()).map_err(|e| PrepareError::Other(anyhow!(e)))?)
                }
                None => None,
            };
            let resolved = match resolver.resolve(&t.uses, pinned.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    out.diags.push(doc.diag(&format!("{at}.uses"), e));
                    continue;
                }
            };
            if let Some(e) = resolved.entry.as_ref().filter(|e| e.yanked) {
                out.warnings.push(format!(
                    "`{}` runs {} {} ({}), which has been yanked (pinned by capstan.lock or the run); \
                     run `capstan lock` to move to a version that is not",
                    t.uses, e.name, e.version, e.digest
                ));
            }
            if let Some(msg) = resolved.entry.as_ref().and_then(|e| e.deprecated.as_ref()) {
                out.warnings.push(format!(
                    "`{}` resolved to {}, which is deprecated: {msg}",
                    t.uses, resolved.origin
                ));
            }
            if let Err(why) = self.policy.admit(&resolved.identity) {
                out.diags.push(doc.diag(
                    &format!("{at}.uses"),
                    format!("denied by layer `policy`: {why}"),
                ));
                continue;
            }
            match self.runtime.load_bytes(&resolved.bytes, &resolved.origin) {
                Ok(p) => {
                    out.plugins.insert(t.uses.clone(), p);
                    out.identities.insert(t.uses.clone(), resolved.identity);
                }
                Err(e) => out
                    .diags
                    .push(doc.diag(&format!("{at}.uses"), format!("{e:#}"))),
            }
        }
        Ok(out)
    }

    /// Load, check and plan a pipeline file.
    pub fn prepare_file(
        &self,
        path: &Path,
        overrides: &[(String, String)],
    ) -> Result<Prepared, PrepareError> {
        let doc = Document::load(path)?;
        self.prepare(doc, overrides, None)
    }

    /// Check and plan a parsed document. With `expect_digests` (on resume),
    /// each plugin must still have the digest recorded when the run began.
    pub fn prepare(
        &self,
        doc: Document,
        overrides: &[(String, String)],
        expect_digests: Option<&BTreeMap<String, String>>,
    ) -> Result<Prepared, PrepareError> {
        let Loaded {
            plugins,
            identities,
            mut diags,
            mut warnings,
        } = self.load_plugins(&doc, expect_digests)?;
        let manifest_of = |uses: &str| plugins.get(uses).map(|p| p.info.manifest.clone());
        // Ceilings key off where each plugin came from, not its manifest.
        let ceiling_of = |uses: &str, cap| match identities.get(uses) {
            Some(id) => self.policy.ceiling(id, cap),
            None => Err(format!("`{uses}` was not resolved")),
        };
        // Container grants against the platform's container ceilings (a
        // root grant needs a policy that allows it: none loaded, none may).
        let limits = self.policy.container_limits();
        for (at, t) in doc.all_tasks() {
            for (i, g) in t.grants.container.iter().enumerate() {
                let problems = match limits {
                    Some(l) => l.check_grant(g),
                    None => crate::caps::container::Limits::without_policy(g),
                };
                for (field, message) in problems {
                    diags.push(doc.diag(&format!("{at}.grants.container[{i}].{field}"), message));
                }
            }
        }
        let plan = match crate::pipeline::validate(&doc, &manifest_of, overrides, &ceiling_of) {
            Ok(plan)
                if let (Some(b), Some(max)) =
                    (plan.workspace_budget, self.policy.workspace_budget())
                    && b > max =>
            {
                use crate::pipeline::size::show;
                diags.push(doc.diag(
                    "workspaceBudget",
                    format!(
                        "{} is over the platform policy's ceiling of {} (limits.workspace-budget)",
                        show(b),
                        show(max)
                    ),
                ));
                return Err(Diagnostics(diags).into());
            }
            Ok(plan) if diags.is_empty() => plan,
            Ok(_) => return Err(Diagnostics(diags).into()),
            Err(Diagnostics(more)) => {
                diags.extend(more);
                return Err(Diagnostics(diags).into());
            }
        };
        warnings.extend(plan.warnings.iter().cloned());
        Ok(Prepared {
            warnings,
            doc,
            plan,
            plugins,
            overrides: overrides.to_vec(),
        })
    }

    /// Record a new run (Queued) and return its id.
    /// Each workspace's directory for run `id`: `--workspace`, the
    /// PipelineRun's `hostPath`, or a fresh directory (`emptyDir`, and
    /// every non-optional workspace of a bare Pipeline). With a PipelineRun,
    /// a workspace that is not optional must be bound.
    fn bind_workspaces(
        &self,
        prepared: &Prepared,
        opts: &RunOptions,
        id: &str,
    ) -> Result<BTreeMap<String, String>> {
        let mut workspaces = BTreeMap::new();
        for (name, dir) in &opts.workspaces {
            if !prepared.plan.workspaces.iter().any(|w| &w.name == name) {
                return Err(PrepareError::Invalid(Diagnostics(vec![Diagnostic {
                    file: "<command line>".into(),
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: format!(
                        "--workspace {name}: the pipeline declares no workspace `{name}`"
                    ),
                }]))
                .into());
            }
            let dir = std::fs::canonicalize(dir).with_context(|| {
                format!(
                    "--workspace {name}={}: the directory must exist",
                    dir.display()
                )
            })?;
            workspaces.insert(name.clone(), dir.display().to_string());
        }
        if let Some((run, _)) = &prepared.doc.run {
            for w in &run.workspaces {
                if let (Some(p), false) = (&w.host_path, workspaces.contains_key(&w.name)) {
                    let p = prepared.doc.base_dir.join(p);
                    let dir = std::fs::canonicalize(&p).with_context(|| {
                        format!("workspace {}: hostPath {} must exist", w.name, p.display())
                    })?;
                    workspaces.insert(w.name.clone(), dir.display().to_string());
                }
            }
        }
        // With a PipelineRun, as in Tekton, every workspace that is not
        // optional must be bound (by it or by --workspace); a bare
        // Pipeline gets a fresh directory for each (an implicit emptyDir).
        // An optional workspace nobody binds stays unbound.
        let run_binds: Vec<&str> = match &prepared.doc.run {
            Some((run, _)) => run.workspaces.iter().map(|w| w.name.as_str()).collect(),
            None => prepared
                .plan
                .workspaces
                .iter()
                .filter(|w| !w.optional)
                .map(|w| w.name.as_str())
                .collect(),
        };
        let missing: Vec<&str> = prepared
            .plan
            .workspaces
            .iter()
            .filter(|w| !w.optional && !run_binds.contains(&w.name.as_str()))
            .filter(|w| !workspaces.contains_key(&w.name))
            .map(|w| w.name.as_str())
            .collect();
        if !missing.is_empty() {
            let d = prepared.doc.run_diag(
                "workspaces",
                format!(
                    "the pipeline requires workspace(s) {} and the PipelineRun does not bind them \
                     (add `- {{ name: {}, emptyDir: {{}} }}`, or --workspace {}=DIR)",
                    missing.join(", "),
                    missing[0],
                    missing[0]
                ),
            );
            return Err(PrepareError::Invalid(Diagnostics(vec![d])).into());
        }
        for w in &prepared.plan.workspaces {
            if !workspaces.contains_key(&w.name) && run_binds.contains(&w.name.as_str()) {
                let dir = self
                    .workspaces_root(opts.kube.as_ref())
                    .join(id)
                    .join(&w.name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                workspaces.insert(w.name.clone(), dir.display().to_string());
            }
        }
        Ok(workspaces)
    }

    pub fn create(&self, prepared: &Prepared, opts: &RunOptions) -> Result<String> {
        let id = new_run_id(
            prepared
                .doc
                .run_name
                .as_deref()
                .unwrap_or(&prepared.plan.name),
        );
        let workspaces = self.bind_workspaces(prepared, opts, &id)?;
        let spec = RunSpec {
            file: prepared.doc.source.file.clone(),
            source: prepared.doc.source.text.clone(),
            base_dir: prepared.doc.base_dir.display().to_string(),
            overrides: prepared.overrides.clone(),
            workspaces,
            plugins: prepared
                .plugins
                .iter()
                .map(|(u, p)| (u.clone(), p.digest().to_string()))
                .collect(),
            plugin_versions: prepared
                .plugins
                .iter()
                .map(|(u, p)| {
                    let m = &p.info.manifest;
                    (u.clone(), (m.name.clone(), m.version.to_string()))
                })
                .collect(),
            parallelism: opts.parallelism.max(1),
            kube: opts.kube.clone(),
            rerun_of: opts.rerun_of.clone(),
            triggered_by: opts.triggered_by.clone(),
            trigger: opts.trigger.clone(),
        };
        let tasks: Vec<crate::store::NewTask> = prepared
            .plan
            .tasks
            .iter()
            .map(|t| crate::store::NewTask {
                name: t.spec.name.clone(),
                finally: t.finally,
                deps: t.deps.iter().cloned().collect(),
                matrix_of: t.group.clone(),
            })
            .collect();
        self.store
            .create_run(&id, &prepared.plan.name, &spec, &tasks)?;
        Ok(id)
    }

    /// Re-prepare a recorded run from the pipeline text stored with it.
    pub fn reload(&self, run_id: &str) -> Result<Prepared, PrepareError> {
        let rec = self.store.run(run_id).map_err(anyhow::Error::from)?;
        let mut doc = Document::parse(&rec.spec.file, &rec.spec.source)?;
        doc.base_dir = PathBuf::from(&rec.spec.base_dir);
        self.prepare(doc, &rec.spec.overrides, Some(&rec.spec.plugins))
    }
}
