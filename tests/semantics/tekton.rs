//! Tekton's documented behaviour, case by case (docs/pipelines.md,
//! docs/pipelineruns.md, pkg/reconciler/pipelinerun/resources of
//! tektoncd/pipeline): skip propagation, stopping after a failure,
//! `onError`, retries at a timeout, `when` errors, cancel vs stop.

use std::time::Duration;

use capstan::scheduler::RunOptions;
use capstan::store::{RunStatus, SkipReason, StopMode, TaskStatus};
use capstan_tests::TestEnv;

use super::HEADER;

#[tokio::test]
async fn a_skip_propagates_down_the_chain_except_a_when_skip() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - name: gate
      uses: "{{{{echo}}}}"
      when: [{{ input: "a", operator: in, values: [b] }}]
      params: [{{ name: message, value: x }}]
    - name: after-gate
      uses: "{{{{echo}}}}"
      runAfter: [gate]
      params: [{{ name: message, value: "runs: a when-skip does not propagate" }}]
    - name: uses-gate
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(tasks.gate.results.message)" }}]
    - name: after-uses-gate
      uses: "{{{{echo}}}}"
      runAfter: [uses-gate]
      params: [{{ name: message, value: never }}]
    - name: end-of-chain
      uses: "{{{{echo}}}}"
      runAfter: [after-uses-gate, after-gate]
      params: [{{ name: message, value: never }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    let reason = |t: &str| run.task(t).skip_reason;
    assert_eq!(reason("gate"), Some(SkipReason::When));
    assert_eq!(run.status_of("after-gate"), TaskStatus::Succeeded);
    assert_eq!(reason("uses-gate"), Some(SkipReason::MissingResults));
    assert_eq!(reason("after-uses-gate"), Some(SkipReason::ParentSkipped));
    assert_eq!(reason("end-of-chain"), Some(SkipReason::ParentSkipped));
}

#[tokio::test]
async fn a_failure_stops_new_tasks_running_ones_finish_then_finally() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - {{ name: broken, uses: "{{{{fail}}}}", params: [{{ name: message, value: boom }}] }}
    - {{ name: slow, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "400" }}] }}
    - name: after-slow
      uses: "{{{{echo}}}}"
      runAfter: [slow]
      params: [{{ name: message, value: never }}]
  finally:
    - name: report
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "slow=$(tasks.slow.status) after=$(tasks.after-slow.status)" }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.run.message.as_deref(), Some("failed tasks: broken"));
    assert_eq!(
        run.status_of("slow"),
        TaskStatus::Succeeded,
        "it was running"
    );
    assert_eq!(run.status_of("after-slow"), TaskStatus::Skipped);
    assert_eq!(
        run.task("after-slow").skip_reason,
        Some(SkipReason::Stopping)
    );
    assert!(run.message("after-slow").contains("task `broken` failed"));
    assert_eq!(run.result("report", "message"), "slow=Succeeded after=None");
}

#[tokio::test]
async fn on_error_continue_keeps_the_run_going() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - name: lint
      uses: "{{{{fail}}}}"
      onError: continue
      params: [{{ name: message, value: style }}]
    - name: build
      uses: "{{{{echo}}}}"
      runAfter: [lint]
      params: [{{ name: message, value: built }}]
    - name: uses-lint
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(tasks.lint.results.attempt)" }}]
  finally:
    - name: report
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "lint=$(tasks.lint.status) all=$(tasks.status)" }}]
    - name: reasons
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(tasks.lint.reason) $(tasks.build.reason) [$(tasks.uses-lint.reason)]" }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(
        run.result("reasons", "message"),
        "FailureIgnored Succeeded []"
    );
    assert!(run.run.message.as_deref().unwrap().contains("lint"));
    assert_eq!(run.status_of("lint"), TaskStatus::Failed);
    assert_eq!(run.status_of("build"), TaskStatus::Succeeded);
    assert_eq!(
        run.task("uses-lint").skip_reason,
        Some(SkipReason::MissingResults)
    );
    // As Tekton: the task's status and the aggregate say Failed.
    assert_eq!(run.result("report", "message"), "lint=Failed all=Failed");
}

