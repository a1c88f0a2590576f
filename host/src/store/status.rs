//! Run and task states.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

/// State of a task within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Running,
    /// Failed an attempt and waits for the next one.
    Retrying,
    /// Suspended: waits for an event (an approval) with no instance.
    Waiting,
    Succeeded,
    Failed,
    /// Not run: a `when` was false, or a task it needed did not succeed.
    Skipped,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Cancelled => "Cancelled",
            RunStatus::TimedOut => "TimedOut",
        }
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            TaskStatus::Pending | TaskStatus::Running | TaskStatus::Retrying | TaskStatus::Waiting
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "Pending",
            TaskStatus::Running => "Running",
            TaskStatus::Retrying => "Retrying",
            TaskStatus::Waiting => "Waiting",
            TaskStatus::Succeeded => "Succeeded",
            TaskStatus::Failed => "Failed",
            TaskStatus::Skipped => "Skipped",
            TaskStatus::Cancelled => "Cancelled",
            TaskStatus::TimedOut => "TimedOut",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Queued" => RunStatus::Queued,
            "Running" => RunStatus::Running,
            "Succeeded" => RunStatus::Succeeded,
            "Failed" => RunStatus::Failed,
            "Cancelled" => RunStatus::Cancelled,
            "TimedOut" => RunStatus::TimedOut,
            _ => return Err(format!("unknown run status `{s}`")),
        })
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Pending" => TaskStatus::Pending,
            "Running" => TaskStatus::Running,
            "Retrying" => TaskStatus::Retrying,
            "Waiting" => TaskStatus::Waiting,
            "Succeeded" => TaskStatus::Succeeded,
            "Failed" => TaskStatus::Failed,
            "Skipped" => TaskStatus::Skipped,
            "Cancelled" => TaskStatus::Cancelled,
            "TimedOut" => TaskStatus::TimedOut,
            _ => return Err(format!("unknown task status `{s}`")),
        })
    }
}

/// Why a task did not run (Tekton's skipping reasons, in Tekton's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// Its `when` expressions were false. The only reason that does not
    /// skip the tasks after it.
    When,
    /// A task it runs after was skipped (for another reason than `when`).
    ParentSkipped,
    /// A result it uses was not produced.
    MissingResults,
    /// A task failed: the run starts nothing new.
    Stopping,
    /// `CancelledRunFinally` was asked before it started.
    GracefullyCancelled,
    /// `StoppedRunFinally` was asked before it started.
    GracefullyStopped,
    /// The run's timeout (`timeout`, `timeouts.pipeline`) passed.
    PipelineTimedOut,
    /// `timeouts.tasks` passed before it started.
    TasksTimedOut,
    /// `timeouts.finally` passed before it started.
    FinallyTimedOut,
}

impl SkipReason {
    pub const ALL: [SkipReason; 9] = [
        SkipReason::When,
        SkipReason::ParentSkipped,
        SkipReason::MissingResults,
        SkipReason::Stopping,
        SkipReason::GracefullyCancelled,
        SkipReason::GracefullyStopped,
        SkipReason::PipelineTimedOut,
        SkipReason::TasksTimedOut,
        SkipReason::FinallyTimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::When => "When Expressions evaluated to false",
            SkipReason::ParentSkipped => "Parent Tasks were skipped",
            SkipReason::MissingResults => "Results were missing",
            SkipReason::Stopping => "PipelineRun was stopping",
            SkipReason::GracefullyCancelled => "PipelineRun was gracefully cancelled",
            SkipReason::GracefullyStopped => "PipelineRun was gracefully stopped",
            SkipReason::PipelineTimedOut => "PipelineRun timeout has been reached",
            SkipReason::TasksTimedOut => "PipelineRun Tasks timeout has been reached",
            SkipReason::FinallyTimedOut => "PipelineRun Finally timeout has been reached",
        }
    }

    pub fn parse(s: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How a run is asked to stop (Tekton's `spec.status` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopMode {
    /// `Cancelled`: stop every task now; `finally` does not run.
    #[serde(rename = "Cancelled")]
    Cancel,
    /// `CancelledRunFinally`: stop every task now, then run `finally`.
    #[serde(rename = "CancelledRunFinally")]
    CancelRunFinally,
    /// `StoppedRunFinally`: start no new task, let running ones finish,
    /// then run `finally`.
    #[serde(rename = "StoppedRunFinally")]
    Stop,
}

impl StopMode {
    /// The value stored in `runs.cancel_requested` (0: none).
    pub fn code(self) -> i64 {
        match self {
            StopMode::Cancel => 1,
            StopMode::CancelRunFinally => 2,
            StopMode::Stop => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<StopMode> {
        match code {
            1 => Some(StopMode::Cancel),
            2 => Some(StopMode::CancelRunFinally),
            3 => Some(StopMode::Stop),
            _ => None,
        }
    }

    /// Tekton's `spec.status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Cancel => "Cancelled",
            StopMode::CancelRunFinally => "CancelledRunFinally",
            StopMode::Stop => "StoppedRunFinally",
        }
    }

    pub fn parse(s: &str) -> Option<StopMode> {
        [StopMode::Cancel, StopMode::CancelRunFinally, StopMode::Stop]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Severity of a task log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }
}
