//! Forge webhook deliveries (`deliveries`) and the commit statuses reported
//! back (`reports`).
//!
//! A delivery is keyed by provider and the forge's delivery id, so a
//! redelivery finds the first one and never starts a second run. A delivery
//! is `processing` from its first receipt until its outcome is written; one
//! left `processing` by a crash is taken over by a redelivery after
//! [`TAKEOVER_US`], so a crash loses no event the forge sends again.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Result, RunStore, StoreError, now_us};

/// How long a delivery may stay `processing` before a redelivery takes it
/// over (the process handling it is taken to have died).
pub const TAKEOVER_US: i64 = 10 * 60 * 1_000_000;

/// A delivery's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    pub provider: String,
    /// The repository's name: one repository's sender cannot claim or
    /// read another's delivery ids.
    pub repository: String,
    pub id: String,
}

/// One recorded delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub provider: String,
    pub id: String,
    pub repository: String,
    pub event: String,
    /// µs since the epoch.
    pub received_at: i64,
    /// `processing` or `done`.
    pub state: String,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// What happened, for people.
    pub outcome: Option<String>,
    /// The runs it started.
    pub runs: Vec<String>,
}

/// What [`RunStore::begin_delivery`] found.
#[derive(Debug)]
pub enum Begin {
    /// New (or taken over): process it.
    New,
    /// Seen before and finished: answer what was answered then.
    Done(DeliveryRecord),
    /// Being processed right now by another request.
    InProgress(DeliveryRecord),
}

/// One attempt to report a run's state to the forge.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRecord {
    pub run_id: String,
    pub state: String,
    pub attempt: u32,
    pub at: i64,
    pub ok: bool,
    /// The forge's answer or the error (never a token).
    pub detail: String,
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let runs: String = r.get(8)?;
    Ok(DeliveryRecord {
        provider: r.get(0)?,
        id: r.get(1)?,
        repository: r.get(2)?,
        event: r.get(3)?,
        received_at: r.get(4)?,
        state: r.get(5)?,
        status: r.get::<_, Option<i64>>(6)?.map(|s| s as u16),
        outcome: r.get(7)?,
        runs: serde_json::from_str(&runs).unwrap_or_default(),
    })
}

const DELIVERY_COLUMNS: &str =
    "provider, id, repository, event, received_at, state, status, outcome, runs";

