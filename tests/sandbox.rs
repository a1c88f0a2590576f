//! Sandbox attack tests: each attack must be denied (or contained), and the
//! host must stay healthy: a task after the attack, in the same run and
//! process, runs normally.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use capstan::runtime::TaskLimits;
use capstan::store::{RunStatus, TaskStatus};
use capstan_tests::{RunOutcome, TestEnv};

/// A pipeline whose task `attack` runs the probe with `attack`/`arg`, and a
/// finally task `after` that must succeed whatever the attack did.
fn attack_pipeline(attack: &str, arg: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: attack }}
spec:
  workspaces: [{{ name: ws }}]
  tasks:
    - name: attack
      uses: "{{{{sandbox_probe}}}}"
      params:
        - {{ name: attack, value: "{attack}" }}
        - {{ name: arg, value: "{arg}" }}
      workspaces: [{{ name: ws, workspace: ws }}]
{extra}
  finally:
    - name: after
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: still healthy }}]
"#
    )
}

async fn attack(env: &TestEnv, attack: &str, arg: &str, extra: &str) -> RunOutcome {
    let run = env.run(&attack_pipeline(attack, arg, extra), &[]).await;
    assert_eq!(
        run.status_of("after"),
        TaskStatus::Succeeded,
        "host unhealthy after {attack}:\n{}",
        run.log_text()
    );
    assert_eq!(run.result("after", "message"), "still healthy");
    run
}

fn outcome(run: &RunOutcome) -> &str {
    run.result("attack", "outcome")
}

#[tokio::test]
async fn read_absolute_path_outside_workspace_is_denied() {
    let env = TestEnv::new();
    let run = attack(&env, "read", "/etc/passwd", "").await;
    assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run));
}

#[tokio::test]
async fn dotdot_escape_is_denied() {
    let env = TestEnv::new();
    let run = attack(&env, "read", "/workspace/ws/../../../../etc/passwd", "").await;
    assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run));
}

#[tokio::test]
async fn symlink_planted_in_workspace_pointing_out_is_denied() {
    let env = TestEnv::new();
    let ws = env.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let secret = env.path("host-secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(&secret, ws.join("link")).unwrap();
    std::os::unix::fs::symlink("../host-secret.txt", ws.join("rel-link")).unwrap();
    let opts = capstan::scheduler::RunOptions {
        workspaces: [("ws".to_string(), ws.clone())].into(),
        ..Default::default()
    };
    for link in ["link", "rel-link"] {
        let run = env
            .run_with(
                &attack_pipeline("read", &format!("/workspace/ws/{link}"), ""),
                &[],
                opts.clone(),
            )
            .await;
        let o = outcome(&run);
        assert!(
            o.starts_with("denied") && !o.contains("TOP-SECRET"),
            "{link}: {o}"
        );
    }
}

#[tokio::test]
async fn only_the_workspace_is_visible() {
    let env = TestEnv::new();
    let run = attack(&env, "list", "/", "").await;
    let o = outcome(&run);
    // Either `/` itself is not openable, or all it shows is the preopen.
    assert!(
        o.starts_with("denied") || o == "listed: " || o == "listed: workspace",
        "{o}"
    );
    let run = attack(&env, "read", "/proc/self/environ", "").await;
    assert!(outcome(&run).starts_with("denied"));
}

#[tokio::test]
async fn writing_a_read_only_workspace_is_denied() {
    let env = TestEnv::new();
    let yaml = attack_pipeline("write", "/workspace/ws/x.txt", "").replace(
        "workspaces: [{ name: ws, workspace: ws }]",
        "workspaces: [{ name: ws, workspace: ws, readOnly: true }]",
    );
    let run = env.run(&yaml, &[]).await;
    assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run));
    let ws_dir = &run.run.spec.workspaces["ws"];
    assert!(!std::path::Path::new(ws_dir).join("x.txt").exists());
}

#[tokio::test]
async fn network_sockets_are_denied_and_logged() {
    let env = TestEnv::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let run = attack(&env, "connect", &addr, "").await;
    assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run));
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    assert!(
        run.task_log("attack")
            .iter()
            .any(|l| l.starts_with("denied: network tcp")),
        "no denial log line:\n{}",
        run.log_text()
    );
}

#[tokio::test]
async fn host_environment_is_not_visible() {
    // The test process has PATH, HOME, CARGO_* ...; the task must see none.
    let env = TestEnv::new();
    let run = attack(&env, "env", "", "").await;
    assert_eq!(outcome(&run), "vars=");
    let run = attack(&env, "args", "", "").await;
    assert_eq!(outcome(&run), "args=0");
}

