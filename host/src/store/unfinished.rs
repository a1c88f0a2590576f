//! The runs not yet ended (`Queued`, `Running`), found without loading
//! every run: what a restarted server looks at.

use rusqlite::params;

use super::{Result, RunRecord, RunStore};

impl RunStore {
    /// Every `Queued` or `Running` run, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM runs WHERE status IN (?1, ?2) ORDER BY created_at, id")
                .map_err(|e| self.err(e))?;
            stmt.query_map(
                params![
                    super::RunStatus::Queued.as_str(),
                    super::RunStatus::Running.as_str()
                ],
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

    #[test]
    fn only_queued_and_running_runs_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        let spec = super::super::RunSpec {
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
            trigger: Default::default(),
        };
        for (id, status) in [
            ("a", super::super::RunStatus::Queued),
            ("b", super::super::RunStatus::Running),
            ("done", super::super::RunStatus::Succeeded),
            ("gone", super::super::RunStatus::Cancelled),
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
