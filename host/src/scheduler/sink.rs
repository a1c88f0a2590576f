//! The task sink the scheduler gives each attempt: every log line goes to
//! the run store and, if someone is watching, to the event channel.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::caps::{LogLevel, TaskSink};
use crate::store::RunStore;

pub(crate) struct StoreSink {
    pub store: Arc<RunStore>,
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    pub events: Option<UnboundedSender<Event>>,
}

impl TaskSink for StoreSink {
    fn log(&self, level: LogLevel, message: &str) {
        if let Err(e) =
            self.store
                .append_log(&self.run_id, &self.task, self.attempt, level, message)
        {
            tracing::error!(run = %self.run_id, task = %self.task, "cannot store a log line: {e}");
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(Event::Log {
                task: self.task.clone(),
                level,
                message: message.to_string(),
            });
        }
    }

    fn progress(&self, step: &str, current: u64, total: Option<u64>) {
        if let Some(tx) = &self.events {
            let _ = tx.send(Event::Progress {
                task: self.task.clone(),
                step: step.to_string(),
                current,
                total,
            });
        }
    }
}