#[tokio::test]
async fn a_pending_retry_keeps_its_real_outcome_at_a_timeout() {
    let env = TestEnv::new();
    let yaml = r#"apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: { name: retry-timeout }
spec:
  timeouts: { tasks: 400ms }
  pipelineSpec:
    tasks:
      - name: flaky
        uses: "{{fail}}"
        retries: 3
        retryBackoff: 30s
        params: [{ name: message, value: nope }]
    finally:
      - { name: report, uses: "{{echo}}", params: [{ name: message, value: "$(tasks.flaky.status)" }] }
"#;
    let run = env.run(yaml, &[]).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(
        run.status_of("flaky"),
        TaskStatus::Failed,
        "it ran and failed"
    );
    assert_eq!(run.task("flaky").attempts, 1);
    assert_eq!(run.result("report", "message"), "Failed");
}

#[tokio::test]
async fn when_errors_fail_and_arrays_splice_into_values() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params:
    - {{ name: envs, type: array, default: [staging, prod] }}
    - {{ name: env, default: prod }}
  tasks:
    - name: first
      uses: "{{{{fail}}}}"
      params: [{{ name: mode, value: silent }}, {{ name: until-attempt, value: "1" }}]
    - name: deploy
      uses: "{{{{echo}}}}"
      when: [{{ input: "$(params.env)", operator: in, values: ["$(params.envs[*])"] }}]
      params: [{{ name: message, value: deployed }}]
    - name: broken-when
      uses: "{{{{echo}}}}"
      when: [{{ input: "$(tasks.first.results.nothing-like-this)", operator: in, values: [x] }}]
      params: [{{ name: message, value: never }}]
"#
    );
    // `first` has no result `nothing-like-this`: validation says so.
    let err = env.prepare(&yaml, &[]).err().expect("refused");
    assert!(err.contains("no result `nothing-like-this`"), "{err}");

    // A result the plugin declares but did not produce fails the task.
    let yaml = yaml.replace("nothing-like-this", "attempt");
    let run = env.run(&yaml, &[]).await;
    assert_eq!(
        run.status_of("deploy"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.status_of("broken-when"), TaskStatus::Failed);
    assert!(
        run.message("broken-when")
            .contains("did not produce result `attempt`"),
        "{}",
        run.message("broken-when")
    );
    assert_eq!(run.status, RunStatus::Failed);
}

/// Run `yaml`, and once `long` runs, ask for `mode` as another process
/// would (through the store).
async fn stop_while_running(
    env: &TestEnv,
    yaml: &str,
    mode: StopMode,
) -> capstan_tests::RunOutcome {
    let prepared = env.prepare(yaml, &[]).unwrap();
    let id = env.sched.create(&prepared, &RunOptions::default()).unwrap();
    let store = env.sched.store.clone();
    let id2 = id.clone();
    let asker = tokio::spawn(async move {
        for _ in 0..500 {
            let tasks = store.tasks(&id2).unwrap();
            if tasks
                .iter()
                .any(|t| t.name == "long" && t.status == TaskStatus::Running)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.request_stop(&id2, mode).unwrap();
    });
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        env.sched.execute(&id, &prepared, None),
    )
    .await
    .expect("a stop must not hang")
    .unwrap();
    asker.await.unwrap();
    env.outcome(&id, status)
}

fn stop_pipeline(long_millis: u32) -> String {
    format!(
        r#"{HEADER}  tasks:
    - {{ name: long, uses: "{{{{sleep}}}}", params: [{{ name: millis, value: "{long_millis}" }}] }}
    - {{ name: next, uses: "{{{{echo}}}}", runAfter: [long], params: [{{ name: message, value: x }}] }}
  finally:
    - {{ name: cleanup, uses: "{{{{echo}}}}", params: [{{ name: message, value: "long=$(tasks.long.status)" }}] }}
"#
    )
}

#[tokio::test]
async fn cancel_stop_and_cancel_run_finally() {
    let env = TestEnv::new();
    // Cancelled: everything stops now; finally does not run.
    let run = stop_while_running(&env, &stop_pipeline(30_000), StopMode::Cancel).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.status_of("long"), TaskStatus::Cancelled);
    assert_eq!(run.status_of("cleanup"), TaskStatus::Cancelled);

    // CancelledRunFinally: running tasks stop, finally runs.
    let run = stop_while_running(&env, &stop_pipeline(30_000), StopMode::CancelRunFinally).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{:?}", run.run.message);
    assert_eq!(run.status_of("long"), TaskStatus::Cancelled);
    assert_eq!(
        run.task("next").skip_reason,
        Some(SkipReason::GracefullyCancelled)
    );
    assert_eq!(run.status_of("cleanup"), TaskStatus::Succeeded);
    assert_eq!(run.result("cleanup", "message"), "long=Failed");

    // StoppedRunFinally: the running task finishes, nothing new starts,
    // finally runs.
    let run = stop_while_running(&env, &stop_pipeline(500), StopMode::Stop).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{:?}", run.run.message);
    assert_eq!(run.status_of("long"), TaskStatus::Succeeded);
    assert_eq!(
        run.task("next").skip_reason,
        Some(SkipReason::GracefullyStopped)
    );
    assert_eq!(run.result("cleanup", "message"), "long=Succeeded");
}

