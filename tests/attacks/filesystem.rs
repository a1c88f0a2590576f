//! Filesystem attacks: absolute paths, `..`, planted and created symlinks,
//! hard links, read-only workspaces, other runs' workspaces, the state
//! directory, the host-side `files` interface.

use capstan::store::TaskStatus;
use capstan_tests::TestEnv;

use super::{Attack, HostBox, OUTSIDE, assert_all_denied, outcome};

#[tokio::test]
async fn absolute_host_paths_are_denied() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_absolute")
        .arg(b.outside.display().to_string())
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 12);
    b.assert_untouched();
}

#[tokio::test]
async fn dotdot_paths_do_not_leave_the_workspace() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_dotdot")
        .arg("outside.txt")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 13);
    assert!(!outcome(&run).contains(OUTSIDE));
    b.assert_untouched();
}

#[tokio::test]
async fn planted_symlinks_are_not_followed_out() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_symlink_planted")
        .arg("outside.txt")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 10);
    assert!(!outcome(&run).contains(OUTSIDE));
    b.assert_untouched();
}

#[tokio::test]
async fn symlinks_made_inside_do_not_lead_out() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_symlink_create")
        .arg("outside.txt")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 7);
    b.assert_untouched();
    // Whatever links the task left behind point nowhere a later reader of
    // the workspace (the host's files.pack, ssh exec-files) would follow:
    // those read with cap-std inside the workspace (checked by fs_files_api).
}

#[tokio::test]
async fn hard_links_cannot_reach_outside_or_a_read_only_workspace() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_hardlink")
        .arg("outside.txt")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    b.assert_untouched();
    // No hard link to an outside inode appeared in the workspace.
    use std::os::unix::fs::MetadataExt;
    let outside_ino = std::fs::metadata(&b.outside).unwrap().ino();
    let ro_ino = std::fs::metadata(b.ro.join("file")).unwrap().ino();
    for e in std::fs::read_dir(&b.ws).unwrap() {
        let m = std::fs::symlink_metadata(e.unwrap().path()).unwrap();
        assert_ne!(m.ino(), outside_ino);
        assert_ne!(m.ino(), ro_ino);
    }
}

#[tokio::test]
async fn a_read_only_workspace_cannot_be_changed() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_readonly").in_box(&b).run(&env).await;
    assert_all_denied(&run, 14);
    b.assert_untouched();
    assert!(!b.ws.join("stolen").exists());
}

#[tokio::test]
async fn another_runs_workspace_is_out_of_reach() {
    let env = TestEnv::new();
    // Run A: its workspace (under the state directory) holds a secret.
    let a = env
        .run(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: a }
spec:
  workspaces: [{ name: ws }]
  tasks:
    - name: t
      uses: "{{echo}}"
      params: [{ name: message, value: hi }]
"#,
            &[],
        )
        .await;
    let a_ws = std::path::PathBuf::from(&a.run.spec.workspaces["ws"]);
    std::fs::create_dir_all(&a_ws).unwrap();
    std::fs::write(a_ws.join("secret.txt"), "RUN-A-SECRET").unwrap();
    // Run B guesses A's directory: host path, and relative from its own
    // workspace (state/workspaces/<run>/ws).
    let rel = format!("../../{}/ws", a.id);
    let run = Attack::new("fs_other_run")
        .arg(format!("{}|{rel}", a_ws.display()))
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    assert!(!outcome(&run).contains("RUN-A-SECRET"));
    let mut names: Vec<_> = std::fs::read_dir(&a_ws)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret.txt"]);
}

#[tokio::test]
async fn the_state_directory_is_out_of_reach() {
    let env = TestEnv::new();
    let state = env.sched.state_dir.clone();
    let run = Attack::new("fs_state_dir")
        .arg(format!("{}|../../..", state.display()))
        .run(&env)
        .await;
    assert_all_denied(&run, 10);
    // The store still works (the `after` task was recorded) and was not
    // overwritten with the attack's bytes.
    let db = std::fs::read(state.join("capstan.db")).unwrap();
    assert_ne!(db, b"pwned");
}

#[tokio::test]
async fn only_the_workspace_is_visible() {
    let env = TestEnv::new();
    let run = Attack::new("fs_preopens").run(&env).await;
    assert_all_denied(&run, 10);
}

#[tokio::test]
async fn the_host_side_files_interface_stays_inside() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    std::fs::write(b.ws.join("ok.txt"), "fine").unwrap();
    let run = Attack::new("fs_files_api")
        .arg("outside.txt")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 24);
    assert!(!outcome(&run).contains(OUTSIDE));
    b.assert_untouched();
    assert!(!std::path::Path::new("/tmp/capstan-pwned").exists());
    assert!(!std::path::Path::new("/etc/capstan-pwned").exists());
}

