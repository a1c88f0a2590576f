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
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at, id);
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
CREATE INDEX IF NOT EXISTS logs_by_task ON logs (run_id, task, id);
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
CREATE TABLE IF NOT EXISTS deliveries (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    repository TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    outcome TEXT,
    runs TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (provider, repository, id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_repo ON deliveries (repository, received_at);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_run ON reports (run_id, id);
CREATE TABLE IF NOT EXISTS schedules (
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    last_fire INTEGER NOT NULL,
    PRIMARY KEY (repository, name)
);
"#;

/// Columns added after version 1, in order (table, column, type). A
/// migration is applied when its column is missing — not by the version
/// number alone: a binary from before migrations existed sets
/// `user_version = 1` each time it opens the store.
const MIGRATIONS: &[(&str, &str, &str)] = &[
    // 2: why a task was skipped.
    ("tasks", "reason", "TEXT"),
    // 3: the run a task's result was reused from.
    ("tasks", "reused_from", "TEXT"),
    // 4: run numbers per pipeline (deliveries and reports are new tables).
    ("runs", "number", "INTEGER"),
    // 5: the DAG's edges (JSON array of task names) and a matrix child's
    // task, for drawing a run.
    ("tasks", "deps", "TEXT"),
    ("tasks", "matrix_of", "TEXT"),
];

/// The schema version this binary writes.
const CURRENT: i64 = 1 + MIGRATIONS.len() as i64;

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

/// Bring a store to the current schema: create what is missing, then add
/// the columns it lacks. Several processes may open a store at once: the
/// check is repeated inside one write transaction, so exactly one of them
/// migrates. A store from a newer binary (a higher version) is refused.
/// WAL, `synchronous = NORMAL`, and the schema brought up to date.
/// Several processes may open a new store at once: switching it to WAL and
/// upgrading a read to a write can fail with SQLITE_BUSY *without* waiting
/// (SQLite's deadlock avoidance), so the whole setup is retried for as long
/// as the busy timeout would wait.
pub(super) fn set_up(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let setup = conn
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| migrate(conn));
        match setup {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let v = version(conn)?;
    if v > CURRENT {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the store has schema version {v}, newer than this capstan knows ({CURRENT}): \
                 use the newer capstan"
            )),
        ));
    }
    if v == CURRENT && complete(conn)? {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        conn.execute_batch(SCHEMA)?;
        for (table, column, ty) in MIGRATIONS {
            if !has_column(conn, table, column)? {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
            }
        }
        // Indexes on migrated columns (SCHEMA runs before the columns exist).
        conn.execute_batch("CREATE INDEX IF NOT EXISTS runs_by_number ON runs (pipeline, number)")?;
        conn.pragma_update(None, "user_version", CURRENT)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Whether every migrated column (and the index of pages of runs, which
/// older binaries ignore) is there (cheap: read-only).
fn complete(conn: &Connection) -> rusqlite::Result<bool> {
    for index in ["runs_by_created", "logs_by_task"] {
        let there: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
            [index],
            |r| r.get(0),
        )?;
        if !there {
            return Ok(false);
        }
    }
    for (table, column, _) in MIGRATIONS {
        if !has_column(conn, table, column)? {
            return Ok(false);
        }
    }
    Ok(true)
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
        assert!(tasks[0].deps.is_empty() && tasks[0].matrix_of.is_none());
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

    /// An older capstan (which sets `user_version = 1` on every open)
    /// opened a migrated store: the new one still opens it.
    #[test]
    fn a_store_reopened_by_an_old_binary_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        drop(RunStore::open(dir.path()).unwrap());
        {
            let conn = Connection::open(dir.path().join("capstan.db")).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        RunStore::open(dir.path()).unwrap();
        {
            let conn = Connection::open(dir.path().join("capstan.db")).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = RunStore::open(dir.path())
            .err()
            .expect("a newer store is refused");
        assert!(e.to_string().contains("newer than this capstan"), "{e}");
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
