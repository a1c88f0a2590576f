//! Refs, refspecs and `refspec` side by side with git.

use super::*;

/// What `git` says about a clone's refs and remote configuration.
fn ref_view(ws: &Path) -> Vec<String> {
    let mut out = vec![
        format!(
            "fetch = {}",
            git(ws, &["config", "--get-all", "remote.origin.fetch"]).trim()
        ),
        format!("HEAD = {}", git(ws, &["rev-parse", "HEAD"]).trim()),
    ];
    let head = Command::new("git")
        .args(["symbolic-ref", "-q", "HEAD"])
        .current_dir(ws)
        .output()
        .unwrap();
    out.push(format!(
        "HEAD -> {}",
        String::from_utf8_lossy(&head.stdout).trim()
    ));
    out.extend(
        git(
            ws,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname) %(symref)",
            ],
        )
        .lines()
        .map(str::to_string),
    );
    out
}

/// Side by side with `git clone` against the same server: the same refs
/// (every branch and tag for a full clone, one branch and the tags on it
/// for a shallow one), refspec, HEAD and `origin/HEAD`; `git describe
/// --tags` works where it does for git.
#[tokio::test]
async fn refs_and_refspecs_match_git_clone() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "refs.git");
    // A lightweight tag on main's tip and an annotated one in its history.
    git(&bare, &["tag", "light", "main"]);
    git(&bare, &["tag", "-a", "old", "-m", "old", "main~1"]);
    let url = server.url("refs.git");
    let env = TestEnv::new();
    for (depth, revision) in [
        ("0", ""),
        ("1", ""),
        ("1", "feature"),
        ("1", "v1.0"),
        ("0", "v1.0"),
    ] {
        let mut params = param("depth", depth);
        if !revision.is_empty() {
            params += &param("revision", revision);
        }
        let run = env
            .run(&pipeline(&url, &server.origin(), &params, ""), &[])
            .await;
        assert_eq!(
            run.status_of("clone"),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
        let ws = workspace(&run);

        let theirs = tempfile::tempdir().unwrap();
        let mut args = vec!["clone", "-q", "--no-checkout"];
        if depth != "0" {
            args.extend(["--depth", depth]);
        }
        if !revision.is_empty() {
            args.extend(["--branch", revision]);
        }
        args.extend([url.as_str(), "."]);
        git(theirs.path(), &args);
        let view = ref_view(&ws);
        assert_eq!(
            view,
            ref_view(theirs.path()),
            "depth {depth}, revision `{revision}`"
        );
        if (depth, revision) == ("0", "") {
            for want in [
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/feature",
                "refs/tags/old",
                "refs/tags/light",
            ] {
                assert!(view.iter().any(|l| l.starts_with(want)), "{want}: {view:?}");
            }
        }
        let describe = |dir: &Path| {
            Command::new("git")
                .args(["describe", "--tags"])
                .current_dir(dir)
                .output()
                .unwrap()
                .stdout
        };
        assert_eq!(
            describe(&ws),
            describe(theirs.path()),
            "git describe --tags"
        );
    }
}

/// Tekton's `refspec`: a pull request's ref fetched into a local branch and
/// checked out by `revision`, side by side with what git-init runs
/// (`git fetch origin SPEC`, `git checkout -f REVISION`); over protocol v2
/// (where the ref must be asked for by prefix) and v0.
#[tokio::test]
async fn a_refspec_fetches_a_pull_request_ref() {
    for v2 in [true, false] {
        let server = GitServer::start(v2);
        let (bare, work) = sample_repo(&server, "pr.git");
        let w = work.path();
        git(w, &["checkout", "-q", "-b", "pr"]);
        std::fs::write(w.join("pr.txt"), "proposed\n").unwrap();
        git(w, &["add", "."]);
        git(w, &["commit", "-q", "-m", "pr"]);
        git(
            w,
            &["push", "-q", bare.to_str().unwrap(), "pr:refs/pull/1/head"],
        );
        let url = server.url("pr.git");
        let env = TestEnv::new();
        let spec = "refs/pull/1/head:refs/heads/pr";
        let run = env
            .run(
                &pipeline(
                    &url,
                    &server.origin(),
                    &(param("refspec", spec) + &param("revision", "pr")),
                    "",
                ),
                &[],
            )
            .await;
        let ws = check_clone(&run, &bare, "refs/pull/1/head");
        let theirs = tempfile::tempdir().unwrap();
        let t = theirs.path();
        git(t, &["init", "-q"]);
        git(t, &["remote", "add", "origin", &url]);
        git(t, &["fetch", "-q", "origin", spec]);
        git(t, &["checkout", "-q", "-f", "pr"]);
        for args in [
            &["rev-parse", "HEAD"][..],
            &["symbolic-ref", "HEAD"],
            &["rev-parse", "refs/heads/pr"],
        ] {
            assert_eq!(git(&ws, args), git(t, args), "v2 {v2}: git {args:?}");
        }
        assert!(ws.join("pr.txt").is_file());

        // A refspec naming a ref the remote lacks is a clear error.
        let run = env
            .run(
                &pipeline(
                    &url,
                    &server.origin(),
                    &param("refspec", "refs/pull/2/head:refs/heads/x"),
                    "",
                ),
                &[],
            )
            .await;
        assert_eq!(run.status_of("clone"), TaskStatus::Failed);
        assert!(
            run.message("clone")
                .contains("the remote has no ref `refs/pull/2/head`"),
            "{}",
            run.message("clone")
        );
    }
}
