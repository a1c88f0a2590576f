//! How the host carries git-clone's requests: TLS to a private CA
//! (`caSecret`) through a real `stunnel4`, and HTTP proxies (`proxy` on the
//! grant, or the process environment) through a real `tinyproxy`, each
//! side by side with `git` over the same middle-box.

use capstan_tests::netfront::{Proxy, TlsFront};

use super::*;

fn set_secret(env: &TestEnv, name: &str, value: &str) {
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set(name, value.as_bytes())
        .unwrap();
}

/// `git clone` with `-c` options, into a temp dir.
fn git_clone(config: &[&str], url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = config.iter().flat_map(|c| ["-c", c]).collect();
    args.extend(["clone", "-q", url, "out"]);
    git(dir.path(), &args);
    dir
}

/// A private CA: trusted only when the grant names it; the same tree as
/// `git -c http.sslCAInfo=` over the same stunnel; a bundle that is not PEM
/// fails the task naming the secret.
#[tokio::test]
async fn a_private_ca_is_trusted_only_when_the_grant_names_it() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "app.git");
    let tls = TlsFront::start(server.port);
    let url = format!("{}/app.git", tls.origin());
    let env = TestEnv::new();

    // git trusts it with http.sslCAInfo: the TLS front is sound.
    let ca_file = tls.pki.dir.path().join("ca.pem");
    let theirs = git_clone(&[&format!("http.sslCAInfo={}", ca_file.display())], &url);
    let head = git(&theirs.path().join("out"), &["rev-parse", "HEAD"]);

    // Not trusted by default: the public roots do not hold a private CA.
    let run = env.run(&pipeline(&url, &tls.origin(), "", ""), &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("UnknownIssuer") && m.contains("the public web roots") && m.contains("caSecret"),
        "{m}"
    );

    set_secret(&env, "corp-ca", &tls.pki.ca_pem);
    let run = env
        .run(
            &pipeline(&url, &tls.origin(), "", ", caSecret: corp-ca"),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    check_clone(&run, &bare, "HEAD");
    assert_eq!(run.result("clone", "commit"), head.trim());

    // A bundle that holds no certificate fails before anything is sent.
    set_secret(&env, "not-a-ca", "hello\n");
    let requests = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    let run = env
        .run(
            &pipeline(&url, &tls.origin(), "", ", caSecret: not-a-ca"),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    assert!(
        run.message("clone")
            .contains("secret `not-a-ca` (caSecret): holds no PEM certificate"),
        "{}",
        run.message("clone")
    );
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        requests
    );
}

