//! git-clone against a real `git http-backend`: the clone matches what the
//! standard git has (`git archive`), the written `.git` works with the
//! standard git (`rev-parse`, `status`, `log`, `fsck`), and every failure is
//! a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::git::{CREDENTIALS, GitServer, git};
use capstan_tests::{RunOutcome, TestEnv};

fn pipeline(url: &str, origin: &str, params: &str, extra_grant: &str) -> String {
    // The sample repository's gitlink has no .gitmodules entry (a gitlink
    // left as a directory); submodules are tested on their own below.
    let params = if params.contains("name: submodules") {
        params.to_string()
    } else {
        format!("{params}{}", param("submodules", "false"))
    };
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: clone }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      timeout: 20s
      params:
        - {{ name: url, value: "{url}" }}
{params}
      workspaces: [{{ name: output, workspace: src }}]
      grants:
        http:
          - {{ url: "{origin}"{extra_grant} }}
"#
    )
}

fn param(name: &str, value: &str) -> String {
    format!("        - {{ name: {name}, value: \"{value}\" }}\n")
}

fn workspace(run: &RunOutcome) -> PathBuf {
    PathBuf::from(&run.run.spec.workspaces["src"])
}

/// A repository with history, an executable, symlinks, nested dirs, a
/// submodule entry, a branch and an annotated tag.
fn sample_repo(server: &GitServer, name: &str) -> (PathBuf, tempfile::TempDir) {
    let (bare, work) = server.repo(name);
    let w = work.path();
    std::fs::write(w.join("README.md"), "first\n").unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "one"]);
    std::fs::create_dir_all(w.join("src/nested")).unwrap();
    std::fs::write(w.join("src/nested/lib.rs"), "pub fn f() {}\n".repeat(50)).unwrap();
    std::fs::write(w.join("README.md"), "second version of the readme\n").unwrap();
    std::fs::write(w.join("build.sh"), "#!/bin/sh\necho hi\n").unwrap();
    git(w, &["update-index", "--add", "--chmod=+x", "build.sh"]);
    std::os::unix::fs::symlink("src/nested/lib.rs", w.join("link-to-lib")).unwrap();
    std::os::unix::fs::symlink("../README.md", w.join("src/up")).unwrap();
    git(w, &["add", "."]);
    git(
        w,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            "160000,1111111111111111111111111111111111111111,vendor/sub",
        ],
    );
    git(w, &["commit", "-q", "-m", "two"]);
    git(w, &["tag", "-a", "v1.0", "-m", "release"]);
    git(w, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(w.join("feature.txt"), "on the branch\n").unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "three"]);
    git(w, &["checkout", "-q", "main"]);
    std::fs::write(w.join("README.md"), "third\n").unwrap();
    git(w, &["commit", "-q", "-am", "four"]);
    server.push(w, &bare, &["main", "feature", "v1.0"]);
    (bare, work)
}

/// Files (contents, executable bit) and symlink targets under `dir`,
/// excluding `.git`.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel == ".git" {
                continue;
            }
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else if ft.is_dir() {
                if std::fs::read_dir(&p).unwrap().next().is_none() {
                    out.push((rel, "dir".into()));
                }
                stack.push(p);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let exec = std::fs::metadata(&p).unwrap().permissions().mode() & 0o100 != 0;
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.push((rel, format!("{}{text}", if exec { "(x) " } else { "" })));
            }
        }
    }
    out.sort();
    out
}

/// `git archive` of `rev` from the bare repository, extracted.
fn archive(bare: &Path, rev: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let tar = Command::new("git")
        .args(["archive", "--format=tar", rev])
        .current_dir(bare)
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut x = Command::new("tar")
        .args(["-x", "-C"])
        .arg(out.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(x.wait().unwrap().success());
    out
}

fn check_clone(run: &RunOutcome, bare: &Path, rev: &str) -> PathBuf {
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let ws = workspace(run);
    let want = git(bare, &["rev-parse", &format!("{rev}^{{commit}}")]);
    assert_eq!(run.result("clone", "commit"), want.trim());
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]).trim(), want.trim());
    let date = git(bare, &["log", "-1", "--format=%ct", rev]);
    assert_eq!(run.result("clone", "committer-date"), date.trim());
    assert_eq!(
        snapshot(&ws),
        snapshot(archive(bare, rev).path()),
        "files equal git archive"
    );
    assert_index_matches_the_files(&ws);
    assert_eq!(
        git(&ws, &["status", "--porcelain"]),
        "",
        "git status is clean"
    );
    git(&ws, &["fsck", "--no-dangling"]);
    ws
}

