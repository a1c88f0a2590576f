//! Kubernetes mode against a real kube-apiserver (v1.20.2 built from
//! Debian's source package, see `tests/src/kube.rs`): CRDs applied with
//! kubectl, `capstan controller` as a real child process executing
//! PipelineRuns in-process, status written back, invalid runs explained,
//! the namespace quota, and leader failover.

#[path = "kube/forge.rs"]
mod forge;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_tests::components;
use capstan_tests::kube::{Controller, KubeApi};

const CLI: &str = env!("CARGO_BIN_EXE_capstan-cli");

/// `capstan controller` on `api`'s cluster.
fn controller(api: &KubeApi, state: &Path, ns: &str, identity: &str, extra: &[&str]) -> Controller {
    Controller::start(CLI, &api.kubeconfig, state, ns, identity, extra)
}

/// `GET path` on `url` (`http://host:port`): the whole response.
fn http_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Whether the controller process holds `capstan.db` open.
fn opened_store(c: &Controller) -> bool {
    let fds = format!("/proc/{}/fd", c.child.id());
    std::fs::read_dir(fds).unwrap().flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|t| t.file_name().is_some_and(|n| n == "capstan.db"))
    })
}

/// A cluster with the CRDs installed and a namespace, plus a state dir
/// whose local registry holds the test components.
fn setup(ns: &str) -> (KubeApi, tempfile::TempDir) {
    let api = KubeApi::start();
    let crds = Command::new(CLI).arg("crds").output().unwrap();
    assert!(crds.status.success());
    api.apply(&String::from_utf8(crds.stdout).unwrap());
    // CRDs take a moment to be served.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !api.kubectl(&["get", "pipelineruns", "-A"]).status.success() {
        assert!(Instant::now() < deadline, "the CRDs were not served");
        std::thread::sleep(Duration::from_millis(200));
    }
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    let state = tempfile::tempdir().unwrap();
    publish(
        state.path(),
        &[components::ECHO, components::SLEEP, components::FAIL],
    );
    (api, state)
}

