//! Log lines: appended as tasks write them, read by cursor (`id`).

use rusqlite::params;

use super::{LogLevel, LogLine, Result, RunStore, now_us};

impl RunStore {
    pub fn append_log(
        &self,
        run_id: &str,
        task: &str,
        attempt: u32,
        level: LogLevel,
        message: &str,
    ) -> Result<()> {
        self.conn()
            .prepare_cached("INSERT INTO logs (run_id, task, attempt, ts, level, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut s| s.execute(params![run_id, task, attempt, now_us(), level.as_str(), message]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Log lines of a run after `after_id`, optionally for one task (and
    /// one of its attempts).
    pub fn logs(
        &self,
        run_id: &str,
        task: Option<&str>,
        attempt: Option<u32>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, task, attempt, ts, level, message FROM logs WHERE run_id = ?1 AND id > ?2 \
                 AND (?3 IS NULL OR task = ?3) AND (?5 IS NULL OR attempt = ?5) ORDER BY id LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![run_id, after_id, task, limit as i64, attempt],
                |r| {
                    Ok(LogLine {
                        id: r.get(0)?,
                        task: r.get(1)?,
                        attempt: r.get(2)?,
                        ts: r.get(3)?,
                        level: LogLevel::parse(&r.get::<_, String>(4)?).unwrap_or(LogLevel::Info),
                        message: r.get(5)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}