/// Right after a clone, before anything refreshes the index (as a build
/// script's `git diff-index --quiet HEAD || echo -dirty` runs): git's
/// plumbing, which trusts the index's stat data, sees a clean tree.
fn assert_index_matches_the_files(ws: &Path) {
    assert_eq!(
        git(ws, &["diff-files", "--name-only"]),
        "",
        "git diff-files lists no file: the index's stat data matches"
    );
    let quiet = Command::new("git")
        .args(["diff-index", "--quiet", "HEAD"])
        .current_dir(ws)
        .status()
        .unwrap();
    assert!(quiet.success(), "git diff-index --quiet HEAD says clean");
}

#[tokio::test]
async fn clones_head_branch_tag_and_sha_over_protocol_v2() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "team/app.git");
    let url = server.url("team/app.git");
    let env = TestEnv::new();

    let run = env
        .run(&pipeline(&url, &server.origin(), "", ""), &[])
        .await;
    let ws = check_clone(&run, &bare, "main");
    assert!(run.log_text().contains("protocol v2"), "{}", run.log_text());
    assert!(
        run.log_text().contains("submodule vendor/sub at 1111111111111111111111111111111111111111 is not cloned (submodules: false)"),
        "{}",
        run.log_text()
    );
    assert_eq!(
        git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );
    assert_eq!(
        git(&ws, &["log", "--oneline"]).lines().count(),
        1,
        "depth 1"
    );

    let run = env
        .run(
            &pipeline(&url, &server.origin(), &param("revision", "feature"), ""),
            &[],
        )
        .await;
    check_clone(&run, &bare, "feature");

    let run = env
        .run(
            &pipeline(&url, &server.origin(), &param("revision", "v1.0"), ""),
            &[],
        )
        .await;
    check_clone(&run, &bare, "v1.0");

    let sha = git(&bare, &["rev-parse", "main~1"]);
    let run = env
        .run(
            &pipeline(
                &url,
                &server.origin(),
                &(param("revision", sha.trim()) + &param("depth", "0")),
                "",
            ),
            &[],
        )
        .await;
    let ws = check_clone(&run, &bare, sha.trim());
    assert_eq!(
        git(&ws, &["log", "--oneline"]).lines().count(),
        2,
        "full history"
    );

    let run = env
        .run(
            &pipeline(
                &url,
                &server.origin(),
                &param("subdirectory", "checkout/here"),
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
    let sub = workspace(&run).join("checkout/here");
    assert_eq!(snapshot(&sub), snapshot(archive(&bare, "main").path()));
}

#[tokio::test]
async fn clones_from_a_server_without_protocol_v2() {
    let server = GitServer::start(false);
    let (bare, _work) = sample_repo(&server, "app.git");
    let env = TestEnv::new();
    let run = env
        .run(
            &pipeline(
                &server.url("app.git"),
                &server.origin(),
                &param("revision", "v1.0"),
                "",
            ),
            &[],
        )
        .await;
    check_clone(&run, &bare, "v1.0");
    assert!(run.log_text().contains("protocol v0"), "{}", run.log_text());
}

#[tokio::test]
async fn failures_are_clear_errors() {
    let server = GitServer::start(true);
    let (_bare, _work) = sample_repo(&server, "app.git");
    let (_empty, _w) = server.repo("empty.git");
    let (pbare, pwork) = server.repo("private/app.git");
    std::fs::write(pwork.path().join("secret.txt"), "s\n").unwrap();
    git(pwork.path(), &["add", "."]);
    git(pwork.path(), &["commit", "-q", "-m", "p"]);
    server.push(pwork.path(), &pbare, &["main"]);
    let env = TestEnv::new();
    let origin = server.origin();
    let msg = |run: &RunOutcome| run.message("clone").to_string();

    let run = env
        .run(
            &pipeline(
                &server.url("app.git"),
                &origin,
                &param("revision", "nope"),
                "",
            ),
            &[],
        )
        .await;
    assert!(
        msg(&run).contains("revision `nope` not found"),
        "{}",
        msg(&run)
    );

    let run = env
        .run(&pipeline(&server.url("missing.git"), &origin, "", ""), &[])
        .await;
    assert!(
        msg(&run).contains("no repository there (HTTP 404)"),
        "{}",
        msg(&run)
    );

    let run = env
        .run(&pipeline(&server.url("empty.git"), &origin, "", ""), &[])
        .await;
    assert!(
        msg(&run).contains("the repository is empty"),
        "{}",
        msg(&run)
    );

    // 401 without the secret; success with it, and the secret is in no log.
    let private = server.url("private/app.git");
    let run = env.run(&pipeline(&private, &origin, "", ""), &[]).await;
    assert!(
        msg(&run).contains("authentication required (HTTP 401)"),
        "{}",
        msg(&run)
    );
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("git-creds", CREDENTIALS.as_bytes())
        .unwrap();
    let run = env
        .run(&pipeline(&private, &origin, "", ", secret: git-creds"), &[])
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert!(!run.log_text().contains("hunter2"));

    // Not granted: denied, and no request reached the server.
    let before = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    let run = env
        .run(
            &pipeline(&server.url("app.git"), "http://127.0.0.1:1", "", ""),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(msg(&run).contains("denied"), "{}", msg(&run));
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        before
    );

    // A server that never answers: the task times out.
    let t = std::time::Instant::now();
    let yaml = pipeline(&server.url("stall/app.git"), &origin, "", "")
        .replace("timeout: 20s", "timeout: 2s");
    let run = env.run(&yaml, &[]).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::TimedOut,
        "{}",
        msg(&run)
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(15));

    // SSH and git:// remotes: a clear refusal naming what to use instead.
    for url in [
        "git@github.com:team/app.git",
        "ssh://git@host/app.git",
        "git://host/app.git",
    ] {
        let run = env.run(&pipeline(url, &origin, "", ""), &[]).await;
        assert_eq!(run.status_of("clone"), TaskStatus::Failed);
        assert!(
            msg(&run).contains("not supported") && msg(&run).contains("https://"),
            "{url}: {}",
            msg(&run)
        );
    }

    // TLS verification cannot be switched off by a pipeline: refused when
    // the pipeline is validated (the manifest's enum), before any run.
    let e = env
        .prepare(
            &pipeline(
                &server.url("app.git"),
                &origin,
                &param("sslVerify", "false"),
                "",
            ),
            &[],
        )
        .err()
        .expect("sslVerify: false is refused at validation");
    assert!(e.contains("sslVerify") && e.contains("true"), "{e}");
}

