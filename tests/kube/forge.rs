//! Webhooks in Kubernetes mode: `Repository` resources on a real
//! kube-apiserver, their Secrets read as their ServiceAccount, GitHub's own
//! push delivery (retargeted at a real `git http-backend`) posted to
//! `capstan controller --listen`, statuses to a recording forge API.

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_tests::forge::{TOKEN, commit, delivery, fresh_with, pipeline, post, secret};
use capstan_tests::git::GitServer;
use capstan_tests::httpd;
use capstan_tests::kube::{Controller, KubeApi};
use serde_json::Value;

use super::{CLI, controller, publish, setup};

/// `host:port` of an http URL.
fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// The Secrets `hook` (the webhook secret) and `api-token` (annotated with
/// the hosts it may be sent to: `hosts`, else the git server's and the
/// API's), a ServiceAccount `ci` that may read just those, and a
/// Repository `app` for GitHub's example project whose runs act as `ci`.
pub(super) fn repository(
    ns: &str,
    git_url: &str,
    api_url: &str,
    hook: &str,
    hosts: Option<&str>,
) -> String {
    let hosts = hosts.map_or_else(
        || format!("{},{}", host_of(git_url), host_of(api_url)),
        str::to_string,
    );
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: ci, namespace: {ns}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: hook, namespace: {ns}}}\nstringData: {{value: {hook}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: api-token, namespace: {ns}, annotations: {{capstan.dev/hosts: \"{hosts}\"}}}}\n\
         stringData: {{value: {TOKEN}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: ci, namespace: {ns}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [secrets], verbs: [get], resourceNames: [hook, api-token]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: ci, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ci}}\n\
         subjects: [{{kind: ServiceAccount, name: ci, namespace: {ns}}}]\n---\n\
         apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: app, namespace: {ns}}}\n\
         spec:\n  provider: github\n  url: {git_url}\n  project: woodpecker-ci/woodpecker\n  apiUrl: {api_url}\n\
         \x20 webhookSecret: hook\n  token: api-token\n  serviceAccountName: ci\n"
    )
}

fn get_repo(api: &KubeApi, ns: &str, name: &str) -> Value {
    let out = api.kubectl(&["-n", ns, "get", "repository", name, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Wait until Repository `ns/app`'s status satisfies `check`.
fn repo_until(api: &KubeApi, ns: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    named_until(api, ns, "app", what, check)
}

pub(super) fn named_until(
    api: &KubeApi,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_repo(api, ns, name);
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "Repository {ns}/{name}: not {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A namespace whose state has `plugin` published, a git server whose
/// `app.git` holds `.capstan/FILE` on main (at `sha`), a recording forge
/// API, and the Repository `app` of [`repository`].
struct Scene {
    api: KubeApi,
    state: tempfile::TempDir,
    git_server: GitServer,
    forge: httpd::Server,
    sha: String,
}

fn scene(ns: &str, plugin: &str, file: &str, text: &str) -> Scene {
    let (api, state) = setup(ns);
    publish(state.path(), &[plugin]);
    let git_server = GitServer::start(true);
    let (bare, work) = git_server.repo("app.git");
    let sha = commit(work.path(), &[(&format!(".capstan/{file}"), text)]);
    git_server.push(work.path(), &bare, &["main"]);
    let forge = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    api.apply(&repository(
        ns,
        &git_server.url("app.git"),
        &forge.url(),
        &secret(),
        None,
    ));
    Scene {
        api,
        state,
        git_server,
        forge,
        sha,
    }
}

/// `capstan runs show ID -o json` until the run ends.
fn ended(state: &Path, id: &str, log: &dyn Fn() -> String) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = capstan_tests::cli(CLI, state, &["runs", "show", id, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if ["Succeeded", "Failed", "Cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} did not end: {v}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The body and headers of GitHub's push example, moved to `sha`.
fn push(sha: &str) -> (Vec<u8>, Value) {
    let (mut body, headers) = delivery("github/push-branch");
    body["after"] = sha.into();
    (serde_json::to_vec(&body).unwrap(), headers)
}

/// A push delivered to the controller: the Repository's run executes in
/// its namespace as its ServiceAccount, the forge gets pending → pending →
/// success with the token from its Secret, and the Repository's status
/// names the delivery and the run; a redelivery starts nothing. Then the
/// same for a GitLab project.
#[test]
fn repository_resources_take_github_and_gitlab_pushes_and_run_in_their_namespace() {
    let ns = "forge-team";
    let Scene {
        api,
        state,
        git_server,
        forge,
        sha,
    } = scene(
        ns,
        capstan_tests::components::WRITE_FILE,
        "ci.yaml",
        &pipeline("main"),
    );
    let ctl = controller(
        &api,
        state.path(),
        ns,
        "solo",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url = ctl.api_url();
    let v = repo_until(&api, ns, "Ready", |v| {
        v["status"]["conditions"][0]["status"] == "True"
    });
    assert_eq!(v["status"]["project"], "woodpecker-ci/woodpecker", "{v:#}");

    let (bytes, headers) = push(&sha);
    let hook = format!("{url}/v1/hooks/github");
    let (code, answer) = post(&hook, &headers, &bytes, true);
    assert_eq!(code, 201, "{answer}\n{}", ctl.log());
    let run_id = answer["runs"][0].as_str().unwrap().to_string();
    let run = ended(state.path(), &run_id, &|| ctl.log());
    assert_eq!(run["status"], "Succeeded", "{run}\n{}", ctl.log());
    assert_eq!(run["triggered_by"]["repository"], format!("{ns}/app"));
    assert_eq!(run["trigger"]["revision"], sha.as_str());
    // It acts in the Repository's namespace, as its ServiceAccount.
    let store = capstan::store::RunStore::open(state.path()).unwrap();
    let rec = store.run(&run_id).unwrap();
    let out = &rec.spec.workspaces["out"];
    let note = std::fs::read_to_string(Path::new(out).join("trigger.txt")).unwrap();
    assert_eq!(note, format!("main {sha} main push true "));
    let kube = rec.spec.kube.as_ref().unwrap();
    assert_eq!(
        (kube.namespace.as_str(), kube.service_account.as_deref()),
        (ns, Some("ci"))
    );

    let seen = capstan_tests::forge::statuses(&forge, 3);
    let states: Vec<_> = seen.iter().map(|(_, b)| b["state"].clone()).collect();
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
        assert_eq!(b["target_url"], format!("{url}/v1/runs/{run_id}"));
    }
    let id = headers["X-GitHub-Delivery"].as_str().unwrap();
    let v = repo_until(&api, ns, "showing the delivery", |v| {
        v["status"]["lastDelivery"]["id"] == id
    });
    assert_eq!(v["status"]["lastDelivery"]["status"], 201, "{v:#}");
    assert_eq!(v["status"]["lastRun"]["id"], run_id.as_str(), "{v:#}");
    assert_eq!(v["status"]["lastRun"]["number"], 1, "{v:#}");

    // A redelivery: the first answer, nothing new.
    let (code, again) = post(&hook, &headers, &bytes, true);
    assert_eq!((code, &again["runs"]), (200, &answer["runs"]), "{again}");

    deliveries_through_the_api(&api, ns, &url, id);
    gitlab_beside(&api, ns, &state, &ctl, &git_server, &forge, &sha);
    assert!(!ctl.log().contains(TOKEN), "the token reached the log");
}

/// A GitLab project beside the GitHub repository, with the same Secrets:
/// GitLab's push example runs as well, reported with GitLab's API and
/// header.
fn gitlab_beside(
    api: &KubeApi,
    ns: &str,
    state: &tempfile::TempDir,
    ctl: &Controller,
    git_server: &GitServer,
    forge: &httpd::Server,
    sha: &str,
) {
    let url = ctl.api_url();
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: api, namespace: {ns}}}\n\
         spec:\n  provider: gitlab\n  url: {}\n  project: test/woodpecker\n  apiUrl: {}\n\
         \x20 webhookSecret: hook\n  token: api-token\n  serviceAccountName: ci\n",
        git_server.url("app.git"),
        forge.url()
    ));
    let (mut body, headers) = delivery("gitlab/push_hook");
    body["checkout_sha"] = sha.into();
    body["after"] = sha.into();
    let bytes = serde_json::to_vec(&body).unwrap();
    let hook = format!("{url}/v1/hooks/gitlab");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, answer) = loop {
        // 404 until the controller's watch has seen the new Repository.
        let (code, answer) = post(&hook, &headers, &bytes, false);
        if code != 404 || Instant::now() > deadline {
            break (code, answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 201, "{answer}\n{}", ctl.log());
    let run_id = answer["runs"][0].as_str().unwrap().to_string();
    let run = ended(state.path(), &run_id, &|| ctl.log());
    assert_eq!(run["status"], "Succeeded", "{run}");
    assert_eq!(run["triggered_by"]["repository"], format!("{ns}/api"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gitlab: Vec<_> = capstan_tests::forge::statuses(forge, 0)
            .into_iter()
            .filter(|(h, _)| h.contains("/projects/test%2Fwoodpecker/statuses/"))
            .collect();
        if gitlab.last().is_some_and(|(_, b)| b["state"] == "success") {
            for (head, _) in &gitlab {
                assert!(
                    head.to_ascii_lowercase()
                        .contains(&format!("private-token: {TOKEN}")),
                    "{head}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "{gitlab:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /v1/repos` and the Repository's deliveries through the API, for
/// whoever may get PipelineRuns in its namespace only.
fn deliveries_through_the_api(api: &KubeApi, ns: &str, url: &str, delivery: &str) {
    let get = |path: &str, token: &str| -> (u16, Value) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{url}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.trim().parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    };
    api.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         rules: [{{apiGroups: [capstan.dev], resources: [pipelineruns], verbs: [get]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-reader}}\n\
         subjects: [{{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}]\n"
    ));
    let path = format!("/v1/repos/{ns}/app/deliveries");
    let (code, list) = get(&path, "alice-token");
    assert_eq!(code, 200, "{list}");
    assert_eq!(list[0]["id"], delivery, "{list}");
    let (code, repos) = get("/v1/repos", "alice-token");
    assert_eq!(code, 200, "{repos}");
    assert_eq!(repos[0]["name"], format!("{ns}/app"), "{repos}");
    // bob may not get PipelineRuns there: refused, and nothing listed.
    let (code, e) = get(&path, "bob-token");
    assert_eq!(code, 403, "{e}");
    let (code, repos) = get("/v1/repos", "bob-token");
    assert_eq!((code, repos), (200, serde_json::json!([])));
    let (code, _) = get(&format!("/v1/repos/{ns}/..%2Fx/deliveries"), "alice-token");
    assert_eq!(code, 400);
}

/// Hostile tenants: namespace `intruder` claims the victim's project with
/// its own webhook secret, and names as its token a Secret of its
/// namespace its ServiceAccount may not read, with an API URL of its own.
/// GitHub's deliveries (signed with the victim's secret) still run in the
/// victim's namespace; the intruder's own deliveries get its Repository,
/// which cannot read the Secret, so nothing is sent to its server.
#[test]
fn a_repository_gets_only_what_its_service_account_may_read() {
    let (victim, intruder) = ("victim", "intruder");
    let Scene {
        api,
        state,
        git_server,
        forge: _forge,
        sha,
    } = scene(
        victim,
        capstan_tests::components::WRITE_FILE,
        "ci.yaml",
        &pipeline("main"),
    );
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {intruder}}}\n"
    ));
    let thief = httpd::Server::start(|_| httpd::Reply::ok("{}"));
    // The intruder's token Secret may go to the git server only; its
    // Repository would send it to the thief's API too.
    let intruder_secret = "intruder-hook-secret-0042";
    let git_host = host_of(&git_server.url("app.git"));
    api.apply(&repository(
        intruder,
        &git_server.url("app.git"),
        &thief.url(),
        intruder_secret,
        Some(&git_host),
    ));
    // And one whose token is a Secret its ServiceAccount may not read.
    api.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: deploy-key, namespace: {intruder}, \
         annotations: {{capstan.dev/hosts: \"{git_host},{}\"}}}}\nstringData: {{value: {TOKEN}}}\n---\n\
         apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: greedy, namespace: {intruder}}}\n\
         spec:\n  provider: github\n  url: {}\n  project: acme/greedy\n  apiUrl: {}\n\
         \x20 webhookSecret: hook\n  token: deploy-key\n  serviceAccountName: ci\n",
        host_of(&thief.url()),
        git_server.url("app.git"),
        thief.url()
    ));
    // Every namespace.
    let ctl = controller(
        &api,
        state.path(),
        "",
        "solo",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url = ctl.api_url();
    for ns in [victim, intruder] {
        repo_until(&api, ns, "Ready", |v| {
            v["status"]["conditions"][0]["status"] == "True"
        });
    }
    let hook = format!("{url}/v1/hooks/github");
    let (bytes, headers) = push(&sha);
    let (code, answer) = post(&hook, &headers, &bytes, true);
    assert_eq!(code, 201, "{answer}\n{}", ctl.log());
    let run_id = answer["runs"][0].as_str().unwrap();
    let run = ended(state.path(), run_id, &|| ctl.log());
    assert_eq!(run["triggered_by"]["repository"], "victim/app", "{run}");

    // Signed with the intruder's secret: its Repository, whose token may
    // not go to the thief's API.
    let signed = |id: &str, body: &[u8]| {
        let mut h = fresh_with(&headers, id);
        h["X-Hub-Signature-256"] =
            capstan::forge::verify::github_signature(intruder_secret.as_bytes(), body).into();
        h
    };
    let (code, e) = post(&hook, &signed("intruder-1", &bytes), &bytes, false);
    assert_eq!(code, 500, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "secret `api-token` may not be sent to `{}`",
            host_of(&thief.url())
        )),
        "{msg}"
    );
    // The greedy one: its ServiceAccount may not read `deploy-key`.
    let (mut greedy, _) = delivery("github/push-branch");
    greedy["repository"]["full_name"] = "acme/greedy".into();
    greedy["after"] = sha.clone().into();
    let greedy = serde_json::to_vec(&greedy).unwrap();
    let (code, e) = post(&hook, &signed("greedy-1", &greedy), &greedy, false);
    assert_eq!(code, 500, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("system:serviceaccount:intruder:ci may not get Secret `deploy-key`"),
        "{msg}"
    );
    // Signed by nobody's secret: refused.
    let mut h = fresh_with(&headers, "nobody-1");
    h["X-Hub-Signature-256"] = capstan::forge::verify::github_signature(b"guessed", &bytes).into();
    let (code, _) = post(&hook, &h, &bytes, false);
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        thief.exchanges().is_empty(),
        "the intruder's server was called: {:?}",
        thief.exchanges()
    );
    let runs = capstan_tests::cli(CLI, state.path(), &["runs", "list", "-o", "json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert!(!ctl.log().contains(TOKEN), "a secret reached the log");

    // A ServiceAccount name that would impersonate someone else: not Ready,
    // and never used.
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: sneaky, namespace: {intruder}}}\n\
         spec:\n  provider: github\n  url: {}\n  project: acme/other\n  webhookSecret: hook\n\
         \x20 serviceAccountName: \"kube-system:admin\"\n",
        git_server.url("app.git")
    ));
    let v = named_until(&api, intruder, "sneaky", "refused", |v| {
        v["status"]["conditions"][0]["status"] == "False"
    });
    let msg = v["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("serviceAccountName: `kube-system:admin`"),
        "{msg}"
    );
    let (mut other, _) = delivery("github/push-branch");
    other["repository"]["full_name"] = "acme/other".into();
    let (code, e) = post(
        &hook,
        &fresh_with(&headers, "sneaky-1"),
        &serde_json::to_vec(&other).unwrap(),
        true,
    );
    assert_eq!(code, 404, "{e}");
}

/// A pipeline of three sleeps, each marking its workspace.
const SLEEPS: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: long }
spec:
  workspaces: [{ name: log }]
  tasks:
    - { name: first, uses: sleep@0.1, params: [{ name: millis, value: "10" }, { name: marker, value: first }], workspaces: [{ name: log }] }
    - { name: second, runAfter: [first], uses: sleep@0.1, params: [{ name: millis, value: "6000" }, { name: marker, value: second }], workspaces: [{ name: log }] }
    - { name: third, runAfter: [second], uses: sleep@0.1, params: [{ name: millis, value: "10" }, { name: marker, value: third }], workspaces: [{ name: log }] }
"#;

/// The leader is SIGKILLed while a webhook's run executes: the standby
/// that takes over resumes it (its first task does not run again) and
/// reports its end on the commit.
#[test]
fn a_webhook_run_survives_the_leaders_death() {
    let ns = "forge-ha";
    let Scene {
        api,
        state,
        git_server: _git_server,
        forge,
        sha,
    } = scene(ns, capstan_tests::components::SLEEP, "long.yaml", SLEEPS);
    let lease = ["--lease-duration", "4s", "--listen", "127.0.0.1:0"];
    let mut a = controller(&api, state.path(), ns, "replica-a", &lease);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.log().contains("became the leader") {
        assert!(Instant::now() < deadline, "no leader:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = controller(&api, state.path(), ns, "replica-b", &lease);
    let (bytes, headers) = push(&sha);
    let a_hook = format!("{}/v1/hooks/github", a.api_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, answer) = loop {
        // 503 until the leader has its Repositories listed.
        let (code, answer) = post(&a_hook, &headers, &bytes, true);
        if code != 503 || Instant::now() > deadline {
            break (code, answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 201, "{answer}\n{}", a.log());
    let run_id = answer["runs"][0].as_str().unwrap().to_string();
    let store = capstan::store::RunStore::open(state.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .tasks(&run_id)
        .unwrap()
        .iter()
        .any(|t| t.name == "second" && t.status == capstan::store::TaskStatus::Running)
    {
        assert!(Instant::now() < deadline, "second never ran:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill();
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.log(), b.log());
    let run = ended(state.path(), &run_id, &logs);
    assert_eq!(run["status"], "Succeeded", "{run}\n{}", logs());
    let first = store.run(&run_id).unwrap().spec.workspaces["log"].clone();
    let marks = std::fs::read_to_string(Path::new(&first).join("first")).unwrap();
    assert_eq!(marks.lines().count(), 1, "first ran again: {marks}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<String> = capstan_tests::forge::statuses(&forge, 0)
            .iter()
            .map(|(_, b)| format!("{} {}", b["state"], b["description"]))
            .collect();
        if seen.last().is_some_and(|s| s.starts_with("\"success\"")) {
            assert!(
                seen.iter().any(|s| s.contains("resuming after a restart")),
                "{seen:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}
