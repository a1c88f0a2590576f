//! Unit tests of the scheduler's decisions, from tables (no wasm, no store).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::*;
use crate::pipeline::PipelineTask;

/// A planned task from YAML, with its dependencies.
fn task(yaml: &str, deps: &[&str], result_deps: &[&str], finally: bool) -> PlannedTask {
    let spec: PipelineTask = serde_yaml::from_str(yaml).expect("task YAML");
    PlannedTask {
        spec,
        finally,
        deps: deps.iter().map(|s| s.to_string()).collect(),
        result_deps: result_deps
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        timeout: None,
        backoff: Duration::from_secs(1),
        uses_context: false,
        group: None,
        literal_params: Default::default(),
    }
}

fn facts(table: &[(&str, TaskStatus, Option<SkipReason>)]) -> HashMap<String, TaskFacts> {
    table
        .iter()
        .map(|(n, s, r)| {
            (
                n.to_string(),
                TaskFacts {
                    status: *s,
                    skip: *r,
                    continues: false,
                },
            )
        })
        .collect()
}

fn ready(t: &PlannedTask, f: &HashMap<String, TaskFacts>, stopping: Option<&str>) -> Readiness {
    readiness(t, &|n: &str| f[n], stopping)
}

fn skipped(r: Readiness) -> Option<SkipReason> {
    match r {
        Readiness::Skip(reason, _) => Some(reason),
        _ => None,
    }
}

use TaskStatus::*;

#[test]
fn waits_for_unfinished_parents() {
    let t = task("{name: b, uses: x}", &["a"], &[], false);
    for s in [Pending, Running, Retrying, Waiting] {
        assert_eq!(
            ready(&t, &facts(&[("a", s, None)]), None),
            Readiness::Wait,
            "{s}"
        );
    }
    assert_eq!(
        ready(&t, &facts(&[("a", Succeeded, None)]), None),
        Readiness::Go
    );
}

#[test]
fn skips_propagate_except_when_skips() {
    let b = task("{name: b, uses: x}", &["a"], &[], false);
    let b_uses = task("{name: b, uses: x}", &["a"], &["a"], false);
    let cases = [
        // (parent's skip reason, b without results, b using a's results)
        (SkipReason::When, None, Some(SkipReason::MissingResults)),
        (
            SkipReason::ParentSkipped,
            Some(SkipReason::ParentSkipped),
            Some(SkipReason::ParentSkipped),
        ),
        (
            SkipReason::MissingResults,
            Some(SkipReason::ParentSkipped),
            Some(SkipReason::ParentSkipped),
        ),
        (
            SkipReason::Stopping,
            Some(SkipReason::ParentSkipped),
            Some(SkipReason::ParentSkipped),
        ),
        (
            SkipReason::PipelineTimedOut,
            Some(SkipReason::ParentSkipped),
            Some(SkipReason::ParentSkipped),
        ),
    ];
    for (reason, plain, using) in cases {
        let f = facts(&[("a", Skipped, Some(reason))]);
        assert_eq!(skipped(ready(&b, &f, None)), plain, "{reason:?}");
        assert_eq!(
            skipped(ready(&b_uses, &f, None)),
            using,
            "{reason:?} (results)"
        );
    }
}

#[test]
fn a_chain_is_skipped_to_its_end() {
    // a (when false) → b uses a's result → c after b → d after c.
    let b = task("{name: b, uses: x}", &["a"], &["a"], false);
    let c = task("{name: c, uses: x}", &["b"], &[], false);
    let d = task("{name: d, uses: x}", &["c"], &[], false);
    let mut f = facts(&[("a", Skipped, Some(SkipReason::When))]);
    for t in [&b, &c, &d] {
        let Readiness::Skip(reason, _) = ready(t, &f, None) else {
            panic!("{} should be skipped", t.spec.name);
        };
        f.insert(
            t.spec.name.clone(),
            TaskFacts {
                status: Skipped,
                skip: Some(reason),
                continues: false,
            },
        );
    }
    assert_eq!(f["b"].skip, Some(SkipReason::MissingResults));
    assert_eq!(f["c"].skip, Some(SkipReason::ParentSkipped));
    assert_eq!(f["d"].skip, Some(SkipReason::ParentSkipped));
}

