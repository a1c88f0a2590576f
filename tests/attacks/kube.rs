//! Kubernetes attacks against a real kube-apiserver. The host's credential
//! here is the cluster admin's (local mode with an admin kubeconfig), so
//! only the grant stands between the task and the cluster: verbs,
//! resources, namespaces, names and subresources outside it, and header
//! smuggling through every string field, are all refused by the host; the
//! cluster shows nothing changed and no secret value reaches the run.

use capstan::scheduler::RunOptions;
use capstan::store::{KubeIdentity, TaskStatus};
use capstan_tests::kube::KubeApi;
use capstan_tests::{TestEnv, components};

use super::assert_task_denied;

const NS: &str = "attack";

/// (task name, component, grant, minimum tricks)
const ATTACKS: &[(&str, &str, &str, usize)] = &[
    (
        "verb",
        components::KUBE_VERB,
        "{verbs: [get, list], resources: [configmaps]}",
        8,
    ),
    (
        "resource",
        components::KUBE_RESOURCE,
        "{verbs: [get], resources: [configmaps]}",
        10,
    ),
    (
        "namespace",
        components::KUBE_NAMESPACE,
        "{verbs: [get, list], resources: [configmaps]}",
        9,
    ),
    (
        "name",
        components::KUBE_NAME,
        "{verbs: [get, update], resources: [configmaps], names: [app-config]}",
        10,
    ),
    (
        "subresource",
        components::KUBE_SUBRESOURCE,
        "{verbs: [get, create], resources: [pods]}",
        11,
    ),
    (
        "header-smuggle",
        components::KUBE_HEADER_SMUGGLE,
        "{verbs: [get, create], resources: [configmaps]}",
        9,
    ),
];

#[tokio::test]
async fn the_grant_is_all_a_task_gets_even_with_an_admin_credential() {
    let api = KubeApi::start();
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-config, namespace: {NS}}}\ndata: {{v: original}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other-config, namespace: {NS}}}\ndata: {{v: original}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: db-password, namespace: {NS}}}\nstringData: {{value: hunter2-cluster-secret}}\n"
    ));
    let env = TestEnv::new();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&api.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    // The Scheduler is owned by the env; give it the admin client.
    let mut env = env;
    env.sched.kube_client = Some(kube::Client::try_from(config).unwrap());

    let mut tasks = String::new();
    for (name, component, grant, _) in ATTACKS {
        tasks.push_str(&format!(
            "    - name: {name}\n      uses: \"{component}\"\n      params: [{{ name: arg, value: {NS} }}]\n      grants: {{ kube: [{grant}] }}\n"
        ));
    }
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: kube-attacks }}\nspec:\n  tasks:\n{tasks}  finally:\n    - name: after\n      uses: \"{{{{echo}}}}\"\n      params: [{{ name: message, value: still healthy }}]\n"
    );
    let opts = RunOptions {
        kube: Some(KubeIdentity {
            namespace: NS.into(),
            service_account: None,
        }),
        ..RunOptions::default()
    };
    let run = env.run_with(&yaml, &[], opts).await;
    assert_eq!(run.result("after", "message"), "still healthy");
    for (name, _, _, min) in ATTACKS {
        assert_eq!(
            run.status_of(name),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
        let o = run.result(name, "outcome");
        eprintln!("{name}: {o}");
        assert_task_denied(&run, name, *min);
        assert!(!o.contains("hunter2"), "{name} read the secret: {o}");
    }
    // The cluster is as it was.
    let get = |args: &[&str]| {
        let out = api.kubectl(args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for cm in ["app-config", "other-config"] {
        let v = get(&["-n", NS, "get", "configmap", cm, "-o", "jsonpath={.data}"]);
        assert_eq!(v, r#"{"v":"original"}"#, "{cm} changed");
    }
    let names = get(&["get", "configmaps", "-A", "-o", "name"]);
    assert!(
        !names.contains("planted") && !names.contains("smuggled"),
        "{names}"
    );
    assert!(
        run.log_text().contains("denied: kube"),
        "denials are logged:\n{}",
        run.log_text()
    );
    assert!(!run.log_text().contains("hunter2"));
    // Denial lines are the host's: the plugin's CR/LF show escaped, so no
    // forged line starts with a header it smuggled.
    for l in &run.logs {
        assert!(
            !l.message.contains('\n') && !l.message.contains('\r'),
            "{:?}",
            l.message
        );
    }
}
