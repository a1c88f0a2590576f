//! The store's tables, and the migrations that bring an older store up
//! to date.

use rusqlite::Connection;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    results TEXT NOT NULL DEFAULT '{}',
    spec TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    finally INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,
    finished_at INTEGER,
    message TEXT,
    results TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    reused_from TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    dispatched_at INTEGER NOT NULL,
    entered_at INTEGER,
    finished_at INTEGER,
    message TEXT,
    PRIMARY KEY (run_id, task, attempt)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs (run_id, id);
CREATE TABLE IF NOT EXISTS waits (
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    since INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    phase TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]',
    open INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, task)
);
CREATE INDEX IF NOT EXISTS waits_open ON waits (open);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    user TEXT NOT NULL,
    groups TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT NOT NULL,
    at INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    reason TEXT,
    applied INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS decisions_by_run ON decisions (run_id, applied);
"#;

/// Schema changes after version 1, applied in order to an older store.
const MIGRATIONS: &[&str] = &[
    // 2: why a task was skipped.
    "ALTER TABLE tasks ADD COLUMN reason TEXT",
    // 3: the run a task's result was reused from.
    "ALTER TABLE tasks ADD COLUMN reused_from TEXT",
];

/// Bring a store to the current schema: create what is missing, then apply
/// the migrations it has not had (a new store has every column already).
/// Several processes may open a store at once: the check is repeated
/// inside one write transaction, so exactly one of them migrates.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current = 1 + MIGRATIONS.len() as i64;
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if version(conn)? == current {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version = version(conn)?;
        if version == current {
            return Ok(());
        }
        let fresh: bool = conn.query_row(
            "SELECT COUNT(*) = 0 FROM sqlite_master WHERE name = 'runs'",
            [],
            |r| r.get(0),
        )?;
        conn.execute_batch(SCHEMA)?;
        if !fresh {
            for sql in MIGRATIONS.iter().skip((version.max(1) - 1) as usize) {
                conn.execute_batch(sql)?;
            }
        }
        conn.pragma_update(None, "user_version", current)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RunStore;
    use super::*;

    /// A store written before migration 2 opens, gains the column, and
    /// keeps its rows.
    #[test]
    fn an_old_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("capstan.db")).unwrap();
            let v1 = SCHEMA.replacen("    reason TEXT,\n", "", 1).replacen(
                "    reused_from TEXT,\n",
                "",
                1,
            );
            conn.execute_batch(&v1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO runs (id, pipeline, status, created_at, spec) VALUES ('r', 'p', 'Running', 0, '{}')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tasks (run_id, name, finally, status) VALUES ('r', 't', 0, 'Skipped')",
                [],
            )
            .unwrap();
        }
        let store = RunStore::open(dir.path()).unwrap();
        let tasks = store.tasks("r").unwrap();
        assert_eq!(tasks[0].skip_reason, None);
        store
            .set_task_skipped(
                "r",
                "t",
                crate::store::TaskStatus::Skipped,
                Some(crate::store::SkipReason::When),
                None,
            )
            .unwrap();
        assert_eq!(
            store.tasks("r").unwrap()[0].skip_reason,
            Some(crate::store::SkipReason::When)
        );
    }

    /// Processes opening a new store at the same moment all succeed (one
    /// creates it, the others see it done).
    #[test]
    fn concurrent_opens_of_a_new_store_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || RunStore::open(&p).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}