#[tokio::test]
async fn a_symlink_pointing_outside_is_refused() {
    let server = GitServer::start(true);
    let (bare, work) = server.repo("evil.git");
    std::os::unix::fs::symlink("../../../etc/passwd", work.path().join("escape")).unwrap();
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "evil"]);
    server.push(work.path(), &bare, &["main"]);
    let env = TestEnv::new();
    let run = env
        .run(
            &pipeline(&server.url("evil.git"), &server.origin(), "", ""),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(
        run.message("clone")
            .contains("symlink escape points to `../../../etc/passwd`, which resolves outside"),
        "{}",
        run.message("clone")
    );
}

/// `file://` from a read-only workspace: loose objects, then after `git gc`
/// packed objects and packed refs.
#[tokio::test]
async fn clones_a_file_url_from_a_read_only_workspace() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "app.git");
    let env = TestEnv::new();
    let yaml = |rev: &str| {
        format!(
            r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: clone }}
spec:
  workspaces: [{{ name: src }}, {{ name: upstream, readOnly: true }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      params:
        - {{ name: url, value: "file:///workspace/repository/app.git" }}
        - {{ name: revision, value: "{rev}" }}
      workspaces:
        - {{ name: output, workspace: src }}
        - {{ name: repository, workspace: upstream }}
"#
        )
    };
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("upstream".to_string(), server.root.path().to_path_buf())].into(),
        ..Default::default()
    };
    let run = env.run_with(&yaml(""), &[], opts()).await;
    check_clone(&run, &bare, "main");
    git(&bare, &["gc", "-q"]);
    let run = env.run_with(&yaml("v1.0"), &[], opts()).await;
    check_clone(&run, &bare, "v1.0");
    // The repository workspace stayed untouched (read-only).
    git(&bare, &["fsck", "--no-dangling"]);
}

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