fn get(api: &KubeApi, ns: &str, name: &str) -> serde_json::Value {
    let out = api.kubectl(&["-n", ns, "get", "pipelinerun", name, "-o", "json"]);
    assert!(
        out.status.success(),
        "kubectl get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Poll a run until `done` holds for it (or fail with the controller logs).
fn wait_for(
    api: &KubeApi,
    ns: &str,
    name: &str,
    secs: u64,
    logs: &dyn Fn() -> String,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get(api, ns, name);
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach the expected state in {secs} s; object:\n{v:#}\ncontroller logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn phase(v: &serde_json::Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

fn task<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["status"]["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {v:#}"))
}

const PIPELINE: &str = r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: greet, namespace: NS }
spec:
  params: [{ name: who }]
  tasks:
    - name: hello
      uses: echo@0.1
      params: [{ name: message, value: "hello $(params.who)" }]
    - name: again
      uses: echo@0.1
      params: [{ name: message, value: "$(tasks.hello.results.message)!" }]
  results:
    - { name: greeting, value: "$(tasks.again.results.message)" }
"#;

#[test]
fn a_pipelinerun_applied_with_kubectl_runs_and_invalid_ones_are_explained() {
    let ns = "ci";
    let (api, state) = setup(ns);
    let ctl = controller(&api, state.path(), ns, "solo", &["--no-leader-election"]);
    api.apply(&PIPELINE.replace("NS", ns));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: greet-1, namespace: {ns}}}\n\
         spec:\n  pipelineRef: {{name: greet}}\n  params: [{{name: who, value: kube}}]\n"
    ));
    let logs = || {
        let runs = capstan_tests::cli(CLI, state.path(), &["runs", "list"]);
        format!(
            "{}\nruns:\n{}",
            ctl.log(),
            String::from_utf8_lossy(&runs.stdout)
        )
    };
    let v = wait_for(&api, ns, "greet-1", 60, &logs, |v| {
        matches!(phase(v), "Succeeded" | "Failed" | "Invalid")
    });
    assert_eq!(phase(&v), "Succeeded", "{v:#}\n{}", ctl.log());
    assert_eq!(v["status"]["results"]["greeting"], "hello kube!", "{v:#}");
    assert_eq!(task(&v, "hello")["status"], "Succeeded");
    assert_eq!(task(&v, "again")["results"]["message"], "hello kube!");
    assert_eq!(v["status"]["conditions"][0]["type"], "Succeeded");
    assert_eq!(v["status"]["conditions"][0]["status"], "True");
    assert_eq!(v["status"]["number"], 1, "{v:#}");
    assert_eq!(
        v["status"]["triggeredBy"], "PipelineRun ci/greet-1",
        "{v:#}"
    );
    assert!(v["status"]["startTime"].is_string() && v["status"]["duration"].is_string());
    assert!(
        v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "capstan.dev/run")),
        "{v:#}"
    );
    // The run's logs stay in the controller's store.
    let run_id = v["status"]["runId"].as_str().unwrap();
    let out = capstan_tests::cli(CLI, state.path(), &["logs", run_id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello kube"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // kubectl shows status, start and duration.
    let table = api.kubectl(&["-n", ns, "get", "pipelineruns"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("STATUS") && table.contains("STARTED") && table.contains("DURATION"),
        "{table}"
    );
    assert!(table.contains("Succeeded"), "{table}");

    // Invalid runs: a status condition that names the field; no crash loop.
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: bad-ref, namespace: {ns}}}\n\
         spec:\n  pipelineRef: {{name: no-such-pipeline}}\n"
    ));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: bad-spec, namespace: {ns}}}\n\
         spec:\n  pipelineSpec:\n    tasks:\n      - {{name: a, uses: echo@0.1, params: [{{name: message, value: x}}], runAfter: [ghost]}}\n"
    ));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: bad-uses, namespace: {ns}}}\n\
         spec:\n  pipelineSpec:\n    tasks:\n      - {{name: a, uses: /etc/passwd.wasm}}\n"
    ));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: unbound, namespace: {ns}}}\n\
         spec:\n  pipelineSpec:\n    workspaces: [{{name: log}}]\n    tasks:\n      \
         - {{name: a, uses: sleep@0.1, params: [{{name: millis, value: \"1\"}}], workspaces: [{{name: log}}]}}\n"
    ));
    for (name, want) in [
        ("bad-ref", "no Pipeline `no-such-pipeline`"),
        ("bad-spec", "ghost"),
        ("bad-uses", "registry plugin"),
        // Tekton: a workspace that is not optional must be bound.
        ("unbound", "requires workspace(s) log"),
    ] {
        let v = wait_for(&api, ns, name, 30, &logs, |v| !phase(v).is_empty());
        assert_eq!(phase(&v), "Invalid", "{v:#}");
        let c = &v["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Invalid");
        assert!(
            c["message"].as_str().unwrap().contains(want),
            "{name}: {c:#}"
        );
    }
    // The controller is still there and still works.
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: greet-2, namespace: {ns}}}\n\
         spec:\n  pipelineRef: {{name: greet}}\n  params: [{{name: who, value: again}}]\n"
    ));
    let v = wait_for(&api, ns, "greet-2", 60, &logs, |v| phase(v) == "Succeeded");
    assert_eq!(v["status"]["results"]["greeting"], "hello again!");

    // Deleting a run removes its workspaces (the finalizer) and the object.
    let ws = state.path().join("workspaces").join(run_id);
    let _ = std::fs::create_dir_all(&ws);
    let out = api.kubectl(&["-n", ns, "delete", "pipelinerun", "greet-1", "--wait=true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ws.exists(), "workspaces of a deleted run remain");
}

fn sleep_run(ns: &str, name: &str, millis: u64) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  workspaces: [{{name: log, emptyDir: {{}}}}]\n  pipelineSpec:\n    workspaces: [{{name: log}}]\n    tasks:\n      \
         - {{name: nap, uses: sleep@0.1, params: [{{name: millis, value: \"{millis}\"}}, {{name: marker, value: ran}}], \
         workspaces: [{{name: log}}]}}\n"
    )
}

#[test]
fn the_namespace_quota_queues_runs_first_come_first_served() {
    let ns = "quota";
    let (api, state) = setup(ns);
    let ctl = controller(
        &api,
        state.path(),
        ns,
        "solo",
        &["--no-leader-election", "--quota", "2"],
    );
    let logs = || ctl.log();
    for name in ["q1", "q2", "q3"] {
        api.apply(&sleep_run(ns, name, 8000));
        std::thread::sleep(Duration::from_millis(1100)); // distinct creation seconds
    }
    let v3 = wait_for(&api, ns, "q3", 30, &logs, |v| !phase(v).is_empty());
    assert_eq!(phase(&v3), "Queued", "{v3:#}");
    let msg = v3["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("quota"), "{msg}");
    let v3 = wait_for(&api, ns, "q3", 90, &logs, |v| phase(v) == "Succeeded");
    let v1 = wait_for(&api, ns, "q1", 30, &logs, |v| phase(v) == "Succeeded");
    let v2 = wait_for(&api, ns, "q2", 30, &logs, |v| phase(v) == "Succeeded");
    // q3 started only after one of the first two finished (RFC 3339 in UTC
    // sorts as time).
    let started3 = v3["status"]["startTime"].as_str().unwrap().to_string();
    let finished1 = [&v1, &v2]
        .iter()
        .map(|v| v["status"]["completionTime"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    assert!(
        started3 >= finished1,
        "q3 started {started3}, q1 finished {finished1}"
    );
}

/// Tekton's `spec.status`, patched with kubectl as a Tekton user would:
/// `CancelledRunFinally` stops the running task and runs `finally`;
/// `PipelineRunPending` holds a run until the field is removed;
/// `Cancelled` on a run that has not started ends it; a typo is Invalid.
#[test]
fn spec_status_cancels_stops_and_holds_runs() {
    let ns = "status";
    let (api, state) = setup(ns);
    let ctl = controller(&api, state.path(), ns, "solo", &["--no-leader-election"]);
    let logs = || ctl.log();
    let with_finally = |name: &str, extra: &str| {
        format!(
            "{}    finally:\n      - {{name: cleanup, uses: echo@0.1, params: [{{name: message, value: \"long=$(tasks.nap.status)\"}}]}}\n{extra}",
            sleep_run(ns, name, 60_000)
        )
    };
    api.apply(&with_finally("long", ""));
    wait_for(&api, ns, "long", 60, &logs, |v| phase(v) == "Running");
    let patch = |name: &str, body: &str| {
        let out = api.kubectl(&[
            "-n",
            ns,
            "patch",
            "pipelinerun",
            name,
            "--type",
            "merge",
            "-p",
            body,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    patch("long", r#"{"spec":{"status":"CancelledRunFinally"}}"#);
    let v = wait_for(&api, ns, "long", 30, &logs, |v| phase(v) == "Cancelled");
    assert_eq!(task(&v, "nap")["status"], "Cancelled", "{v:#}");
    assert_eq!(task(&v, "cleanup")["status"], "Succeeded", "{v:#}");

    // Held, then released.
    api.apply(&format!(
        "{}  status: PipelineRunPending\n",
        sleep_run(ns, "held", 10)
    ));
    let v = wait_for(&api, ns, "held", 30, &logs, |v| !phase(v).is_empty());
    assert_eq!(phase(&v), "Pending", "{v:#}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(phase(&get(&api, ns, "held")), "Pending");
    patch("held", r#"{"spec":{"status":null}}"#);
    wait_for(&api, ns, "held", 60, &logs, |v| phase(v) == "Succeeded");

    // Cancelled before it started; and a value that means nothing.
    api.apply(&format!(
        "{}  status: PipelineRunPending\n",
        sleep_run(ns, "never", 10)
    ));
    wait_for(&api, ns, "never", 30, &logs, |v| phase(v) == "Pending");
    patch("never", r#"{"spec":{"status":"Cancelled"}}"#);
    let v = wait_for(&api, ns, "never", 30, &logs, |v| phase(v) == "Cancelled");
    assert!(v["status"]["runId"].is_null(), "it never ran: {v:#}");
    api.apply(&format!(
        "{}  status: Canceled\n",
        sleep_run(ns, "typo", 10)
    ));
    let v = wait_for(&api, ns, "typo", 30, &logs, |v| phase(v) == "Invalid");
    let msg = v["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("`Canceled` is not one of"), "{msg}");
}

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

#[test]
fn kube_requests_are_checked_by_the_grant_and_then_by_rbac() {
    let ns = "caps";
    let (api, state) = setup(ns);
    publish(state.path(), &[components::KUBE_REQUEST]);
    // The run's ServiceAccount may create and read pods, nothing else.
    api.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: builder, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: builder, namespace: {ns}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [pods], verbs: [create, get]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: builder, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: builder}}\n\
         subjects: [{{kind: ServiceAccount, name: builder, namespace: {ns}}}]\n"
    ));
    let ctl = controller(&api, state.path(), ns, "solo", &["--no-leader-election"]);
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"built"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let cm =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sneaky"},"data":{"a":"b"}}"#;
    let step = |name: &str, resource: &str, body: &str, grant: &str| {
        format!(
            "      - name: {name}\n        uses: kube-request@0.1\n        params:\n          \
             - {{name: verb, value: create}}\n          - {{name: resource, value: {resource}}}\n          \
             - {{name: namespace, value: {ns}}}\n          - {{name: body, value: '{body}'}}\n        \
             grants:\n          kube: [{grant}]\n"
        )
    };
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: caps, namespace: {ns}}}\n\
         spec:\n  serviceAccountName: builder\n  pipelineSpec:\n    tasks:\n{}{}{}",
        step(
            "allowed",
            "pods",
            pod,
            "{verbs: [create], resources: [pods]}"
        ),
        step(
            "not-granted",
            "pods",
            pod,
            "{verbs: [get], resources: [pods]}"
        ),
        step(
            "rbac-denied",
            "configmaps",
            cm,
            "{verbs: [create], resources: [configmaps]}"
        ),
    );
    api.apply(&yaml);
    let logs = || ctl.log();
    let v = wait_for(&api, ns, "caps", 60, &logs, |v| {
        matches!(phase(v), "Succeeded" | "Failed" | "Invalid")
    });
    assert_eq!(phase(&v), "Failed", "{v:#}");
    let allowed = task(&v, "allowed");
    assert_eq!(allowed["status"], "Succeeded", "{v:#}");
    assert_eq!(allowed["results"]["status"], "201", "{v:#}");
    // Refused by the host: the grant lacks `create pods`.
    let refused = task(&v, "not-granted");
    assert_eq!(refused["status"], "Failed", "{v:#}");
    let msg = refused["message"].as_str().unwrap_or_default();
    assert!(msg.contains("denied") && msg.contains("kube"), "{msg}");
    // Granted, but the ServiceAccount's RBAC says no: the API server refuses.
    let rbac = task(&v, "rbac-denied");
    assert_eq!(rbac["status"], "Failed", "{v:#}");
    let msg = rbac["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("403") && msg.contains("system:serviceaccount:caps:builder"),
        "{msg}"
    );
    // What the cluster holds agrees.
    assert!(
        api.kubectl(&["-n", ns, "get", "pod", "built"])
            .status
            .success()
    );
    assert!(
        !api.kubectl(&["-n", ns, "get", "configmap", "sneaky"])
            .status
            .success()
    );
    // Only the host-side denial reached the task log as a denial line.
    let run_id = v["status"]["runId"].as_str().unwrap();
    let out = capstan_tests::cli(CLI, state.path(), &["logs", run_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("denied: kube create pods"), "{text}");
}

/// Secrets in cluster mode: a granted name is a Secret in the run's
/// namespace, read as the run's ServiceAccount. What its RBAC does not allow
/// the task does not get (the controller holds no Secret rights of its own);
/// names not granted are refused by the host; a revealed value is redacted
/// from the task log.
#[test]
fn cluster_secrets_come_from_the_runs_namespace_as_its_service_account() {
    let ns = "vault";
    let (api, state) = setup(ns);
    publish(state.path(), &[components::SECRET_READ]);
    api.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {ns}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: deploy-token, namespace: {ns}}}\n\
         stringData: {{value: tok-7f3a9c-deploy}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: admin-token, namespace: {ns}}}\n\
         stringData: {{value: tok-admin-000}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: deployer, namespace: {ns}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [secrets], verbs: [get], resourceNames: [deploy-token, missing-token]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: deployer, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}\n\
         subjects: [{{kind: ServiceAccount, name: deployer, namespace: {ns}}}]\n"
    ));
    let ctl = controller(&api, state.path(), ns, "solo", &["--no-leader-election"]);
    let step = |task: &str, secret: &str, grant: &str| {
        format!(
            "      - name: {task}\n        uses: secret-read@0.1\n        \
             params: [{{name: name, value: {secret}}}]\n        grants: {{secrets: [{grant}]}}\n"
        )
    };
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: secrets, namespace: {ns}}}\n\
         spec:\n  serviceAccountName: deployer\n  pipelineSpec:\n    tasks:\n{}{}{}{}",
        step(
            "granted",
            "deploy-token",
            "{name: deploy-token, reveal: true}"
        ),
        step(
            "rbac-denied",
            "admin-token",
            "{name: admin-token, reveal: true}"
        ),
        step("not-granted", "admin-token", "deploy-token"),
        step(
            "missing",
            "missing-token",
            "{name: missing-token, reveal: true}"
        ),
    );
    api.apply(&yaml);
    let logs = || ctl.log();
    let v = wait_for(&api, ns, "secrets", 60, &logs, |v| {
        matches!(phase(v), "Succeeded" | "Failed" | "Invalid")
    });
    assert_eq!(phase(&v), "Failed", "{v:#}");
    let granted = task(&v, "granted");
    assert_eq!(granted["status"], "Succeeded", "{v:#}");
    assert_eq!(granted["results"]["length"], "17", "{v:#}");
    let msg = |t: &str| {
        task(&v, t)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(task(&v, "rbac-denied")["status"], "Failed", "{v:#}");
    assert!(
        msg("rbac-denied")
            .contains("system:serviceaccount:vault:deployer may not get Secret `admin-token`"),
        "{}",
        msg("rbac-denied")
    );
    assert_eq!(task(&v, "not-granted")["status"], "Failed", "{v:#}");
    assert!(
        msg("not-granted").contains("denied: secrets `admin-token: not granted to this task`"),
        "{}",
        msg("not-granted")
    );
    assert!(
        msg("missing").contains("no Secret `missing-token` in namespace `vault`"),
        "{}",
        msg("missing")
    );
    let run_id = v["status"]["runId"].as_str().unwrap();
    let out = capstan_tests::cli(CLI, state.path(), &["logs", run_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the value is"), "{text}");
    assert!(
        !text.contains("tok-7f3a9c-deploy"),
        "a secret reached the log:\n{text}"
    );
    assert!(
        !ctl.log().contains("tok-"),
        "a secret reached the controller log"
    );
}

/// The controller's API: `capstan logs --server` with a user's kubeconfig
/// token (TokenReview), readable only where that user's RBAC allows `get
/// pipelineruns` (SubjectAccessReview); `/metrics` counts the run.
#[test]
fn the_controller_api_serves_logs_to_callers_the_cluster_allows() {
    let ns = "api";
    let (api, state) = setup(ns);
    let ctl = controller(
        &api,
        state.path(),
        ns,
        "solo",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url = ctl.api_url();
    api.apply(&PIPELINE.replace("NS", ns));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: greet-api, namespace: {ns}}}\n\
         spec:\n  pipelineRef: {{name: greet}}\n  params: [{{name: who, value: api}}]\n"
    ));
    let logs = || ctl.log();
    let v = wait_for(&api, ns, "greet-api", 60, &logs, |v| {
        phase(v) == "Succeeded"
    });
    let run_id = v["status"]["runId"].as_str().unwrap().to_string();
    // Elsewhere than the controller's volume: an empty state dir.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote_logs = |user_token: &str| {
        let kubeconfig = api.kubeconfig_for(user_token);
        capstan_tests::cli_env(
            CLI,
            elsewhere.path(),
            &["logs", &run_id, "--server", &url],
            &[("KUBECONFIG", kubeconfig.as_os_str())],
        )
    };
    // alice has no RBAC on pipelineruns yet.
    let out = remote_logs("alice-token");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403")
            && err.contains("alice may not get pipelineruns.capstan.dev in namespace `api`"),
        "{err}"
    );
    // An unknown token is not authenticated.
    let out = capstan_tests::cli_env(
        CLI,
        elsewhere.path(),
        &["logs", &run_id, "--server", &url, "--token", "forged"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // Grant alice read access in the namespace: now she sees the lines.
    api.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         rules: [{{apiGroups: [capstan.dev], resources: [pipelineruns], verbs: [get, list]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-reader}}\n\
         subjects: [{{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}]\n"
    ));
    let out = remote_logs("alice-token");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("hello api"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // bob (another user) still may not.
    assert!(!remote_logs("bob-token").status.success());
    // Metrics: no auth, Prometheus text, the run counted.
    let metrics = std::process::Command::new("curl")
        .args(["-sf", &format!("{url}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("capstan_runs_finished_total{status=\"Succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("capstan_task_attempts_total{status=\"Succeeded\"} 2"),
        "{metrics}"
    );
}

/// Approvals in Kubernetes mode: `capstan approve --server` with a user's
/// kubeconfig token, which a TokenReview maps to the user and groups; the
/// approvers list (a group here) decides. A non-approver is refused. The
/// controller is killed while the approval waits and a new one resumes the
/// run from its status; the approval made through the new one is applied.
#[test]
fn approvals_in_the_cluster_use_the_callers_kubernetes_identity() {
    let ns = "gates";
    let (api, state) = setup(ns);
    publish(state.path(), &[components::APPROVE]);
    let mut ctl = controller(
        &api,
        state.path(),
        ns,
        "first",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url = ctl.api_url();
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: gated, namespace: {ns}}}\n\
         spec:\n  pipelineSpec:\n    tasks:\n\
         \x20     - name: gate\n        uses: approve@0.1\n        params:\n\
         \x20         - {{name: approvers, value: [releasers]}}\n          - {{name: message, value: \"promote to prod?\"}}\n\
         \x20     - name: promote\n        uses: echo@0.1\n        runAfter: [gate]\n\
         \x20       params: [{{name: message, value: \"by $(tasks.gate.results.decided-by)\"}}]\n"
    ));
    let logs = || ctl.log();
    let v = wait_for(&api, ns, "gated", 60, &logs, |v| {
        v["status"]["tasks"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["name"] == "gate" && t["status"] == "Waiting")
        }) || matches!(phase(v), "Failed" | "Invalid")
    });
    assert_eq!(phase(&v), "Running", "{v:#}");
    let run_id = v["status"]["runId"].as_str().unwrap().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let approve = |url: &str, token: &str| {
        let kubeconfig = api.kubeconfig_for(token);
        capstan_tests::cli_env(
            CLI,
            elsewhere.path(),
            &[
                "approve",
                &run_id,
                "--task",
                "gate",
                "--server",
                url,
                "--comment",
                "go",
            ],
            &[("KUBECONFIG", kubeconfig.as_os_str())],
        )
    };
    let out = approve(&url, "mallory-token");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`mallory` is not an approver"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The controller goes away while the approval waits; another takes over.
    ctl.kill();
    let ctl2 = controller(
        &api,
        state.path(),
        ns,
        "second",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url2 = ctl2.api_url();
    let out = approve(&url2, "bob-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs2 = || ctl2.log();
    let v = wait_for(&api, ns, "gated", 60, &logs2, |v| {
        matches!(phase(v), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&v), "Succeeded", "{v:#}");
    assert_eq!(task(&v, "gate")["results"]["decided-by"], "bob");
    assert_eq!(task(&v, "gate")["attempts"], 1);
    assert_eq!(task(&v, "promote")["results"]["message"], "by bob");
    let show = capstan_tests::cli(CLI, state.path(), &["runs", "show", &run_id, "-o", "json"]);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let ds = show["approvals"][0]["decisions"].as_array().unwrap();
    assert_eq!(ds[0]["user"], "mallory");
    assert_eq!(ds[0]["accepted"], false);
    assert_eq!(ds[1]["user"], "bob");
    assert!(
        ds[1]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "releasers")
    );
}

#[test]
fn deploy_applies_with_kubectl_and_the_controller_is_least_privileged() {
    let api = KubeApi::start();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let out = api.kubectl(&["apply", "-k", deploy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "kubectl apply -k deploy/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = "system:serviceaccount:capstan-system:capstan-controller";
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i", "--as", sa];
        a.extend_from_slice(args);
        let out = api.kubectl(&a);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    // What it needs.
    assert!(can(&["watch", "pipelineruns.capstan.dev", "-A"]));
    assert!(can(&[
        "patch",
        "pipelineruns.capstan.dev",
        "--subresource=status",
        "-n",
        "team-a"
    ]));
    assert!(can(&["get", "pipelines.capstan.dev", "-n", "team-a"]));
    assert!(can(&["watch", "repositories.capstan.dev", "-A"]));
    assert!(can(&[
        "patch",
        "repositories.capstan.dev",
        "--subresource=status",
        "-n",
        "team-a"
    ]));
    assert!(can(&["impersonate", "serviceaccounts", "-n", "team-a"]));
    assert!(can(&["create", "tokenreviews.authentication.k8s.io"]));
    assert!(can(&[
        "create",
        "subjectaccessreviews.authorization.k8s.io"
    ]));
    assert!(can(&[
        "update",
        "leases.coordination.k8s.io",
        "-n",
        "capstan-system"
    ]));
    // What it must not have: workloads, secrets, other namespaces' leases, admin.
    for denied in [
        &["create", "pods", "-n", "team-a"][..],
        &["get", "secrets", "-n", "team-a"],
        &["update", "repositories.capstan.dev", "-n", "team-a"],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["create", "clusterrolebindings"],
        &["impersonate", "users"],
        &["*", "*"],
    ] {
        assert!(!can(denied), "the controller may {denied:?}");
    }
    let out = api.kubectl(&[
        "-n",
        "capstan-system",
        "get",
        "deployment",
        "capstan-controller",
        "-o",
        "json",
    ]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    // The API and metrics Service selects the controller's Pods.
    let out = api.kubectl(&[
        "-n",
        "capstan-system",
        "get",
        "service",
        "capstan-controller",
        "-o",
        "json",
    ]);
    let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
}

/// An apiserver with namespace `ns`, and a state dir whose local registry
/// holds `plugins` (for local `capstan run` with the kubeconfig).
fn local_setup(ns: &str, plugins: &[&str]) -> (KubeApi, tempfile::TempDir) {
    let api = KubeApi::start();
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    let state = tempfile::tempdir().unwrap();
    publish(state.path(), plugins);
    (api, state)
}

fn publish(state: &Path, plugins: &[&str]) {
    for c in plugins {
        let out = capstan_tests::cli(CLI, state, &["plugin", "publish", c]);
        assert!(
            out.status.success(),
            "publish {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `capstan run FILE -o json` with the cluster's kubeconfig: the run's JSON.
fn run_local(api: &KubeApi, state: &Path, file: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", file.to_str().unwrap(), "-o", "json"];
    args.extend_from_slice(extra);
    let out = capstan_tests::cli_env(
        CLI,
        state,
        &args,
        &[("KUBECONFIG", api.kubeconfig.as_os_str())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// A task of a run's JSON, by name.
fn task_of<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {v:#}"))
}

/// kube-deploy, run locally (`capstan run` with the kubeconfig, the kube
/// capability as the kubeconfig's user): server-side apply of manifests from
/// the workspace and a rollout wait, then `set image` and a second rollout;
/// a Deployment outside the grant's names is denied.
#[test]
fn kube_deploy_applies_sets_the_image_and_waits_for_the_rollout() {
    let ns = "deploy";
    let (api, state) = local_setup(ns, &[components::KUBE_DEPLOY]);
    let src = state.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {greeting: hi}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  \
         selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
         spec: {containers: [{name: app, image: 'nginx:1'}]}\n",
    )
    .unwrap();
    let grant = format!(
        "kube: [{{verbs: [get, patch], resources: [deployments.apps, configmaps], namespaces: [{ns}]}}]"
    );
    std::fs::write(
        state.path().join("deploy.yaml"),
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{name: deploy}}\nspec:\n  \
             workspaces: [{{name: src}}]\n  tasks:\n    \
             - name: apply\n      uses: kube-deploy@0.1\n      workspaces: [{{name: source, workspace: src}}]\n      \
             params: [{{name: namespace, value: {ns}}}, {{name: manifests, value: [app.yaml]}}, {{name: deployment, value: web}}, {{name: timeout, value: '30'}}]\n      \
             grants: {{ {grant} }}\n    \
             - name: bump\n      uses: kube-deploy@0.1\n      runAfter: [apply]\n      \
             params: [{{name: namespace, value: {ns}}}, {{name: deployment, value: web}}, {{name: container, value: app}}, {{name: image, value: 'nginx:2'}}, {{name: timeout, value: '30'}}]\n      \
             grants: {{ {grant} }}\n    \
             - name: other\n      uses: kube-deploy@0.1\n      runAfter: [apply]\n      \
             params: [{{name: namespace, value: {ns}}}, {{name: deployment, value: db}}, {{name: container, value: app}}, {{name: image, value: 'evil:1'}}]\n      \
             grants: {{ kube: [{{verbs: [get, patch], resources: [deployments.apps], namespaces: [{ns}], names: [web]}}] }}\n"
        ),
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rollouts = api.complete_rollouts(ns, "web", stop.clone());
    let src_arg = format!("src={}", src.display());
    let v = run_local(
        &api,
        state.path(),
        &state.path().join("deploy.yaml"),
        &["--workspace", &src_arg],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let completed = rollouts.join().unwrap();
    let t = |name: &str| task_of(&v, name);
    assert_eq!(t("apply")["status"], "Succeeded", "{v:#}");
    assert_eq!(
        t("apply")["results"]["applied"],
        "ConfigMap/web-config,Deployment/web"
    );
    assert_eq!(t("bump")["status"], "Succeeded", "{v:#}");
    assert_eq!(t("bump")["results"]["revision"], "2", "{v:#}");
    assert_eq!(t("other")["status"], "Failed", "{v:#}");
    assert!(
        t("other")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("denied"),
        "{v:#}"
    );
    assert!(
        completed >= 2,
        "the rollout was waited for {completed} time(s)"
    );
    let (code, body) = api.request(
        "GET",
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/web"),
        None,
        "application/json",
    );
    assert_eq!(code, 200);
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    let (code, _) = api.request(
        "GET",
        &format!("/api/v1/namespaces/{ns}/configmaps/web-config"),
        None,
        "application/json",
    );
    assert_eq!(code, 200);
}
