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
];

/// Bring a store to the current schema: create what is missing, then apply
/// the migrations it has not had (a new store has every column already).
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let fresh: bool = conn.query_row(
        "SELECT COUNT(*) = 0 FROM sqlite_master WHERE name = 'runs'",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch(SCHEMA)?;
    let current = 1 + MIGRATIONS.len() as i64;
    if !fresh {
        for sql in MIGRATIONS.iter().skip((version.max(1) - 1) as usize) {
            conn.execute_batch(sql)?;
        }
    }
    conn.pragma_update(None, "user_version", current)
}
