//! Malformed components and hand-assembled attacks (tests/attacks/handmade.rs):
//! every malformed artifact is refused at load with an error that names the
//! file, the line of the pipeline, and what is wrong; the hand-made runtime
//! attacks (table growth, many memories, a start function that never
//! returns, 4 GiB of initial memory) are stopped, and the runtime goes on
//! running good components.

use capstan::runtime::TaskLimits;
use capstan::store::TaskStatus;
use capstan_tests::{TestEnv, components};

use super::{Attack, outcome};

fn pipeline_using(path: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: bad }}\nspec:\n  tasks:\n    - name: t\n      uses: {path}\n"
    )
}

/// Loading `path` is refused with an error containing every `needle`, and
/// the same scheduler then runs a good component.
async fn refused(env: &TestEnv, path: &str, needles: &[&str]) {
    let err = env
        .prepare(&pipeline_using(path), &[])
        .err()
        .unwrap_or_else(|| panic!("{path} must be refused"));
    for n in needles {
        assert!(err.contains(n), "{path}: want {n:?} in:\n{err}");
    }
    assert!(
        err.contains("pipeline.yaml:7:"),
        "the error must name the file and line: {err}"
    );
    let ok = env
        .run(
            &pipeline_using("{{echo}}").replace(
                "uses: ",
                "params: [{ name: message, value: ok }]\n      uses: ",
            ),
            &[],
        )
        .await;
    assert_eq!(ok.result("t", "message"), "ok");
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    let env = TestEnv::new();
    refused(
        &env,
        components::MAL_CORE_MODULE,
        &["core WebAssembly module, not a component"],
    )
    .await;
}

#[tokio::test]
async fn a_truncated_component_is_refused() {
    let env = TestEnv::new();
    refused(&env, components::MAL_TRUNCATED, &["malformed or truncated"]).await;
    // And a file that is not WebAssembly at all, and one that is missing.
    let text = env.path("text.wasm");
    std::fs::write(&text, b"#!/bin/sh\necho pwned\n").unwrap();
    refused(&env, text.to_str().unwrap(), &["not a WebAssembly file"]).await;
    let missing = env.path("missing.wasm");
    refused(&env, missing.to_str().unwrap(), &["reading plugin"]).await;
}

#[tokio::test]
async fn a_component_of_the_wrong_world_is_refused() {
    let env = TestEnv::new();
    refused(&env, components::MAL_WRONG_WORLD, &["capstan:plugin/task"]).await;
}

#[tokio::test]
async fn the_task_interface_with_the_wrong_types_is_refused() {
    let env = TestEnv::new();
    refused(
        &env,
        components::MAL_TYPE_CONFUSION,
        &["`capstan:plugin/task@0.1.0` function `run` has the wrong type"],
    )
    .await;
}

#[tokio::test]
async fn a_newer_wasi_import_is_refused_by_name() {
    let env = TestEnv::new();
    refused(
        &env,
        components::MAL_NEWER_WASI,
        &["wasi:cli/environment@0.3.0"],
    )
    .await;
}

#[tokio::test]
async fn imports_beyond_the_manifest_are_refused() {
    let env = TestEnv::new();
    refused(
        &env,
        components::MAL_UNDECLARED_IMPORT,
        &["imports `capstan:plugin/ssh@0.1.0`", "does not declare"],
    )
    .await;
}

#[tokio::test]
async fn a_broken_or_missing_manifest_is_refused() {
    let env = TestEnv::new();
    refused(
        &env,
        components::MAL_BAD_MANIFEST,
        &["invalid manifest (capstan.toml)", "line 2"],
    )
    .await;
    refused(&env, components::MAL_NO_MANIFEST, &["capstan-manifest"]).await;
}

#[tokio::test]
async fn oversized_or_too_many_memories_are_refused_at_load() {
    let env = TestEnv::new();
    // 4 GiB of initial memory; nine memories in one core module.
    refused(
        &env,
        components::MAL_HUGE_MEMORY,
        &["memory", "exceeds the limit"],
    )
    .await;
    refused(&env, components::RES_MULTI_MEMORY, &["memories count of 9"]).await;
}

#[tokio::test]
async fn table_growth_hits_the_table_cap() {
    let env = TestEnv::new();
    let run = Attack::new("res_table_growth")
        .no_workspace()
        .run(&env)
        .await;
    // Either the limiter traps the guest or table.grow returns -1 to it.
    match run.status_of("attack") {
        TaskStatus::Succeeded => assert!(outcome(&run).starts_with("denied"), "{}", outcome(&run)),
        _ => assert!(
            run.message("attack").contains("table limit exceeded"),
            "{}",
            run.message("attack")
        ),
    }
}

#[tokio::test]
async fn several_instances_share_one_memory_cap() {
    // Four core instances x 60 MiB each at instantiation: each under a
    // 64 MiB cap, 240 MiB together. The cap is for the whole task.
    let env = TestEnv::with_limits(TaskLimits {
        memory_bytes: 64 << 20,
        ..TaskLimits::default()
    });
    let run = Attack::new("res_multi_instance")
        .no_workspace()
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::Failed,
        "{}",
        run.log_text()
    );
    assert!(
        run.message("attack").contains("memory limit exceeded"),
        "{}",
        run.message("attack")
    );
}

#[tokio::test]
async fn a_start_function_that_never_returns_is_stopped_by_the_timeout() {
    let env = TestEnv::new();
    let run = Attack::new("res_start_loop")
        .no_workspace()
        .extra("      timeout: 500ms")
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
}
