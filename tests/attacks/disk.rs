//! Disk attacks: a task writing its workspace full, beside the run store.
//! The run's workspace budget stops it with a clear error; a platform
//! ceiling bounds what a pipeline may ask; and when the disk itself fills
//! (a small tmpfs as the state directory), the store is neither corrupted
//! nor wedged: the run ends, and the next run works once space is freed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan::runtime::{Runtime, RuntimeConfig};
use capstan::scheduler::Scheduler;
use capstan::store::{RunStore, TaskStatus};
use capstan_tests::TestEnv;

use super::{Attack, assert_all_denied};

fn with_budget(attack: &Attack, budget: &str) -> String {
    attack.pipeline().replace(
        "  tasks:",
        &format!("  workspaceBudget: {budget}\n  tasks:"),
    )
}

/// Allocated bytes under `dir`.
fn du(dir: &Path) -> u64 {
    capstan::scheduler::disk::usage(dir).map_or(0, |u| u.bytes)
}

#[tokio::test]
async fn a_task_filling_its_workspace_is_stopped_at_the_budget() {
    let env = TestEnv::new();
    let attack = Attack::new("res_disk_fill").arg("512");
    let run = env.run(&with_budget(&attack, "8Mi"), &[]).await;
    assert_eq!(run.status_of("after"), TaskStatus::Succeeded);
    match run.status_of("attack") {
        TaskStatus::Failed => {
            let m = run.message("attack");
            assert!(
                m.contains("over the workspace budget of 8Mi (spec.workspaceBudget)"),
                "{m}"
            );
        }
        // It may have been stopped by its own write failing first.
        _ => assert_all_denied(&run, 1),
    }
    eprintln!("attack: {:?}", run.message("attack"));
    let ws = PathBuf::from(&run.run.spec.workspaces["ws"]);
    let used = du(ws.parent().unwrap());
    assert!(used < 256 << 20, "{used} bytes written past an 8Mi budget");
}

#[tokio::test]
async fn the_policy_caps_what_a_pipeline_may_ask() {
    let mut env = TestEnv::new();
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        "[paths]\nallow = true\n[limits]\nworkspace-budget = \"4Mi\"\n",
    )
    .unwrap();
    env.sched.policy = Arc::new(capstan::policy::PolicyFile::load(&policy).unwrap());
    let attack = Attack::new("res_disk_fill").arg("1");
    let e = env
        .prepare(&with_budget(&attack, "8Mi"), &[])
        .err()
        .expect("over the ceiling");
    assert!(
        e.contains("spec.workspaceBudget")
            && e.contains("8Mi is over the platform policy's ceiling of 4Mi"),
        "{e}"
    );
    let e = env
        .prepare(&with_budget(&attack, "lots"), &[])
        .err()
        .expect("not a size");
    assert!(e.contains("`lots` is not a size"), "{e}");
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs as the state directory and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_neither_corrupts_nor_wedges_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _fs = Tmpfs::mount(&state, "48m");
    let store = Arc::new(RunStore::open(&state).unwrap());
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            max_instances: 4,
            cache_dir: Some(capstan_tests::shared_cache_dir()),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let sched = Scheduler::new(runtime, store, state.clone()).unwrap();
    let env = TestEnv { dir, sched };
    // No budget in the pipeline: the default is kept below the free space,
    // but a fast writer on tmpfs fills the disk before the watch samples.
    let yaml = Attack::new("res_disk_fill").arg("512").pipeline();
    let prepared = env.prepare(&yaml, &[]).unwrap();
    let id = env.sched.create(&prepared, &Default::default()).unwrap();
    let first = env.sched.execute(&id, &prepared, None).await;
    let seen = env.outcome(&id, env.sched.store.run(&id).unwrap().status);
    eprintln!(
        "first execution: {first:?}; attack: {:?} {:?} {:?}",
        seen.status_of("attack"),
        seen.message("attack"),
        seen.task("attack").results
    );
    // Whatever the first execution could record, the store is intact and
    // the run can be finished once space is freed.
    std::fs::remove_dir_all(state.join("workspaces").join(&id)).unwrap();
    let status = env.sched.execute(&id, &prepared, None).await.unwrap();
    assert!(status.is_terminal(), "{status:?}");
    let run = env.outcome(&id, status);
    assert_eq!(
        run.status_of("after"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_ne!(run.status_of("attack"), TaskStatus::Running);
    // Now the disk fills to the last byte from outside (another writer on
    // the same volume) while a run is pending: whatever fails, nothing is
    // corrupted, and freeing the space lets the run finish.
    let id2 = env.sched.create(&prepared, &Default::default()).unwrap();
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![1u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let full = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        env.sched.execute(&id2, &prepared, None),
    )
    .await
    .expect("a full disk wedged the run");
    eprintln!("on a full disk: {full:?}");
    std::fs::remove_file(&filler).unwrap();
    let _ = std::fs::remove_dir_all(state.join("workspaces").join(&id2));
    let status = env.sched.execute(&id2, &prepared, None).await.unwrap();
    assert!(status.is_terminal(), "{status:?}");
    assert_eq!(
        env.outcome(&id2, status).status_of("after"),
        TaskStatus::Succeeded
    );
    // And the next run works on the same store.
    let next = env
        .run(
            "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: next }\nspec:\n  tasks:\n    - { name: a, uses: \"{{echo}}\", params: [{ name: message, value: ok }] }\n",
            &[],
        )
        .await;
    assert_eq!(next.result("a", "message"), "ok");
    let out = capstan_tests::cli(env!("CARGO_BIN_EXE_capstan-cli"), &state, &["runs", "list"]);
    assert!(out.status.success(), "{out:?}");
}
