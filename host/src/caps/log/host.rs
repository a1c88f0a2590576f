//! Generated `Host` impl for `capstan:plugin/log`.

use std::time::{Duration, Instant};

use super::{LogLevel, LogState};
use crate::bindings::capstan::plugin::log::{Host, Level};
use crate::caps::capability::View;

/// At most one progress update per step per this interval reaches the sink
/// (the last update of a step, current == total, always does).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl From<Level> for LogLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

impl Host for View<'_, LogState> {
    fn log(&mut self, level: Level, message: String) {
        self.state.mark_entered();
        self.task
            .budget
            .emit(&*self.task.sink, level.into(), &message);
    }

    fn progress(&mut self, step: String, current: u64, total: Option<u64>) {
        self.state.mark_entered();
        let now = Instant::now();
        let finished = total.is_some_and(|t| current >= t);
        if let Some((last_step, at)) = &self.state.last_progress
            && *last_step == step
            && now.duration_since(*at) < PROGRESS_INTERVAL
            && !finished
        {
            return;
        }
        // Redacted before it is cut, so no prefix of a secret survives.
        let step = self.task.budget.redactor.string(step);
        let step = if step.len() > 128 {
            step[..step.floor_char_boundary(128)].to_string()
        } else {
            step
        };
        self.task.sink.progress(&step, current, total);
        self.state.last_progress = Some((step, now));
    }
}