#[test]
fn stopping_starts_no_main_task_but_finally_runs() {
    let t = task("{name: b, uses: x}", &[], &[], false);
    let fin = task("{name: f, uses: x}", &[], &[], true);
    let f = facts(&[]);
    assert_eq!(
        skipped(ready(&t, &f, Some("task `a` failed"))),
        Some(SkipReason::Stopping)
    );
    assert_eq!(ready(&fin, &f, Some("task `a` failed")), Readiness::Go);
}

#[test]
fn on_error_continue_lets_dependents_run_without_its_results() {
    let b = task("{name: b, uses: x}", &["a"], &[], false);
    let b_uses = task("{name: b, uses: x}", &["a"], &["a"], false);
    let mut f = facts(&[("a", Failed, None)]);
    f.get_mut("a").unwrap().continues = true;
    assert!(!f["a"].stops_run());
    assert_eq!(ready(&b, &f, None), Readiness::Go);
    assert_eq!(
        skipped(ready(&b_uses, &f, None)),
        Some(SkipReason::MissingResults)
    );
}

#[test]
fn finally_tasks_need_the_results_they_use() {
    let fin = task("{name: f, uses: x}", &[], &["a"], true);
    for (s, want) in [
        (Succeeded, None),
        (Failed, Some(SkipReason::MissingResults)),
        (Skipped, Some(SkipReason::MissingResults)),
    ] {
        assert_eq!(
            skipped(ready(&fin, &facts(&[("a", s, None)]), None)),
            want,
            "{s}"
        );
    }
}

