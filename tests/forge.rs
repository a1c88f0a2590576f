//! Forge webhooks end to end, with the deliveries GitHub and GitLab publish
//! (`../shared/forge-payloads/`, rewritten to point at a real
//! `git http-backend` on 127.0.0.1 and signed again), the real CLI and
//! `capstan serve`, and a recording HTTP server standing in for the
//! forge's status API.

#[path = "forge/approve.rs"]
mod approve;
#[path = "forge/queue.rs"]
mod queue;
#[path = "forge/schedule.rs"]
mod schedule;
#[path = "forge/soak.rs"]
mod soak;

use std::time::{Duration, Instant};

use capstan_tests::forge::*;
use capstan_tests::git::{GitServer, git};
use capstan_tests::httpd;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan-cli");

fn capstan(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    capstan_tests::forge::capstan(BIN, state, args)
}

/// A push to main (GitHub's real delivery, retargeted): one run of the
/// repository's pipeline at that commit, statuses pending → pending →
/// success with the token, a redelivery starts nothing, and tampered,
/// unknown or malformed deliveries are refused and start nothing.
#[test]
fn github_push_runs_the_pipeline_at_the_commit_and_reports_back() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("app.git");
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &pipeline("main"))]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply {
        status: "201 Created",
        headers: vec![],
        body: "{}".into(),
    });
    let api = forge.url();
    let s = Setup::start(
        BIN,
        &[],
        &[
            "app",
            "--provider",
            "github",
            "--url",
            &git_server.url("app.git"),
            "--project",
            "woodpecker-ci/woodpecker",
            "--api-url",
            &api,
        ],
    );
    let (mut body, headers) = delivery("github/push-branch");
    body["after"] = sha.clone().into();
    let bytes = serde_json::to_vec(&body).unwrap();
    let (code, answer) = post(&s.hook("github"), &headers, &bytes, true);
    assert_eq!(code, 201, "{answer}");
    let run_id = answer["runs"][0].as_str().unwrap().to_string();
    let run = s.ended(&run_id);
    assert_eq!(run["status"], "Succeeded", "{run}");
    assert_eq!(s.note(&run_id), format!("main {sha} main push true "));
    assert_eq!(run["number"], 1);
    assert_eq!(run["triggered_by"]["kind"], "webhook");
    assert_eq!(
        run["triggered_by"]["delivery"],
        headers["X-GitHub-Delivery"]
    );
    assert_eq!(run["trigger"]["revision"], sha.as_str());

    let seen = statuses(&forge, 3);
    let states: Vec<_> = seen
        .iter()
        .map(|(_, b)| b["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["pending", "pending", "success"], "{seen:?}");
    for (head, b) in &seen {
        assert!(
            head.starts_with(&format!(
                "POST /repos/woodpecker-ci/woodpecker/statuses/{sha} HTTP/1.1"
            )),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("authorization: bearer {TOKEN}")),
            "{head}"
        );
        assert_eq!(b["context"], "capstan/ci");
        assert_eq!(b["target_url"], format!("{}/v1/runs/{run_id}", s.url));
    }

    // The same delivery again: the first one's answer, no second run.
    let (code, again) = post(&s.hook("github"), &headers, &bytes, true);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["runs"], answer["runs"]);
    let runs = ok(&capstan(&s.state, &["runs", "list", "-o", "json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");

    // Tampered (one byte of the body changed, signature kept), unsigned,
    // another repository, not JSON: refused, nothing recorded or started.
    let mut tampered = bytes.clone();
    let i = tampered.iter().position(|b| *b == b'6').unwrap();
    tampered[i] = b'7';
    let mut fresh = headers.clone();
    fresh["X-GitHub-Delivery"] = "tampered-1".into();
    fresh["X-Hub-Signature-256"] =
        capstan::forge::verify::github_signature(secret().as_bytes(), &bytes).into();
    let (code, e) = post(&s.hook("github"), &fresh, &tampered, false);
    assert_eq!(code, 401, "{e}");
    fresh.as_object_mut().unwrap().remove("X-Hub-Signature-256");
    let (code, _) = post(&s.hook("github"), &fresh, &bytes, false);
    assert_eq!(code, 401);
    let mut other = body.clone();
    other["repository"]["full_name"] = "someone/else".into();
    let (code, e) = post(
        &s.hook("github"),
        &fresh_with(&headers, "other-1"),
        &serde_json::to_vec(&other).unwrap(),
        true,
    );
    assert_eq!(code, 404, "{e}");
    let (code, e) = post(
        &s.hook("github"),
        &fresh_with(&headers, "junk-1"),
        b"{not json",
        true,
    );
    assert_eq!(code, 400, "{e}");
    assert_eq!(s.deliveries("app").len(), 1);

    // A deletion is recorded and starts nothing (202 with the reason).
    let (mut del, del_headers) = delivery("github/push-tag-deleted");
    del["repository"]["full_name"] = "woodpecker-ci/woodpecker".into();
    let (code, e) = post(
        &s.hook("github"),
        &del_headers,
        &serde_json::to_vec(&del).unwrap(),
        true,
    );
    assert_eq!(code, 202, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("deleted"), "{e}");
    assert_eq!(s.deliveries("app").len(), 2);
    let runs = ok(&capstan(&s.state, &["runs", "list", "-o", "json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1);
}

/// A repository whose main branch has pipeline `base-pipeline` and a fork
/// pull request (#217, GitHub's delivery) whose head has `fork-pipeline`;
/// both pipelines also read the repository's API token.
struct Fork {
    git_server: GitServer,
    _work: tempfile::TempDir,
    s: Setup,
    forge: httpd::Server,
    api: String,
    head: String,
    headers: Value,
    bytes: Vec<u8>,
}

fn fork() -> Fork {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("lstn.git");
    // Both pipelines also read the repository's API token (as any deploy
    // step would read its credentials).
    let steal = "    - name: steal\n      uses: secret-read@0.1\n      \
                 params: [{ name: name, value: api-token }, { name: reveal, value: \"false\" }]\n      \
                 grants: { secrets: [api-token] }\n";
    let base = format!("{}{steal}", pipeline("base-pipeline"));
    commit(work.path(), &[(".capstan/ci.yaml", &base)]);
    git_server.push(work.path(), &bare, &["main"]);
    git(work.path(), &["checkout", "-q", "-b", "fork"]);
    let own = format!("{}{steal}", pipeline("fork-pipeline"));
    let head = commit(work.path(), &[(".capstan/ci.yaml", &own)]);
    git_server.push(work.path(), &bare, &["fork:refs/pull/217/head"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    let s = Setup::start(
        BIN,
        &[],
        &[
            "lstn",
            "--provider",
            "github",
            "--url",
            &git_server.url("lstn.git"),
            "--api-url",
            &api,
            "--project",
            "listendev/lstn",
        ],
    );
    let (mut body, headers) = delivery("github/pull_request-opened-fork");
    body["pull_request"]["head"]["sha"] = head.clone().into();
    let bytes = serde_json::to_vec(&body).unwrap();
    Fork {
        git_server,
        _work: work,
        s,
        forge,
        api,
        head,
        headers,
        bytes,
    }
}

/// A pull request from a fork runs the pipeline as the target branch
/// defines it (at the pull request's commit, untrusted); once its author
/// is trusted, its own.
#[test]
fn a_fork_pull_request_runs_the_target_branch_pipeline() {
    let Fork {
        git_server,
        _work,
        s,
        forge: _forge,
        api,
        head,
        headers,
        bytes,
    } = fork();
    let (code, answer) = post(&s.hook("github"), &headers, &bytes, true);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["trusted"], false);
    let id = answer["runs"][0].as_str().unwrap().to_string();
    // The target branch's pipeline, at the fork's commit, without secrets.
    let run = s.ended(&id);
    assert_eq!(run["status"], "Failed", "{run}");
    assert_eq!(
        s.note(&id),
        format!("base-pipeline {head} build/pkg pull_request false 217")
    );
    let stolen = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "steal")
        .unwrap();
    assert!(
        stolen["message"]
            .as_str()
            .unwrap()
            .contains("withheld from a run of an untrusted pull request"),
        "{stolen}"
    );

    // Trust the author: the pull request's own pipeline runs.
    ok(&capstan(
        &s.state,
        &[
            "repo",
            "add",
            "lstn",
            "--replace",
            "--provider",
            "github",
            "--url",
            &git_server.url("lstn.git"),
            "--api-url",
            &api,
            "--project",
            "listendev/lstn",
            "--webhook-secret",
            "hook",
            "--token",
            "api-token",
            "--trusted",
            "leodido",
        ],
    ));
    let (code, answer) = post(
        &s.hook("github"),
        &fresh_with(&headers, "redelivered-as-new"),
        &bytes,
        true,
    );
    assert_eq!(code, 201, "{answer}");
    let id = answer["runs"][0].as_str().unwrap().to_string();
    assert_eq!(s.ended(&id)["status"], "Succeeded", "{}", s.run(&id));
    assert_eq!(
        s.note(&id),
        format!("fork-pipeline {head} build/pkg pull_request true 217")
    );
    // Two runs of one pipeline: #1 and #2.
    assert_eq!(s.run(&id)["number"], 2);
}

/// GitLab: a pipeline file that does not validate is reported on the
/// commit as failed with `file:line:column` and recorded on the delivery;
/// a wrong token is refused.
#[test]
fn gitlab_invalid_pipeline_is_reported_on_the_commit() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("woodpecker.git");
    let broken = pipeline("x").replace(
        "uses: write-file@0.1",
        "uses: write-file@0.1\n      timeout: soon",
    );
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &broken)]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    let s = Setup::start(
        BIN,
        &[],
        &[
            "wp",
            "--provider",
            "gitlab",
            "--url",
            &git_server.url("woodpecker.git"),
            "--api-url",
            &api,
            "--project",
            "test/woodpecker",
        ],
    );
    let (mut body, headers) = delivery("gitlab/push_hook");
    body["checkout_sha"] = sha.clone().into();
    body["after"] = sha.clone().into();
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut wrong = headers.clone();
    wrong["X-Gitlab-Token"] = "not-the-secret".into();
    let (code, _) = post(&s.hook("gitlab"), &wrong, &bytes, false);
    assert_eq!(code, 401);
    let (code, answer) = post(&s.hook("gitlab"), &headers, &bytes, false);
    assert_eq!(code, 422, "{answer}");
    let err = answer["invalid"][0]["error"].as_str().unwrap();
    assert!(err.starts_with(".capstan/ci.yaml:12:"), "{err}");
    assert!(err.contains("timeout"), "{err}");
    let seen = statuses(&forge, 1);
    let (head, b) = &seen[0];
    let project = "test%2Fwoodpecker";
    assert!(
        head.starts_with(&format!("POST /api/v4/projects/{project}/statuses/{sha} "))
            || head.starts_with(&format!("POST /projects/{project}/statuses/{sha} ")),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("private-token: {TOKEN}")),
        "{head}"
    );
    assert_eq!(b["state"], "failed");
    assert_eq!(b["name"], "capstan/.capstan/ci.yaml");
    assert!(
        b["description"]
            .as_str()
            .unwrap()
            .starts_with(".capstan/ci.yaml:12:"),
        "{b}"
    );
    let d = s.deliveries("wp");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], 422);
    assert!(
        d[0]["outcome"]
            .as_str()
            .unwrap()
            .contains(".capstan/ci.yaml:12:"),
        "{d:?}"
    );
}

