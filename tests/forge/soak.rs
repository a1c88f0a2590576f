//! The webhook soak: 200 deliveries across 5 repositories arriving at
//! once, every event delivered twice: exactly one run per distinct event,
//! every commit gets its final status, no repository runs more than its
//! limit at once.

use super::*;

const REPOS: usize = 5;
const EVENTS: usize = 20;
const LIMIT: i64 = 2;

#[test]
fn two_hundred_deliveries_across_five_repositories() {
    let git_server = GitServer::start(true);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    let api = forge.url();
    // Repository r's events are pushes to branches b0..b19, each its own
    // commit.
    let (commits, _works) = soak_repositories(&git_server, REPOS, EVENTS);
    let s = Setup::start(
        BIN,
        &["--status-backoff", "100ms"],
        &[
            "r0",
            "--provider",
            "github",
            "--url",
            &git_server.url("r0.git"),
            "--project",
            "soak/r0",
            "--api-url",
            &api,
            "--concurrency",
            "2",
        ],
    );
    for r in 1..REPOS {
        ok(&capstan(
            &s.state,
            &[
                "repo",
                "add",
                &format!("r{r}"),
                "--provider",
                "github",
                "--url",
                &git_server.url(&format!("r{r}.git")),
                "--project",
                &format!("soak/r{r}"),
                "--api-url",
                &api,
                "--concurrency",
                "2",
                "--webhook-secret",
                "hook",
                "--token",
                "api-token",
            ],
        ));
    }
    soak(&s.hook("github"), &s.state, &commits, &forge, LIMIT);
}
