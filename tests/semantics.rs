//! Pipeline semantics through the real scheduler and real components:
//! params, results, workspaces, parallelism, when, finally, retries,
//! timeouts, cancellation, logs and progress.

use std::time::Duration;

use capstan::scheduler::RunOptions;
use capstan::store::{RunStatus, SkipReason, StopMode, TaskStatus};
use capstan_tests::TestEnv;

#[path = "semantics/tekton.rs"]
mod tekton;

const HEADER: &str =
    "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: sem }\nspec:\n";

#[tokio::test]
async fn params_results_and_substitution() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params:
    - {{ name: who, default: world }}
    - {{ name: list, type: array, default: [a, b] }}
    - {{ name: obj, type: object, default: {{ k: v }} }}
  tasks:
    - name: first
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: "hello $(params.who) $(params.list[1]) $(params.obj.k)" }}
        - {{ name: items, value: ["x", "$(params.list[*])"] }}
        - {{ name: fields, value: {{ a: "$(params.who)" }} }}
    - name: second
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: "got [$(tasks.first.results.message)] in $(context.pipeline.name)" }}
  results:
    - {{ name: final, value: "$(tasks.second.results.message)" }}
"#
    );
    let run = env.run(&yaml, &[("who", "capstan")]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(run.result("first", "message"), "hello capstan b v");
    assert_eq!(run.result("first", "items"), "x,a,b");
    assert_eq!(run.result("first", "fields"), "a=capstan");
    assert_eq!(
        run.result("second", "message"),
        "got [hello capstan b v] in sem"
    );
    assert_eq!(run.run.results["final"], "got [hello capstan b v] in sem");
    // The result reference is an implicit edge: second started after first ended.
    let first = run.attempts.iter().find(|a| a.task == "first").unwrap();
    let second = run.attempts.iter().find(|a| a.task == "second").unwrap();
    assert!(second.dispatched_at >= first.finished_at.unwrap());
}

#[tokio::test]
async fn array_and_object_params_from_the_command_line() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params:
    - {{ name: list, type: array }}
  tasks:
    - name: t
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: m }}
        - {{ name: items, value: "$(params.list[*])" }}
"#
    );
    let run = env.run(&yaml, &[("list", r#"["1","2","3"]"#)]).await;
    assert_eq!(run.result("t", "items"), "1,2,3");
}

#[tokio::test]
async fn workspaces_are_shared_and_parallel_branches_overlap() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  workspaces: [{{ name: src }}]
  tasks:
    - name: write
      uses: "{{{{write_file}}}}"
      params: [{{ name: path, value: dir/a.txt }}, {{ name: content, value: "one two three\n" }}]
      workspaces: [{{ name: output, workspace: src }}]
    - name: slow-a
      uses: "{{{{sleep}}}}"
      runAfter: [write]
      params: [{{ name: millis, value: "300" }}]
    - name: slow-b
      uses: "{{{{sleep}}}}"
      runAfter: [write]
      params: [{{ name: millis, value: "300" }}]
    - name: hash
      uses: "{{{{sha256sum}}}}"
      params: [{{ name: path, value: $(tasks.write.results.path) }}]
      workspaces: [{{ name: source, workspace: src }}]
    - name: count
      uses: "{{{{word_count}}}}"
      runAfter: [write]
      params: [{{ name: paths, value: [dir/a.txt] }}]
      workspaces: [{{ name: source, workspace: src }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(run.result("count", "words"), "3");
    // Computed on the host, independently of the plugin.
    assert_eq!(
        run.result("hash", "digest"),
        capstan::digest::Digest::of(b"one two three\n").as_str()
    );
    let ws = &run.run.spec.workspaces["src"];
    assert_eq!(
        std::fs::read_to_string(format!("{ws}/dir/a.txt")).unwrap(),
        "one two three\n"
    );
    // The two sleeps ran at the same time: each started before the other ended.
    let a = run.attempts.iter().find(|x| x.task == "slow-a").unwrap();
    let b = run.attempts.iter().find(|x| x.task == "slow-b").unwrap();
    assert!(a.dispatched_at < b.finished_at.unwrap() && b.dispatched_at < a.finished_at.unwrap());
}

#[tokio::test]
async fn parallelism_one_serialises_independent_tasks() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - {{ name: a, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "100" }}] }}
    - {{ name: b, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "100" }}] }}
