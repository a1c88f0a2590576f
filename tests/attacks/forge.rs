//! A hostile webhook sender and a hostile repository against the forge
//! integration (`host/src/forge/`): what is fetched comes from the
//! configuration, never the payload; refs that would be options or
//! refspecs are refused; a repository's pipeline cannot name the server's
//! files, plant a symlink or send a huge file; oversized bodies are
//! refused unread; no secret lands in the store.

use capstan_tests::forge::*;
use capstan_tests::git::GitServer;
use capstan_tests::httpd;

const BIN: &str = env!("CARGO_BIN_EXE_capstan-cli");

fn setup(git_server: &GitServer, repo: &str, forge: &httpd::Server) -> Setup {
    Setup::start(
        BIN,
        &[],
        &[
            "app",
            "--provider",
            "github",
            "--url",
            &git_server.url(repo),
            "--project",
            "woodpecker-ci/woodpecker",
            "--api-url",
            &forge.url(),
        ],
    )
}

/// The payload names other clone URLs (`ext::` commands, `file://`) and
/// refs that would be git options or refspecs: the URLs are ignored (the
/// configured repository is read), the refs refused with 400.
#[test]
fn a_payload_cannot_choose_what_is_fetched() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("app.git");
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &pipeline("ok"))]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let s = setup(&git_server, "app.git", &forge);
    let pwned = s.state.parent().unwrap().join("PWNED");
    let (body, headers) = delivery("github/push-branch");
    let mut b = body.clone();
    b["after"] = sha.clone().into();
    let evil_url = format!("ext::sh -c touch% {}", pwned.display());
    for field in ["clone_url", "git_url", "ssh_url", "url", "html_url"] {
        b["repository"][field] = evil_url.clone().into();
    }
    let before = git_server
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let (code, answer) = post(
        &s.hook("github"),
        &fresh_with(&headers, "evil-url"),
        &serde_json::to_vec(&b).unwrap(),
        true,
    );
    assert_eq!(code, 201, "{answer}");
    let id = answer["runs"][0].as_str().unwrap();
    assert_eq!(s.ended(id)["status"], "Succeeded");
    assert!(
        git_server
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            > before,
        "the configured repository was read"
    );
    assert!(!pwned.exists());
    for (i, evil_ref) in [
        "refs/heads/--upload-pack=touch PWNED",
        "refs/heads/main:refs/heads/other",
        "refs/heads/a b",
        "refs/heads/../../x",
        "refs/heads/x\u{1b}[2J",
        "refs/tags/-x",
    ]
    .iter()
    .enumerate()
    {
        let mut b = body.clone();
        b["after"] = sha.clone().into();
        b["ref"] = (*evil_ref).into();
        let (code, answer) = post(
            &s.hook("github"),
            &fresh_with(&headers, &format!("evil-ref-{i}")),
            &serde_json::to_vec(&b).unwrap(),
            true,
        );
        assert_eq!(code, 400, "{evil_ref}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("not a valid git ref name"),
            "{answer}"
        );
    }
    // A commit id that is not one.
    let mut b = body.clone();
    b["after"] = "--upload-pack=x".into();
    let (code, _) = post(
        &s.hook("github"),
        &fresh_with(&headers, "evil-sha"),
        &serde_json::to_vec(&b).unwrap(),
        true,
    );
    assert_eq!(code, 400);
    assert!(!pwned.exists());
    // One run in all, and the secrets nowhere in the state.
    assert_eq!(
        capstan::store::RunStore::open(&s.state)
            .unwrap()
            .list_runs(100)
            .unwrap()
            .len(),
        1
    );
    capstan_tests::assert_not_in_state(&s.state, TOKEN);
    capstan_tests::assert_not_in_state(&s.state, &secret());
}

