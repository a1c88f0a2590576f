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
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            timeout: None,
            memory_bytes: 256 << 20,
            log_bytes: 4 << 20,
            result_bytes: 1 << 20,
            param_bytes: 1 << 20,
        }
    }
}

/// Memory and table limiter for one store. Growth past the cap traps the
/// guest and is reported as a limit failure, not a host error.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub exceeded: Option<String>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let msg = format!(
                "memory limit exceeded: the task tried to grow its memory to {} MiB; the limit is {} MiB",
                desired >> 20,
                self.memory_bytes >> 20
            );
            self.exceeded = Some(msg.clone());
            wasmtime::bail!(msg);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let msg = format!(
                "table limit exceeded: {desired} elements (limit {})",
                self.table_elements
            );
            self.exceeded = Some(msg.clone());
            wasmtime::bail!(msg);
        }
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
