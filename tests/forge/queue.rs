//! Per-repository queues: a new push supersedes the branch's run, the
//! limit holds, and runs executing or waiting go on after a restart.

use super::*;

const GATED: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: gated }
spec:
  tasks:
    - name: gate
      uses: approve@0.1
      params:
        - { name: approvers, value: [alice] }
"#;

/// A new push to a branch cancels the branch's run in progress; with a
/// limit of 1, a push to another branch waits (its message gives its
/// position) until the running one ends.
#[test]
fn a_new_push_supersedes_the_branch_run_and_the_queue_holds_its_limit() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("q.git");
    let sha1 = commit(work.path(), &[(".capstan/gated.yaml", GATED)]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    let s = Setup::start(
        BIN,
        &[],
        &[
            "q",
            "--provider",
            "github",
            "--url",
            &git_server.url("q.git"),
            "--project",
            "woodpecker-ci/woodpecker",
            "--api-url",
            &api,
            "--concurrency",
            "1",
        ],
    );
    let waiting = |v: &Value| task_status(v, "gate") == "Waiting";
    let run1 = push_branch(&s, &sha1, "main", "d-1");
    s.until(&run1, "waiting", waiting);

    let sha2 = commit(work.path(), &[("README", "two")]);
    git_server.push(work.path(), &bare, &["main"]);
    let run2 = push_branch(&s, &sha2, "main", "d-2");
    let r1 = s.until(&run1, "cancelled", |v| v["status"] == "Cancelled");
    assert_eq!(task_status(&r1, "gate"), "Cancelled", "{r1}");
    s.until(&run2, "waiting", waiting);

    git(work.path(), &["checkout", "-q", "-b", "dev"]);
    let sha3 = commit(work.path(), &[("README", "three")]);
    git_server.push(work.path(), &bare, &["dev"]);
    let run3 = push_branch(&s, &sha3, "dev", "d-3");
    let r3 = s.until(&run3, "queued", |v| {
        v["status"] == "Queued" && v["message"].is_string()
    });
    assert!(
        r3["message"].as_str().unwrap().contains("position 1 of 1"),
        "{r3}"
    );
    // Still queued a moment later: the limit holds.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.run(&run3)["status"], "Queued");

    let out = capstan_tests::cli_env(
        BIN,
        &s.state,
        &["approve", &run2, "--task", "gate"],
        &[("USER", std::ffi::OsStr::new("alice"))],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ended(&run2)["status"], "Succeeded");
    s.until(&run3, "waiting", waiting);

    // The superseded run's commit says so: GitHub has no `canceled`, so
    // `error` with the reason.
    let states_of = |sha: &str| {
        statuses(&forge, 0)
            .iter()
            .filter(|(h, _)| h.contains(sha))
            .map(|(_, b)| b["state"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while states_of(&sha2).len() < 3 || states_of(&sha3).len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", statuses(&forge, 0));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(states_of(&sha1), ["pending", "pending", "error"]);
    assert_eq!(states_of(&sha2), ["pending", "pending", "success"]);
    assert_eq!(states_of(&sha3), ["pending", "pending"]);
}

/// Killed with one run executing (at an approval gate) and one waiting
/// in the repository's queue (limit 1): on restart the executing run
/// resumes where it was, the waiting one is queued again behind it, and
/// both commits hear of it; approving the first lets the second run.
#[test]
fn runs_executing_or_queued_go_on_after_a_restart() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("r.git");
    let sha1 = commit(work.path(), &[(".capstan/gated.yaml", GATED)]);
    git_server.push(work.path(), &bare, &["main"]);
    git(work.path(), &["checkout", "-q", "-b", "dev"]);
    let sha2 = commit(work.path(), &[("README", "dev")]);
    git_server.push(work.path(), &bare, &["dev"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    let mut s = Setup::start(
        BIN,
        &[],
        &[
            "r",
            "--provider",
            "github",
            "--url",
            &git_server.url("r.git"),
            "--project",
            "woodpecker-ci/woodpecker",
            "--api-url",
            &api,
            "--concurrency",
            "1",
        ],
    );
    let run1 = push_branch(&s, &sha1, "main", "r-1");
    s.until(&run1, "waiting", |v| task_status(v, "gate") == "Waiting");
    let run2 = push_branch(&s, &sha2, "dev", "r-2");
    s.until(&run2, "queued", |v| {
        v["status"] == "Queued" && v["message"].is_string()
    });
    s.restart(&[]);
    s.until(&run1, "resumed", |v| {
        v["status"] == "Running" && task_status(v, "gate") == "Waiting"
    });
    s.until(&run2, "queued again", |v| {
        v["status"] == "Queued"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("position 1 of 1"))
    });
    let out = capstan_tests::cli_env(
        BIN,
        &s.state,
        &["approve", &run1, "--task", "gate"],
        &[("USER", std::ffi::OsStr::new("alice"))],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ended(&run1)["status"], "Succeeded");
    s.until(&run2, "started", |v| task_status(v, "gate") == "Waiting");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let of = |sha: &str| -> Vec<String> {
            statuses(&forge, 0)
                .iter()
                .filter(|(h, _)| h.contains(sha))
                .map(|(_, b)| format!("{} {}", b["state"], b["description"]))
                .collect()
        };
        let (one, two) = (of(&sha1), of(&sha2));
        // queued, running, resuming, running, success / queued, queued
        // again, running.
        if one.len() >= 5 && two.len() >= 3 {
            assert!(one[2].contains("resuming after a restart"), "{one:?}");
            assert!(one[4].starts_with("\"success\""), "{one:?}");
            assert!(two[1].contains("queued again after a restart"), "{two:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{one:?}\n{two:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
