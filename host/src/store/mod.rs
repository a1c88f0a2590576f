//! The durable run store: SQLite in WAL mode under the state directory.
//!
//! Everything about a run is written here as it happens — the pipeline
//! text, params, workspace bindings, every task attempt, results and every
//! log line — so a run survives a SIGKILL of the scheduler and
//! `capstan runs resume` can continue it. `synchronous=NORMAL` in WAL mode
//! keeps committed transactions across a process crash.

mod deliveries;
mod listing;
mod logs;
mod schema;
mod status;
mod trigger;
mod waits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use deliveries::{Begin, DeliveryKey, DeliveryRecord, ReportRecord};
pub use listing::{Cursor, RunFilter};
pub use status::{LogLevel, RunStatus, SkipReason, StopMode, TaskStatus};
pub use trigger::TriggeredBy;
pub use waits::{DecisionRecord, WaitRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("run store: corrupt record: {0}")]
    Corrupt(String),
    #[error("no run `{0}` (see `capstan runs list`)")]
    NoSuchRun(String),
    #[error("run store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What is needed to (re)start a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// The pipeline file as given (for messages and relative paths).
    pub file: String,
    /// The file's text when the run was created.
    pub source: String,
    /// Absolute directory that relative paths in the file resolve against.
    pub base_dir: String,
    /// `-p` overrides.
    pub overrides: Vec<(String, String)>,
    /// Pipeline workspace → host directory.
    pub workspaces: BTreeMap<String, String>,
    /// `uses` → digest of the component loaded when the run was created.
    pub plugins: BTreeMap<String, String>,
    /// `uses` → the name and version that component declares (runs
    /// recorded before this field have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin_versions: BTreeMap<String, (String, String)>,
    pub parallelism: usize,
    /// Where the kube capability acts, and as whom (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeIdentity>,
    /// The run this one re-runs (`capstan runs rerun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// What started the run (runs recorded before this field: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<TriggeredBy>,
    /// `$(context.trigger.KEY)` values (a forge event's revision, ref, …);
    /// empty for a run nobody's event started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trigger: BTreeMap<String, String>,
}

/// The namespace of a run and the ServiceAccount its kube requests
/// impersonate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeIdentity {
    pub namespace: String,
    /// `None`: the client's own identity (local mode).
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub message: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub results: BTreeMap<String, String>,
    #[serde(skip)]
    pub spec: RunSpec,
    /// A cancel or stop asked and not yet carried out.
    pub stop_requested: Option<StopMode>,
    /// The run's number among its pipeline's runs (`#42`); runs recorded
    /// before numbers existed have none.
    pub number: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    pub name: String,
    pub finally: bool,
    pub status: TaskStatus,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub message: Option<String>,
    pub results: BTreeMap<String, String>,
    /// Why it was skipped (Tekton's skipping reason), when Skipped.
    pub skip_reason: Option<SkipReason>,
    /// The run whose result it reuses (`runs rerun --failed`), when it did.
    pub reused_from: Option<String>,
    /// The tasks it waited for (`runAfter` and result references); runs
    /// recorded before version 5 of the store have none.
    pub deps: Vec<String>,
    /// The matrix task it is a child of.
    pub matrix_of: Option<String>,
}

/// A task as a run is created with it.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub name: String,
    pub finally: bool,
    pub deps: Vec<String>,
    pub matrix_of: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub task: String,
    pub attempt: u32,
    pub status: TaskStatus,
    pub dispatched_at: i64,
    /// When the plugin first called the host.
    pub entered_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LogLine {
    pub id: i64,
    pub task: String,
    pub attempt: u32,
    pub ts: i64,
    pub level: LogLevel,
    pub message: String,
}

