//! `deploy/` applied with kubectl (least privilege), and the `kube-deploy`
//! plugin against the real apiserver.

use super::*;

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