"#
    );
    let run = env
        .run_with(
            &yaml,
            &[],
            RunOptions {
                parallelism: 1,
                ..Default::default()
            },
        )
        .await;
    let a = run.attempts.iter().find(|x| x.task == "a").unwrap();
    let b = run.attempts.iter().find(|x| x.task == "b").unwrap();
    assert!(b.dispatched_at >= a.finished_at.unwrap() || a.dispatched_at >= b.finished_at.unwrap());
}

#[tokio::test]
async fn when_expressions_skip_and_propagate() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params: [{{ name: mode, default: fast }}]
  tasks:
    - name: gate
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: x }}]
      when: [{{ input: "$(params.mode)", operator: in, values: [slow] }}]
    - name: uses-result
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(tasks.gate.results.message)" }}]
    - name: only-after
      uses: "{{{{echo}}}}"
      runAfter: [gate]
      params: [{{ name: message, value: ran }}]
    - name: notin
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: ran }}]
      when: [{{ input: "$(params.mode)", operator: notin, values: [slow] }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.status_of("gate"), TaskStatus::Skipped);
    assert!(run.message("gate").contains("when expression was false"));
    assert_eq!(run.status_of("uses-result"), TaskStatus::Skipped);
    assert_eq!(run.status_of("only-after"), TaskStatus::Succeeded);
    assert_eq!(run.status_of("notin"), TaskStatus::Succeeded);

    let run = env.run(&yaml, &[("mode", "slow")]).await;
    assert_eq!(run.status_of("gate"), TaskStatus::Succeeded);
    assert_eq!(run.status_of("notin"), TaskStatus::Skipped);
}

#[tokio::test]
async fn finally_runs_after_failure_and_sees_statuses() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - {{ name: ok, uses: "{{{{echo}}}}", params: [{{ name: message, value: fine }}] }}
    - {{ name: broken, uses: "{{{{fail}}}}", params: [{{ name: message, value: boom }}] }}
    - name: downstream
      uses: "{{{{echo}}}}"
      runAfter: [broken]
      params: [{{ name: message, value: never }}]
  finally:
    - name: report
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: "ok=$(tasks.ok.status) broken=$(tasks.broken.status) all=$(tasks.status)" }}
    - name: needs-broken-result
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(tasks.broken.results.attempt)" }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.run.message.as_deref().unwrap().contains("broken"));
    assert_eq!(run.status_of("broken"), TaskStatus::Failed);
    assert_eq!(run.message("broken"), "boom");
    assert_eq!(run.status_of("downstream"), TaskStatus::Skipped);
    assert_eq!(run.status_of("report"), TaskStatus::Succeeded);
    assert_eq!(
        run.result("report", "message"),
        "ok=Succeeded broken=Failed all=Failed"
    );
    assert_eq!(run.status_of("needs-broken-result"), TaskStatus::Skipped);
}

#[tokio::test]
async fn retries_with_backoff() {
    let env = TestEnv::new();
    let pipeline = |retries: u32, mode: &str| {
        format!(
            r#"{HEADER}  tasks:
    - name: flaky
      uses: "{{{{fail}}}}"
      retries: {retries}
      retryBackoff: 50ms
      params: [{{ name: until-attempt, value: "3" }}, {{ name: mode, value: {mode} }}]
"#
        )
    };
    let run = env.run(&pipeline(2, "failed"), &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(run.task("flaky").attempts, 3);
    assert_eq!(run.result("flaky", "attempt"), "3");
    // Backoff: 50ms then 100ms between attempts. (Dispatch to dispatch: an
    // attempt's recorded end can trail its real end under load, so
    // end-to-dispatch gaps are not a sound lower bound.)
    let at: Vec<i64> = run.attempts.iter().map(|a| a.dispatched_at).collect();
    assert!(
        at[1] - at[0] >= 50_000 && at[2] - at[1] >= 100_000,
        "{at:?}"
    );

    let run = env.run(&pipeline(1, "trap"), &[]).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.task("flaky").attempts, 2);
    assert!(
        run.message("flaky").contains("trapped"),
        "{}",
        run.message("flaky")
    );

    // Invalid params and denials are not retried.
    let run = env.run(&pipeline(3, "invalid-params"), &[]).await;
    assert_eq!(run.task("flaky").attempts, 1);
    assert!(run.message("flaky").starts_with("invalid params"));
    let run = env.run(&pipeline(3, "denied"), &[]).await;
    assert_eq!(run.task("flaky").attempts, 1);
    assert!(
        run.message("flaky")
            .contains("denied: secrets `prod-token` (layer: pipeline)"),
        "{}",
        run.message("flaky")
    );
}