impl RunStore {
    /// Record a delivery's receipt, unless it was received before.
    pub fn begin_delivery(&self, key: &DeliveryKey, event: &str) -> Result<Begin> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let now = now_us();
        let existing = tx
            .query_row(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE provider = ?1 AND id = ?2 AND repository = ?3"
                ),
                params![key.provider, key.id, key.repository],
                delivery_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let begin = match existing {
            Some(d) if d.state == "done" => Begin::Done(d),
            Some(d) if now - d.received_at < TAKEOVER_US => Begin::InProgress(d),
            Some(_) => {
                tx.execute(
                    "UPDATE deliveries SET received_at = ?3 WHERE provider = ?1 AND id = ?2 AND repository = ?4",
                    params![key.provider, key.id, now, key.repository],
                )
                .map_err(|e| self.err(e))?;
                Begin::New
            }
            None => {
                tx.execute(
                    "INSERT INTO deliveries (provider, id, repository, event, received_at, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'processing')",
                    params![key.provider, key.id, key.repository, event, now],
                )
                .map_err(|e| self.err(e))?;
                Begin::New
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(begin)
    }

    /// Write a delivery's outcome (it is `done` from now on).
    pub fn finish_delivery(
        &self,
        key: &DeliveryKey,
        status: u16,
        outcome: &str,
        runs: &[String],
    ) -> Result<()> {
        let runs = serde_json::to_string(runs).expect("run ids serialize");
        self.conn()
            .execute(
                "UPDATE deliveries SET state = 'done', status = ?3, outcome = ?4, runs = ?5 \
                 WHERE provider = ?1 AND id = ?2 AND repository = ?6",
                params![
                    key.provider,
                    key.id,
                    status as i64,
                    outcome,
                    runs,
                    key.repository
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Add runs to a delivery as they are created (so a crash between two
    /// pipelines of one event leaves the first one's run recorded).
    pub fn delivery_runs(&self, key: &DeliveryKey) -> Result<Vec<String>> {
        let runs: Option<String> = self
            .conn()
            .query_row(
                "SELECT runs FROM deliveries WHERE provider = ?1 AND id = ?2 AND repository = ?3",
                params![key.provider, key.id, key.repository],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match runs {
            None => Ok(Vec::new()),
            Some(r) => serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    /// Append `run` to a delivery's runs.
    pub fn add_delivery_run(&self, key: &DeliveryKey, run: &str) -> Result<()> {
        let mut runs = self.delivery_runs(key)?;
        runs.push(run.to_string());
        let runs = serde_json::to_string(&runs).expect("run ids serialize");
        self.conn()
            .execute(
                "UPDATE deliveries SET runs = ?3 WHERE provider = ?1 AND id = ?2 AND repository = ?4",
                params![key.provider, key.id, runs, key.repository],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deliveries, newest first, of one repository or all.
    pub fn deliveries(
        &self,
        repository: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE (?1 IS NULL OR repository = ?1) \
                 ORDER BY received_at DESC, id LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![repository, limit as i64], delivery_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Record one attempt to report `run_id`'s `state` to the forge.
    pub fn record_report(
        &self,
        run_id: &str,
        state: &str,
        attempt: u32,
        ok: bool,
        detail: &str,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO reports (run_id, state, attempt, at, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, state, attempt, now_us(), ok, detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The last time a repository's schedule fired (or was first seen),
    /// µs since the epoch.
    pub fn schedule_last(&self, repository: &str, name: &str) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT last_fire FROM schedules WHERE repository = ?1 AND name = ?2",
                params![repository, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_schedule_last(&self, repository: &str, name: &str, at: i64) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO schedules (repository, name, last_fire) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (repository, name) DO UPDATE SET last_fire = excluded.last_fire",
                params![repository, name, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The report attempts of a run, oldest first.
    pub fn reports(&self, run_id: &str) -> Result<Vec<ReportRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT run_id, state, attempt, at, ok, detail FROM reports WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok(ReportRecord {
                    run_id: r.get(0)?,
                    state: r.get(1)?,
                    attempt: r.get(2)?,
                    at: r.get(3)?,
                    ok: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_finds_the_first_and_a_stale_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        let key = DeliveryKey {
            provider: "github".into(),
            repository: "team/app".into(),
            id: "d-1".into(),
        };
        assert!(matches!(
            store.begin_delivery(&key, "push").unwrap(),
            Begin::New
        ));
        assert!(matches!(
            store.begin_delivery(&key, "push").unwrap(),
            Begin::InProgress(_)
        ));
        store.add_delivery_run(&key, "run-1").unwrap();
        store
            .finish_delivery(&key, 201, "1 run", &store.delivery_runs(&key).unwrap())
            .unwrap();
        match store.begin_delivery(&key, "push").unwrap() {
            Begin::Done(d) => {
                assert_eq!(d.runs, vec!["run-1".to_string()]);
                assert_eq!(d.status, Some(201));
            }
            other => panic!("{other:?}"),
        }
        // A delivery left processing by a crash long ago is taken over.
        let stale = DeliveryKey {
            provider: "gitlab".into(),
            repository: "g/p".into(),
            id: "d-2".into(),
        };
        store.begin_delivery(&stale, "Push Hook").unwrap();
        store
            .conn()
            .execute(
                "UPDATE deliveries SET received_at = received_at - ?1",
                params![TAKEOVER_US + 1],
            )
            .unwrap();
        assert!(matches!(
            store.begin_delivery(&stale, "Push Hook").unwrap(),
            Begin::New
        ));
        assert_eq!(store.deliveries(Some("g/p"), 10).unwrap().len(), 1);
        assert_eq!(store.deliveries(None, 10).unwrap().len(), 2);
    }
}
