//! Suspended tasks (`waits`) and the decisions made on them (`decisions`).
//!
//! A suspended task is a row, not an instance: its plugin state, what the
//! host reads of it (`detail`: approvers, message, notify URL), an absolute
//! deadline (so timeouts fire on time across restarts) and the approval's
//! phase with a timestamped history. Decisions are written by whoever
//! decides (API, CLI, even while no scheduler runs) and applied by the
//! scheduler executing the run; `applied` is set in the same transaction as
//! the task's new state, and a decision re-delivered after a crash is
//! harmless (the plugin counts approvers, not calls).

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Result, RunStore, now_us};

/// One suspended task.
#[derive(Debug, Clone, Serialize)]
pub struct WaitRecord {
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    pub kind: String,
    #[serde(skip)]
    pub state: String,
    pub detail: serde_json::Value,
    /// When it suspended (µs).
    pub since: i64,
    /// When it times out (µs).
    pub deadline: i64,
    /// `pending`, `notifying`, `notified`, `notify-failed`, then
    /// `approved`, `rejected`, `timed-out` or `cancelled`.
    pub phase: String,
    /// `[{phase, at, note?}]`.
    pub history: serde_json::Value,
    pub open: bool,
}

/// One decision on a waiting task.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub id: i64,
    pub run_id: String,
    pub task: String,
    pub user: String,
    pub groups: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
    /// Whether the decider was allowed (a listed approver).
    pub accepted: bool,
    /// Why it was refused.
    pub reason: Option<String>,
    pub applied: bool,
}

const WAIT_COLS: &str =
    "run_id, task, attempt, kind, state, detail, since, deadline, phase, history, open";

fn wait_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WaitRecord> {
    Ok(WaitRecord {
        run_id: r.get(0)?,
        task: r.get(1)?,
        attempt: r.get(2)?,
        kind: r.get(3)?,
        state: r.get(4)?,
        detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        since: r.get(6)?,
        deadline: r.get(7)?,
        phase: r.get(8)?,
        history: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
        open: r.get::<_, i64>(10)? != 0,
    })
}

const DECISION_COLS: &str =
    "id, run_id, task, user, groups, decision, comment, at, accepted, reason, applied";

fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DecisionRecord> {
    Ok(DecisionRecord {
        id: r.get(0)?,
        run_id: r.get(1)?,
        task: r.get(2)?,
        user: r.get(3)?,
        groups: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        decision: r.get(5)?,
        comment: r.get(6)?,
        at: r.get(7)?,
        accepted: r.get::<_, i64>(8)? != 0,
        reason: r.get(9)?,
        applied: r.get::<_, i64>(10)? != 0,
    })
}

fn append_history(history: &str, phase: &str, note: Option<&str>) -> String {
    let mut h: Vec<serde_json::Value> = serde_json::from_str(history).unwrap_or_default();
    let mut entry = serde_json::json!({ "phase": phase, "at": now_us() });
    if let Some(n) = note {
        entry["note"] = n.into();
    }
    h.push(entry);
    serde_json::Value::Array(h).to_string()
}

