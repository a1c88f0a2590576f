//! The `http` capability with a real HTTP server on loopback: granted
//! authorities only (denied before any connection), host-side credentials
//! the plugin never sees, the platform ceiling at run time, no secret in
//! any log line.

use std::sync::Arc;

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::httpd::{Reply, Server};

/// `200 hello`, or 401 without an Authorization header when `need_auth`.
fn start(need_auth: bool) -> Server {
    Server::start(move |head| {
        let authorized = head.to_ascii_lowercase().contains("\nauthorization:");
        if need_auth && !authorized {
            Reply {
                status: "401 Unauthorized",
                headers: Vec::new(),
                body: "who are you".into(),
            }
        } else {
            Reply::ok("hello")
        }
    })
}

fn pipeline(url: &str, grants: &str, authorization: &str) -> String {
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: http }}
spec:
  tasks:
    - name: get
      uses: "{{{{http_get}}}}"
      params:
        - {{ name: url, value: "{url}/path" }}
        - {{ name: authorization, value: "{authorization}" }}
      grants:
{grants}
"#
    )
}

#[tokio::test]
async fn a_granted_authority_is_reached() {
    let server = start(false);
    let env = TestEnv::new();
    let run = env
        .run(
            &pipeline(
                &server.url(),
                &format!("        http: [\"{}\"]", server.url()),
                "",
            ),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("get"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("get", "status"), "200");
    assert_eq!(run.result("get", "body"), "hello");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].starts_with("GET /path HTTP/1.1"), "{reqs:?}");
    assert!(!reqs[0].to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn an_authority_not_granted_is_denied_before_connecting() {
    let server = start(false);
    let other = start(false);
    let env = TestEnv::new();
    let run = env
        .run(
            &pipeline(
                &server.url(),
                &format!("        http: [\"{}\"]", other.url()),
                "",
            ),
            &[],
        )
        .await;
    assert_eq!(run.status_of("get"), TaskStatus::Failed);
    let msg = run.message("get");
    assert!(
        msg.contains("denied") && msg.contains(&format!("127.0.0.1:{}", server.port)),
        "{msg}"
    );
    let log = run.log_text();
    assert!(
        log.contains(&format!(
            "denied: http GET http://127.0.0.1:{} (layer: pipeline",
            server.port
        )),
        "{log}"
    );
    assert!(server.requests().is_empty(), "no connection was made");
}

#[tokio::test]
async fn a_bound_secret_is_sent_by_the_host_and_never_logged() {
    let server = start(true);
    let env = TestEnv::new();
    let grants = format!(
        "        http:\n          - {{ url: \"{}\", secret: git-token }}",
        server.url()
    );
    // Without the secret in the store: the task fails, naming it.
    let run = env.run(&pipeline(&server.url(), &grants, ""), &[]).await;
    assert_eq!(run.status_of("get"), TaskStatus::Failed);
    assert!(
        run.message("get").contains("capstan secret set git-token"),
        "{}",
        run.message("get")
    );
    assert!(server.requests().is_empty());

    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("git-token", b"alice:s3cret-pw")
        .unwrap();
    let run = env.run(&pipeline(&server.url(), &grants, ""), &[]).await;
    assert_eq!(
        run.status_of("get"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("get", "body"), "hello");
    let reqs = server.requests();
    assert!(
        reqs[0].contains("authorization: Basic YWxpY2U6czNjcmV0LXB3"),
        "{reqs:?}"
    );

    // Without the grant's secret the server says 401.
    let run = env
        .run(
            &pipeline(
                &server.url(),
                &format!("        http: [\"{}\"]", server.url()),
                "",
            ),
            &[],
        )
        .await;
    assert_eq!(run.result("get", "status"), "401");

    // The plugin may not set Authorization itself.
    let run = env
        .run(&pipeline(&server.url(), &grants, "Bearer mine"), &[])
        .await;
    assert_eq!(run.status_of("get"), TaskStatus::Failed);
    assert!(
        run.message("get").contains("Forbidden"),
        "{}",
        run.message("get")
    );

    for line in &run.logs {
        assert!(!line.message.contains("s3cret"), "{}", line.message);
    }
}

#[tokio::test]
async fn grants_are_validated_and_the_policy_ceiling_applies() {
    let env = TestEnv::new();
    let bad = env
        .prepare(
            &pipeline(
                "http://127.0.0.1:1",
                "        http: [\"127.0.0.1:1/x\"]",
                "",
            ),
            &[],
        )
        .err()
        .expect("invalid");
    assert!(
        bad.contains("pipeline.yaml:12:16") && bad.contains("grants.http[0]"),
        "{bad}"
    );

    let mut env = TestEnv::new();
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        // A component file: only `[paths]` applies (its declared name
        // earns it nothing).
        "[[ceiling]]\nname = \"*\"\ncapabilities = [\"http\"]\n[paths]\nallow = true\ncapabilities = []\n",
    )
    .unwrap();
    env.sched.policy = Arc::new(capstan::policy::PolicyFile::load(&policy).unwrap());
    let e = env
        .prepare(
            &pipeline(
                "http://127.0.0.1:1",
                "        http: [\"http://127.0.0.1:1\"]",
                "",
            ),
            &[],
        )
        .err()
        .expect("denied");
    assert!(
        e.contains("grants.http") && e.contains("denied by layer `policy`"),
        "{e}"
    );
    // No grant at all: the request is denied at run time.
    let env = TestEnv::new();
    let run = env
        .run(
            &pipeline("http://127.0.0.1:1", "        secrets: []", ""),
            &[],
        )
        .await;
    assert_eq!(run.status_of("get"), TaskStatus::Failed);
    assert!(
        run.log_text()
            .contains("denied: http GET http://127.0.0.1:1")
    );
}
