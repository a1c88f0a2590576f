//! Per-task resource limits and the store's resource limiter.

use std::time::Duration;

/// Limits applied to one task attempt. Defaults: 256 MiB of linear memory,
/// 4 MiB of log text, 1 MiB of results, 1 MiB of parameter text, no
/// timeout (the pipeline sets one).
#[derive(Debug, Clone)]
pub struct TaskLimits {
    pub timeout: Option<Duration>,
    pub memory_bytes: usize,
    pub log_bytes: usize,
    pub result_bytes: usize,
    pub param_bytes: usize,
    /// Most handles (open files and directories, streams, pollables, HTTP
    /// requests …) a task holds at once: its share of the process's
    /// descriptors, so one task cannot exhaust them for the others.
    pub handles: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            timeout: None,
            memory_bytes: 256 << 20,
            log_bytes: 4 << 20,
            result_bytes: 1 << 20,
            param_bytes: 1 << 20,
            handles: 1024,
        }
    }
}

/// Memory and table limiter for one store. The caps are for the whole task:
/// a component with several core instances (each with its own memory and
/// tables) shares one budget. Growth past the cap traps the guest and is
/// reported as a limit failure, not a host error.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub exceeded: Option<String>,
    /// Bytes of all linear memories / elements of all tables so far.
    pub memory_used: usize,
    pub table_used: usize,
}

impl Limiter {
    pub fn new(memory_bytes: usize, table_elements: usize) -> Limiter {
        Limiter {
            memory_bytes,
            table_elements,
            exceeded: None,
            memory_used: 0,
            table_used: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_sub(current) + desired;
        if total > self.memory_bytes {
            let msg = format!(
                "memory limit exceeded: the task tried to grow its memory to {} MiB; the limit is {} MiB",
                total >> 20,
                self.memory_bytes >> 20
            );
            self.exceeded = Some(msg.clone());
            wasmtime::bail!(msg);
        }
        // A growth that then fails elsewhere stays counted: that only makes
        // the budget stricter.
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_used.saturating_sub(current) + desired;
        if total > self.table_elements {
            let msg = format!(
                "table limit exceeded: {total} elements (limit {})",
                self.table_elements
            );
            self.exceeded = Some(msg.clone());
            wasmtime::bail!(msg);
        }
        self.table_used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}