/// A forge API that is down: the run still succeeds; every failed report
/// attempt is recorded with the run.
#[test]
fn a_forge_api_that_is_down_never_fails_the_run() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("tmp.git");
    commit(work.path(), &[(".capstan/ci.yaml", &pipeline("mr"))]);
    let head = commit(work.path(), &[("README", "x")]);
    git_server.push(
        work.path(),
        &bare,
        &["main", "main:refs/merge-requests/3/head"],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let s = Setup::start(
        BIN,
        &["--status-retries", "2", "--status-backoff", "50ms"],
        &[
            "tmp",
            "--provider",
            "gitlab",
            "--url",
            &git_server.url("tmp.git"),
            "--api-url",
            &api,
            "--project",
            "demoaccount2-commits-group/test_ci_tmp",
        ],
    );
    let (mut body, headers) = delivery("gitlab/merge_request_hook-open");
    body["object_attributes"]["last_commit"]["id"] = head.clone().into();
    let (code, answer) = post(
        &s.hook("gitlab"),
        &headers,
        &serde_json::to_vec(&body).unwrap(),
        false,
    );
    assert_eq!(code, 201, "{answer}");
    let id = answer["runs"][0].as_str().unwrap().to_string();
    assert_eq!(s.ended(&id)["status"], "Succeeded");
    assert_eq!(
        s.note(&id),
        format!("mr {head} real6543-main-patch-42541 pull_request true 3")
    );
    // pending, running, success: two failed attempts each.
    let store = capstan::store::RunStore::open(&s.state).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.reports(&id).unwrap().len() < 6 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            store.reports(&id).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reports = store.reports(&id).unwrap();
    assert!(reports.iter().all(|r| !r.ok), "{reports:?}");
    let states: Vec<_> = reports
        .iter()
        .map(|r| (r.state.as_str(), r.attempt))
        .collect();
    assert_eq!(
        states,
        [
            ("pending", 1),
            ("pending", 2),
            ("running", 1),
            ("running", 2),
            ("success", 1),
            ("success", 2)
        ]
    );
    assert!(!format!("{reports:?}").contains(TOKEN));
    capstan_tests::assert_not_in_state(&s.state, TOKEN);
}