#[tokio::test]
async fn substitution_in_sub_paths_and_param_defaults() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params:
    - {{ name: dir, default: "out-$(context.pipelineRun.name)" }}
  workspaces: [{{ name: ws }}]
  tasks:
    - name: nap
      uses: "{{{{sleep}}}}"
      params: [{{ name: millis, value: "1" }}, {{ name: marker, value: m.txt }}]
      workspaces: [{{ name: log, workspace: ws, subPath: "$(params.dir)/$(context.task.name)" }}]
    - name: say
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "$(params.dir)" }}]
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    let id = &run.run.id;
    assert_eq!(run.result("say", "message"), format!("out-{id}"));
    let ws = std::path::PathBuf::from(&run.run.spec.workspaces["ws"]);
    assert!(
        ws.join(format!("out-{id}/nap/m.txt")).is_file(),
        "no marker under the substituted subPath"
    );
    assert!(!ws.join("$(params.dir)").exists());

    // A value that would climb out of the workspace is refused at dispatch.
    let run = env.run(&yaml, &[("dir", "../../escape")]).await;
    assert_eq!(run.status_of("nap"), TaskStatus::Failed);
    assert!(
        run.message("nap")
            .contains("must stay relative, without `..`"),
        "{}",
        run.message("nap")
    );
}

#[tokio::test]
async fn required_and_optional_workspaces() {
    let env = TestEnv::new();
    let run_yaml = |binds: &str| {
        format!(
            r#"apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: {{ name: ws }}
spec:
  workspaces: [{binds}]
  pipelineSpec:
    workspaces: [{{ name: src }}, {{ name: cache, optional: true }}]
    tasks:
      - name: nap
        uses: "{{{{sleep}}}}"
        params: [{{ name: millis, value: "1" }}]
        workspaces: [{{ name: log, workspace: cache }}]
      - name: say
        uses: "{{{{echo}}}}"
        params: [{{ name: message, value: "cache=$(workspaces.cache.bound) src=$(workspaces.src.bound)" }}]
"#
        )
    };
    // Tekton: a PipelineRun must bind every workspace that is not optional.
    // (The pipeline is valid; creating a run of it without the binding
    // is not.)
    let prepared = env.prepare(&run_yaml(""), &[]).unwrap();
    let e = env
        .sched
        .create(&prepared, &RunOptions::default())
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("requires workspace(s) src"),
        "{e:#}"
    );

    // Bound: src only. The optional one is left out of the task.
    let run = env.run(&run_yaml("{ name: src, emptyDir: {} }"), &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(run.result("say", "message"), "cache=false src=true");
    assert!(!run.run.spec.workspaces.contains_key("cache"));
    let run = env
        .run(
            &run_yaml("{ name: src, emptyDir: {} }, { name: cache, emptyDir: {} }"),
            &[],
        )
        .await;
    assert_eq!(run.result("say", "message"), "cache=true src=true");
}