#[tokio::test]
async fn memory_cap_stops_a_memory_bomb() {
    let env = TestEnv::with_limits(TaskLimits {
        memory_bytes: 64 << 20,
        ..TaskLimits::default()
    });
    let run = attack(&env, "memory", "512", "").await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("memory limit exceeded"),
        "{}",
        run.message("attack")
    );
    assert_eq!(run.status, RunStatus::Failed);
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_timeout() {
    let env = TestEnv::new();
    let run = attack(&env, "loop", "", "      timeout: 500ms").await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
    assert!(run.message("attack").contains("timed out after 500ms"));
}

#[tokio::test]
async fn deep_recursion_traps() {
    let env = TestEnv::new();
    let run = attack(&env, "recurse", "", "").await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("trapped"),
        "{}",
        run.message("attack")
    );
}

#[tokio::test]
async fn log_flood_is_capped() {
    let limits = TaskLimits {
        log_bytes: 256 << 10,
        ..TaskLimits::default()
    };
    let env = TestEnv::with_limits(limits);
    for attack_name in ["log-flood", "stdout-flood"] {
        let run = attack(&env, attack_name, "16", "").await;
        assert_eq!(run.status_of("attack"), TaskStatus::Succeeded);
        let stored: usize = run.task_log("attack").iter().map(|l| l.len() + 1).sum();
        assert!(
            stored <= (256 << 10) + 200,
            "{attack_name}: stored {stored} bytes of log"
        );
        assert!(
            run.task_log("attack")
                .iter()
                .any(|l| l.contains("log limit reached")),
            "{attack_name}: no truncation notice"
        );
    }
}

#[tokio::test]
async fn huge_results_are_refused() {
    let env = TestEnv::new();
    let run = attack(&env, "huge-result", "8", "").await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("results total"),
        "{}",
        run.message("attack")
    );
    assert!(run.task("attack").results.is_empty());
}

#[tokio::test]
async fn progress_flood_is_throttled() {
    let env = TestEnv::new();
    let run = attack(&env, "progress-flood", "", "").await;
    assert_eq!(run.status_of("attack"), TaskStatus::Succeeded);
}

#[tokio::test]
async fn undeclared_import_is_refused_at_load() {
    let env = TestEnv::new();
    let err = env
        .prepare(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: bad }
spec:
  tasks:
    - name: sneaky
      uses: "{{undeclared_import}}"
"#,
            &[],
        )
        .err()
        .expect("must be refused");
    assert!(err.contains("imports `capstan:plugin/ssh@0.1.0`"), "{err}");
    assert!(err.contains("does not declare"), "{err}");
    assert!(
        err.contains("pipeline.yaml:8:"),
        "error must name the file and line: {err}"
    );
}

fn pipeline_using(path: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: bad }}\nspec:\n  tasks:\n    - name: t\n      uses: {path}\n"
    )
}

#[tokio::test]
async fn malformed_components_are_refused() {
    let env = TestEnv::new();
    let core = env.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = env
        .prepare(&pipeline_using(core.to_str().unwrap()), &[])
        .err()
        .unwrap();
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );

    let mut full = Vec::new();
    std::fs::File::open(capstan_tests::components::ECHO)
        .unwrap()
        .read_to_end(&mut full)
        .unwrap();
    let truncated = env.path("truncated.wasm");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let err = env
        .prepare(&pipeline_using(truncated.to_str().unwrap()), &[])
        .err()
        .unwrap();
    assert!(err.contains("malformed or truncated"), "{err}");

    let text = env.path("text.wasm");
    std::fs::write(&text, b"#!/bin/sh\necho pwned\n").unwrap();
    let err = env
        .prepare(&pipeline_using(text.to_str().unwrap()), &[])
        .err()
        .unwrap();
    assert!(err.contains("not a WebAssembly file"), "{err}");

    let missing = env.path("missing.wasm");
    let err = env
        .prepare(&pipeline_using(missing.to_str().unwrap()), &[])
        .err()
        .unwrap();
    assert!(err.contains("reading plugin"), "{err}");

    // After all that, the same runtime still runs a good component.
    let ok = env
        .run(
            &pipeline_using("{{echo}}").replace(
                "uses: ",
                "params: [{ name: message, value: ok }]\n      uses: ",
            ),
            &[],
        )
        .await;
    assert_eq!(ok.status, RunStatus::Succeeded);
    let _ = Duration::ZERO;
}
