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
        .args(["-c", "safe.directory=*", "archive", "--format=tar", rev])
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

    // SSH remotes need an ssh grant (denied before connecting, naming the
    // host); git:// and other schemes: a clear refusal naming what to use.
    for (url, want) in [
        ("git@github.com:team/app.git", "denied: ssh `github.com:22`"),
        ("ssh://git@host:2222/app.git", "denied: ssh `host:2222`"),
        (
            "git://host/app.git",
            "git:// protocol is not supported; use https:// or ssh://",
        ),
        (
            "ftp://host/app.git",
            "not a repository URL this plugin clones",
        ),
    ] {
        let run = env.run(&pipeline(url, &origin, "", ""), &[]).await;
        assert_eq!(run.status_of("clone"), TaskStatus::Failed);
        assert!(msg(&run).contains(want), "{url}: {}", msg(&run));
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

#[path = "git_clone/messages.rs"]
mod messages;
#[path = "git_clone/options.rs"]
mod options;
#[path = "git_clone/refs.rs"]
mod refs;
#[path = "git_clone/ssh.rs"]
mod ssh;
#[path = "git_clone/transport.rs"]
mod transport;
#[path = "git_clone/update.rs"]
mod update;