impl RunStore {
    /// A task attempt suspended: the attempt and the task become `Waiting`
    /// and the wait is recorded (phase `pending`), in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn suspend_task(
        &self,
        run_id: &str,
        task: &str,
        attempt: u32,
        kind: &str,
        state: &str,
        detail: &serde_json::Value,
        deadline: i64,
        entered_at: Option<i64>,
    ) -> Result<()> {
        let now = now_us();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let what = format!("waiting for {kind}");
        tx.execute(
            "UPDATE attempts SET status = 'Waiting', entered_at = ?4, message = ?5 \
             WHERE run_id = ?1 AND task = ?2 AND attempt = ?3",
            params![run_id, task, attempt, entered_at, what],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE tasks SET status = 'Waiting', message = ?3 WHERE run_id = ?1 AND name = ?2",
            params![run_id, task, what],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO waits ({WAIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, 1)"
            ),
            params![
                run_id,
                task,
                attempt,
                kind,
                state,
                detail.to_string(),
                now,
                deadline,
                append_history("[]", "pending", None)
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// A resumed task suspended again: its new state; `applied` decisions
    /// are marked applied.
    pub fn resuspend(&self, run_id: &str, task: &str, state: &str, applied: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE waits SET state = ?3 WHERE run_id = ?1 AND task = ?2",
            params![run_id, task, state],
        )
        .map_err(|e| self.err(e))?;
        for id in applied {
            tx.execute(
                "UPDATE decisions SET applied = 1 WHERE id = ?1",
                params![id],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The wait ended (`approved`, `rejected`, `timed-out`, `cancelled`).
    pub fn close_wait(&self, run_id: &str, task: &str, phase: &str, applied: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let history: Option<String> = tx
            .query_row(
                "SELECT history FROM waits WHERE run_id = ?1 AND task = ?2",
                params![run_id, task],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(h) = history {
            tx.execute(
                "UPDATE waits SET phase = ?3, open = 0, history = ?4 WHERE run_id = ?1 AND task = ?2",
                params![run_id, task, phase, append_history(&h, phase, None)],
            )
            .map_err(|e| self.err(e))?;
        }
        for id in applied {
            tx.execute(
                "UPDATE decisions SET applied = 1 WHERE id = ?1",
                params![id],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Move an open wait to `phase` (notification progress), noting why.
    pub fn set_wait_phase(
        &self,
        run_id: &str,
        task: &str,
        phase: &str,
        note: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let history: Option<String> = tx
            .query_row(
                "SELECT history FROM waits WHERE run_id = ?1 AND task = ?2 AND open = 1",
                params![run_id, task],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(h) = history {
            tx.execute(
                "UPDATE waits SET phase = ?3, history = ?4 WHERE run_id = ?1 AND task = ?2",
                params![run_id, task, phase, append_history(&h, phase, note)],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// One task's status (`None`: no such task).
    pub fn task_status(&self, run_id: &str, task: &str) -> Result<Option<super::TaskStatus>> {
        let s: Option<String> = self
            .conn()
            .query_row(
                "SELECT status FROM tasks WHERE run_id = ?1 AND name = ?2",
                params![run_id, task],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        s.map(|s| s.parse().map_err(super::StoreError::Corrupt))
            .transpose()
    }

    pub fn wait(&self, run_id: &str, task: &str) -> Result<Option<WaitRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {WAIT_COLS} FROM waits WHERE run_id = ?1 AND task = ?2"),
                params![run_id, task],
                wait_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every wait of a run (open or closed).
    pub fn waits_of_run(&self, run_id: &str) -> Result<Vec<WaitRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WAIT_COLS} FROM waits WHERE run_id = ?1 ORDER BY since"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], wait_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Tasks waiting now, in every run, oldest first.
    pub fn open_waits(&self) -> Result<Vec<WaitRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {} FROM waits w JOIN tasks t ON t.run_id = w.run_id AND t.name = w.task \
                 WHERE w.open = 1 AND t.status = 'Waiting' ORDER BY w.since",
                WAIT_COLS
                    .split(", ")
                    .map(|c| format!("w.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], wait_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Record a decision (accepted or refused); returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn record_decision(
        &self,
        run_id: &str,
        task: &str,
        user: &str,
        groups: &[String],
        decision: &str,
        comment: &str,
        accepted: bool,
        reason: Option<&str>,
    ) -> Result<DecisionRecord> {
        let at = now_us();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO decisions (run_id, task, user, groups, decision, comment, at, accepted, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run_id,
                task,
                user,
                serde_json::to_string(groups).unwrap(),
                decision,
                comment,
                at,
                accepted as i64,
                reason
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(DecisionRecord {
            id: conn.last_insert_rowid(),
            run_id: run_id.into(),
            task: task.into(),
            user: user.into(),
            groups: groups.to_vec(),
            decision: decision.into(),
            comment: comment.into(),
            at,
            accepted,
            reason: reason.map(String::from),
            applied: false,
        })
    }

    /// Accepted decisions of a run not yet applied, oldest first.
    pub fn unapplied_decisions(&self, run_id: &str) -> Result<Vec<DecisionRecord>> {
        self.decisions_where(run_id, "AND accepted = 1 AND applied = 0")
    }

    /// Every decision on a run (for `runs show`).
    pub fn decisions(&self, run_id: &str) -> Result<Vec<DecisionRecord>> {
        self.decisions_where(run_id, "")
    }

    fn decisions_where(&self, run_id: &str, filter: &str) -> Result<Vec<DecisionRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {DECISION_COLS} FROM decisions WHERE run_id = ?1 {filter} ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], decision_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }
}
