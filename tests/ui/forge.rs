//! Triggers in the browser: GitHub's real push delivery (retargeted at a
//! `git http-backend` on 127.0.0.1 and signed again) starts a run; the runs
//! list filtered to webhook runs shows it, its page says what started it
//! and links to the commit, and the repositories page shows the delivery
//! and the run it started.

use capstan_tests::browser::Browser;
use capstan_tests::forge::{Setup, commit, delivery, pipeline, post};
use capstan_tests::git::GitServer;
use capstan_tests::httpd;

use super::CLI;

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_run_shows_its_trigger_commit_and_delivery() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("app.git");
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &pipeline("main"))]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    let s = Setup::start(
        CLI,
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
    let (code, answer) = post(
        &s.hook("github"),
        &headers,
        &serde_json::to_vec(&body).unwrap(),
        true,
    );
    assert_eq!(code, 201, "{answer}");
    let run_id = answer["runs"][0].as_str().unwrap().to_string();
    s.ended(&run_id);

    let out = capstan_tests::cli(CLI, &s.state, &["token", "add", "alice", "-o", "json"]);
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = Browser::start().await;
    b.sign_in(&s.url, token["token"].as_str().unwrap()).await;

    b.client
        .goto(&format!("{}/ui/runs?trigger=webhook&branch=main", s.url))
        .await
        .unwrap();
    b.until(
        &format!("return !!document.querySelector('tr[data-run=\"{run_id}\"]');"),
        10,
        "the webhook run in the filtered list",
    )
    .await;
    b.client
        .goto(&format!("{}/ui/runs?trigger=schedule", s.url))
        .await
        .unwrap();
    b.wait_for("#runs").await;
    let rows = b
        .client
        .execute(
            "return document.querySelectorAll('#runs tbody tr').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows, 0, "a webhook run listed under schedules");

    b.client
        .goto(&format!("{}/ui/runs/{run_id}", s.url))
        .await
        .unwrap();
    let summary = b.text("dl.summary").await;
    assert!(summary.contains("github push of app"), "{summary}");
    assert!(summary.contains(&sha[..12]), "{summary}");
    let link = b
        .client
        .execute(
            "return [...document.querySelectorAll('dl.summary a')].map(a => a.href);",
            vec![],
        )
        .await
        .unwrap();
    let url = body["head_commit"]["url"]
        .as_str()
        .or(body["compare"].as_str())
        .unwrap_or_default();
    assert!(
        link.as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().is_some_and(|h| h.starts_with("https://"))),
        "{link} (payload url {url})"
    );

    b.client.goto(&format!("{}/ui/repos", s.url)).await.unwrap();
    let repo = b.text("section.repo").await;
    assert!(
        repo.contains("woodpecker-ci/woodpecker") && repo.contains("push"),
        "{repo}"
    );
    let runs = b
        .client
        .execute(
            "return [...document.querySelectorAll('section.repo td a')].map(a => a.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r == run_id.as_str()),
        "{runs}"
    );
    b.screenshot("repos").await;
}
