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