#[test]
fn when_holds_fails_or_errors() {
    let params = BTreeMap::from([
        ("env".to_string(), ParamValue::String("prod".into())),
        (
            "allowed".to_string(),
            ParamValue::Array(vec!["staging".into(), "prod".into()]),
        ),
    ]);
    let results = HashMap::from([(
        "a".to_string(),
        BTreeMap::from([("ok".to_string(), "yes".to_string())]),
    )]);
    let scope = Scope {
        results: Some(&results),
        ..Scope::new(&params)
    };
    let when = |yaml: &str| -> Vec<WhenExpression> { serde_yaml::from_str(yaml).unwrap() };
    // Tekton's documented form: an array param spliced into values.
    let w = when("[{input: $(params.env), operator: in, values: [\"$(params.allowed[*])\"]}]");
    assert_eq!(evaluate_when(&w, &scope), Ok(None));
    let w = when("[{input: $(params.env), operator: notin, values: [\"$(params.allowed[*])\"]}]");
    assert!(evaluate_when(&w, &scope).unwrap().is_some());
    let w = when("[{input: $(tasks.a.results.ok), operator: in, values: [yes]}]");
    assert_eq!(evaluate_when(&w, &scope), Ok(None));
    // A missing result is an error, not a false expression.
    let w = when("[{input: $(tasks.a.results.nope), operator: in, values: [yes]}]");
    let e = evaluate_when(&w, &scope).unwrap_err();
    assert!(e.contains("did not produce result `nope`"), "{e}");
    let w = when("[{input: \"$(params.allowed[5])\", operator: in, values: [x]}]");
    let e = evaluate_when(&w, &scope).unwrap_err();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn retries_back_off_and_stop_after_a_wait() {
    let b = Duration::from_secs(1);
    let delays: Vec<u64> = (1..=4).map(|n| retry_delay(b, n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8]);
    assert_eq!(retry_delay(b, 30), Duration::from_secs(300));
    assert!(retries(true, 1, 2, false));
    assert!(retries(true, 2, 2, false));
    assert!(!retries(true, 3, 2, false));
    assert!(!retries(false, 1, 2, false), "not a retryable failure");
    assert!(
        !retries(true, 1, 2, true),
        "a retry would ask the approvers again"
    );
}

#[test]
fn what_each_stop_does_to_each_task() {
    let cancel = Stop::Asked(StopMode::Cancel);
    let cancel_fin = Stop::Asked(StopMode::CancelRunFinally);
    let stop = Stop::Asked(StopMode::Stop);
    let timeout = Stop::TimedOut(Timeout::Pipeline);
    let st = |s, status, last| on_stop(s, status, last).map(|(st, r, _)| (st, r));
    // Running.
    assert_eq!(st(cancel, Running, None), Some((Cancelled, None)));
    assert_eq!(st(cancel_fin, Running, None), Some((Cancelled, None)));
    assert_eq!(
        st(stop, Running, None),
        None,
        "a graceful stop lets it finish"
    );
    assert_eq!(st(timeout, Running, None), Some((TimedOut, None)));
    // Not started.
    assert_eq!(st(cancel, Pending, None), Some((Cancelled, None)));
    assert_eq!(
        st(cancel_fin, Pending, None),
        Some((Skipped, Some(SkipReason::GracefullyCancelled)))
    );
    assert_eq!(
        st(stop, Pending, None),
        Some((Skipped, Some(SkipReason::GracefullyStopped)))
    );
    assert_eq!(
        st(timeout, Pending, None),
        Some((Skipped, Some(SkipReason::PipelineTimedOut)))
    );
    assert_eq!(
        st(Stop::TimedOut(Timeout::Tasks), Pending, None),
        Some((Skipped, Some(SkipReason::TasksTimedOut)))
    );
    // A failed attempt waiting for its retry keeps its real outcome.
    assert_eq!(st(timeout, Retrying, Some(Failed)), Some((Failed, None)));
    assert_eq!(
        st(timeout, Retrying, Some(TimedOut)),
        Some((TimedOut, None))
    );
    assert_eq!(st(cancel, Retrying, Some(Failed)), Some((Failed, None)));
    assert_eq!(st(stop, Retrying, Some(Failed)), None, "retries go on");
    // An approval gate.
    assert_eq!(st(stop, Waiting, None), Some((Cancelled, None)));
    assert_eq!(st(timeout, Waiting, None), Some((TimedOut, None)));
    // Ended tasks are left alone.
    for s in [Succeeded, Failed, Skipped, Cancelled, TimedOut] {
        assert_eq!(st(cancel, s, None), None);
    }
}

#[test]
fn which_stops_count_and_when() {
    let cancel = Stop::Asked(StopMode::Cancel);
    let stop = Stop::Asked(StopMode::Stop);
    let cancel_fin = Stop::Asked(StopMode::CancelRunFinally);
    let timeout = Stop::TimedOut(Timeout::Pipeline);
    assert!(stop.is_news(None, true));
    assert!(!stop.is_news(Some(stop), true), "the same stop again");
    assert!(cancel.is_news(Some(stop), true), "a cancel after a stop");
    assert!(timeout.is_news(Some(stop), true));
    assert!(!stop.is_news(Some(cancel), true));
    // In finally, the request that started it does not stop it again.
    assert!(!stop.is_news(None, false));
    assert!(!cancel_fin.is_news(None, false));
    assert!(cancel.is_news(None, false));
    assert!(Stop::TimedOut(Timeout::Finally).is_news(None, false));
    assert!(!cancel.runs_finally() && !timeout.runs_finally());
    assert!(stop.runs_finally() && cancel_fin.runs_finally());
    assert!(Stop::TimedOut(Timeout::Tasks).runs_finally());
}

#[test]
fn outcomes() {
    let f = |s| TaskFacts::new(s);
    let cont = TaskFacts {
        continues: true,
        ..TaskFacts::new(Failed)
    };
    let ok = [("a", f(Succeeded)), ("b", f(Succeeded))];
    assert_eq!(run_outcome(None, None, ok).0, RunStatus::Succeeded);
    let failed = [("a", f(Failed)), ("b", f(Skipped))];
    let (s, m) = run_outcome(None, None, failed);
    assert_eq!((s, m.as_str()), (RunStatus::Failed, "failed tasks: a"));
    let (s, m) = run_outcome(None, None, [("a", cont), ("b", f(Succeeded))]);
    assert_eq!(s, RunStatus::Succeeded, "an ignored failure");
    assert!(m.contains("onError: continue"), "{m}");
    let stopped = [("a", f(Succeeded)), ("b", f(Skipped))];
    let stop = Some(Stop::Asked(StopMode::Stop));
    assert_eq!(run_outcome(stop, None, stopped).0, RunStatus::Cancelled);
    // A stopped run in which a task really failed is Failed (as Tekton).
    assert_eq!(run_outcome(stop, None, failed).0, RunStatus::Failed);
    let cancelled = [("a", f(Cancelled))];
    let cancel_fin = Some(Stop::Asked(StopMode::CancelRunFinally));
    assert_eq!(
        run_outcome(cancel_fin, None, cancelled).0,
        RunStatus::Cancelled,
        "a task the stop cancelled is not a failure"
    );
    let timeout = Some(Stop::TimedOut(Timeout::Tasks));
    assert_eq!(run_outcome(timeout, None, failed).0, RunStatus::TimedOut);
    assert_eq!(
        run_outcome(None, Some(Stop::Asked(StopMode::Cancel)), ok).0,
        RunStatus::Cancelled
    );
}

#[test]
fn tekton_status_words() {
    assert_eq!(status_word(Succeeded), "Succeeded");
    assert_eq!(status_word(Failed), "Failed");
    assert_eq!(status_word(TimedOut), "Failed");
    assert_eq!(status_word(Skipped), "None");
    let cont = TaskFacts {
        continues: true,
        ..TaskFacts::new(Failed)
    };
    assert_eq!(aggregate_status([TaskFacts::new(Succeeded)]), "Succeeded");
    assert_eq!(
        aggregate_status([TaskFacts::new(Succeeded), TaskFacts::new(Skipped)]),
        "Completed"
    );
    assert_eq!(
        aggregate_status([TaskFacts::new(Succeeded), cont]),
        "Failed"
    );
}

#[test]
fn tekton_reason_words() {
    let cont = TaskFacts {
        continues: true,
        ..TaskFacts::new(Failed)
    };
    assert_eq!(reason_word(TaskFacts::new(Succeeded)), "Succeeded");
    assert_eq!(reason_word(TaskFacts::new(Failed)), "Failed");
    assert_eq!(reason_word(cont), "FailureIgnored");
    assert_eq!(reason_word(TaskFacts::new(TimedOut)), "TaskRunTimeout");
    assert_eq!(reason_word(TaskFacts::new(Cancelled)), "TaskRunCancelled");
    assert_eq!(reason_word(TaskFacts::new(Skipped)), "");
}

#[test]
fn phase_deadlines() {
    use crate::pipeline::Timeouts;
    use std::time::Instant;
    let start = Instant::now();
    let now = start + Duration::from_secs(100);
    let m = Duration::from_secs(60);
    let t = Timeouts {
        pipeline: Some(60 * m),
        tasks: Some(50 * m),
        finally: Some(10 * m),
    };
    assert_eq!(
        phase_deadline(&t, start, now, true),
        Some((start + 50 * m, Timeout::Tasks))
    );
    assert_eq!(
        phase_deadline(&t, start, now, false),
        Some((now + 10 * m, Timeout::Finally))
    );
    // The run's own deadline comes first when the finally phase starts late.
    let late = start + 55 * m;
    assert_eq!(
        phase_deadline(&t, start, late, false),
        Some((start + 60 * m, Timeout::Pipeline))
    );
    assert_eq!(phase_deadline(&Timeouts::default(), start, now, true), None);
}