#[tokio::test]
async fn generate_name_and_finally_results() {
    let env = TestEnv::new();
    let yaml = r#"apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: { generateName: nightly- }
spec:
  pipelineSpec:
    tasks:
      - { name: build, uses: "{{echo}}", params: [{ name: message, value: built }] }
    finally:
      - { name: report, uses: "{{echo}}", params: [{ name: message, value: "reported $(tasks.build.status)" }] }
    results:
      - { name: build, value: "$(tasks.build.results.message)" }
      - { name: report, value: "$(finally.report.results.message)" }
"#;
    let run = env.run(yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    let id = &run.run.id;
    assert!(
        id.starts_with("nightly-") && !id.starts_with("nightly--"),
        "{id}"
    );
    assert_eq!(run.run.results["build"], "built");
    assert_eq!(run.run.results["report"], "reported Succeeded");

    let both = yaml.replace(
        "{ generateName: nightly- }",
        "{ name: n, generateName: nightly- }",
    );
    let err = env.prepare(&both, &[]).err().unwrap();
    assert!(
        err.contains("set `name` or `generateName`, not both"),
        "{err}"
    );
    let wrong = yaml.replace(
        "$(finally.report.results.message)",
        "$(tasks.report.results.message)",
    );
    let err = env.prepare(&wrong, &[]).err().unwrap();
    assert!(
        err.contains("use $(finally.report.results.message)"),
        "{err}"
    );
}

#[tokio::test]
async fn array_and_object_results() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  tasks:
    - name: produce
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: x }}
        - {{ name: list, value: '["linux","darwin"]' }}
        - {{ name: map, value: '{{"os":"linux","arch":"arm64"}}' }}
    - name: consume
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: "$(tasks.produce.results.list[1]) $(tasks.produce.results.map.arch)" }}
        - {{ name: items, value: ["first", "$(tasks.produce.results.list[*])"] }}
        - {{ name: fields, value: "$(tasks.produce.results.map[*])" }}
  results:
    - {{ name: all, value: "$(tasks.produce.results.list[*])" }}
    - {{ name: one, value: "$(tasks.produce.results.list[0])" }}
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    assert_eq!(run.result("consume", "message"), "darwin arm64");
    assert_eq!(run.result("consume", "items"), "first,linux,darwin");
    assert_eq!(run.result("consume", "fields"), "arch=arm64,os=linux");
    assert_eq!(run.run.results["all"], r#"["linux","darwin"]"#);
    assert_eq!(run.run.results["one"], "linux");

    // A selector that does not fit the declared type is caught before the run.
    let bad = yaml.replace("results.list[1]", "results.message[1]");
    let err = env.prepare(&bad, &[]).err().unwrap();
    assert!(
        err.contains("result `message` of task `produce` is string"),
        "{err}"
    );
    // A value that is not what the manifest declares fails the task.
    let bad = yaml.replace(r#"'["linux","darwin"]'"#, "'linux,darwin'");
    let run = env.run(&bad, &[]).await;
    assert_eq!(run.status_of("produce"), TaskStatus::Failed);
    assert!(
        run.message("produce")
            .contains("result `list` is declared array"),
        "{}",
        run.message("produce")
    );
}

#[tokio::test]
async fn matrix_fans_out_and_collects_results() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEADER}  params:
    - {{ name: oses, type: array, default: [linux, mac] }}
  tasks:
    - name: build
      uses: "{{{{echo}}}}"
      matrix:
        params:
          - {{ name: message, value: ["$(params.oses[*])"] }}
        include:
          - {{ name: windows, params: [{{ name: message, value: windows }}] }}
          - {{ name: extra, params: [{{ name: list, value: '["all"]' }}] }}
    - name: nap
      uses: "{{{{sleep}}}}"
      matrix:
        params: [{{ name: millis, value: ["150", "150", "150"] }}]
        maxParallel: 1
    - name: gather
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: "$(tasks.build.results.message[1])" }}
        - {{ name: items, value: ["$(tasks.build.results.message[*])"] }}
  finally:
    - name: report
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: "build=$(tasks.build.status)" }}]
  results:
    - {{ name: built, value: "$(tasks.build.results.message[*])" }}
"#
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.log_text());
    // linux, mac (each with the `extra` include's list), then windows.
    for (i, os) in ["linux", "mac", "windows"].iter().enumerate() {
        assert_eq!(run.result(&format!("build-{i}"), "message"), *os);
    }
    assert_eq!(run.result("build-0", "list"), r#"["all"]"#);
    assert_eq!(run.result("gather", "message"), "mac");
    assert_eq!(run.result("gather", "items"), "linux,mac,windows");
    assert_eq!(run.result("report", "message"), "build=Succeeded");
    assert_eq!(run.run.results["built"], r#"["linux","mac","windows"]"#);
    // gather started after every child ended.
    let end_of = |t: &str| {
        run.attempts
            .iter()
            .find(|a| a.task == t)
            .unwrap()
            .finished_at
            .unwrap()
    };
    let gather = run.attempts.iter().find(|a| a.task == "gather").unwrap();
    assert!((0..3).all(|i| gather.dispatched_at >= end_of(&format!("build-{i}"))));
    // maxParallel 1: the sleeps did not overlap.
    let mut spans: Vec<(i64, i64)> = (0..3)
        .map(|i| {
            let a = run
                .attempts
                .iter()
                .find(|a| a.task == format!("nap-{i}"))
                .unwrap();
            (a.dispatched_at, a.finished_at.unwrap())
        })
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[1].0 >= w[0].1), "{spans:?}");

    // A matrix task's results are arrays: a plain reference is refused.
    let bad = yaml.replace("results.message[1]", "results.message");
    let err = env.prepare(&bad, &[]).err().unwrap();
    assert!(
        err.contains("has a matrix: its result `message` is an array"),
        "{err}"
    );
}
