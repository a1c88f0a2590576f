//! The `capstan:plugin/log` capability: structured log lines and progress,
//! plus the guest's stdout/stderr, all into the task's [`TaskSink`], under one
//! byte budget per attempt.

mod host;
mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

pub(crate) use stdio::StdioCapture;

use wasmtime::component::Linker;

use super::capability::{Capability, Data, NoGrant, PrepareCtx, TaskCtx, TaskData, view};
use super::redact::Redactor;

pub use crate::store::LogLevel;

/// Where a task attempt's log lines and progress go (the run store and the
/// terminal, in the scheduler). Implementations must not block for long.
pub trait TaskSink: Send + Sync {
    fn log(&self, level: LogLevel, message: &str);
    fn progress(&self, step: &str, current: u64, total: Option<u64>);
}

/// Longest single log line kept; longer lines are cut with a marker.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The log capability: every task has it.
pub struct LogCap;

impl Capability for LogCap {
    const NAME: &'static str = "log";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/log"];
    type Grant = NoGrant;
    type Prepared = ();
    type State = LogState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::log::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn prepare(_: &[NoGrant], _: &PrepareCtx<'_>) -> Result<(), String> {
        Ok(())
    }

    fn instantiate(_: (), _: &TaskCtx) -> LogState {
        LogState::default()
    }
}

/// Per-attempt log state (the sink and budget are the task's, in
/// [`TaskCtx`]).
#[derive(Default)]
pub struct LogState {
    /// When the guest first called the host (for start-latency figures).
    pub entered: Option<Instant>,
    last_progress: Option<(String, Instant)>,
}

pub struct Budget {
    remaining: AtomicUsize,
    truncated: AtomicBool,
    /// Applied before a line is cut, so a secret across the cut is caught.
    pub redactor: Arc<Redactor>,
}

impl Budget {
    pub fn new(bytes: usize, redactor: Arc<Redactor>) -> Arc<Budget> {
        Arc::new(Budget {
            remaining: AtomicUsize::new(bytes),
            truncated: AtomicBool::new(false),
            redactor,
        })
    }

    /// Emit `message`, redacted, to `sink` if the budget allows; when it
    /// runs out, write one notice and drop everything after.
    pub fn emit(&self, sink: &dyn TaskSink, level: LogLevel, message: &str) {
        let redacted = self.redactor.text(message);
        let mut message: &str = &redacted;
        let cut;
        if message.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            cut = format!("{}… [line cut at {MAX_LINE_BYTES} bytes]", &message[..end]);
            message = &cut;
        }
        let need = message.len() + 1;
        let ok = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                r.checked_sub(need)
            })
            .is_ok();
        if ok {
            sink.log(level, message);
        } else if !self.truncated.swap(true, Ordering::Relaxed) {
            sink.log(
                LogLevel::Warn,
                "log limit reached for this attempt; further output is dropped",
            );
        }
    }

    pub fn truncated(&self) -> bool {
        self.truncated.load(Ordering::Relaxed)
    }
}

impl LogState {
    fn mark_entered(&mut self) {
        if self.entered.is_none() {
            self.entered = Some(Instant::now());
        }
    }
}

/// `s` with control and bidi characters shown escaped
/// ([`crate::escape::for_terminal`]): for host log lines that quote what a
/// plugin sent, so it cannot forge lines or terminal escapes in them.
pub fn one_line(s: &str) -> String {
    crate::escape::for_terminal(s).into_owned()
}

/// A sink that redacts secret values from every line and progress step
/// (for host lines that quote plugin text; the task's own output is
/// redacted by the [`Budget`] before it is cut to length).
pub struct Redacting {
    inner: Arc<dyn TaskSink>,
    redactor: Arc<Redactor>,
}

impl Redacting {
    pub fn new(inner: Arc<dyn TaskSink>, redactor: Arc<Redactor>) -> Redacting {
        Redacting { inner, redactor }
    }
}

impl TaskSink for Redacting {
    fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level, &self.redactor.text(message));
    }

    fn progress(&self, step: &str, current: u64, total: Option<u64>) {
        self.inner
            .progress(&self.redactor.text(step), current, total);
    }
}
