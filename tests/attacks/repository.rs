//! Repository attacks: a hostile repository, served by a real
//! `git http-backend`, whose symlinks are each lexically inside the tree but
//! together resolve outside it (`n/a/b/l -> ..`, `esc -> n/a/b/l/../../..`).
//! git-clone must judge links by where they really resolve in the tree it
//! writes; and even if a plugin wrote such a link, a later `subPath: esc`
//! is refused by the host (tests/attacks/filesystem.rs).

use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::git::{GitServer, clone_pipeline, git};

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
            &clone_pipeline(
                &server.url("chain.git"),
                &server.origin(),
                &[],
                "    - name: use-it\n      runAfter: [clone]\n      uses: \"{{echo}}\"\n      params: [{ name: message, value: hi }]\n",
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

/// An update in place (`deleteExisting: false`) meets a checkout that an
/// earlier task (or the repository's own build) may have tampered with. A
/// tracked directory replaced by a symlink to another part of the
/// workspace is not written or deleted through: the link is replaced by a
/// real directory and the files it pointed at are untouched. A damaged
/// `.git/index` stops the clone with an error that says how to start
/// afresh, instead of a guess.
#[tokio::test]
async fn an_update_does_not_trust_a_tampered_checkout() {
    let server = GitServer::start(true);
    let (bare, work) = server.repo("tamper.git");
    let w = work.path();
    std::fs::create_dir_all(w.join("keep")).unwrap();
    std::fs::write(w.join("keep/a.txt"), "a\n").unwrap();
    std::fs::write(w.join("README.md"), "one\n").unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "one"]);
    server.push(w, &bare, &["main"]);
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = clone_pipeline(
        &server.url("tamper.git"),
        &server.origin(),
        &[("deleteExisting", "false")],
        "",
    );
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), d.to_path_buf())].into(),
        ..Default::default()
    };
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );

    // keep/ becomes a link to other/, which holds a file of the same name.
    std::fs::create_dir_all(d.join("other")).unwrap();
    std::fs::write(d.join("other/a.txt"), "precious\n").unwrap();
    std::fs::remove_dir_all(d.join("keep")).unwrap();
    std::os::unix::fs::symlink("other", d.join("keep")).unwrap();
    // Upstream deletes keep/a.txt and adds keep/b.txt.
    std::fs::remove_file(w.join("keep/a.txt")).unwrap();
    std::fs::write(w.join("keep/b.txt"), "b\n").unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", "two"]);
    server.push(w, &bare, &["main"]);
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("other/a.txt")).unwrap(),
        "precious\n",
        "nothing was deleted through the link"
    );
    assert!(
        !std::fs::symlink_metadata(d.join("keep"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("keep/b.txt")).unwrap(),
        "b\n"
    );
    assert!(
        !d.join("other/b.txt").exists(),
        "nothing was written through the link"
    );

    // `.git` files planted as links to a tracked file: an index that is a
    // link is unreadable (a clear error); any other is replaced, never
    // written through.
    std::fs::remove_file(d.join(".git/index")).unwrap();
    std::os::unix::fs::symlink("../README.md", d.join(".git/index")).unwrap();
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Failed,
        "an index that is a link is unreadable: {}",
        run.log_text()
    );
    std::fs::remove_file(d.join(".git/index")).unwrap();
    std::fs::remove_file(d.join(".git/description")).unwrap();
    std::os::unix::fs::symlink("../README.md", d.join(".git/description")).unwrap();
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("README.md")).unwrap(),
        "one\n"
    );
    assert!(
        !std::fs::symlink_metadata(d.join(".git/description"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A damaged index: a clear error, nothing guessed.
    std::fs::write(d.join(".git/index"), b"DIRC\0\0\0\x02garbage").unwrap();
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("cannot be updated") && m.contains("set deleteExisting to true"),
        "{m}"
    );
}

/// A hostile `.gitmodules`: a submodule name that climbs out of
/// `.git/modules` (git's CVE-2018-11235) is refused before anything is
/// written there, and a submodule URL on an authority the task was not
/// granted is denied, with no request reaching it.
#[tokio::test]
async fn hostile_gitmodules_are_refused() {
    let server = GitServer::start(true);
    let other = GitServer::start(true);
    let clone_yaml = |name: &str| clone_pipeline(&server.url(name), &server.origin(), &[], "");
    let link = "1111111111111111111111111111111111111111";
    let make = |name: &str, gitmodules: String| {
        let (bare, work) = server.repo(name);
        let w = work.path();
        std::fs::write(w.join(".gitmodules"), gitmodules).unwrap();
        git(w, &["add", "."]);
        git(
            w,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{link},vendor/x"),
            ],
        );
        git(w, &["commit", "-q", "-m", "x"]);
        server.push(w, &bare, &["main"]);
        work
    };
    let _a = make(
        "climb.git",
        "[submodule \"../../../escape\"]\n\tpath = vendor/x\n\turl = ../lib.git\n".into(),
    );
    let _b = make(
        "elsewhere.git",
        format!(
            "[submodule \"x\"]\n\tpath = vendor/x\n\turl = {}\n",
            other.url("lib.git")
        ),
    );
    let env = TestEnv::new();

    let run = env.run(&clone_yaml("climb.git"), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("is refused (it would leave .git/modules)"),
        "{m}"
    );

    let before = other.requests.load(std::sync::atomic::Ordering::Relaxed);
    let run = env.run(&clone_yaml("elsewhere.git"), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(m.contains("denied") || m.contains("not granted"), "{m}");
    assert_eq!(
        other.requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "no request reached the other server"
    );
}

/// A repository URL written to break out of the remote command's quoting
/// (on a server whose login shell runs the command line): the path goes
/// to upload-pack as one quoted argument, so the shell runs nothing else.
/// Against a real sshd with a real shell.
#[tokio::test]
async fn an_ssh_url_cannot_inject_a_remote_command() {
    use capstan::caps::secrets::LocalSecrets;
    use capstan_tests::sshd::{Sshd, USER};
    let sshd = Sshd::start();
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("deploy-key", sshd.client_key.as_bytes())
        .unwrap();
    let marker = std::path::PathBuf::from(format!("/tmp/capstan-injected-{}", sshd.port));
    let _ = std::fs::remove_file(&marker);
    for path in [
        format!("/x'; touch {}; echo '", marker.display()),
        format!("/x'\\''; touch {}; '", marker.display()),
        format!("/x!$(touch {})", marker.display()),
        format!("/x'\"'\"'; touch {}; '", marker.display()),
        format!("/x`touch {}`", marker.display()),
    ] {
        let url = format!("ssh://127.0.0.1:{}{path}", sshd.port);
        // (Escaped for the YAML double-quoted scalar it goes into.)
        let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
        let yaml = clone_pipeline(&quoted, "https://unused.invalid", &[], "").replace(
            "grants: { http: [\"https://unused.invalid\"] }",
            &format!(
                "grants: {{ ssh: [{{ host: 127.0.0.1, port: {}, user: {USER}, secret: deploy-key, knownHosts: \"{}\" }}] }}",
                sshd.port, sshd.known_hosts
            ),
        );
        let run = env.run(&yaml, &[]).await;
        assert_eq!(run.status_of("clone"), TaskStatus::Failed, "{path}");
        assert!(
            run.message("clone")
                .contains("does not appear to be a git repository"),
            "{path}: {}",
            run.message("clone")
        );
        assert!(
            !marker.exists(),
            "{path}: the remote shell ran an injected command"
        );
    }
}
