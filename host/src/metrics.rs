//! Prometheus metrics of a scheduler (served at `/metrics` by `capstan
//! serve` and `capstan controller`), with the `prometheus-client` crate.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{RunStatus, TaskStatus};

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    runs_active: Gauge,
    runs_finished: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    attempt_seconds: Histogram,
    waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("capstan");
        let runs_active = Gauge::default();
        registry.register(
            "runs_active",
            "Runs this process is executing",
            runs_active.clone(),
        );
        let runs_finished = Family::<Labels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs that reached a final status, by status",
            runs_finished.clone(),
        );
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "task_attempts",
            "Finished task attempts, by status",
            attempts.clone(),
        );
        // 100 µs .. ~1.7 h
        let attempt_seconds = Histogram::new(exponential_buckets(0.0001, 4.0, 13));
        registry.register(
            "task_attempt_seconds",
            "Wall time of task attempts (dispatch to finish)",
            attempt_seconds.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "tasks_waiting",
            "Tasks suspended waiting for an event (approvals), with no instance",
            waiting.clone(),
        );
        Metrics {
            registry,
            runs_active,
            runs_finished,
            attempts,
            attempt_seconds,
            waiting,
        }
    }

    pub fn run_started(&self) {
        self.runs_active.inc();
    }

    pub fn run_ended(&self, status: Option<RunStatus>) {
        self.runs_active.dec();
        if let Some(s) = status.filter(|s| s.is_terminal()) {
            self.runs_finished
                .get_or_create(&vec![("status", s.as_str())])
                .inc();
        }
    }

    pub fn attempt_finished(&self, status: TaskStatus, seconds: f64) {
        self.attempts
            .get_or_create(&vec![("status", status.as_str())])
            .inc();
        self.attempt_seconds.observe(seconds);
    }

    pub fn waiting(&self, delta: i64) {
        self.waiting.inc_by(delta);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.run_started();
        m.attempt_finished(TaskStatus::Succeeded, 0.002);
        m.attempt_finished(TaskStatus::Failed, 0.5);
        m.run_ended(Some(RunStatus::Failed));
        let text = m.encode();
        assert!(text.contains("capstan_runs_active 0"), "{text}");
        assert!(
            text.contains("capstan_task_attempts_total{status=\"Succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("capstan_runs_finished_total{status=\"Failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("capstan_task_attempt_seconds_count 2"),
            "{text}"
        );
    }
}
