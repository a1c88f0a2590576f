//! `capstan runs list` by page and filter, and the same through the API
//! (`GET /v1/runs?…&before=`, `X-Next-Cursor`).

use super::*;

#[test]
fn runs_are_listed_by_page_and_filter_from_the_cli_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = |name: &str, fail: bool| {
        let uses = if fail { "{{fail}}" } else { "{{echo}}" };
        write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: {name} }}\n\
                 spec:\n  tasks:\n    - {{ name: a, uses: \"{uses}\", params: [{{ name: message, value: x }}] }}\n"
            ),
        )
    };
    let (good, bad) = (pipeline("good", false), pipeline("bad", true));
    for file in [&good, &bad, &good, &bad, &good] {
        capstan(&state, &["run", file, "-o", "json"]);
    }
    let list = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["runs", "list", "-o", "json"];
        a.extend_from_slice(args);
        json(&capstan(&state, &a)).as_array().unwrap().clone()
    };
    let all = list(&["--limit", "100"]);
    assert_eq!(all.len(), 5);
    // Two at a time, following the cursor: the same five, in order.
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["--limit", "2"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let page = list(&args);
        let Some(last) = page.last() else { break };
        before = Some(last["cursor"].as_str().unwrap().to_string());
        paged.extend(page.iter().map(|r| r["run_id"].clone()));
    }
    let ids: Vec<Value> = all.iter().map(|r| r["run_id"].clone()).collect();
    assert_eq!(paged, ids);
    let failed = list(&["--status", "Failed"]);
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|r| r["pipeline"] == "bad"), "{failed:?}");
    assert_eq!(list(&["--pipeline", "good"]).len(), 3);
    let out = capstan(&state, &["runs", "list", "--status", "Sideways"]);
    assert_eq!(out.status.code(), Some(2), "a bad status is a usage error");

    // The API: the same pages, `X-Next-Cursor` when a page is full.
    let token = json(&capstan(&state, &["token", "add", "ann", "-o", "json"]))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut server, url) = capstan_tests::serve(env!("CARGO_BIN_EXE_capstan-cli"), &state, &[]);
    let get = |query: &str| {
        let out = Command::new("curl")
            .args(["-s", "-i", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{url}/v1/runs?{query}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (
            head.to_ascii_lowercase(),
            serde_json::from_str::<Value>(body).unwrap(),
        )
    };
    let (head, page) = get("limit=3&status=Succeeded");
    assert_eq!(page.as_array().unwrap().len(), 3, "{page}");
    let next = head
        .lines()
        .find_map(|l| l.strip_prefix("x-next-cursor: "))
        .expect("a full page names the next")
        .trim()
        .to_string();
    assert_eq!(
        next,
        page[2]["cursor"].as_str().unwrap().to_ascii_lowercase()
    );
    let (head, rest) = get(&format!(
        "limit=3&status=Succeeded&before={}",
        page[2]["cursor"].as_str().unwrap()
    ));
    assert_eq!(rest.as_array().unwrap().len(), 0, "{rest}");
    assert!(!head.contains("x-next-cursor"), "{head}");
    let (head, _) = get("before=nonsense");
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let _ = server.kill();
    let _ = server.wait();
}
