//! Starting an attempt: params, workspaces and grants resolved for one call.

use super::*;

impl<'a> Execution<'a> {
    pub(super) fn context(&self, t: &PlannedTask, attempts: u32) -> BTreeMap<&'static str, String> {
        let namespace = self
            .kube
            .as_ref()
            .map_or("default", |k| k.namespace.as_str());
        let mut context = BTreeMap::from([
            ("run.id", self.run_id.clone()),
            ("run.name", self.run_id.clone()),
            ("pipeline.name", self.prepared.plan.name.clone()),
            ("task.name", t.spec.name.clone()),
            ("task.retry-count", attempts.to_string()),
            ("pipelineRun.name", self.run_id.clone()),
            ("pipelineRun.namespace", namespace.to_string()),
            ("pipelineRun.uid", self.run_id.clone()),
            ("pipelineTask.retries", t.spec.retries.to_string()),
        ]);
        // Only a forge's runs carry them (an absent one reads as empty).
        if !self.trigger.is_empty() {
            for key in crate::pipeline::subst::trigger_keys() {
                context.insert(key, self.trigger_value(key));
            }
        }
        context
    }

    /// The substitution scope for `t`: pipeline params, results of the
    /// tasks that succeeded, run context, and (for finally tasks) statuses.
    pub(super) fn with_scope<R>(
        &self,
        t: &PlannedTask,
        retry_count: u32,
        f: impl FnOnce(&Scope<'_>) -> R,
    ) -> R {
        let (statuses, reasons, agg) = if t.finally {
            self.statuses()
        } else {
            Default::default()
        };
        let mut scope = Scope {
            results: Some(&self.results),
            bound: Some(&self.workspaces),
            ..Scope::new(&self.params)
        };
        if t.finally {
            scope.statuses = Some(&statuses);
            scope.reasons = Some(&reasons);
            scope.tasks_status = Some(&agg);
        }
        // Most tasks use no `$(context…)`: their scope is built without it
        // (nine strings on the dispatch path).
        if t.uses_context {
            scope.context = self.context(t, retry_count);
        }
        f(&scope)
    }

    /// The plugin's params for one attempt: the task's values with
    /// references substituted, manifest defaults for the rest.
    pub(super) fn resolve_params(
        t: &PlannedTask,
        manifest: &crate::manifest::Manifest,
        scope: &Scope<'_>,
    ) -> Result<Vec<(String, crate::params::ParamValue)>, String> {
        let mut params = Vec::with_capacity(manifest.params.len());
        for spec in &manifest.params {
            let value = match t.spec.params.iter().find(|p| p.name == spec.name) {
                Some(p) if t.literal_params.contains(&p.name) => p.value.clone(),
                Some(p) => scope
                    .resolve_value(&p.value)
                    .map_err(|e| format!("param `{}`: {e}", spec.name))?,
                None => match &spec.default {
                    Some(d) => d.clone(),
                    None => return Err(format!("param `{}` is required", spec.name)),
                },
            };
            if let (false, crate::params::ParamValue::String(v)) = (spec.allowed.is_empty(), &value)
                && !spec.allowed.contains(v)
            {
                return Err(format!(
                    "param `{}`: `{v}` is not one of {}",
                    spec.name,
                    spec.allowed.join(", ")
                ));
            }
            if value.ty() != spec.ty {
                return Err(format!(
                    "param `{}` resolved to {} but the plugin expects {}",
                    spec.name,
                    value.ty(),
                    spec.ty
                ));
            }
            params.push((spec.name.clone(), value));
        }
        Ok(params)
    }

    /// The task's workspace mounts: each binding's directory opened beneath
    /// its workspace (its subPath substituted, never through a link); a
    /// binding of an optional workspace the run leaves unbound is left out.
    fn mounts(
        &self,
        t: &PlannedTask,
        manifest: &crate::manifest::Manifest,
        retry_count: u32,
    ) -> Result<Vec<WorkspaceMount>, String> {
        let name = &t.spec.name;
        let mut mounts = Vec::new();
        for b in &t.spec.workspaces {
            let ws = b.pipeline_workspace();
            let decl = self.prepared.plan.workspaces.iter().find(|w| w.name == ws);
            let Some(root) = self.workspaces.get(ws) else {
                if decl.is_some_and(|w| w.optional) {
                    continue;
                }
                return Err(format!("workspace `{ws}` is not bound"));
            };
            let sub = match &b.sub_path {
                Some(s) if s.contains("$(") => {
                    let v = self
                        .with_scope(t, retry_count, |scope| scope.resolve_str(s))
                        .map_err(|e| format!("workspace `{}` subPath: {e}", b.name))?;
                    if v.starts_with('/') || v.split('/').any(|c| c == "..") {
                        return Err(format!(
                            "workspace `{}` subPath `{s}` became `{v}`: it must stay relative, without `..`",
                            b.name
                        ));
                    }
                    Some(v)
                }
                s => s.clone(),
            };
            let dir = crate::caps::workspace::open_beneath(Path::new(root), sub.as_deref(), true)
                .map_err(|e| format!("task `{name}`: workspace `{}`: {e}", b.name))?;
            let mut shown = PathBuf::from(root);
            shown.extend(sub.as_deref());
            let read_only = b.read_only
                || decl.is_some_and(|w| w.read_only)
                || manifest.workspace(&b.name).is_some_and(|w| w.read_only);
            mounts.push(WorkspaceMount {
                name: b.name.clone(),
                dir: Arc::new(dir),
                shown,
                read_only,
            });
        }
        Ok(mounts)
    }

    /// Start an attempt. Errors are set-up failures of the task itself
    /// (a reference that cannot be resolved, a workspace that cannot be made).
    pub(super) fn dispatch(
        &mut self,
        t: &PlannedTask,
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<(), String> {
        self.dispatch_call(t, running, None)
    }

    /// Start `run` of a new attempt, or (`resume` set) `resume` of the
    /// current attempt of a Waiting task — which stays Waiting in the store
    /// until the call's outcome is recorded, so a crash meanwhile loses
    /// nothing (the decision is delivered again).
    pub(super) fn dispatch_call(
        &mut self,
        t: &PlannedTask,
        running: &mut JoinSet<AttemptDone>,
        resume: Option<(Call, Resuming)>,
    ) -> Result<(), String> {
        let dispatched = Instant::now();
        let dispatched_at = now_us();
        let name = t.spec.name.clone();
        // Over the disk budget, tasks that would write the run's
        // workspaces do not start (the others, e.g. `finally` notifiers, do).
        if !t.spec.workspaces.is_empty()
            && let Some(over) = self.disk.exceeded()
        {
            return Err(over);
        }
        let plugin = self
            .prepared
            .plugins
            .get(&t.spec.uses)
            .cloned()
            .ok_or("plugin not loaded")?;
        let manifest = &plugin.info.manifest;
        let attempt = self.state[&name].attempts + u32::from(resume.is_none());

        let params = self.with_scope(t, attempt - 1, |scope| {
            Self::resolve_params(t, manifest, scope)
        })?;
        let workspaces = self.mounts(t, manifest, attempt - 1)?;
        let mut limits = self.sched.limits.clone();
        limits.timeout = t.timeout;
        let grants = self.grants_of(&t.spec.grants, Some((&name, attempt)))?;

        let rt = self.state.get_mut(&name).unwrap();
        let call = match resume {
            Some((call, resuming)) => {
                rt.resuming = Some(resuming);
                call
            }
            None => {
                rt.attempts = attempt;
                rt.status = TaskStatus::Running;
                if let Some(g) = &t.group {
                    *self.group_running.entry(g.clone()).or_default() += 1;
                }
                rt.retry_at = None;
                // The Running record is group-committed (see `Recorder`).
                self.sched.recorder.push(StartRecord {
                    run_id: self.run_id.clone(),
                    task: name.clone(),
                    attempt,
                    dispatched_at,
                });
                self.emit(Event::Task {
                    task: name.clone(),
                    status: TaskStatus::Running,
                    attempt,
                    message: None,
                });
                Call::Run
            }
        };

        let sink = Arc::new(StoreSink {
            store: self.sched.store.clone(),
            run_id: self.run_id.clone(),
            task: name.clone(),
            attempt,
            events: self.events.clone(),
        });
        let inv = Invocation {
            run_id: self.run_id.clone(),
            task_name: name.clone(),
            attempt,
            params,
            workspaces,
            limits,
            sink,
            grants,
            redactor: self.redactor(),
            abort: (!t.spec.workspaces.is_empty()).then(|| self.disk.over.clone()),
            task_results: t.spec.results.iter().map(|r| r.name.clone()).collect(),
        };
        let runtime = self.sched.runtime.clone();
        running.spawn(async move {
            let report = runtime.call(&plugin, inv, call).await;
            (name, attempt, dispatched_at, dispatched, report)
        });
        Ok(())
    }
}
