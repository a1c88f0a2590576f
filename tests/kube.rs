//! Kubernetes mode against a real kube-apiserver (v1.20.2 built from
//! Debian's source package, see `tests/src/kube.rs`): CRDs applied with
//! kubectl, `capstan controller` as a real child process executing
//! PipelineRuns in-process, status written back, invalid runs explained,
//! the namespace quota, and leader failover.

#[path = "kube/access.rs"]
mod access;
#[path = "kube/deploy.rs"]
mod deploy;
#[path = "kube/forge.rs"]
mod forge;
#[path = "kube/forge_soak.rs"]
mod forge_soak;
#[path = "kube/ha.rs"]
mod ha;
#[path = "kube/ui.rs"]
mod ui;

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
