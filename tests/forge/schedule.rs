//! Repository schedules across a restart of the server.

use std::time::{Duration, Instant};

use super::*;

/// Schedules after a restart: a time missed within the starting deadline
/// runs once (the latest missed), one missed long ago only records why.
#[test]
fn missed_schedules_run_once_within_their_deadline() {
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("nightly.git");
    let sha = commit(work.path(), &[(".capstan/ci.yaml", &pipeline("nightly"))]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    // Configured, then the server "was down" for two hours.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    ok(&capstan(
        &state,
        &[
            "repo",
            "add",
            "nightly",
            "--provider",
            "gitlab",
            "--url",
            &git_server.url("nightly.git"),
            "--api-url",
            &api,
            "--webhook-secret",
            "hook",
            "--token",
            "api-token",
            "--schedule",
            "every-5=*/5 * * * *",
            "--schedule",
            "new-year=0 0 1 1 *",
            "--time-zone",
            "Europe/Berlin",
        ],
    ));
    let store = capstan::store::RunStore::open(&state).unwrap();
    let two_hours_ago = capstan::store::now_us() - 2 * 3600 * 1_000_000;
    store
        .set_schedule_last("nightly", "every-5", two_hours_ago)
        .unwrap();
    store
        .set_schedule_last(
            "nightly",
            "new-year",
            capstan::store::now_us() - 400 * 24 * 3600 * 1_000_000,
        )
        .unwrap();
    drop(store);
    let s = Setup::start_in(BIN, dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = s.deliveries("nightly");
        if d.len() == 2 && d.iter().all(|d| d["state"] == "done") {
            break d;
        }
        assert!(Instant::now() < deadline, "{d:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let every5 = d.iter().find(|d| d["event"] == "schedule/every-5").unwrap();
    assert_eq!(every5["status"], 201, "{every5}");
    assert!(
        every5["outcome"]
            .as_str()
            .unwrap()
            .contains("the latest of"),
        "{every5}"
    );
    let id = every5["runs"][0].as_str().unwrap();
    let run = s.ended(id);
    assert_eq!(run["status"], "Succeeded");
    assert_eq!(run["triggered_by"]["kind"], "schedule");
    assert_eq!(run["triggered_by"]["cron"], "*/5 * * * *");
    assert_eq!(s.note(id), format!("nightly {sha} main schedule true "));
    let new_year = d
        .iter()
        .find(|d| d["event"] == "schedule/new-year")
        .unwrap();
    assert!(new_year["runs"].as_array().unwrap().is_empty());
    assert!(
        new_year["outcome"]
            .as_str()
            .unwrap()
            .contains("startingDeadline"),
        "{new_year}"
    );
    // One run in all: the next check fires nothing new.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ok(&capstan(&s.state, &["runs", "list", "-o", "json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
