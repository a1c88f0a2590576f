//! Who may do what in the cluster: kube requests checked by the grant and
//! by RBAC, Secrets read as the run's ServiceAccount, the API's callers
//! checked by TokenReview and SubjectAccessReview, approvals by their
//! Kubernetes identity.

use super::*;

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
    // mallory may not read the run either: refused as the read check
    // refuses, and nothing is recorded.
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("mallory may not get pipelineruns.capstan.dev in namespace `gates`"),
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
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0]["user"], "bob");
    assert!(
        ds[0]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "releasers")
    );
}
