//! The ready set of one phase: the tasks whose dependencies have all
//! ended, kept up to date as tasks end, so that a turn of the scheduler's
//! loop costs what changed, not the size of the pipeline. Plain data; the
//! decisions about a ready task are in [`super::decide`].

use std::collections::{BTreeSet, HashMap};

use crate::pipeline::PlannedTask;

#[derive(Debug, Default)]
pub struct ReadySet {
    index: HashMap<String, usize>,
    /// Per task: how many of its dependencies (in this phase) have not ended.
    blocked_by: Vec<usize>,
    /// Per task: the tasks that depend on it.
    dependents: Vec<Vec<usize>>,
    ended: Vec<bool>,
    /// Tasks to look at, in file order.
    queue: BTreeSet<usize>,
    unfinished: usize,
}

impl ReadySet {
    /// The ready set of `tasks`; `has_ended` says which have ended already
    /// (a resumed run). Dependencies outside `tasks` are not waited for.
    pub fn new(tasks: &[&PlannedTask], has_ended: impl Fn(&str) -> bool) -> ReadySet {
        let index: HashMap<String, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.name.clone(), i))
            .collect();
        let ended: Vec<bool> = tasks.iter().map(|t| has_ended(&t.spec.name)).collect();
        let mut blocked_by = vec![0; tasks.len()];
        let mut dependents = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            for dep in &t.deps {
                if let Some(&d) = index.get(dep) {
                    dependents[d].push(i);
                    if !ended[d] {
                        blocked_by[i] += 1;
                    }
                }
            }
        }
        let queue = (0..tasks.len())
            .filter(|&i| !ended[i] && blocked_by[i] == 0)
            .collect();
        let unfinished = ended.iter().filter(|e| !**e).count();
        ReadySet {
            index,
            blocked_by,
            dependents,
            ended,
            queue,
            unfinished,
        }
    }

    /// `name` ended (any terminal status): its dependents whose last
    /// dependency it was become ready. Idempotent; unknown names are ignored.
    pub fn ended(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if std::mem::replace(&mut self.ended[i], true) {
            return;
        }
        self.unfinished -= 1;
        self.queue.remove(&i);
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            self.blocked_by[d] -= 1;
            if self.blocked_by[d] == 0 && !self.ended[d] {
                self.queue.insert(d);
            }
        }
    }

    /// The next ready task (file order), taken out of the queue.
    pub fn pop(&mut self) -> Option<usize> {
        self.queue.pop_first()
    }

    /// Put back a task taken by [`pop`](Self::pop) that did not start.
    pub fn put_back(&mut self, i: usize) {
        if !self.ended[i] {
            self.queue.insert(i);
        }
    }

    /// Whether a task waits in the queue.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Tasks of the phase that have not ended.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(name: &str, deps: &[&str]) -> PlannedTask {
        PlannedTask {
            spec: serde_yaml::from_str(&format!("{{name: {name}, uses: x}}")).unwrap(),
            finally: false,
            deps: deps.iter().map(|s| s.to_string()).collect(),
            result_deps: Default::default(),
            timeout: None,
            backoff: Duration::from_secs(1),
            uses_context: false,
            group: None,
            literal_params: Default::default(),
        }
    }

    fn drain(r: &mut ReadySet) -> Vec<usize> {
        std::iter::from_fn(|| r.pop()).collect()
    }

    #[test]
    fn tasks_become_ready_when_their_last_dependency_ends() {
        let tasks = [
            t("a", &[]),
            t("b", &["a"]),
            t("c", &["a", "b"]),
            t("d", &[]),
        ];
        let refs: Vec<&PlannedTask> = tasks.iter().collect();
        let mut r = ReadySet::new(&refs, |_| false);
        assert_eq!(drain(&mut r), [0, 3]);
        r.ended("a");
        assert_eq!(drain(&mut r), [1], "c still waits for b");
        r.ended("b");
        r.ended("b"); // idempotent
        assert_eq!(drain(&mut r), [2]);
        assert_eq!(r.unfinished(), 2);
        r.put_back(2);
        assert_eq!(drain(&mut r), [2]);
        r.ended("c");
        r.ended("d");
        assert_eq!(r.unfinished(), 0);
        assert_eq!(drain(&mut r), [] as [usize; 0]);
    }

    #[test]
    fn a_resumed_phase_starts_from_what_ended() {
        let tasks = [t("a", &[]), t("b", &["a"]), t("c", &["b"])];
        let refs: Vec<&PlannedTask> = tasks.iter().collect();
        let mut r = ReadySet::new(&refs, |n| n == "a");
        assert_eq!(drain(&mut r), [1]);
        assert_eq!(r.unfinished(), 2);
    }

    /// 100,000 tasks in 10 lanes: building and draining the set is linear
    /// (each task is queued once), not quadratic.
    #[test]
    fn a_large_dag_drains_in_one_pass() {
        let n = 100_000;
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let tasks: Vec<PlannedTask> = (0..n)
            .map(|i| {
                let deps: Vec<&str> = if i >= 10 {
                    vec![&names[i - 10]]
                } else {
                    vec![]
                };
                t(&names[i], &deps)
            })
            .collect();
        let refs: Vec<&PlannedTask> = tasks.iter().collect();
        let mut r = ReadySet::new(&refs, |_| false);
        let mut seen = 0;
        while let Some(i) = r.pop() {
            seen += 1;
            r.ended(&names[i]);
        }
        assert_eq!(seen, n);
        assert_eq!(r.unfinished(), 0);
    }
}
