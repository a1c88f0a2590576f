//! Group commit of attempt-start records.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Group commit of "attempt started" records, so that starting a task costs
/// no store write and no thread wake-up: dispatch appends to a pending list;
/// a background thread writes the list every [`Recorder::INTERVAL`] in one
/// transaction, and an attempt's completion flushes first, so a start record
/// is always stored before its finish. A crash can lose only start records
/// younger than the interval; resume then runs those tasks again under the
/// same attempt number (they would run again anyway).
pub(super) struct Recorder {
    pending: Arc<std::sync::Mutex<Vec<StartRecord>>>,
    store: Arc<RunStore>,
    stop: Arc<AtomicBool>,
}

pub(super) struct StartRecord {
    pub(super) run_id: String,
    pub(super) task: String,
    pub(super) attempt: u32,
    pub(super) dispatched_at: i64,
}

impl Recorder {
    const INTERVAL: Duration = Duration::from_millis(5);

    pub(super) fn new(store: Arc<RunStore>) -> Recorder {
        let pending: Arc<std::sync::Mutex<Vec<StartRecord>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st, s) = (pending.clone(), store.clone(), stop.clone());
        std::thread::Builder::new()
            .name("capstan-recorder".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Self::INTERVAL);
                    if let Err(e) = flush(&p, &st) {
                        tracing::error!("cannot record attempt starts: {e}");
                    }
                }
            })
            .expect("spawning the recorder thread");
        Recorder {
            pending,
            store,
            stop,
        }
    }

    pub(super) fn push(&self, rec: StartRecord) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
    }

    pub(super) fn flush(&self) -> Result<(), crate::store::StoreError> {
        flush(&self.pending, &self.store)
    }
}

fn flush(
    pending: &std::sync::Mutex<Vec<StartRecord>>,
    store: &RunStore,
) -> Result<(), crate::store::StoreError> {
    // Hold the list while writing, so that a finish written after a flush
    // never overtakes a start record still being written by another flush.
    let mut list = pending.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        return Ok(());
    }
    let batch: Vec<(&str, &str, u32, i64)> = list
        .iter()
        .map(|r| {
            (
                r.run_id.as_str(),
                r.task.as_str(),
                r.attempt,
                r.dispatched_at,
            )
        })
        .collect();
    store.start_attempts(&batch)?;
    list.clear();
    Ok(())
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.flush();
    }
}
