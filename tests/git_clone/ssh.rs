//! SSH remotes through the `ssh` capability, against a real OpenSSH sshd
//! running the real `git-upload-pack`, side by side with `git clone` over
//! the same sshd and key: protocol v2 where the server accepts
//! `GIT_PROTOCOL` (`AcceptEnv`, as GitHub does), v0 where it does not.

use capstan_tests::sshd::{Sshd, USER};

use super::*;

/// A bare copy of the sample repository in the SSH user's home, owned by
/// it (git refuses repositories owned by someone else).
fn remote_repo(sshd: &Sshd) -> (PathBuf, (PathBuf, tempfile::TempDir), GitServer) {
    let server = GitServer::start(true);
    let (bare, work) = sample_repo(&server, "app.git");
    let repos = sshd.home.join("repos");
    let remote = repos.join(format!("app-{}.git", sshd.port));
    let _ = std::fs::remove_dir_all(&remote);
    std::fs::create_dir_all(&repos).unwrap();
    git(
        &repos,
        &[
            "clone",
            "-q",
            "--bare",
            bare.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
    );
    chown(&repos);
    (remote, (bare, work), server)
}

fn chown(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

fn ssh_pipeline(url: &str, sshd: &Sshd, params: &str, key: &str) -> String {
    pipeline(url, "https://unused.invalid", params, "").replace(
        "grants:\n        http:\n          - { url: \"https://unused.invalid\" }\n",
        &format!(
            "grants:\n        ssh:\n          - {{ host: 127.0.0.1, port: {}, user: {USER}, secret: deploy-key, {key} }}\n",
            sshd.port
        ),
    )
}

/// `git clone` over the same sshd with the same key, for comparison.
fn git_over_ssh(sshd: &Sshd, url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, &sshd.client_key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("{}\n", sshd.known_hosts)).unwrap();
    let out = Command::new("git")
        .args(["clone", "-q", url, "out"])
        .current_dir(dir.path())
        .env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
                key.display(),
                kh.display()
            ),
        )
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[tokio::test]
async fn ssh_remotes_clone_like_git_in_v2_and_v0() {
    for (accept_env, version) in [("AcceptEnv GIT_PROTOCOL\n", 2), ("", 0)] {
        let sshd = Sshd::start_with(accept_env);
        let (remote, (bare, work), _server) = remote_repo(&sshd);
        let env = TestEnv::new();
        LocalSecrets::new(&env.sched.state_dir.join("secrets"))
            .set("deploy-key", sshd.client_key.as_bytes())
            .unwrap();
        let url = format!("ssh://{USER}@127.0.0.1:{}{}", sshd.port, remote.display());
        let key = format!("knownHosts: \"{}\"", sshd.known_hosts);
        let run = env
            .run(&ssh_pipeline(&url, &sshd, &param("depth", "0"), &key), &[])
            .await;
        let ws = check_clone(&run, &remote, "HEAD");
        assert!(
            run.log_text().contains(&format!("protocol v{version}")),
            "{}",
            run.log_text()
        );
        // What git clone over the same sshd wrote: the same refs and tags.
        let theirs = git_over_ssh(&sshd, &url);
        let theirs = theirs.path().join("out");
        for args in [
            &["for-each-ref", "--format=%(refname) %(objectname)"][..],
            &["ls-files", "-s"],
        ] {
            assert_eq!(git(&ws, args), git(&theirs, args), "{args:?} v{version}");
        }

        // A commit upstream; the checkout is updated in place over SSH.
        let w = work.path();
        std::fs::write(w.join("README.md"), "changed over ssh\n").unwrap();
        git(w, &["commit", "-qam", "ssh update"]);
        // (Pushed through a root-owned copy: a local push runs
        // receive-pack with a clean environment, as root, and git refuses
        // a repository root does not own.)
        git(w, &["push", "-q", bare.to_str().unwrap(), "main"]);
        git(
            &remote,
            &["fetch", "-q", bare.to_str().unwrap(), "+main:main"],
        );
        chown(&remote);
        let run = env
            .run(
                &ssh_pipeline(&url, &sshd, &param("deleteExisting", "false"), &key),
                &[],
            )
            .await;
        check_clone(&run, &remote, "main");
        assert_eq!(
            std::fs::read_to_string(workspace(&run).join("README.md")).unwrap(),
            "changed over ssh\n"
        );
    }
}

#[tokio::test]
async fn ssh_failures_are_clear() {
    let sshd = Sshd::start();
    let (remote, _src, _server) = remote_repo(&sshd);
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("deploy-key", sshd.client_key.as_bytes())
        .unwrap();
    let url = format!("ssh://127.0.0.1:{}{}", sshd.port, remote.display());
    let key = format!("knownHosts: \"{}\"", sshd.known_hosts);

    // No user in the URL: the grant's. A repository that is not there:
    // upload-pack's own words.
    let missing = url.replace(".git", "-missing.git");
    let run = env.run(&ssh_pipeline(&missing, &sshd, "", &key), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(
        run.message("clone")
            .contains("does not appear to be a git repository"),
        "{}",
        run.message("clone")
    );

    // A host key other than the pinned one: refused, the offered key named.
    let wrong = format!("hostKey: \"{}\"", sshd.other_fingerprint());
    let run = env.run(&ssh_pipeline(&url, &sshd, "", &wrong), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(
        run.message("clone").contains(&format!(
            "host key {} is not the one the grant trusts",
            sshd.fingerprint
        )),
        "{}",
        run.message("clone")
    );

    // No ssh grant for the host: denied before connecting.
    let other = url.replace("127.0.0.1", "localhost");
    let run = env.run(&ssh_pipeline(&other, &sshd, "", &key), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(
        run.log_text().contains("denied: ssh localhost:"),
        "{}",
        run.log_text()
    );
}
