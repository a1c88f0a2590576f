//! Container steps as Pods on a real node (kubelet + containerd + runc,
//! built and installed from Debian, see `tests/src/node.rs`), executed by
//! `capstan controller` child processes: the step Pod's shape (the run's
//! ServiceAccount, no token, restricted, host-computed sub-paths, the
//! Secret by reference), its log, exit code, results and workspace files;
//! a failing step; a step past its timeout; a cancelled run; and a leader
//! killed mid-step whose successor re-attaches to the running Pod.
//!
//! The node is started once (~15 s warm) and the scenarios run side by
//! side on it, each in a namespace of its own with its own controller and
//! state directory: one test function, so the node is shared.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "node/go_service.rs"]
mod go_service;

use capstan_tests::kube::Controller;
use capstan_tests::node::{KubeNode, step_namespace, until};
use capstan_tests::podman::{IMAGE, KANIKO};

const CLI: &str = env!("CARGO_BIN_EXE_capstan-cli");
const CLAIM: &str = "capstan-workspaces";

/// `capstan controller` on the node's cluster, container steps mounting
/// the workspace claim.
fn controller(
    node: &KubeNode,
    state: &Path,
    ns: &str,
    identity: &str,
    extra: &[&str],
) -> Controller {
    let mut args = vec!["--workspace-claim", CLAIM];
    args.extend_from_slice(extra);
    Controller::start(CLI, &node.api.kubeconfig, state, ns, identity, &args)
}

