//! Tekton's git-clone options: submodules and sparse checkout, side by
//! side with git.

use super::*;

/// Commit `files` and gitlinks (path, commit) to `work` and push `main`.
fn commit_with_links(
    server: &GitServer,
    bare: &Path,
    work: &Path,
    files: &[(&str, &str)],
    links: &[(&str, &str)],
) -> String {
    for (p, text) in files {
        std::fs::write(work.join(p), text).unwrap();
    }
    git(work, &["add", "."]);
    for (p, id) in links {
        git(
            work,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{id},{p}"),
            ],
        );
    }
    git(work, &["commit", "-q", "-m", "commit"]);
    server.push(work, bare, &["main"]);
    git(work, &["rev-parse", "HEAD"]).trim().to_string()
}

/// Submodules side by side with `git clone --recurse-submodules`: a
/// relative URL, a gitlink that is not the submodule's tip, a submodule of
/// the submodule; the same files (`gitdir:` files included), the same
/// `git submodule status --recursive`, clean. Depth 1 clones them shallow.
#[tokio::test]
async fn submodules_are_cloned_recursively_like_git() {
    let server = GitServer::start(true);
    let (deep, dw) = server.repo("team/deep.git");
    let deep_head = commit_with_links(&server, &deep, dw.path(), &[("d.txt", "deep\n")], &[]);
    let (lib, lw) = server.repo("team/lib.git");
    let lib_v1 = commit_with_links(
        &server,
        &lib,
        lw.path(),
        &[
            ("lib.txt", "v1\n"),
            (
                ".gitmodules",
                "[submodule \"inner\"]\n\tpath = inner\n\turl = ./../deep.git\n",
            ),
        ],
        &[("inner", &deep_head)],
    );
    commit_with_links(&server, &lib, lw.path(), &[("lib.txt", "v2\n")], &[]);
    let (sup, sw) = server.repo("team/app.git");
    commit_with_links(
        &server,
        &sup,
        sw.path(),
        &[
            ("README.md", "super\n"),
            (
                ".gitmodules",
                "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n",
            ),
        ],
        &[("vendor/lib", &lib_v1)],
    );
    for b in [&deep, &lib, &sup] {
        git(
            b,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
    }
    let url = server.url("team/app.git");
    let env = TestEnv::new();
    let submodule_status = |dir: &Path| git(dir, &["submodule", "status", "--recursive"]);

    let run = env
        .run(
            &pipeline(
                &url,
                &server.origin(),
                &(param("submodules", "true") + &param("depth", "0")),
                "",
            ),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let ws = workspace(&run);
    let theirs = tempfile::tempdir().unwrap();
    git(
        theirs.path(),
        &["clone", "-q", "--recurse-submodules", &url, "."],
    );
    assert_eq!(
        snapshot(&ws),
        snapshot(theirs.path()),
        "files, gitdir: files included"
    );
    assert_eq!(submodule_status(&ws), submodule_status(theirs.path()));
    assert!(
        submodule_status(&ws).contains(&lib_v1),
        "{}",
        submodule_status(&ws)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("vendor/lib/lib.txt")).unwrap(),
        "v1\n",
        "the gitlink's commit, not the tip"
    );
    assert_eq!(
        git(&ws, &["status", "--porcelain", "--ignore-submodules=none"]),
        ""
    );
    assert_eq!(
        git(&ws.join("vendor/lib/inner"), &["rev-parse", "HEAD"]).trim(),
        deep_head
    );
    git(&ws.join("vendor/lib"), &["fsck", "--no-dangling"]);

    // Shallow: the submodules at depth 1 too.
    let run = env
        .run(
            &pipeline(&url, &server.origin(), &param("submodules", "true"), ""),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let ws = workspace(&run);
    assert_eq!(snapshot(&ws), snapshot(theirs.path()));
    assert_eq!(
        git(&ws.join("vendor/lib"), &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

/// Tekton's `sparseCheckoutDirectories`, side by side with
/// `git sparse-checkout set --no-cone` (what git-init writes): the same
/// files in the work tree and the same `git ls-files -t` (skip-worktree
/// entries as `S`), for anchored, negated, directory and basename
/// patterns; `git status` clean.
#[tokio::test]
async fn sparse_checkout_matches_git() {
    let server = GitServer::start(true);
    let (bare, work) = server.repo("sparse.git");
    let w = work.path();
    for f in [
        "README.md",
        "Makefile",
        "docs/guide.md",
        "docs/img/x.png",
        "src/main.rs",
        "src/docs/inner.md",
        "task/git-clone/0.9/README.md",
        "task/git-clone/0.9/git-clone.yaml",
        "task/kaniko/README.md",
    ] {
        std::fs::create_dir_all(w.join(f).parent().unwrap()).unwrap();
        std::fs::write(w.join(f), format!("{f}\n")).unwrap();
    }
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "tree"]);
    server.push(w, &bare, &["main"]);
    let url = server.url("sparse.git");
    let env = TestEnv::new();
    for patterns in [
        "/*,!/*/,/docs/",
        "task/git-clone",
        "*.md",
        "src/,!src/docs/",
        "docs/",
    ] {
        let run = env
            .run(
                &pipeline(
                    &url,
                    &server.origin(),
                    &param("sparseCheckoutDirectories", patterns),
                    "",
                ),
                &[],
            )
            .await;
        assert_eq!(
            run.status_of("clone"),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
        let ws = workspace(&run);
        let theirs = tempfile::tempdir().unwrap();
        let t = theirs.path();
        git(t, &["clone", "-q", "--no-checkout", &url, "."]);
        let mut args = vec!["sparse-checkout", "set", "--no-cone"];
        args.extend(patterns.split(','));
        git(t, &args);
        git(t, &["checkout", "-q", "main"]);
        let files = |d: &Path| snapshot(d).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(files(&ws), files(t), "`{patterns}`: the same files");
        assert_eq!(
            git(&ws, &["ls-files", "-t"]),
            git(t, &["ls-files", "-t"]),
            "`{patterns}`: the same skip-worktree entries"
        );
        assert_eq!(git(&ws, &["status", "--porcelain"]), "", "`{patterns}`");
        assert_eq!(
            std::fs::read_to_string(ws.join(".git/info/sparse-checkout")).unwrap(),
            std::fs::read_to_string(t.join(".git/info/sparse-checkout")).unwrap()
        );
    }

    // An update in place with other patterns: what they leave out goes.
    let dir = tempfile::tempdir().unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), dir.path().to_path_buf())].into(),
        ..Default::default()
    };
    for (patterns, want) in [
        (
            "docs/",
            vec!["docs/guide.md", "docs/img/x.png", "src/docs/inner.md"],
        ),
        ("/src/", vec!["src/docs/inner.md", "src/main.rs"]),
    ] {
        let params =
            param("sparseCheckoutDirectories", patterns) + &param("deleteExisting", "false");
        let run = env
            .run_with(&pipeline(&url, &server.origin(), &params, ""), &[], opts())
            .await;
        assert_eq!(
            run.status_of("clone"),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
        let files: Vec<String> = snapshot(dir.path()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(files, want, "`{patterns}`");
        assert_eq!(
            git(dir.path(), &["status", "--porcelain"]),
            "",
            "`{patterns}`"
        );
    }
}
