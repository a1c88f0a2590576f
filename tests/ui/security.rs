//! What a hostile page, pipeline or client would try against the UI:
//! acting with a victim's cookie from another site (CSRF), using the cookie
//! on `/v1`, reading the cookie from script, and getting markup or terminal
//! escapes from plugin text into the page.

use capstan::store::RunStatus;
use capstan_tests::browser::Browser;

use super::{Scene, http};

const HOSTILE: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: hostile }
spec:
  params:
    - { name: millis, default: "120000" }
  tasks:
    - name: say
      uses: "{{echo}}"
      params:
        - name: message
          value: "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>\u001b]52;c;aGk=\u0007\u202eevil"
    - name: wait
      uses: "{{sleep}}"
      runAfter: [say]
      params: [{ name: millis, value: $(params.millis) }]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn sessions_resist_csrf_script_and_markup_injection() {
    let mut scene = Scene::new();
    let token = scene.token("alice", &[]);

    // Signed out: every page sends to the sign-in form; headers are strict.
    let (status, head, _) = http(&scene.url, "GET", "/ui/runs", &[], "");
    assert_eq!(status, 303, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: /ui/login"),
        "{head}"
    );
    let (status, head, _) = http(&scene.url, "GET", "/ui/login", &[], "");
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    for want in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: same-origin",
    ] {
        assert!(head.contains(want), "missing `{want}` in:\n{head}");
    }
    // A wrong token is refused, saying so.
    let (status, _, body) = http(
        &scene.url,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=capstan_nope",
    );
    assert_eq!(status, 401);
    assert!(body.contains("unknown token"), "{body}");
    // A sign-in posted from another site is refused (login CSRF).
    let (status, _, _) = http(
        &scene.url,
        "POST",
        "/ui/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        &format!("token={token}"),
    );
    assert_eq!(status, 403);

    let id = scene.start_run(HOSTILE, &[]);
    let b = Browser::start().await;
    b.sign_in(&scene.url, &token).await;
    // The cookie: HttpOnly (no script reads it), SameSite=Strict, /ui only.
    let cookie = b.client.get_named_cookie("capstan-session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(cookie.path(), Some("/ui"));
    let from_script = b
        .client
        .execute("return document.cookie;", vec![])
        .await
        .unwrap();
    assert_eq!(from_script, "", "script can read the session cookie");
    let jar = format!("capstan-session={}", cookie.value());

    // Plugin text stays text: no element, no script ran, escapes visible.
    b.client
        .goto(&format!("{}/ui/runs/{id}/logs?task=say", scene.url))
        .await
        .unwrap();
    b.until(
        "return [...document.querySelectorAll('#log .line')].some(l => l.textContent.includes('onerror'));",
        20,
        "the hostile line in the log",
    )
    .await;
    let checks = b
        .client
        .execute(
            "return [document.title, document.querySelectorAll('#log img, #log script, img').length, \
             document.getElementById('log').textContent.includes('\\\\u{1b}]52;c;aGk=\\\\u{7}\\\\u{202e}evil')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        checks,
        serde_json::json!(["Logs · Capstan", 0, true]),
        "{checks}"
    );

    // The CSRF token of the page, then forged requests with the cookie.
    b.client
        .goto(&format!("{}/ui/runs/{id}", scene.url))
        .await
        .unwrap();
    let csrf = b
        .client
        .execute(
            "return document.querySelector('input[name=csrf]').value;",
            vec![],
        )
        .await
        .unwrap();
    let csrf = csrf.as_str().unwrap().to_string();
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", jar.as_str()),
    ];
    let cancel = format!("/ui/runs/{id}/cancel");
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = form.to_vec();
        h.extend_from_slice(extra);
        h
    };
    for (headers, body, what) in [
        (with(&[]), String::new(), "no CSRF token"),
        (with(&[]), "csrf=0000".to_string(), "a wrong CSRF token"),
        (
            with(&[("Origin", "http://evil.example")]),
            format!("csrf={csrf}"),
            "a foreign Origin",
        ),
        (
            with(&[("Sec-Fetch-Site", "cross-site")]),
            format!("csrf={csrf}"),
            "a cross-site fetch",
        ),
    ] {
        let (status, _, _) = http(&scene.url, "POST", &cancel, &headers, &body);
        assert_eq!(status, 403, "{what} was accepted");
    }
    assert_eq!(scene.store().run(&id).unwrap().status, RunStatus::Running);
    // The cookie means nothing to the API.
    let (status, _, _) = http(
        &scene.url,
        "GET",
        "/v1/runs",
        &[("Cookie", jar.as_str())],
        "",
    );
    assert_eq!(status, 401);
    // The real form works.
    let (status, _, _) = http(&scene.url, "POST", &cancel, &form, &format!("csrf={csrf}"));
    assert_eq!(status, 303);

    // Signing out ends the session on the server, not just in the browser.
    let (status, head, _) = http(
        &scene.url,
        "POST",
        "/ui/logout",
        &form,
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303, "{head}");
    let (status, _, _) = http(
        &scene.url,
        "GET",
        "/ui/runs",
        &[("Cookie", jar.as_str())],
        "",
    );
    assert_eq!(status, 303, "the old cookie still works after signing out");
}

/// The quick start's command: `capstan serve --sign-in-link` prints a link
/// that signs the person at the terminal in once; opening it shows a button
/// (a GET changes nothing), the button signs in, and the link then fails.
#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_link_works_once() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = std::process::Command::new(super::CLI)
        .arg("--state-dir")
        .arg(&state)
        .args(["serve", "--listen", "127.0.0.1:0", "--sign-in-link"])
        .env("USER", "newcomer")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let link = loop {
        let line = lines.next().expect("the server's output ended").unwrap();
        if let Some(rest) = line.split("web UI for `newcomer`: ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let b = Browser::start().await;
    b.client.goto(&link).await.unwrap();
    b.wait_for("#use-link").await.click().await.unwrap();
    b.until(
        "return !!document.getElementById('user');",
        20,
        "signed in by the link",
    )
    .await;
    assert_eq!(b.text("#user").await, "newcomer");
    b.forget().await;
    b.client.goto(&link).await.unwrap();
    b.wait_for("#use-link").await.click().await.unwrap();
    let refused = b.text("p.error").await;
    assert!(refused.contains("used already"), "{refused}");
    let _ = child.kill();
    let _ = child.wait();
}
