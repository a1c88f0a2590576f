//! Resource attacks: CPU, stack, memory (allocator and raw memory.grow),
//! tables, log and stdout floods, giant and countless results, progress
//! floods, huge params, blocking host calls, stdin, the host environment.
//! Each is stopped or capped with a clear message and the next task runs.

use capstan::runtime::TaskLimits;
use capstan::store::{RunStatus, TaskStatus};
use capstan_tests::TestEnv;

use super::{Attack, assert_all_denied, outcome};

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_timeout() {
    let env = TestEnv::new();
    let run = Attack::new("res_infinite_loop")
        .extra("      timeout: 500ms")
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
    assert!(run.message("attack").contains("timed out after 500ms"));
}

#[tokio::test]
async fn blocking_forever_in_a_host_call_is_stopped_by_the_timeout() {
    let env = TestEnv::new();
    let started = std::time::Instant::now();
    let run = Attack::new("res_sleep_forever")
        .extra("      timeout: 500ms")
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn deep_recursion_traps() {
    let env = TestEnv::new();
    let run = Attack::new("res_deep_recursion").run(&env).await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("trapped"),
        "{}",
        run.message("attack")
    );
}

fn capped_memory() -> TestEnv {
    TestEnv::with_limits(TaskLimits {
        memory_bytes: 64 << 20,
        ..TaskLimits::default()
    })
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_cap() {
    let env = capped_memory();
    let run = Attack::new("res_memory_bomb").arg("512").run(&env).await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("memory limit exceeded"),
        "{}",
        run.message("attack")
    );
    assert_eq!(run.status, RunStatus::Failed);
}

#[tokio::test]
async fn raw_memory_grow_hits_the_memory_cap() {
    let env = capped_memory();
    let run = Attack::new("res_memory_grow").run(&env).await;
    // Either memory.grow returns -1 to the guest, or the limiter traps it.
    match run.status_of("attack") {
        TaskStatus::Succeeded => {
            assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run))
        }
        _ => assert!(
            run.message("attack").contains("memory limit exceeded"),
            "{}",
            run.message("attack")
        ),
    }
}

#[tokio::test]
async fn log_and_stdout_floods_are_capped() {
    let env = TestEnv::with_limits(TaskLimits {
        log_bytes: 256 << 10,
        ..TaskLimits::default()
    });
    let floods = [
        Attack::new("res_log_flood").arg("16"),
        Attack::new("res_stdout_flood").arg("16"),
    ];
    for attack in floods {
        let component = attack.component;
        let run = attack.run(&env).await;
        assert_eq!(
            run.status_of("attack"),
            TaskStatus::Succeeded,
            "{component}"
        );
        let stored: usize = run.task_log("attack").iter().map(|l| l.len() + 1).sum();
        assert!(
            stored <= (256 << 10) + 200,
            "{component}: stored {stored} bytes of log"
        );
        assert!(
            run.task_log("attack")
                .iter()
                .any(|l| l.contains("log limit reached")),
            "{component}: no truncation notice"
        );
    }
}

#[tokio::test]
async fn giant_results_are_refused() {
    let env = TestEnv::new();
    let run = Attack::new("res_giant_result").arg("8").run(&env).await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("results total"),
        "{}",
        run.message("attack")
    );
    assert!(run.task("attack").results.is_empty());
}

#[tokio::test]
async fn countless_results_are_refused() {
    let env = TestEnv::new();
    for (arg, expect) in [("", "results total"), ("same", "results total")] {
        let run = Attack::new("res_many_results").arg(arg).run(&env).await;
        assert_eq!(run.status_of("attack"), TaskStatus::Failed, "{arg}");
        assert!(
            run.message("attack").contains(expect),
            "{arg}: {}",
            run.message("attack")
        );
        assert!(run.task("attack").results.is_empty());
    }
}

#[tokio::test]
async fn a_progress_flood_is_throttled() {
    let env = TestEnv::new();
    let run = Attack::new("res_progress_flood").run(&env).await;
    assert_eq!(run.status_of("attack"), TaskStatus::Succeeded);
    // Stored progress is throttled: far fewer rows than calls.
    let progress_lines = run
        .task_log("attack")
        .iter()
        .filter(|l| l.contains("step-"))
        .count();
    assert!(
        progress_lines < 3_000,
        "{progress_lines} progress lines stored"
    );
}

#[tokio::test]
async fn huge_param_values_are_refused_before_the_task_runs() {
    let env = TestEnv::new();
    let run = Attack::new("res_huge_params")
        .arg("p".repeat(2 << 20))
        .run(&env)
        .await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("params total"),
        "{}",
        run.message("attack")
    );
    // Under the limit it runs (the limit is what stopped it, not the size
    // of the pipeline file).
    let run = Attack::new("res_huge_params")
        .arg("p".repeat(512 << 10))
        .run(&env)
        .await;
    assert_eq!(outcome(&run), format!("received {} bytes", 512 << 10));
}

#[tokio::test]
async fn stdin_is_empty_and_does_not_block() {
    let env = TestEnv::new();
    let run = Attack::new("res_stdin_read")
        .extra("      timeout: 10s")
        .run(&env)
        .await;
    assert_all_denied(&run, 1);
}

#[tokio::test]
async fn the_host_environment_is_not_visible() {
    // The test process has PATH, HOME, CARGO_* ...; the task must see none.
    let env = TestEnv::new();
    let run = Attack::new("res_env_args").run(&env).await;
    assert_all_denied(&run, 3);
}

/// A task holding every descriptor it can get is stopped at its handle cap
/// (default 1,024), far below the process limit, so other tasks keep
/// their file I/O; the next task runs normally.
#[tokio::test]
async fn holding_open_files_is_capped_per_task() {
    let env = TestEnv::new();
    let run = Attack::new("res_many_files").arg("2000").run(&env).await;
    match run.status_of("attack") {
        TaskStatus::Succeeded => assert_all_denied(&run, 1),
        _ => {
            let m = run.message("attack");
            assert!(
                m.contains("more than 1024 handles"),
                "{m}\n{}",
                run.log_text()
            );
        }
    }
}

#[tokio::test]
async fn the_digest_capability_bounds_host_work_and_refuses_collisions() {
    let env = TestEnv::new();
    let run = Attack::new("res_digest").run(&env).await;
    assert_all_denied(&run, 7);
    let o = outcome(&run);
    assert!(o.contains("at most 16777216 per call"), "{o}");
    assert!(o.contains("collision attack detected"), "{o}");
    assert!(o.contains("refused at hasher 62"), "{o}");
}

#[tokio::test]
async fn hashing_forever_on_the_host_is_stopped_by_the_timeout() {
    let env = TestEnv::new();
    let run = Attack::new("res_digest")
        .arg("burn")
        .extra("      timeout: 1s")
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
    assert!(run.message("attack").contains("timed out after 1s"));
}
