//! The web UI's speed in the same headless Chromium the tests use: a run
//! page with a 1,000-task DAG against a 10-task one (the baseline, measured
//! in the same run and browser), by the Navigation Timing API — the server's
//! answer (`responseEnd`), DOM ready, and `loadEventEnd` (styles, script and
//! the SVG laid out) — and the runs list over 10,000 runs, first page
//! against the 100th.
//!
//!     cargo run --release -p capstan-tests --bin bench-ui -- [TASKS] [LOADS]

use std::sync::Arc;

use capstan::api::auth::TokenFile;
use capstan::api::{ApiState, Auth};
use capstan_tests::browser::Browser;
use capstan_tests::{TestEnv, seed};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Load `url` `loads` times (after one warm-up): median (response, DOM
/// ready, load) in ms.
async fn time_page(b: &Browser, url: &str, loads: usize) -> (f64, f64, f64) {
    let mut t = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=loads {
        b.client.goto(url).await.unwrap();
        b.until(
            "const n = performance.getEntriesByType('navigation')[0]; return !!n && n.loadEventEnd > 0;",
            60,
            "the page's load event",
        )
        .await;
        let v = b
            .client
            .execute(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return [n.responseEnd - n.startTime, n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime];",
                vec![],
            )
            .await
            .unwrap();
        let v: Vec<f64> = serde_json::from_value(v).unwrap();
        if i > 0 {
            t.0.push(v[0]);
            t.1.push(v[1]);
            t.2.push(v[2]);
        }
    }
    (median(t.0), median(t.1), median(t.2))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let loads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let TestEnv { dir: _dir, sched } = TestEnv::new();
    seed::wide_run(&sched.store, "wide", tasks);
    seed::wide_run(&sched.store, "small", 10);
    seed::runs(&sched.store, 10_000, 5);
    let tokens = TokenFile::path(&sched.state_dir);
    let token = TokenFile::add(&tokens, "bench", &[]).unwrap();
    let state = Arc::new(ApiState {
        sched: Arc::new(sched),
        auth: Auth::Tokens(tokens),
        forge: None,
        ui: capstan::api::ui::Sessions::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(capstan::api::serve(listener, state, Default::default()));
    let b = Browser::start().await;
    b.sign_in(&url, &token).await;
    let version = b
        .client
        .execute("return navigator.userAgent;", vec![])
        .await
        .unwrap();
    println!("browser: {}", version.as_str().unwrap_or("?"));
    println!("median of {loads} loads after a warm-up, ms (response / DOM ready / load event)");
    let row = |name: &str, t: (f64, f64, f64)| {
        println!("  {name:34} {:8.1} {:8.1} {:8.1}", t.0, t.1, t.2);
    };
    let small = time_page(&b, &format!("{url}/ui/runs/small"), loads).await;
    let wide = time_page(&b, &format!("{url}/ui/runs/wide"), loads).await;
    row("run page, 10 tasks (baseline)", small);
    row(&format!("run page, {tasks} tasks"), wide);
    println!(
        "  ratio {tasks}/10 tasks: load event {:.1}x; {tasks}-task page loaded in {:.0} ms ({})",
        wide.2 / small.2,
        wide.2,
        if wide.2 < 1000.0 {
            "under a second"
        } else {
            "OVER a second"
        }
    );
    let first = time_page(&b, &format!("{url}/ui/runs"), loads).await;
    // The 100th page of 50: the cursor after the 4,950th newest run.
    let store = capstan::store::RunStore::open(&_dir.path().join("state")).unwrap();
    let page = store.list_runs_page(&Default::default(), 4950).unwrap();
    let cursor = capstan::store::Cursor::of(page.last().unwrap()).to_string();
    let deep = time_page(&b, &format!("{url}/ui/runs?before={cursor}"), loads).await;
    row("runs list, page 1 of 10,000 runs", first);
    row("runs list, page 100", deep);
    println!(
        "  ratio page 100 / page 1: load event {:.1}x",
        deep.2 / first.2
    );
}