/// A grant's proxy carries plain http (absolute-form) and https (CONNECT,
/// TLS end to end) as it carries git's; a proxy that is down is named.
#[tokio::test]
async fn the_grants_proxy_carries_http_and_https_like_gits() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "app.git");
    let tls = TlsFront::start(server.port);
    let proxy = Proxy::start();
    let env = TestEnv::new();
    set_secret(&env, "corp-ca", &tls.pki.ca_pem);

    // git through the same proxy (http.proxy), for both schemes.
    let ca_file = tls.pki.dir.path().join("ca.pem");
    let via = format!("http.proxy={}", proxy.url());
    git_clone(&[&via], &server.url("app.git"));
    git_clone(
        &[&via, &format!("http.sslCAInfo={}", ca_file.display())],
        &format!("{}/app.git", tls.origin()),
    );
    let gits = proxy.log();
    assert!(
        gits.contains(&format!(
            "GET http://127.0.0.1:{}/app.git/info/refs",
            server.port
        )) && gits.contains(&format!("CONNECT 127.0.0.1:{}", tls.port)),
        "{gits}"
    );

    let grant = format!(", proxy: \"{}\"", proxy.url());
    let run = env
        .run(
            &pipeline(&server.url("app.git"), &server.origin(), "", &grant),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    check_clone(&run, &bare, "HEAD");
    let ours = proxy.log()[gits.len()..].to_string();
    assert!(
        ours.contains(&format!(
            "POST http://127.0.0.1:{}/app.git/git-upload-pack",
            server.port
        )),
        "{ours}"
    );

    let url = format!("{}/app.git", tls.origin());
    let run = env
        .run(
            &pipeline(
                &url,
                &tls.origin(),
                "",
                &format!("{grant}, caSecret: corp-ca"),
            ),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    check_clone(&run, &bare, "HEAD");
    let ours = proxy.log()[gits.len()..].to_string();
    assert!(
        ours.contains(&format!("CONNECT 127.0.0.1:{}", tls.port)),
        "{ours}"
    );

    // The proxy is down: the message names it.
    let port = proxy.port;
    drop(proxy);
    let run = env
        .run(
            &pipeline(&server.url("app.git"), &server.origin(), "", &grant),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains(&format!("proxy http://127.0.0.1:{port}: cannot connect")),
        "{m}"
    );
}

/// The platform's proxy environment (HTTP_PROXY, NO_PROXY, as git and
/// curl read it) applies to grants that name no proxy.
#[test]
fn the_process_proxy_environment_applies_unless_no_proxy_says_otherwise() {
    let server = GitServer::start(true);
    let (bare, _work) = sample_repo(&server, "app.git");
    let proxy = Proxy::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    let yaml = pipeline(&server.url("app.git"), &server.origin(), "", "");
    std::fs::write(&file, capstan_tests::expand(&yaml)).unwrap();
    let cli = env!("CARGO_BIN_EXE_capstan-cli");
    let proxy_url = proxy.url();
    let run = |state: &str, extra: &[(&str, &str)]| {
        let ws = dir.path().join(state).join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let mut env = vec![("HTTP_PROXY", std::ffi::OsStr::new(&proxy_url))];
        env.extend(extra.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(*v))));
        let out = capstan_tests::cli_env(
            cli,
            &dir.path().join(state),
            &[
                "run",
                file.to_str().unwrap(),
                "-w",
                &format!("src={}", ws.display()),
            ],
            &env,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ws
    };
    let ws = run("a", &[]);
    assert_eq!(
        git(&ws, &["rev-parse", "HEAD"]),
        git(&bare, &["rev-parse", "HEAD"])
    );
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "GET http://127.0.0.1:{}/app.git/info/refs",
            server.port
        )),
        "{log}"
    );
    run("b", &[("NO_PROXY", "127.0.0.1")]);
    assert_eq!(proxy.log(), log, "NO_PROXY=127.0.0.1 goes direct");

    // A proxy this host cannot use is an error, never a silent direct
    // connection around it.
    let ws = dir.path().join("c");
    std::fs::create_dir_all(&ws).unwrap();
    let requests = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    let out = capstan_tests::cli_env(
        cli,
        &dir.path().join("c-state"),
        &[
            "run",
            file.to_str().unwrap(),
            "-w",
            &format!("src={}", ws.display()),
        ],
        &[("HTTP_PROXY", std::ffi::OsStr::new("socks5://127.0.0.1:1"))],
    );
    assert_ne!(out.status.code(), Some(0));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("only http:// proxies are supported"),
        "{text}"
    );
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        requests
    );
}

/// Tekton's proxy and CA params are the grant's business: a pipeline that
/// sets them, or a grant with a bad proxy, fails validation saying where
/// they go.
#[tokio::test]
async fn proxies_and_cas_are_set_on_the_grant_not_by_params() {
    let env = TestEnv::new();
    let origin = "https://git.example.com";
    let url = "https://git.example.com/app.git";
    for (name, value, want) in [
        ("httpsProxy", "http://proxy:3128", "grants.http"),
        ("httpProxy", "http://proxy:3128", "HTTP_PROXY"),
        ("crtFileName", "ca-bundle.crt", "caSecret"),
    ] {
        let Err(e) = env.prepare(&pipeline(url, origin, &param(name, value), ""), &[]) else {
            panic!("{name}: validated");
        };
        assert!(e.contains(name) && e.contains(want), "{e}");
    }
    for (grant, want) in [
        (", proxy: \"https://proxy:3128\"", "only http:// proxies"),
        (", proxy: \"http://u:p@proxy:3128\"", "credentials"),
        (", caSecret: \"../x\"", "caSecret"),
        (", proxyy: \"http://proxy:3128\"", "proxyy"),
    ] {
        let Err(e) = env.prepare(&pipeline(url, origin, "", grant), &[]) else {
            panic!("{grant}: validated");
        };
        assert!(e.contains(want), "{grant}: {e}");
    }
}
