//! The webhook soak in Kubernetes mode.

use capstan_tests::forge::{TOKEN, secret};
use capstan_tests::git::GitServer;
use capstan_tests::httpd;

use super::forge::{named_until, repository};
use super::{controller, publish, setup};

/// The webhook soak in Kubernetes mode: 5 Repository resources, 200
/// deliveries (every event twice) from 16 senders at once, each one's
/// secrets read from the cluster as the Repositories' ServiceAccount.
#[test]
fn two_hundred_deliveries_across_five_repository_resources() {
    let ns = "soak";
    let (api, state) = setup(ns);
    publish(state.path(), &[capstan_tests::components::WRITE_FILE]);
    let git_server = GitServer::start(true);
    let (commits, _works) = capstan_tests::forge::soak_repositories(&git_server, 5, 20);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    // The ServiceAccount, the Secrets (and a Repository `app` of no event
    // here).
    api.apply(&repository(
        ns,
        &git_server.url("r0.git"),
        &forge.url(),
        &secret(),
        None,
    ));
    for r in 0..5 {
        api.apply(&format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: r{r}, namespace: {ns}}}\n\
             spec:\n  provider: github\n  url: {}\n  project: soak/r{r}\n  apiUrl: {}\n\
             \x20 webhookSecret: hook\n  token: api-token\n  serviceAccountName: ci\n\
             \x20 concurrency: {{limit: 2}}\n",
            git_server.url(&format!("r{r}.git")),
            forge.url()
        ));
    }
    let ctl = controller(
        &api,
        state.path(),
        ns,
        "solo",
        &[
            "--no-leader-election",
            "--listen",
            "127.0.0.1:0",
            "--status-backoff",
            "100ms",
        ],
    );
    let url = ctl.api_url();
    for r in 0..5 {
        named_until(&api, ns, &format!("r{r}"), "Ready", |v| {
            v["status"]["conditions"][0]["status"] == "True"
        });
    }
    capstan_tests::forge::soak(
        &format!("{url}/v1/hooks/github"),
        state.path(),
        &commits,
        &forge,
        2,
    );
    assert!(!ctl.log().contains(TOKEN), "the token reached the log");
}
