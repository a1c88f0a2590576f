//! Sign in, the runs list, a run's DAG changing while it runs, a log
//! followed live, cancel, and re-run — in Chromium.

use std::time::Duration;

use capstan::store::RunStatus;
use capstan_tests::browser::Browser;
use fantoccini::Locator;

use super::Scene;

pub const WEB: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: web }
spec:
  params:
    - { name: millis, default: "4000" }
  tasks:
    - name: prepare
      uses: "{{echo}}"
      params: [{ name: message, value: ready }]
    - name: slow
      uses: "{{sleep}}"
      runAfter: [prepare]
      params:
        - { name: millis, value: $(params.millis) }
        - { name: ticks, value: "8" }
    - name: test
      uses: "{{echo}}"
      runAfter: [prepare]
      matrix:
        params: [{ name: message, value: [unit, integration, e2e] }]
    - name: package
      uses: "{{echo}}"
      runAfter: [slow, test]
      params: [{ name: message, value: packaged }]
  finally:
    - name: report
      uses: "{{echo}}"
      params: [{ name: message, value: done }]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_followed_live_then_cancelled_and_re_run() {
    let mut scene = Scene::new();
    let token = scene.token("alice", &[]);
    let b = Browser::start().await;
    b.sign_in(&scene.url, &token).await;
    assert_eq!(b.text("#user").await, "alice");

    let id = scene.start_run(super::flows::WEB, &[]);
    // The runs list shows it (the first page refreshes itself).
    b.until(
        &format!("return !!document.querySelector('tr[data-run=\"{id}\"]');"),
        20,
        "the new run in the runs list",
    )
    .await;
    b.screenshot("runs").await;
    b.assert_accessible("the runs list").await;

    // Its page: every task in the DAG, matrix children boxed, finally apart.
    b.client
        .goto(&format!("{}/ui/runs/{id}", scene.url))
        .await
        .unwrap();
    b.wait_for("svg.dag").await;
    let nodes = b
        .client
        .find_all(Locator::Css("svg.dag g.node"))
        .await
        .unwrap();
    assert_eq!(nodes.len(), 7, "prepare, slow, test x3, package, report");
    assert_eq!(
        b.client
            .find_all(Locator::Css("svg.dag rect.matrix"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        b.client
            .find_all(Locator::Css("svg.dag .edges path"))
            .await
            .unwrap()
            .len(),
        8
    );
    assert!(b.text("svg.dag").await.contains("finally"));
    // Statuses change in place while it runs: slow runs, then package succeeds.
    b.until(
        "return document.querySelector('g.node[data-task=\"slow\"]').getAttribute('class') === 'node st-Running';",
        20,
        "slow shown Running",
    )
    .await;
    b.screenshot("run-running").await;
    b.assert_accessible("a run").await;

    // The log of `slow`, followed live: ticks arrive after the page loaded.
    b.client
        .goto(&format!("{}/ui/runs/{id}/logs?task=slow", scene.url))
        .await
        .unwrap();
    let at_load: usize = b
        .client
        .execute(
            "return document.querySelectorAll('#log .line').length;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    b.until(
        "return [...document.querySelectorAll('#log .line')].some(l => l.textContent.includes('tick 8 of 8'));",
        30,
        "the last tick streamed into the log",
    )
    .await;
    b.until(
        "return document.getElementById('log-state').dataset.done === '1';",
        30,
        "the stream's end",
    )
    .await;
    let lines: Vec<String> = serde_json::from_value(
        b.client
            .execute(
                "return [...document.querySelectorAll('#log .line')].map(l => l.textContent);",
                vec![],
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        lines.len() > at_load,
        "no line arrived live ({at_load} at load)"
    );
    // Every line once, in order.
    let ticks: Vec<&String> = lines.iter().filter(|l| l.contains("tick ")).collect();
    assert_eq!(ticks.len(), 8, "{lines:#?}");
    // Search hides what does not match.
    b.wait_for("#log-search")
        .await
        .send_keys("tick 3")
        .await
        .unwrap();
    b.until(
        "return [...document.querySelectorAll('#log .line')].filter(l => !l.hidden).length === 1;",
        5,
        "search narrowing the log to one line",
    )
    .await;
    b.screenshot("logs").await;
    b.assert_accessible("a log").await;

    // Back on the run page: it ends Succeeded, every node coloured so.
    b.client
        .goto(&format!("{}/ui/runs/{id}", scene.url))
        .await
        .unwrap();
    b.until(
        "const r = document.getElementById('run'); return r && r.dataset.status === 'Succeeded';",
        30,
        "the run page showing Succeeded",
    )
    .await;
    b.until(
        "return document.querySelector('g.node[data-task=\"package\"]').getAttribute('class') === 'node st-Succeeded';",
        10,
        "package shown Succeeded",
    )
    .await;
    b.screenshot("run").await;

    // Re-run it from its page: a new run, executed by the server.
    b.wait_for("form[action$='/rerun'] button")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        &format!("return location.pathname.startsWith('/ui/runs/') && !location.pathname.endsWith('{id}');"),
        10,
        "the re-run's page",
    )
    .await;
    let rerun = b
        .client
        .current_url()
        .await
        .unwrap()
        .path()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    b.until(
        "const r = document.getElementById('run'); return r && r.dataset.status === 'Succeeded';",
        40,
        "the re-run succeeding",
    )
    .await;
    assert_eq!(
        scene.store().run(&rerun).unwrap().spec.rerun_of.as_deref(),
        Some(id.as_str())
    );

    // Cancel a long run from its page.
    let long = scene.start_run(super::flows::WEB, &["millis=120000"]);
    b.client
        .goto(&format!("{}/ui/runs/{long}", scene.url))
        .await
        .unwrap();
    b.until(
        "return document.querySelector('g.node[data-task=\"slow\"]').getAttribute('class') === 'node st-Running';",
        20,
        "the long run's slow task running",
    )
    .await;
    b.wait_for("form[action$='/cancel'] button")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "const r = document.getElementById('run'); return r && r.dataset.status === 'Cancelled';",
        30,
        "the cancelled run's page",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scene.store().run(&long).unwrap().status != RunStatus::Cancelled {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never said Cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 10,000 runs: the list pages through them by cursor, newest first, with
/// nothing repeated or skipped across pages.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_runs_page_by_cursor() {
    let scene = Scene::new();
    let token = scene.token("alice", &[]);
    capstan_tests::seed::runs(&scene.store(), 10_000, 5);
    let b = Browser::start().await;
    b.sign_in(&scene.url, &token).await;
    let ids = |b: &Browser| {
        let c = b.client.clone();
        async move {
            let v = c
                .execute("return [...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run);", vec![])
                .await
                .unwrap();
            serde_json::from_value::<Vec<String>>(v).unwrap()
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for page in 0..4 {
        let got = ids(&b).await;
        assert_eq!(got.len(), 50, "page {page}");
        seen.extend(got);
        b.wait_for("a[rel=next]").await.click().await.unwrap();
        b.until(
            &format!(
                "return document.querySelector('#runs tbody tr').dataset.run !== '{}';",
                seen[seen.len() - 50]
            ),
            10,
            "the next page",
        )
        .await;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "a run repeated across pages");
    let newest: Vec<String> = scene
        .store()
        .list_runs(200)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(seen, newest, "pages are not the newest runs in order");
    // A filter narrows the list, and survives paging.
    b.client
        .goto(&format!(
            "{}/ui/runs?pipeline=seed-3&status=Failed",
            scene.url
        ))
        .await
        .unwrap();
    let rows = ids(&b).await;
    assert!(!rows.is_empty());
    let store = scene.store();
    for id in &rows {
        let r = store.run(id).unwrap();
        assert_eq!(
            (r.pipeline.as_str(), r.status),
            ("seed-3", RunStatus::Failed)
        );
    }
}
