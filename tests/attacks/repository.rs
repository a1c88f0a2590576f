//! Repository attacks: a hostile repository, served by a real
//! `git http-backend`, whose symlinks are each lexically inside the tree but
//! together resolve outside it (`n/a/b/l -> ..`, `esc -> n/a/b/l/../../..`).
//! git-clone must judge links by where they really resolve in the tree it
//! writes; and even if a plugin wrote such a link, a later `subPath: esc`
//! is refused by the host (tests/attacks/filesystem.rs).

use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::git::{GitServer, git};

#[tokio::test]
async fn chained_symlinks_in_a_repository_are_refused_by_git_clone() {
    let server = GitServer::start(true);
    let (bare, work) = server.repo("chain.git");
    let w = work.path();
    std::fs::create_dir_all(w.join("n/a/b")).unwrap();
    std::fs::write(w.join("README.md"), "hostile\n").unwrap();
    std::os::unix::fs::symlink("..", w.join("n/a/b/l")).unwrap();
    std::os::unix::fs::symlink("n/a/b/l/../../..", w.join("esc")).unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "chain"]);
    server.push(w, &bare, &["main"]);
    let env = TestEnv::new();
    let run = env
        .run(
            &format!(
                r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: clone }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      timeout: 20s
      params: [{{ name: url, value: "{url}" }}]
      workspaces: [{{ name: output, workspace: src }}]
      grants: {{ http: ["{origin}"] }}
    - name: use-it
      runAfter: [clone]
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: hi }}]
"#,
                url = server.url("chain.git"),
                origin = server.origin()
            ),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Failed,
        "{}",
        run.log_text()
    );
    let m = run.message("clone");
    assert!(
        m.contains("symlink esc points to `n/a/b/l/../../..`, which resolves outside"),
        "{m}"
    );
    // No link was written: links are written last, after every one passed.
    let ws = std::path::PathBuf::from(&run.run.spec.workspaces["src"]);
    assert!(std::fs::symlink_metadata(ws.join("esc")).is_err());
}
