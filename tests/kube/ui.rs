//! The web UI in Kubernetes mode, in Chromium: people sign in with bearer
//! tokens the cluster accepts (TokenReview), see only runs of namespaces
//! where RBAC lets them get PipelineRuns (SubjectAccessReview), and decide
//! gates by the approvers list, on `capstan controller --listen`.

use capstan_tests::browser::Browser;

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_in_the_cluster_shows_what_rbac_allows_and_approves_by_group() {
    let ns = "webui";
    let (api, state) = setup(ns);
    publish(state.path(), &[components::APPROVE]);
    let ctl = controller(
        &api,
        state.path(),
        ns,
        "solo",
        &["--no-leader-election", "--listen", "127.0.0.1:0"],
    );
    let url = ctl.api_url();
    // alice (developers) and bob (releasers) may read runs here; mallory may not.
    api.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         rules: [{{apiGroups: [capstan.dev], resources: [pipelineruns], verbs: [get, list]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: run-reader, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-reader}}\n\
         subjects:\n- {{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}\n\
         - {{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}}\n"
    ));
    api.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: release, namespace: {ns}}}\n\
         spec:\n  pipelineSpec:\n    tasks:\n\
         \x20     - name: build\n        uses: echo@0.1\n        params: [{{name: message, value: built}}]\n\
         \x20     - name: gate\n        uses: approve@0.1\n        runAfter: [build]\n        params:\n\
         \x20         - {{name: approvers, value: [releasers]}}\n          - {{name: message, value: \"promote to prod?\"}}\n\
         \x20     - name: promote\n        uses: echo@0.1\n        runAfter: [gate]\n\
         \x20       params: [{{name: message, value: \"by $(tasks.gate.results.decided-by)\"}}]\n"
    ));
    let logs = || ctl.log();
    let v = wait_for(&api, ns, "release", 60, &logs, |v| {
        v["status"]["tasks"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["name"] == "gate" && t["status"] == "Waiting")
        }) || matches!(phase(v), "Failed" | "Invalid")
    });
    let run_id = v["status"]["runId"].as_str().unwrap().to_string();
    let row = format!("return !!document.querySelector('tr[data-run=\"{run_id}\"]');");

    let b = Browser::start().await;
    // mallory: signed in by the cluster, but sees nothing of this namespace.
    b.sign_in(&url, "mallory-token").await;
    assert_eq!(b.text("#user").await, "mallory");
    b.wait_for("#runs").await;
    assert_eq!(b.client.execute(&row, vec![]).await.unwrap(), false);
    b.client
        .goto(&format!("{url}/ui/runs/{run_id}"))
        .await
        .unwrap();
    let refused = b.text("p.error").await;
    assert!(
        refused.contains("mallory may not get pipelineruns.capstan.dev in namespace `webui`"),
        "{refused}"
    );
    b.client.goto(&format!("{url}/ui/approvals")).await.unwrap();
    b.wait_for("h1").await;
    let gates = b
        .client
        .execute(
            "return document.querySelectorAll('article.gate').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        gates, 0,
        "mallory sees a gate of a namespace she may not read"
    );

    // alice: reads the run and its DAG; not an approver.
    b.forget().await;
    b.sign_in(&url, "alice-token").await;
    b.until(&row, 20, "alice's runs list showing the run").await;
    b.client
        .goto(&format!("{url}/ui/runs/{run_id}"))
        .await
        .unwrap();
    b.until(
        "return document.querySelector('g.node[data-task=\"gate\"]').getAttribute('class') === 'node st-Waiting';",
        20,
        "the gate shown Waiting",
    )
    .await;
    assert!(
        b.text("dl.summary")
            .await
            .contains(&format!("PipelineRun {ns}/release"))
    );
    b.screenshot("kube-run").await;

    // bob, by his group `releasers`: approves from the inbox.
    b.forget().await;
    b.sign_in(&url, "bob-token").await;
    b.client.goto(&format!("{url}/ui/approvals")).await.unwrap();
    let gate = b
        .wait_for(&format!("article.gate[data-run='{run_id}']"))
        .await;
    assert!(
        gate.find(fantoccini::Locator::Css("p.hint")).await.is_err(),
        "bob is told he is not an approver"
    );
    gate.find(fantoccini::Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let v = wait_for(&api, ns, "release", 60, &logs, |v| {
        matches!(phase(v), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&v), "Succeeded", "{v:#}");
    assert_eq!(task(&v, "promote")["results"]["message"], "by bob");
}