#[tokio::test]
async fn task_and_run_timeouts() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - name: slow
      uses: "{{{{sleep}}}}"
      timeout: 200ms
      retries: 1
      retryBackoff: 10ms
      params: [{{ name: millis, value: "10000" }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status_of("slow"), TaskStatus::TimedOut);
    assert_eq!(run.task("slow").attempts, 2, "a timeout is retried");
    assert_eq!(run.status, RunStatus::Failed);

    // `timeout` (= `timeouts.pipeline`) bounds the whole run, finally
    // included, as in Tekton; `timeouts.tasks` lets finally run.
    let run_with = |timeouts: &str| {
        format!(
            r#"apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: {{ name: bounded }}
spec:
  {timeouts}
  pipelineSpec:
    tasks:
      - {{ name: slow, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "10000" }}] }}
      - {{ name: later, uses: "{{{{echo}}}}", runAfter: [slow], params: [{{ name: message, value: x }}] }}
    finally:
      - {{ name: cleanup, uses: "{{{{echo}}}}", params: [{{ name: message, value: "$(tasks.status)" }}] }}
"#
        )
    };
    let run = env.run(&run_with("timeout: 300ms"), &[]).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(run.status_of("slow"), TaskStatus::TimedOut);
    assert_eq!(run.status_of("later"), TaskStatus::Skipped);
    assert_eq!(run.status_of("cleanup"), TaskStatus::Skipped);
    assert_eq!(
        run.task("cleanup").skip_reason,
        Some(SkipReason::PipelineTimedOut)
    );

    let run = env.run(&run_with("timeouts: { tasks: 300ms }"), &[]).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(run.status_of("slow"), TaskStatus::TimedOut);
    assert_eq!(
        run.task("later").skip_reason,
        Some(SkipReason::TasksTimedOut)
    );
    assert_eq!(
        run.status_of("cleanup"),
        TaskStatus::Succeeded,
        "finally runs after timeouts.tasks"
    );
    assert_eq!(run.result("cleanup", "message"), "Failed");
}

#[tokio::test]
async fn cancel_stops_running_tasks() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - {{ name: long, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "30000" }}] }}
    - {{ name: next, uses: "{{{{echo}}}}", runAfter: [long], params: [{{ name: message, value: x }}] }}
"#
    );
    let prepared = env.prepare(&yaml, &[]).unwrap();
    let id = env.sched.create(&prepared, &RunOptions::default()).unwrap();
    let store = env.sched.store.clone();
    let id2 = id.clone();
    let canceller = tokio::spawn(async move {
        // Wait until the task is running, then cancel through the store, as
        // `capstan runs cancel` from another process does.
        for _ in 0..200 {
            if store
                .tasks(&id2)
                .unwrap()
                .iter()
                .any(|t| t.status == TaskStatus::Running)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.request_stop(&id2, StopMode::Cancel).unwrap();
    });
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        env.sched.execute(&id, &prepared, None),
    )
    .await
    .expect("cancel must not hang")
    .unwrap();
    canceller.await.unwrap();
    let run = env.outcome(&id, status);
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.status_of("long"), TaskStatus::Cancelled);
    assert_eq!(run.status_of("next"), TaskStatus::Cancelled);
}

