//! Leader election in Kubernetes mode: a standby takes over a run without
//! re-running its finished tasks, and the controller SIGKILLed again and
//! again loses nothing.

use super::*;

#[test]
fn a_standby_takes_over_and_finishes_the_run_without_rerunning_tasks() {
    let ns = "ha";
    let (api, state) = setup(ns);
    let lease = ["--lease-duration", "4s", "--listen", "127.0.0.1:0"];
    let mut a = controller(&api, state.path(), ns, "replica-a", &lease);
    // Let replica-a take the lease first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.log().contains("became the leader") {
        assert!(Instant::now() < deadline, "no leader:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = controller(&api, state.path(), ns, "replica-b", &lease);
    // The standby is alive but not ready, serves no API, and has not
    // opened the run store (SQLite on a shared volume is the leader's).
    let b_url = b.api_url();
    assert!(http_get(&b_url, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(&b_url, "/readyz").starts_with("HTTP/1.1 503"));
    let standby = http_get(&b_url, "/v1/runs");
    assert!(
        standby.starts_with("HTTP/1.1 503") && standby.contains("standby"),
        "{standby}"
    );
    assert!(!opened_store(&b), "the standby opened capstan.db");
    assert!(opened_store(&a), "the leader has the store open");
    // Ready once it leads and has its Repositories listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http_get(&a.api_url(), "/readyz");
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "{ready}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(http_get(&a.api_url(), "/v1/runs").starts_with("HTTP/1.1 401"));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: long, namespace: {ns}}}\n\
         spec:\n  workspaces: [{{name: log, emptyDir: {{}}}}]\n  pipelineSpec:\n    workspaces: [{{name: log}}]\n    tasks:\n      \
         - {{name: first, uses: sleep@0.1, params: [{{name: millis, value: \"10\"}}, {{name: marker, value: first}}], workspaces: [{{name: log}}]}}\n      \
         - {{name: second, uses: sleep@0.1, runAfter: [first], params: [{{name: millis, value: \"8000\"}}, {{name: marker, value: second}}], workspaces: [{{name: log}}]}}\n      \
         - {{name: third, uses: sleep@0.1, runAfter: [second], params: [{{name: millis, value: \"10\"}}, {{name: marker, value: third}}], workspaces: [{{name: log}}]}}\n"
    ));
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.log(), b.log());
    let v = wait_for(&api, ns, "long", 60, &logs, |v| {
        v["status"]["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == "second"))
            .is_some_and(|t| t["status"] == "Running")
    });
    assert_eq!(task(&v, "first")["status"], "Succeeded");
    a.kill(); // SIGKILL: no lease release, no status update.
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.log(), b.log());
    let v = wait_for(&api, ns, "long", 90, &logs, |v| {
        matches!(phase(v), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&v), "Succeeded", "{v:#}\n{}", logs());
    assert!(b.log().contains("became the leader"), "{}", b.log());
    // The new leader opened the store and serves the API.
    assert!(opened_store(&b));
    assert!(http_get(&b_url, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(http_get(&b_url, "/v1/runs").starts_with("HTTP/1.1 401"));
    assert!(b.log().contains("resuming"), "{}", b.log());
    // `first` ran once; `second` was interrupted and ran again; `third` once.
    assert_eq!(task(&v, "first")["attempts"], 1, "{v:#}");
    let run_id = v["status"]["runId"].as_str().unwrap();
    let marks_at = state
        .path()
        .join("workspaces")
        .join(run_id)
        .join("log")
        .join("first");
    let marks = std::fs::read_to_string(&marks_at).unwrap_or_else(|e| {
        let ls = Command::new("find").arg(state.path()).output().unwrap();
        panic!(
            "{}: {e}; the state directory:\n{}",
            marks_at.display(),
            String::from_utf8_lossy(&ls.stdout)
        )
    });
    assert_eq!(
        marks.lines().count(),
        1,
        "first ran more than once: {marks}"
    );
}

/// Kill -9 soak in Kubernetes mode: PipelineRuns of sleep chains; the
/// controller is SIGKILLed at random moments and started again. Every run
/// ends Succeeded, and no task's plugin ran after the store recorded its
/// success (marker lines, frozen at each kill, never grow). Short in CI (6
/// runs, 4 kills); the long version sets `CAPSTAN_KUBE_SOAK_RUNS`,
/// `CAPSTAN_KUBE_SOAK_KILLS` and `CAPSTAN_KUBE_SOAK_MAX_DELAY_MS`
/// (docs/RELIABILITY.md).
#[test]
fn controller_sigkilled_repeatedly_loses_nothing_and_reruns_nothing() {
    use capstan::store::{RunStore, TaskStatus};
    use std::collections::BTreeMap;
    let knob = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = knob("CAPSTAN_KUBE_SOAK_RUNS", 6);
    let mut kill_target = knob("CAPSTAN_KUBE_SOAK_KILLS", 4);
    // How long after a life's first new success the kill may come.
    let max_delay = knob("CAPSTAN_KUBE_SOAK_MAX_DELAY_MS", 300).max(1);
    let ns = "soak";
    let (api, state) = setup(ns);
    for i in 0..runs {
        let ms = 150 + 40 * (i % 8);
        api.apply(&format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: s{i}, namespace: {ns}}}\n\
             spec:\n  workspaces: [{{name: log, emptyDir: {{}}}}]\n  pipelineSpec:\n    workspaces: [{{name: log}}]\n    tasks:\n{}",
            ["a", "b", "c", "d"]
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    let after = if k == 0 { String::new() } else { format!(", runAfter: [{}]", ["a", "b", "c"][k - 1]) };
                    format!(
                        "      - {{name: {t}, uses: sleep@0.1{after}, params: [{{name: millis, value: \"{ms}\"}}, \
                         {{name: marker, value: runs.txt}}], workspaces: [{{name: log}}]}}\n"
                    )
                })
                .collect::<String>()
        ));
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let marks = |run: &str| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        let p = state
            .path()
            .join("workspaces")
            .join(run)
            .join("log/runs.txt");
        for l in std::fs::read_to_string(p).unwrap_or_default().lines() {
            if let Some((t, _)) = l.split_once(" attempt ") {
                *m.entry(t.to_string()).or_default() += 1;
            }
        }
        m
    };
    let mut frozen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut kills = 0;
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120 + 10 * kill_target + 5 * runs);
    loop {
        let mut ctl = controller(
            &api,
            state.path(),
            ns,
            &format!("life-{kills}"),
            &["--no-leader-election"],
        );
        if kills < kill_target {
            // Kill once this life has made progress (another task
            // succeeded), at a random moment after that.
            let succeeded = || {
                RunStore::open(state.path())
                    .and_then(|st| {
                        let mut n = 0;
                        for r in st.list_runs(100)? {
                            n += st
                                .tasks(&r.id)?
                                .iter()
                                .filter(|t| t.status == TaskStatus::Succeeded)
                                .count();
                        }
                        Ok(n)
                    })
                    .unwrap_or(0)
            };
            let before = succeeded();
            let total = (runs * 4) as usize;
            if before >= total {
                // Everything finished before the kills ran out (a long
                // version with too little work): go to the last life.
                eprintln!("kube soak: all tasks done after {kills} kills");
                ctl.kill();
                kill_target = kills;
                continue;
            }
            while succeeded() <= before {
                assert!(Instant::now() < deadline, "no progress:\n{}", ctl.log());
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(rng.u64(0..max_delay)));
            ctl.kill();
            kills += 1;
            eprintln!(
                "kube soak: kill {kills} at {:.1} s, {} task successes so far",
                started.elapsed().as_secs_f64(),
                succeeded()
            );
            // Dead scheduler: freeze what the store says succeeded.
            let store = RunStore::open(state.path()).unwrap();
            for r in store.list_runs(100).unwrap() {
                let m = marks(&r.id);
                for t in store.tasks(&r.id).unwrap() {
                    if t.status == TaskStatus::Succeeded {
                        frozen
                            .entry((r.id.clone(), t.name.clone()))
                            .or_insert_with(|| m.get(&t.name).copied().unwrap_or(0));
                    }
                }
            }
            continue;
        }
        // The last life runs everything to the end.
        let all_done = || (0..runs).all(|i| phase(&get(&api, ns, &format!("s{i}"))) == "Succeeded");
        while !all_done() {
            assert!(
                Instant::now() < deadline,
                "runs did not finish:\n{}",
                ctl.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        break;
    }
    assert!(!frozen.is_empty(), "no task had succeeded at any kill");
    for ((run, t), n) in &frozen {
        let now = marks(run).get(t).copied().unwrap_or(0);
        assert_eq!(
            now, *n,
            "run {run}: task {t} ran again after its success was recorded"
        );
    }
    for i in 0..runs {
        let v = get(&api, ns, &format!("s{i}"));
        for t in ["a", "b", "c", "d"] {
            assert_eq!(task(&v, t)["status"], "Succeeded", "{v:#}");
        }
    }
    eprintln!(
        "kube soak: {runs} runs x 4 tasks, {kills} SIGKILLs, {} task successes frozen at kills and \
         never re-run, every run Succeeded",
        frozen.len()
    );
}
