//! Runs by page and filter, newest first (keyset pagination on the index
//! `runs_by_created`, so page N costs what page 1 does), and the runs not
//! yet ended (what a restarted server looks at).

use rusqlite::params;

use super::{Result, RunRecord, RunStatus, RunStore};

/// Which runs a page holds.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub pipeline: Option<String>,
    /// The forge repository that started them (`$(context.trigger.repository)`).
    pub repository: Option<String>,
    /// The forge branch they ran for (`$(context.trigger.branch)`).
    pub branch: Option<String>,
    /// What started them: `cli`, `pipeline-run`, `webhook`, `schedule`,
    /// `rerun` ([`super::TriggeredBy`]'s kinds).
    pub trigger: Option<String>,
    /// Only runs older than this one: the next page after it.
    pub before: Option<Cursor>,
}

/// Where a page ends: a run's creation time and id, written
/// `MICROSECONDS.ID` (the API's and the CLI's `before`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    pub fn of(run: &RunRecord) -> Cursor {
        Cursor {
            created_at: run.created_at,
            id: run.id.clone(),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Cursor, String> {
        let bad =
            || format!("`{s}` is not a page cursor (MICROSECONDS.RUN_ID, as `next` gives it)");
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        let created_at = at.parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(Cursor {
            created_at,
            id: id.to_string(),
        })
    }
}

impl RunStore {
    /// Up to `limit` runs matching `f`, newest first.
    pub fn list_runs_page(&self, f: &RunFilter, limit: usize) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT id FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR pipeline = ?2) \
                     AND (?3 IS NULL OR json_extract(spec, '$.trigger.repository') = ?3) \
                     AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5)) \
                     AND (?7 IS NULL OR json_extract(spec, '$.trigger.branch') = ?7) \
                     AND (?8 IS NULL OR json_extract(spec, '$.triggered_by.kind') = ?8) \
                     ORDER BY created_at DESC, id DESC LIMIT ?6",
                )
                .map_err(|e| self.err(e))?;
            let before = f.before.as_ref();
            stmt.query_map(
                params![
                    f.status.map(|s| s.as_str()),
                    f.pipeline,
                    f.repository,
                    before.map(|c| c.created_at),
                    before.map(|c| c.id.as_str()),
                    limit as i64,
                    f.branch,
                    f.trigger,
                ],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?
        };
        ids.iter().map(|id| self.run(id)).collect()
    }

    /// Every `Queued` or `Running` run, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM runs WHERE status IN (?1, ?2) ORDER BY created_at, id")
                .map_err(|e| self.err(e))?;
            stmt.query_map(
                params![RunStatus::Queued.as_str(), RunStatus::Running.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?
        };
        ids.iter().map(|id| self.run(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(repository: &str) -> super::super::RunSpec {
        super::super::RunSpec {
            file: "p.yaml".into(),
            source: String::new(),
            base_dir: "/".into(),
            overrides: vec![],
            workspaces: Default::default(),
            plugins: Default::default(),
            plugin_versions: Default::default(),
            parallelism: 1,
            kube: None,
            rerun_of: None,
            triggered_by: None,
            trigger: [("repository".to_string(), repository.to_string())].into(),
        }
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        for i in 0..250 {
            let id = format!("r{i:03}");
            let pipeline = if i % 2 == 0 { "even" } else { "odd" };
            store
                .create_run(
                    &id,
                    pipeline,
                    &spec(if i % 5 == 0 { "shop" } else { "" }),
                    &[],
                )
                .unwrap();
            if i % 3 == 0 {
                store.set_run_status(&id, RunStatus::Failed, None).unwrap();
            }
        }
        // Everything, 100 at a time: 250 distinct runs, newest first.
        let (mut seen, mut before) = (Vec::new(), None);
        loop {
            let f = RunFilter {
                before: before.clone(),
                ..Default::default()
            };
            let page = store.list_runs_page(&f, 100).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(Cursor::of(last));
            seen.extend(page.into_iter().map(|r| r.id));
        }
        assert_eq!(seen.len(), 250);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 250);
        assert_eq!(seen[0], "r249");
        // Filters combine.
        let f = RunFilter {
            status: Some(RunStatus::Failed),
            pipeline: Some("even".into()),
            repository: Some("shop".into()),
            ..Default::default()
        };
        let ids: Vec<String> = store
            .list_runs_page(&f, 1000)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let want: Vec<String> = (0..250)
            .rev()
            .filter(|i| i % 2 == 0 && i % 3 == 0 && i % 5 == 0)
            .map(|i| format!("r{i:03}"))
            .collect();
        assert_eq!(ids, want);
        let c: Cursor = "17.ci-abc".parse().unwrap();
        assert_eq!((c.created_at, c.id.as_str()), (17, "ci-abc"));
        assert_eq!(c.to_string(), "17.ci-abc");
        assert!("x.y".parse::<Cursor>().is_err() && "12".parse::<Cursor>().is_err());
    }

    #[test]
    fn only_queued_and_running_runs_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        let spec = spec("");
        for (id, status) in [
            ("a", RunStatus::Queued),
            ("b", RunStatus::Running),
            ("done", RunStatus::Succeeded),
            ("gone", RunStatus::Cancelled),
        ] {
            store.create_run(id, "p", &spec, &[]).unwrap();
            store.set_run_status(id, status, None).unwrap();
        }
        let ids: Vec<String> = store
            .unfinished_runs()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
