//! The approval inbox in Chromium: a gate shows under "Waiting for others"
//! to someone who is not an approver, whose decision is refused with the
//! reason; an approver sees it under "Waiting for you", approves with a
//! comment, and the run goes on.

use capstan::store::{RunStatus, TaskStatus};
use capstan_tests::browser::Browser;
use fantoccini::Locator;

use super::Scene;

const GATED: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: release }
spec:
  tasks:
    - name: build
      uses: "{{echo}}"
      params: [{ name: message, value: built }]
    - name: gate
      uses: "{{approve}}"
      runAfter: [build]
      params:
        - { name: approvers, value: [release-team] }
        - { name: message, value: "ship 1.4 to production?" }
    - name: deploy
      uses: "{{echo}}"
      runAfter: [gate]
      params: [{ name: message, value: "approved by $(tasks.gate.results.decided-by)" }]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_and_anyone_else_is_refused() {
    let mut scene = Scene::new();
    let alice = scene.token("alice", &["release-team"]);
    let bob = scene.token("bob", &["developers"]);
    let id = scene.start_run(GATED, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !scene
        .store()
        .tasks(&id)
        .unwrap()
        .iter()
        .any(|t| t.name == "gate" && t.status == TaskStatus::Waiting)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the gate never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let b = Browser::start().await;
    // Bob: not an approver. He sees the gate among others' and is refused.
    b.sign_in(&scene.url, &bob).await;
    b.client
        .goto(&format!("{}/ui/approvals", scene.url))
        .await
        .unwrap();
    let gate = b.wait_for(&format!("article.gate[data-run='{id}']")).await;
    assert!(
        gate.text()
            .await
            .unwrap()
            .contains("ship 1.4 to production?")
    );
    let mine = b
        .client
        .execute(
            "const h = [...document.querySelectorAll('h2')].find(h => h.textContent === 'Waiting for you'); \
             return h.nextElementSibling.className;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(mine, "empty", "bob's own list is not empty");
    gate.find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refusal = b.text("#decision-error").await;
    assert!(refusal.contains("`bob` is not an approver"), "{refusal}");
    b.screenshot("approval-refused").await;
    assert_eq!(scene.store().run(&id).unwrap().status, RunStatus::Running);

    // Alice, by her group: approves with a comment.
    b.forget().await;
    b.sign_in(&scene.url, &alice).await;
    b.client
        .goto(&format!("{}/ui/approvals", scene.url))
        .await
        .unwrap();
    let gate = b.wait_for(&format!("article.gate[data-run='{id}']")).await;
    assert!(
        gate.find(Locator::Css("p.hint")).await.is_err(),
        "alice is told she is not an approver"
    );
    b.screenshot("approvals").await;
    b.assert_accessible("the approvals").await;
    gate.find(Locator::Css("textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("checked the canary")
        .await
        .unwrap();
    gate.find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Until its scheduler applies it, the gate says it is decided.
    b.until(
        &format!(
            "const g = document.querySelector(\"article.gate[data-run='{id}']\"); \
             return location.pathname === '/ui/approvals' && (!g || !!g.querySelector('.decided'));"
        ),
        15,
        "the gate shown decided",
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while scene.store().run(&id).unwrap().status != RunStatus::Succeeded {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not go on after the approval"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let decisions = scene.store().decisions(&id).unwrap();
    let accepted: Vec<_> = decisions.iter().filter(|d| d.accepted).collect();
    assert_eq!(accepted.len(), 1, "{decisions:?}");
    assert_eq!(
        (accepted[0].user.as_str(), accepted[0].comment.as_str()),
        ("alice", "checked the canary")
    );
    assert!(
        decisions.iter().any(|d| d.user == "bob" && !d.accepted),
        "bob's refusal is not recorded"
    );
    // Applied: the inbox no longer lists it.
    b.client
        .goto(&format!("{}/ui/approvals", scene.url))
        .await
        .unwrap();
    b.wait_for("h1").await;
    let left = b
        .client
        .execute(
            &format!("return document.querySelectorAll(\"article.gate[data-run='{id}']\").length;"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(left, 0);
}