/// Modification times (ns) of every file and link under `dir`, minus `.git`.
fn mtimes(dir: &Path) -> std::collections::BTreeMap<String, (i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if rel == ".git" {
                continue;
            } else if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, (m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

/// `deleteExisting: false` on an existing checkout fetches into it, as
/// Tekton's git-init does: only what the new commit changed is written
/// (unchanged files keep their modification times), deleted files go,
/// a locally damaged tracked file is restored, untracked files stay, and
/// the result is what git has (files, index, fsck) — shallow, then
/// deepened to the full history.
#[tokio::test]
async fn an_existing_checkout_is_updated_in_place() {
    let server = GitServer::start(true);
    let (bare, work) = sample_repo(&server, "inc.git");
    let url = server.url("inc.git");
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), dir.path().to_path_buf())].into(),
        ..Default::default()
    };
    let yaml = |depth: &str| {
        pipeline(
            &url,
            &server.origin(),
            &(param("deleteExisting", "false") + &param("depth", depth)),
            "",
        )
    };
    let run = env.run_with(&yaml("1"), &[], opts()).await;
    check_clone(&run, &bare, "main");
    let before = mtimes(dir.path());

    let w = work.path();
    std::fs::write(w.join("README.md"), "fifth\n").unwrap();
    std::fs::write(w.join("added.txt"), "new file\n").unwrap();
    std::fs::remove_file(w.join("src/nested/lib.rs")).unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", "five"]);
    server.push(w, &bare, &["main"]);
    // Local damage to a file the commit does not touch, and an untracked
    // build product.
    std::fs::write(dir.path().join("build.sh"), "tampered\n").unwrap();
    std::fs::write(dir.path().join("untracked.o"), "object\n").unwrap();

    let run = env.run_with(&yaml("1"), &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    // README.md and added.txt from the commit, build.sh restored; the
    // rest (two symlinks, the submodule directory) left alone; lib.rs
    // removed.
    assert!(
        run.log_text()
            .contains("updated the checkout in place: 3 file(s) written, 3 unchanged, 1 removed"),
        "{}",
        run.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("untracked.o")).unwrap(),
        "object\n"
    );
    std::fs::remove_file(dir.path().join("untracked.o")).unwrap();
    check_clone(&run, &bare, "main");
    let after = mtimes(dir.path());
    for (path, time) in &before {
        let touched = ["README.md", "build.sh", "src/nested/lib.rs"].contains(&path.as_str());
        if !touched {
            assert_eq!(after.get(path), Some(time), "{path} was left alone");
        }
    }
    assert!(!after.contains_key("src/nested/lib.rs"));
    assert!(after.contains_key("added.txt"));

    // Nothing new: nothing fetched, nothing written.
    let run = env.run_with(&yaml("1"), &[], opts()).await;
    assert!(
        run.log_text().contains("nothing to fetch"),
        "{}",
        run.log_text()
    );
    assert_eq!(mtimes(dir.path()), after);

    // Depth 0 deepens the shallow checkout to the whole history.
    let run = env.run_with(&yaml("0"), &[], opts()).await;
    let ws = check_clone(&run, &bare, "main");
    assert_eq!(
        git(&ws, &["rev-list", "--count", "HEAD"]),
        git(&bare, &["rev-list", "--count", "main"])
    );
    assert!(!ws.join(".git/shallow").exists());
}

/// A server that accepts connections and answers each with `reply` (None:
/// never answers), on 127.0.0.1; returns its origin.
fn fake_server(reply: Option<&'static [u8]>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            match reply {
                Some(r) => {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(r);
                }
                None => held.push(conn), // silent: keep it open
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// What git says, not a decoder's error: an HTML sign-in page is "not
/// valid: is this a git repository?", and a server that never answers
/// times out with the limit in the message (this waits the real 60 s).
#[tokio::test]
async fn a_sign_in_page_and_a_silent_server_get_clear_messages() {
    let env = TestEnv::new();
    let page: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 46\r\nConnection: close\r\n\r\n<html><body>Please sign in</body></html>\n\n\n\n\n\n";
    let origin = fake_server(Some(page));
    let run = env
        .run(
            &pipeline(&format!("{origin}/team/app.git"), &origin, "", ""),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("/team/app.git/info/refs not valid: is this a git repository?")
            && m.contains("HTML page"),
        "{m}"
    );

    let origin = fake_server(None);
    let yaml = pipeline(&format!("{origin}/app.git"), &origin, "", "")
        .replace("timeout: 20s", "timeout: 120s");
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("the server sent no response within 60 s (first-byte timeout)"),
        "{m}"
    );
}

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
