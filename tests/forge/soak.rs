//! The webhook soak: 200 deliveries across 5 repositories arriving at
//! once, every event delivered twice: exactly one run per distinct event,
//! every commit gets its final status, no repository runs more than its
//! limit at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

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
    let mut commits: Vec<Vec<String>> = Vec::new();
    let mut _works = Vec::new();
    for r in 0..REPOS {
        let (bare, work) = git_server.repo(&format!("r{r}.git"));
        let mut shas = Vec::new();
        commit(
            work.path(),
            &[(".capstan/ci.yaml", &pipeline(&format!("r{r}")))],
        );
        for e in 0..EVENTS {
            git(
                work.path(),
                &["checkout", "-q", "-b", &format!("b{e}"), "main"],
            );
            shas.push(commit(work.path(), &[("EVENT", &e.to_string())]));
            git_server.push(work.path(), &bare, &[&format!("b{e}")]);
        }
        git_server.push(work.path(), &bare, &["main"]);
        commits.push(shas);
        _works.push(work);
    }
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
    let (body, headers) = delivery("github/push-branch");
    let mut deliveries = Vec::new();
    for (r, shas) in commits.iter().enumerate() {
        for (e, sha) in shas.iter().enumerate() {
            let mut b = body.clone();
            b["after"] = sha.clone().into();
            b["ref"] = format!("refs/heads/b{e}").into();
            b["repository"]["full_name"] = format!("soak/r{r}").into();
            let h = fresh_with(&headers, &format!("soak-{r}-{e}"));
            let bytes = serde_json::to_vec(&b).unwrap();
            deliveries.push((h.clone(), bytes.clone()));
            deliveries.push((h, bytes));
        }
    }
    // Mixed: a redelivery may arrive before, with or after its original.
    fastrand::seed(18);
    fastrand::shuffle(&mut deliveries);
    let hook = s.hook("github");
    let answers = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((h, b)) = deliveries.get(i) else {
                        break;
                    };
                    let (code, v) = post(&hook, h, b, true);
                    answers.lock().unwrap().push((
                        h["X-GitHub-Delivery"].as_str().unwrap().to_string(),
                        code,
                        v,
                    ));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), 2 * REPOS * EVENTS);
    for (id, code, v) in &answers {
        assert!([200, 201, 202].contains(code), "{id}: {code} {v}");
    }
    // Exactly one run per distinct event.
    let store = capstan::store::RunStore::open(&s.state).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let runs = loop {
        let runs = store.list_runs(1000).unwrap();
        let done = runs.iter().filter(|r| r.status.is_terminal()).count();
        if runs.len() >= REPOS * EVENTS && done == runs.len() {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs, {done} ended",
            runs.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(runs.len(), REPOS * EVENTS);
    let mut per_event = BTreeSet::new();
    for r in &runs {
        assert_eq!(r.status.as_str(), "Succeeded", "{}: {:?}", r.id, r.message);
        assert!(
            per_event.insert(r.spec.trigger["delivery"].clone()),
            "two runs of {}",
            r.spec.trigger["delivery"]
        );
    }
    // No repository ran more than its limit at once.
    let mut by_repo: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in &runs {
        by_repo
            .entry(r.spec.trigger["repository"].clone())
            .or_default()
            .push((r.started_at.unwrap(), r.finished_at.unwrap()));
    }
    for (repo, spans) in by_repo {
        let mut edges: Vec<(i64, i64)> = spans
            .iter()
            .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
            .collect();
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, d) in edges {
            now += d;
            most = most.max(now);
        }
        assert!(most <= LIMIT, "{repo}: {most} runs at once");
    }
    // Every commit's final status is success.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let finals: BTreeSet<String> = forge
            .exchanges()
            .iter()
            .filter(|(_, b)| b.contains("\"success\""))
            .filter_map(|(h, _)| h.split_whitespace().nth(1).map(str::to_string))
            .collect();
        if finals.len() == REPOS * EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} commits have their final status",
            finals.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