/// A namespace for one scenario: the run's ServiceAccount `runner` with
/// the `capstan-step` role, the workspace claim on `state`, the script
/// plugin published in `state`'s registry.
fn scenario(node: &KubeNode, ns: &str) -> tempfile::TempDir {
    step_namespace(&node.api, ns);
    let state = tempfile::Builder::new()
        .prefix("capstan-node-state-")
        .tempdir()
        .unwrap();
    // The namespace's claim is its directory of the state volume.
    let tenant = state.path().join("tenants").join(ns);
    std::fs::create_dir_all(&tenant).unwrap();
    node.claim(ns, CLAIM, &tenant);
    for c in [
        capstan_tests::components::SCRIPT,
        capstan_tests::components::KANIKO_BUILD,
        capstan_tests::components::GIT_CLONE,
        capstan_tests::components::KUBE_DEPLOY,
    ] {
        let out = capstan_tests::cli(CLI, state.path(), &["plugin", "publish", c]);
        assert!(
            out.status.success(),
            "publish {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    state
}

fn run_yaml(ns: &str, name: &str, tasks: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  serviceAccountName: runner\n  workspaces: [{{name: src, emptyDir: {{}}}}]\n  \
         pipelineSpec:\n    workspaces: [{{name: src}}]\n    tasks:\n{tasks}"
    )
}

fn get(node: &KubeNode, ns: &str, name: &str) -> serde_json::Value {
    let out = node
        .api
        .kubectl(&["-n", ns, "get", "pipelinerun", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn phase(v: &serde_json::Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

fn task<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["status"]["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// Wait for the run to end; its object.
fn ended(node: &KubeNode, ns: &str, name: &str, logs: &dyn Fn() -> String) -> serde_json::Value {
    ended_within(node, ns, name, 120, logs)
}

fn ended_within(
    node: &KubeNode,
    ns: &str,
    name: &str,
    secs: u64,
    logs: &dyn Fn() -> String,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get(node, ns, name);
        if matches!(
            phase(&v),
            "Succeeded" | "Failed" | "Invalid" | "Cancelled" | "TimedOut"
        ) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} did not end in {secs} s: {v:#}\ncontroller:\n{}\n{}",
            logs(),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn run_log(state: &Path, run_id: &str) -> String {
    let out = capstan_tests::cli(CLI, state, &["logs", run_id]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first step Pod of run `name` in `ns`, once `ready` holds for it
/// (the run must not end first).
fn step_pod(
    node: &KubeNode,
    ns: &str,
    name: &str,
    logs: &dyn Fn() -> String,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = node.pods(ns).into_iter().find(&ready) {
            return p;
        }
        let v = get(node, ns, name);
        assert!(
            !matches!(phase(&v), "Succeeded" | "Failed" | "Cancelled"),
            "{ns}/{name} ended before its step Pod was seen: {:#}\n{}",
            v["status"],
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "no step Pod in {ns} in 90 s: {:#}\n{}\n{}",
            v["status"],
            logs(),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn running(p: &serde_json::Value) -> bool {
    p["status"]["phase"] == "Running"
}

/// A step that writes into the workspace, a result and its secret
/// variable; a second step reads the file the first one wrote; the step
/// Pod's shape is checked while it runs.
fn steps_share_the_workspace_and_pods_are_locked_down(node: &KubeNode) {
    let ns = "steps";
    let state = scenario(node, ns);
    node.api.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: step-token, namespace: {ns}}}\n\
         stringData: {{value: tok-5e1f-step}}\n"
    ));
    let ctl = controller(node, state.path(), ns, "solo", &["--no-leader-election"]);
    let tasks = format!(
        "      - name: build\n        image: {IMAGE}\n        timeout: 5m\n        \
         env: [{{name: TOKEN, secret: step-token}}]\n        results: [{{name: answer}}]\n        \
         workspaces: [{{name: source, workspace: src}}]\n        \
         caches: [{{name: deps, path: /cache/deps}}]\n        script: |\n          \
         echo kept > /cache/deps/marker\n          \
         echo \"hello from the pod $(id -u)\"\n          echo \"token=$TOKEN\"\n          \
         echo made-in-pod > $(workspaces.source.path)/made.txt\n          \
         printf 42 > $(results.answer.path)\n          sleep 2\n      \
         - name: check\n        image: {IMAGE}\n        runAfter: [build]\n        \
         workspaces: [{{name: source, workspace: src}}]\n        script: |\n          \
         grep -q made-in-pod $(workspaces.source.path)/made.txt || exit 7\n"
    );
    node.api.apply(&run_yaml(ns, "shared", &tasks));
    let pod = step_pod(node, ns, "shared", &|| ctl.log(), |_| true);
    let spec = &pod["spec"];
    assert_eq!(spec["automountServiceAccountToken"], false, "{pod:#}");
    assert_eq!(spec["serviceAccountName"], "runner", "{pod:#}");
    assert_eq!(spec["enableServiceLinks"], false, "{pod:#}");
    assert_eq!(spec["activeDeadlineSeconds"], 300, "{pod:#}");
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["metadata"]["labels"]["capstan.dev/network"], "none");
    let token = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TOKEN")
        .unwrap();
    assert!(
        token.get("value").is_none(),
        "the secret value is in the Pod spec: {token}"
    );
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "step-token");
    let subs: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["subPath"].as_str())
        .collect();
    assert!(
        subs.iter()
            .any(|s| s.starts_with("workspaces/") && s.ends_with("/src")),
        "{subs:?}"
    );
    let v = ended(node, ns, "shared", &|| ctl.log());
    assert_eq!(phase(&v), "Succeeded", "{v:#}\n{}", ctl.log());
    assert_eq!(task(&v, "build")["results"]["answer"], "42", "{v:#}");
    let run_id = v["status"]["runId"].as_str().unwrap();
    let tenant = state.path().join("tenants").join(ns);
    let made = tenant.join("workspaces").join(run_id).join("src/made.txt");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "made-in-pod\n");
    let log = run_log(state.path(), run_id);
    assert!(log.contains("hello from the pod"), "{log}");
    assert!(log.contains("token="), "{log}");
    assert!(
        !log.contains("tok-5e1f-step"),
        "a secret reached the log:\n{log}"
    );
    assert!(
        !ctl.log().contains("tok-5e1f-step"),
        "a secret reached the controller log"
    );
    // The cache is a directory on the claim, kept after the run, the
    // namespace's own.
    let caches = state.path().join("tenants").join(ns).join("caches");
    let kept = std::fs::read_dir(&caches)
        .into_iter()
        .flatten()
        .flatten()
        .any(|p| p.path().join("deps/marker").is_file());
    assert!(kept, "no cache `deps` under {}", caches.display());
    // `capstan cache list --namespace` shows the namespace's caches; a
    // namespace that is a path is refused.
    let out = capstan_tests::cli(
        CLI,
        state.path(),
        &["cache", "list", "--namespace", ns, "-o", "json"],
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(list[0]["name"], "deps", "{list}");
    let out = capstan_tests::cli(
        CLI,
        state.path(),
        &["cache", "clear", "--namespace", "../.."],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(caches.is_dir());
    until(node, 30, "step Pods deleted", || node.pods(ns).is_empty());
    assert!(
        !tenant
            .join("steps")
            .join(run_id)
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the steps' scratch directories were left"
    );
}

/// A step's exit code fails its task; a step past its timeout is ended
/// (activeDeadlineSeconds, and the task's own timeout) and its Pod deleted.
fn failures_and_timeouts(node: &KubeNode) {
    let ns = "failing";
    let state = scenario(node, ns);
    let ctl = controller(node, state.path(), ns, "solo", &["--no-leader-election"]);
    let tasks = format!(
        "      - name: exits\n        image: {IMAGE}\n        script: |\n          \
         echo about to fail\n          exit 3\n      \
         - name: sleeps\n        image: {IMAGE}\n        timeout: 3s\n        script: |\n          \
         trap '' TERM\n          sleep 120\n"
    );
    node.api.apply(&run_yaml(ns, "fails", &tasks));
    let started = Instant::now();
    let v = ended(node, ns, "fails", &|| ctl.log());
    assert_eq!(phase(&v), "Failed", "{v:#}");
    let exits = task(&v, "exits");
    assert_eq!(exits["status"], "Failed", "{v:#}");
    assert!(
        exits["message"]
            .as_str()
            .unwrap_or("")
            .contains("exited with 3"),
        "{v:#}"
    );
    assert_eq!(task(&v, "sleeps")["status"], "TimedOut", "{v:#}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    until(node, 30, "failed and timed-out step Pods deleted", || {
        node.pods(ns).is_empty()
    });
    let run_id = v["status"]["runId"].as_str().unwrap();
    let log = run_log(state.path(), run_id);
    assert!(log.contains("about to fail"), "{log}");
}

/// Cancelling a run deletes its running step Pod.
fn a_cancelled_run_deletes_its_pod(node: &KubeNode) {
    let ns = "cancel";
    let state = scenario(node, ns);
    let ctl = controller(node, state.path(), ns, "solo", &["--no-leader-election"]);
    let tasks = format!(
        "      - name: long\n        image: {IMAGE}\n        script: |\n          \
         echo started\n          sleep 300\n"
    );
    node.api.apply(&run_yaml(ns, "cancelled", &tasks));
    step_pod(node, ns, "cancelled", &|| ctl.log(), running);
    let out = node.api.kubectl(&[
        "-n",
        ns,
        "patch",
        "pipelinerun",
        "cancelled",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"status":"Cancelled"}}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = ended(node, ns, "cancelled", &|| ctl.log());
    assert_eq!(phase(&v), "Cancelled", "{v:#}");
    until(node, 30, "the cancelled run's Pod deleted", || {
        node.pods(ns).is_empty()
    });
}

/// The leader is killed while a step runs; the standby takes over and
/// re-attaches to the Pod instead of starting a second one.
fn a_new_leader_reattaches_to_the_running_pod(node: &KubeNode) {
    let ns = "failover";
    let state = scenario(node, ns);
    let lease = ["--lease-duration", "4s"];
    let mut a = controller(node, state.path(), ns, "replica-a", &lease);
    until(node, 30, "replica-a leading", || {
        a.log().contains("became the leader")
    });
    let b = controller(node, state.path(), ns, "replica-b", &lease);
    let tasks = format!(
        "      - name: slow\n        image: {IMAGE}\n        results: [{{name: done}}]\n        \
         workspaces: [{{name: source, workspace: src}}]\n        script: |\n          \
         echo run >> $(workspaces.source.path)/starts\n          sleep 8\n          \
         printf yes > $(results.done.path)\n"
    );
    node.api.apply(&run_yaml(ns, "survives", &tasks));
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.log(), b.log());
    let pod = step_pod(node, ns, "survives", &logs, running);
    let first = pod["metadata"]["name"].as_str().unwrap().to_string();
    a.kill();
    // Every Pod seen until the run ends: only the first one.
    let mut names = std::collections::BTreeSet::new();
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.log(), b.log());
    let deadline = Instant::now() + Duration::from_secs(120);
    let v = loop {
        for p in node.pods(ns) {
            names.insert(p["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        let v = get(node, ns, "survives");
        if matches!(phase(&v), "Succeeded" | "Failed") {
            break v;
        }
        assert!(Instant::now() < deadline, "no end: {v:#}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(phase(&v), "Succeeded", "{v:#}\n{}", logs());
    assert_eq!(task(&v, "slow")["results"]["done"], "yes", "{v:#}");
    assert_eq!(task(&v, "slow")["attempts"], 2, "{v:#}");
    names.remove("");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![first],
        "a second Pod was started"
    );
    let run_id = v["status"]["runId"].as_str().unwrap();
    let tenant = state.path().join("tenants").join(ns);
    let starts =
        std::fs::read_to_string(tenant.join("workspaces").join(run_id).join("src/starts")).unwrap();
    assert_eq!(starts, "run\n", "the step ran more than once");
    assert!(run_log(state.path(), run_id).contains("re-attaching to Pod"));
}

/// kaniko-build in the cluster: the executor (the stand-in of
/// tests/fixtures/kaniko-standin) runs as a step Pod on the workspace the
/// previous step wrote, with the credentials of a dockerconfigjson Secret,
/// and its digest comes back; the plugin names no volume or sub-path.
fn kaniko_builds_in_a_pod_on_the_runs_workspace(node: &KubeNode) {
    let ns = "kaniko";
    let state = scenario(node, ns);
    node.api.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: docker-config, namespace: {ns}}}\n\
         type: kubernetes.io/dockerconfigjson\n\
         stringData: {{.dockerconfigjson: '{{\"auths\":{{\"registry.example\":{{\"auth\":\"dTpw\"}}}}}}'}}\n"
    ));
    let ctl = controller(node, state.path(), ns, "solo", &["--no-leader-election"]);
    let tasks = format!(
        "      - name: source\n        image: {IMAGE}\n        \
         workspaces: [{{name: source, workspace: src}}]\n        script: |\n          \
         mkdir -p app && printf 'FROM scratch\\n' > app/Dockerfile\n      \
         - name: image\n        uses: kaniko-build@0.2\n        runAfter: [source]\n        \
         params:\n          - {{name: destination, value: registry.example/team/app}}\n          \
         - {{name: tag, value: abc123}}\n          - {{name: context, value: app}}\n          \
         - {{name: executor-image, value: \"{KANIKO}\"}}\n          \
         - {{name: docker-config-secret, value: docker-config}}\n          \
         - {{name: extra-args, value: [--no-push]}}\n        \
         workspaces: [{{name: source, workspace: src}}]\n        \
         grants:\n          container: [{{image: \"localhost/capstan-kaniko-standin:*\", network: true, secrets: [docker-config]}}]\n"
    );
    node.api.apply(&run_yaml(ns, "build", &tasks));
    let v = ended(node, ns, "build", &|| ctl.log());
    assert_eq!(
        phase(&v),
        "Succeeded",
        "{v:#}\n{}\n{}",
        ctl.log(),
        node.logs()
    );
    let image = task(&v, "image");
    assert_eq!(
        image["results"]["IMAGE_URL"],
        "registry.example/team/app:abc123"
    );
    let digest = image["results"]["IMAGE_DIGEST"].as_str().unwrap_or("");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{v:#}");
    let run_id = v["status"]["runId"].as_str().unwrap();
    let log = run_log(state.path(), run_id);
    assert!(
        log.contains("--context=dir:///workspace/source/app"),
        "{log}"
    );
    assert!(log.contains("credentials: 46 bytes"), "{log}");
    assert!(
        !log.contains("dTpw"),
        "the credentials reached the log:\n{log}"
    );
    until(node, 30, "kaniko Pods deleted", || node.pods(ns).is_empty());
}

type Scenario = fn(&KubeNode);

#[test]
fn container_steps_run_as_pods_on_a_real_node() {
    let node = KubeNode::start();
    let crds = Command::new(CLI).arg("crds").output().unwrap();
    assert!(crds.status.success());
    node.api.apply(&String::from_utf8(crds.stdout).unwrap());
    // The cluster-wide role, once: scenarios applying it side by side
    // race to create it (AlreadyExists).
    let rbac =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/steps.yaml"))
            .unwrap();
    node.api.apply(&rbac);
    until(&node, 30, "the CRDs served", || {
        node.api
            .kubectl(&["get", "pipelineruns", "-A"])
            .status
            .success()
    });
    let scenarios: [(&str, Scenario); 6] = [
        ("go-service", go_service::the_go_service_example_runs_whole),
        ("kaniko", kaniko_builds_in_a_pod_on_the_runs_workspace),
        ("steps", steps_share_the_workspace_and_pods_are_locked_down),
        ("failures", failures_and_timeouts),
        ("cancel", a_cancelled_run_deletes_its_pod),
        ("failover", a_new_leader_reattaches_to_the_running_pod),
    ];
    // CAPSTAN_NODE_ONLY=failover runs one scenario (when debugging).
    let only = std::env::var("CAPSTAN_NODE_ONLY").unwrap_or_default();
    let failed: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .filter(|(name, _)| only.is_empty() || only == *name)
            .map(|(name, f)| (name, s.spawn(|| f(&node))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(name, h)| h.join().is_err().then(|| name.to_string()))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "scenarios failed: {failed:?} (their panics are above)"
    );
}