/// The run store.
pub struct RunStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl RunStore {
    /// Open (creating if needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<RunStore> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.display().to_string(),
            source,
        })?;
        let path = state_dir.join("capstan.db");
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        schema::set_up(&conn).map_err(err)?;
        Ok(RunStore {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Every write transaction here is IMMEDIATE: it takes the write lock
    /// up front, waiting through the busy handler. A deferred one that
    /// reads and then writes fails at once with SQLITE_BUSY when another
    /// process (a `capstan serve`, a CLI) wrote in between.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Create a run and its tasks (all Pending) in one transaction.
    pub fn create_run(
        &self,
        id: &str,
        pipeline: &str,
        spec: &RunSpec,
        tasks: &[NewTask],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let spec_json = serde_json::to_string(spec).expect("RunSpec serializes");
        // The next number of this pipeline, taken under the write lock.
        tx.execute(
            "INSERT INTO runs (id, pipeline, status, created_at, spec, number) VALUES (?1, ?2, 'Queued', ?3, ?4, \
             (SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE pipeline = ?2))",
            params![id, pipeline, now_us(), spec_json],
        )
        .map_err(|e| self.err(e))?;
        let mut insert = tx
            .prepare(
                "INSERT INTO tasks (run_id, name, finally, status, deps, matrix_of) \
                 VALUES (?1, ?2, ?3, 'Pending', ?4, ?5)",
            )
            .map_err(|e| self.err(e))?;
        for t in tasks {
            let deps = serde_json::to_string(&t.deps).expect("names serialize");
            insert
                .execute(params![id, t.name, t.finally, deps, t.matrix_of])
                .map_err(|e| self.err(e))?;
        }
        drop(insert);
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn set_run_status(&self, id: &str, status: RunStatus, message: Option<&str>) -> Result<()> {
        let now = now_us();
        let conn = self.conn();
        let sql = if status == RunStatus::Running {
            "UPDATE runs SET status = ?2, message = ?3, started_at = COALESCE(started_at, ?4), finished_at = NULL WHERE id = ?1"
        } else if status.is_terminal() {
            "UPDATE runs SET status = ?2, message = ?3, finished_at = ?4 WHERE id = ?1"
        } else {
            "UPDATE runs SET status = ?2, message = ?3 WHERE id = ?1 AND ?4 IS NOT NULL"
        };
        conn.execute(sql, params![id, status.as_str(), message, now])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_run_results(&self, id: &str, results: &BTreeMap<String, String>) -> Result<()> {
        let json = serde_json::to_string(results).expect("results serialize");
        self.conn()
            .execute(
                "UPDATE runs SET results = ?2 WHERE id = ?1",
                params![id, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ask the run to stop (`mode`). A cancel overrides an earlier stop;
    /// a stop never weakens an earlier cancel.
    pub fn request_stop(&self, id: &str, mode: StopMode) -> Result<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET cancel_requested = CASE \
                   WHEN cancel_requested = 0 THEN ?2 \
                   WHEN ?2 = 1 THEN 1 \
                   WHEN ?2 = 2 AND cancel_requested = 3 THEN 2 \
                   ELSE cancel_requested END WHERE id = ?1",
                params![id, mode.code()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    pub fn stop_requested(&self, id: &str) -> Result<Option<StopMode>> {
        self.conn()
            .query_row(
                "SELECT cancel_requested FROM runs WHERE id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.err(e))
            .map(|v| v.and_then(StopMode::from_code))
    }

    pub fn run(&self, id: &str) -> Result<RunRecord> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, pipeline, status, message, created_at, started_at, finished_at, results, spec, \
                 cancel_requested, number FROM runs WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, Option<i64>>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        Ok(RunRecord {
            id: row.0,
            pipeline: row.1,
            status: row.2.parse().map_err(StoreError::Corrupt)?,
            message: row.3,
            created_at: row.4,
            started_at: row.5,
            finished_at: row.6,
            results: serde_json::from_str(&row.7)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            spec: serde_json::from_str(&row.8).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            stop_requested: StopMode::from_code(row.9),
            number: row.10,
        })
    }

    /// Newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.list_runs_page(&RunFilter::default(), limit)
    }

    pub fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, finally, status, attempts, started_at, finished_at, message, results, reason, reused_from, deps, matrix_of FROM tasks \
                 WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.push(TaskRecord {
                name: row.0,
                finally: row.1,
                status: row.2.parse().map_err(StoreError::Corrupt)?,
                attempts: row.3,
                started_at: row.4,
                finished_at: row.5,
                message: row.6,
                results: serde_json::from_str(&row.7)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                skip_reason: row.8.as_deref().and_then(SkipReason::parse),
                reused_from: row.9,
                deps: match row.10 {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("tasks.deps: {e}")))?,
                    None => Vec::new(),
                },
                matrix_of: row.11,
            });
        }
        Ok(out)
    }

    /// Record that an attempt started: the task is Running with `attempt`.
    pub fn start_attempt(
        &self,
        run_id: &str,
        task: &str,
        attempt: u32,
        dispatched_at: i64,
    ) -> Result<()> {
        self.start_attempts(&[(run_id, task, attempt, dispatched_at)])
    }

    /// Record several attempt starts `(run, task, attempt, dispatched_at)` in
    /// one transaction.
    pub fn start_attempts(&self, starts: &[(&str, &str, u32, i64)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        for (run_id, task, attempt, dispatched_at) in starts {
            tx.execute(
                "UPDATE tasks SET status = 'Running', attempts = ?3, started_at = COALESCE(started_at, ?4), \
                 message = NULL WHERE run_id = ?1 AND name = ?2",
                params![run_id, task, attempt, dispatched_at],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT OR REPLACE INTO attempts (run_id, task, attempt, status, dispatched_at) \
                 VALUES (?1, ?2, ?3, 'Running', ?4)",
                params![run_id, task, attempt, dispatched_at],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Record how an attempt ended and the task's resulting state.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_attempt(
        &self,
        run_id: &str,
        task: &str,
        attempt: u32,
        attempt_status: TaskStatus,
        task_status: TaskStatus,
        entered_at: Option<i64>,
        message: Option<&str>,
        results: &BTreeMap<String, String>,
    ) -> Result<()> {
        let now = now_us();
        let json = serde_json::to_string(results).expect("results serialize");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE attempts SET status = ?4, entered_at = ?5, finished_at = ?6, message = ?7 \
             WHERE run_id = ?1 AND task = ?2 AND attempt = ?3",
            params![
                run_id,
                task,
                attempt,
                attempt_status.as_str(),
                entered_at,
                now,
                message
            ],
        )
        .map_err(|e| self.err(e))?;
        let finished = if task_status.is_terminal() {
            Some(now)
        } else {
            None
        };
        tx.execute(
            "UPDATE tasks SET status = ?3, finished_at = ?4, message = ?5, results = ?6 WHERE run_id = ?1 AND name = ?2",
            params![run_id, task, task_status.as_str(), finished, message, json],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Set a task's state without an attempt (Skipped, Cancelled, Pending on resume).
    pub fn set_task_status(
        &self,
        run_id: &str,
        task: &str,
        status: TaskStatus,
        message: Option<&str>,
    ) -> Result<()> {
        self.set_task_skipped(run_id, task, status, None, message)
    }

    /// Record that a task of a new run reuses what it produced in run
    /// `from` (`runs rerun --failed`): Succeeded, with those results.
    pub fn reuse_task(
        &self,
        run_id: &str,
        task: &str,
        results: &BTreeMap<String, String>,
        from: &str,
    ) -> Result<()> {
        let json = serde_json::to_string(results).expect("results serialize");
        let msg = format!("reused: it succeeded in run {from}");
        self.conn()
            .execute(
                "UPDATE tasks SET status = 'Succeeded', results = ?3, message = ?4, reused_from = ?5, \
                 finished_at = ?6 WHERE run_id = ?1 AND name = ?2",
                params![run_id, task, json, msg, from, now_us()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Set a task's status with the reason it was skipped (None unless
    /// `status` is Skipped).
    pub fn set_task_skipped(
        &self,
        run_id: &str,
        task: &str,
        status: TaskStatus,
        reason: Option<SkipReason>,
        message: Option<&str>,
    ) -> Result<()> {
        let finished = if status.is_terminal() {
            Some(now_us())
        } else {
            None
        };
        self.conn()
            .execute(
                "UPDATE tasks SET status = ?3, message = ?4, finished_at = ?5, reason = ?6 WHERE run_id = ?1 AND name = ?2",
                params![run_id, task, status.as_str(), message, finished, reason.map(SkipReason::as_str)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Mark attempts left Running (by a dead process, or stopped by cancel) as
    /// Cancelled. They do not count against a task's retries.
    pub fn abandon_running_attempts(&self, run_id: &str) -> Result<usize> {
        self.conn()
            .execute(
                "UPDATE attempts SET status = 'Cancelled', finished_at = ?2, \
                 message = 'the scheduler stopped during this attempt' WHERE run_id = ?1 AND status = 'Running'",
                params![run_id, now_us()],
            )
            .map_err(|e| self.err(e))
    }

    pub fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT task, attempt, status, dispatched_at, entered_at, finished_at, message FROM attempts \
                 WHERE run_id = ?1 ORDER BY dispatched_at, task, attempt",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.push(AttemptRecord {
                task: row.0,
                attempt: row.1,
                status: row.2.parse().map_err(StoreError::Corrupt)?,
                dispatched_at: row.3,
                entered_at: row.4,
                finished_at: row.5,
                message: row.6,
            });
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