#[tokio::test]
async fn logs_stdout_stderr_and_progress_are_recorded() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - {{ name: p, uses: "{{{{progress}}}}", params: [{{ name: steps, value: "1000" }}] }}
"#
    );
    let prepared = env.prepare(&yaml, &[]).unwrap();
    let id = env.sched.create(&prepared, &RunOptions::default()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let status = env.sched.execute(&id, &prepared, Some(tx)).await.unwrap();
    let mut progress = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let capstan::scheduler::Event::Progress { current, total, .. } = ev {
            progress.push((current, total));
        }
    }
    let run = env.outcome(&id, status);
    assert_eq!(run.result("p", "reported"), "1001");
    let log = run.task_log("p");
    assert!(log.contains(&"reported 1001 progress updates"));
    assert!(log.contains(&"hello from stdout"));
    assert!(log.contains(&"hello from stderr"));
    // Throttled, but the first and the final update always get through.
    assert!(
        !progress.is_empty() && progress.len() < 1001,
        "{} progress events",
        progress.len()
    );
    assert_eq!(progress.first(), Some(&(0, Some(1000))));
    assert_eq!(progress.last(), Some(&(1000, Some(1000))));
}

/// Found by the Kubernetes soak: several runs prepared at once in one
/// process compiled the same plugin concurrently and collided on the
/// compiled cache's temp file (one load failed with ENOENT, and its run was
/// marked Invalid). Concurrent loads into one cache directory all succeed.
#[test]
fn concurrent_loads_of_one_plugin_share_the_compiled_cache_safely() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let cache = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let rt = capstan::runtime::Runtime::new(capstan::runtime::RuntimeConfig {
                    cache_dir: Some(cache),
                    max_instances: 4,
                    ..Default::default()
                })
                .unwrap();
                rt.load_file(std::path::Path::new(capstan_tests::components::ECHO))
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(
        cached.len(),
        1,
        "one artifact, no temp files left: {cached:?}"
    );
}

/// Durations as Tekton writes them: Go syntax with fractions, and `0` as
/// "no timeout" for a task and for the run.
#[tokio::test]
async fn go_durations_and_a_zero_timeout() {
    let env = TestEnv::new();
    let run = env
        .run(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: { name: durations }
spec:
  timeout: "0"
  pipelineSpec:
    tasks:
      - name: unbounded
        uses: "{{sleep}}"
        timeout: "0"
        params: [{ name: millis, value: "150" }]
      - name: fractional
        uses: "{{sleep}}"
        timeout: 1h0m0.5s
        retryBackoff: 0.25s
        params: [{ name: millis, value: "10" }]
      - name: tight
        uses: "{{sleep}}"
        timeout: 0.05s
        params: [{ name: millis, value: "2000" }]
"#,
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("unbounded"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.status_of("fractional"), TaskStatus::Succeeded);
    assert_eq!(run.status_of("tight"), TaskStatus::TimedOut);
    assert!(
        run.message("tight").contains("timed out after 50ms"),
        "{}",
        run.message("tight")
    );
    let bad = env
        .prepare(
            "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: b }\nspec:\n  tasks:\n    - { name: a, uses: \"{{sleep}}\", timeout: 1.5, params: [{ name: millis, value: \"1\" }] }\n",
            &[],
        )
        .err()
        .expect("a number without a unit");
    assert!(bad.contains("missing unit"), "{bad}");
}

/// Tekton's context variables, as Tekton spells them.
#[tokio::test]
async fn tekton_context_variables() {
    let env = TestEnv::new();
    let run = env
        .run(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: ctx }
spec:
  tasks:
    - name: t
      uses: "{{echo}}"
      retries: 2
      params:
        - name: message
          value: "$(context.pipelineRun.name)|$(context.pipelineRun.namespace)|$(context.pipelineRun.uid)|$(context.pipelineTask.retries)|$(context.task.retry-count)"
"#,
            &[],
        )
        .await;
    assert_eq!(
        run.result("t", "message"),
        format!("{0}|default|{0}|2|0", run.id)
    );
}