#[tokio::test]
async fn files_cannot_be_moved_out() {
    let env = TestEnv::new();
    let b = HostBox::new(&env);
    let run = Attack::new("fs_rename_out")
        .arg("moved-out")
        .in_box(&b)
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    b.assert_untouched();
    assert!(!std::path::Path::new("/tmp/moved-out").exists());
    assert!(b.ws.join("f").exists(), "the file stays where it was");
}

#[tokio::test]
async fn a_task_without_a_workspace_sees_none() {
    let env = TestEnv::new();
    let yaml = r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: no-grant }
spec:
  workspaces: [{ name: ws }]
  tasks:
    - name: writer
      uses: "{{fs_rename_out}}"
      workspaces: [{ name: ws, workspace: ws }]
    - name: attack
      uses: "{{fs_no_grant}}"
      runAfter: [writer]
  finally:
    - name: after
      uses: "{{echo}}"
      params: [{ name: message, value: still healthy }]
"#;
    let run = env.run(yaml, &[]).await;
    // The writer left /workspace/ws/f behind; the attacker has no workspace.
    let ws = std::path::PathBuf::from(&run.run.spec.workspaces["ws"]);
    assert!(ws.join("f").exists(), "{}", run.log_text());
    assert_eq!(run.result("after", "message"), "still healthy");
    assert_all_denied(&run, 6);
}

/// A task with no grants plants links in its workspace; later tasks bind
/// that workspace with a `subPath` through them. The host refuses the
/// binding (naming the task and the path) instead of opening what the link
/// points to: the state directory with its secret store, `/`, or a chain of
/// links that are each lexically inside. A `readOnly` binding creates
/// nothing outside either.
#[tokio::test]
async fn a_sub_path_through_a_planted_link_is_refused() {
    let env = TestEnv::new();
    let state = env.sched.state_dir.clone();
    capstan::caps::secrets::LocalSecrets::new(&state.join("secrets"))
        .set("deploy-token", b"STATE-SECRET-VALUE")
        .unwrap();
    let readers: String = [
        ("via-state", "to-state", false),
        ("via-state-ro-new", "to-state/made-by-host", true),
        ("via-root", "to-root/tmp", false),
        ("via-chain", "chain", false),
        ("via-inside-link", "inside", false),
    ]
    .iter()
    .map(|(name, sub, ro)| {
        format!(
            r#"
    - name: {name}
      runAfter: [plant]
      onError: continue
      uses: "{{{{fs_subpath_link}}}}"
      params: [{{ name: arg, value: read }}]
      workspaces: [{{ name: ws, workspace: ws, subPath: "{sub}", readOnly: {ro} }}]
"#
        )
    })
    .collect();
    let run = env
        .run(
            &format!(
                r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: subpath }}
spec:
  workspaces: [{{ name: ws }}]
  tasks:
    - name: plant
      uses: "{{{{fs_subpath_link}}}}"
      params: [{{ name: arg, value: plant }}]
      workspaces: [{{ name: ws, workspace: ws }}]
{readers}
  finally:
    - name: after
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: still healthy }}]
"#
            ),
            &[],
        )
        .await;
    assert_eq!(run.status_of("after"), TaskStatus::Succeeded);
    let planted = run.result("plant", "outcome");
    assert!(
        planted.contains("to-state: true") && planted.contains("chain: true"),
        "{planted}"
    );
    // WASI refuses to make a link with an absolute target; if it did not
    // exist, the host made `to-root/tmp` as plain directories inside.
    let mut refused = vec![
        ("via-state", "to-state"),
        ("via-state-ro-new", "to-state"),
        ("via-chain", "chain"),
        ("via-inside-link", "inside"),
    ];
    if planted.contains("to-root: true") {
        refused.push(("via-root", "to-root"));
    } else {
        // Then the mount is an ordinary directory inside the workspace.
        assert_eq!(run.status_of("via-root"), TaskStatus::Succeeded);
        let ws = std::path::PathBuf::from(&run.run.spec.workspaces["ws"]);
        assert!(ws.join("to-root/tmp/pwned-by-subpath").is_file());
    }
    for (task, at) in refused {
        assert_eq!(
            run.status_of(task),
            TaskStatus::Failed,
            "{task}: {}",
            run.log_text()
        );
        let m = run.message(task);
        assert!(
            m.contains(&format!("task `{task}`"))
                && m.contains(&format!("`{at}` is a symbolic link")),
            "{task}: {m}"
        );
        // It never ran: no outcome, no log line of its own.
        assert!(
            !run.task(task).results.contains_key("outcome"),
            "{task} ran"
        );
    }
    // Nothing was created or written outside the workspace.
    assert!(!state.join("made-by-host").exists());
    assert!(!state.join("pwned-by-subpath").exists());
    assert!(!std::path::Path::new("/tmp/pwned-by-subpath").exists());
}