/// A repository's pipeline that names files of the server as plugins, a
/// pipeline file that is a symlink, or one too large: refused, named, and
/// nothing runs.
#[test]
fn a_repository_cannot_reach_the_servers_files() {
    let git_server = GitServer::start(true);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let (body, headers) = delivery("github/push-branch");
    let deliver = |s: &Setup, sha: &str, id: &str| {
        let mut b = body.clone();
        b["after"] = sha.into();
        post(
            &s.hook("github"),
            &fresh_with(&headers, id),
            &serde_json::to_vec(&b).unwrap(),
            true,
        )
    };

    // `uses:` a path: absolute, relative, file://.
    let (bare, work) = git_server.repo("paths.git");
    let mut files = Vec::new();
    for (i, uses) in [
        "/etc/hostname.wasm",
        "../../../state/registry/x.wasm",
        "file:///etc/passwd.wasm",
    ]
    .iter()
    .enumerate()
    {
        files.push((
            format!(".capstan/p{i}.yaml"),
            pipeline("x").replace("write-file@0.1", uses),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let sha = commit(work.path(), &refs);
    git_server.push(work.path(), &bare, &["main"]);
    let s = setup(&git_server, "paths.git", &forge);
    let (code, answer) = deliver(&s, &sha, "paths");
    assert_eq!(code, 422, "{answer}");
    let invalid = answer["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 3, "{answer}");
    for i in invalid {
        assert!(
            i["error"]
                .as_str()
                .unwrap()
                .contains("registry plugins only"),
            "{i}"
        );
    }
    drop(s);

    // A symlink to a file of the server.
    let (bare, work) = git_server.repo("link.git");
    std::fs::create_dir_all(work.path().join(".capstan")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", work.path().join(".capstan/ci.yaml")).unwrap();
    let sha = commit(work.path(), &[]);
    git_server.push(work.path(), &bare, &["main"]);
    let s = setup(&git_server, "link.git", &forge);
    let (code, answer) = deliver(&s, &sha, "link");
    assert_eq!(code, 502, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains(".capstan/ci.yaml: not a regular file"),
        "{answer}"
    );
    drop(s);

    // Two MiB of pipeline.
    let (bare, work) = git_server.repo("huge.git");
    let huge = format!("{}\n# {}\n", pipeline("x"), "x".repeat(2 << 20));
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &huge)]);
    git_server.push(work.path(), &bare, &["main"]);
    let s = setup(&git_server, "huge.git", &forge);
    let (code, answer) = deliver(&s, &sha, "huge");
    assert_eq!(code, 502, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("more than the 1048576 allowed"),
        "{answer}"
    );
    assert!(
        capstan::store::RunStore::open(&s.state)
            .unwrap()
            .list_runs(10)
            .unwrap()
            .is_empty()
    );
}

/// A body over the webhook limit (25 MiB) is refused before it is read.
#[test]
fn an_oversized_delivery_is_refused_unread() {
    let git_server = GitServer::start(true);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let s = setup(&git_server, "none.git", &forge);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Length: 30000000",
        ])
        .args(["--max-time", "10", "--data-binary", "x", &s.hook("github")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
}

/// A server whose log reader went away (its stderr a closed pipe) keeps
/// serving: a refused delivery, which it logs, is still answered, and so
/// is the next one. (It used to die of SIGPIPE at its first log line.)
#[test]
fn a_server_with_no_log_reader_keeps_answering() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let f = dir.path().join("hook");
    std::fs::write(&f, secret()).unwrap();
    ok(&capstan(
        BIN,
        &state,
        &["secret", "set", "hook", "--from-file", f.to_str().unwrap()],
    ));
    ok(&capstan(
        BIN,
        &state,
        &[
            "repo",
            "add",
            "app",
            "--provider",
            "gitlab",
            "--url",
            "http://127.0.0.1:1/x.git",
            "--project",
            "g/p",
            "--webhook-secret",
            "hook",
        ],
    ));
    let mut child = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split("API on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let headers = serde_json::json!({ "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong", "X-Gitlab-Event-UUID": "u-1" });
    for _ in 0..3 {
        let (code, answer) = post(
            &format!("{url}/v1/hooks/gitlab"),
            &headers,
            br#"{"project":{"path_with_namespace":"g/p"}}"#,
            false,
        );
        assert_eq!(code, 401, "{answer}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    child.kill().unwrap();
    child.wait().unwrap();
}
