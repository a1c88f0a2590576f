//! The `ssh` capability against a real OpenSSH sshd on loopback: key and
//! password auth by the host, host keys always verified, grants enforced
//! before connecting, output streamed into the task log, secrets in no log.

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::sshd::{PASSWORD, Sshd, USER};
use capstan_tests::{RunOutcome, TestEnv};

fn pipeline(sshd: &Sshd, port: u16, command: &str, grant: &str) -> String {
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: ssh }}
spec:
  tasks:
    - name: remote
      uses: "{{{{ssh_exec}}}}"
      timeout: 30s
      params:
        - {{ name: host, value: "127.0.0.1" }}
        - {{ name: port, value: "{port}" }}
        - {{ name: user, value: "{USER}" }}
        - {{ name: command, value: "{command}" }}
      grants:
        ssh:
          - {{ host: 127.0.0.1, port: {}, {grant} }}
"#,
        sshd.port
    )
}

fn env_with_secrets(sshd: &Sshd) -> TestEnv {
    let env = TestEnv::new();
    let store = LocalSecrets::new(&env.sched.state_dir.join("secrets"));
    store.set("build-key", sshd.client_key.as_bytes()).unwrap();
    store.set("build-pw", PASSWORD.as_bytes()).unwrap();
    env
}

fn no_secret_anywhere(env: &TestEnv, run: &RunOutcome, sshd: &Sshd) {
    let key_body = sshd.client_key.lines().nth(1).unwrap().to_string();
    for line in &run.logs {
        assert!(!line.message.contains(PASSWORD) && !line.message.contains(&key_body));
    }
    // Nothing in the state directory but the secret store holds them.
    capstan_tests::assert_not_in_state(&env.sched.state_dir, PASSWORD);
    capstan_tests::assert_not_in_state(&env.sched.state_dir, &key_body);
}

#[tokio::test]
async fn key_and_password_auth_exec_put_get() {
    let sshd = Sshd::start();
    let env = env_with_secrets(&sshd);
    let pin = format!("secret: build-key, hostKey: \"{}\"", sshd.fingerprint);
    let run = env
        .run(
            &pipeline(
                &sshd,
                sshd.port,
                "echo out-$GREETING; echo err >&2; exit 3",
                &pin,
            ),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("remote"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("remote", "exit-code"), "3");
    assert_eq!(run.result("remote", "stdout"), "out-it's here\n");
    assert_eq!(run.result("remote", "roundtrip"), "round trip\n");
    let log = run.log_text();
    assert!(
        log.contains("out-it's here") && log.contains("err"),
        "{log}"
    );
    assert!(
        log.contains(&format!("host key {}", sshd.fingerprint)),
        "{log}"
    );
    no_secret_anywhere(&env, &run, &sshd);

    let known = format!(
        "secret: build-pw, auth: password, knownHosts: \"{}\"",
        sshd.known_hosts
    );
    let run = env
        .run(&pipeline(&sshd, sshd.port, "id -un", &known), &[])
        .await;
    assert_eq!(
        run.status_of("remote"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("remote", "stdout").trim(), USER);
    no_secret_anywhere(&env, &run, &sshd);
}

#[tokio::test]
async fn host_keys_grants_and_credentials_are_enforced() {
    let sshd = Sshd::start();
    let env = env_with_secrets(&sshd);
    let msg = |run: &RunOutcome| run.message("remote").to_string();

    // A changed (or unknown) host key: refused, naming the offered key.
    let other = sshd.other_fingerprint();
    let run = env
        .run(
            &pipeline(
                &sshd,
                sshd.port,
                "true",
                &format!("secret: build-key, hostKey: \"{other}\""),
            ),
            &[],
        )
        .await;
    assert_eq!(run.status_of("remote"), TaskStatus::Failed);
    assert!(
        msg(&run).contains(&format!(
            "host key {} is not the one the grant trusts",
            sshd.fingerprint
        )),
        "{}",
        msg(&run)
    );

    // Not granted (another port): denied, and sshd saw no connection. sshd
    // logs the end of the previous (refused) connection a little later, so
    // count connection starts, not lines.
    let connections = || {
        std::fs::read_to_string(sshd.dir.path().join("sshd.log"))
            .unwrap()
            .matches("Connection from")
            .count()
    };
    let before = connections();
    assert!(
        before > 0,
        "sshd logged no connection for the refused host key"
    );
    let pin = format!("secret: build-key, hostKey: \"{}\"", sshd.fingerprint);
    let run = env
        .run(&pipeline(&sshd, sshd.port + 1, "true", &pin), &[])
        .await;
    assert_eq!(run.status_of("remote"), TaskStatus::Failed);
    assert!(msg(&run).contains("denied"), "{}", msg(&run));
    assert!(run.log_text().contains("not in this task's grants.ssh"));
    assert_eq!(before, connections(), "no connection");

    // A wrong key / password: refused by the server.
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("wrong-pw", b"not-the-password")
        .unwrap();
    let run = env
        .run(
            &pipeline(
                &sshd,
                sshd.port,
                "true",
                &format!(
                    "secret: wrong-pw, auth: password, hostKey: \"{}\"",
                    sshd.fingerprint
                ),
            ),
            &[],
        )
        .await;
    assert!(
        msg(&run).contains("authentication refused"),
        "{}",
        msg(&run)
    );

    // A key the server does not know: refused too.
    sshd.other_fingerprint(); // creates other_key
    let other_key = std::fs::read_to_string(sshd.dir.path().join("other_key")).unwrap();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("wrong-key", other_key.as_bytes())
        .unwrap();
    let run = env
        .run(
            &pipeline(
                &sshd,
                sshd.port,
                "true",
                &format!("secret: wrong-key, hostKey: \"{}\"", sshd.fingerprint),
            ),
            &[],
        )
        .await;
    assert!(
        msg(&run).contains("authentication refused"),
        "{}",
        msg(&run)
    );

    // No host key setting at all: the pipeline is invalid.
    let e = env
        .prepare(
            &pipeline(&sshd, sshd.port, "true", "secret: build-key"),
            &[],
        )
        .err()
        .unwrap();
    assert!(
        e.contains("always verified") && e.contains("grants.ssh[0]"),
        "{e}"
    );
}

#[tokio::test]
async fn a_dropped_connection_fails_the_task_promptly() {
    let mut sshd = Sshd::start();
    let env = env_with_secrets(&sshd);
    let pin = format!("secret: build-key, hostKey: \"{}\"", sshd.fingerprint);
    let yaml = pipeline(&sshd, sshd.port, "sleep 60", &pin);
    let t = std::time::Instant::now();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        // The daemon and its connections (only this fixture's).
        sshd.kill();
    });
    let run = env.run(&yaml, &[]).await;
    killer.join().unwrap();
    assert_eq!(
        run.status_of("remote"),
        TaskStatus::Failed,
        "{}",
        run.log_text()
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(25),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_per_policy() {
    let sshd = std::sync::Arc::new(Sshd::start());
    let env = env_with_secrets(&sshd);
    let pin = format!("secret: build-key, hostKey: \"{}\"", sshd.fingerprint);
    // Attempt 1 is cut off mid-command; attempt 2 reconnects and finishes.
    let yaml = pipeline(&sshd, sshd.port, "sleep 4; echo finished", &pin).replace(
        "      timeout: 30s\n",
        "      timeout: 30s\n      retries: 1\n",
    );
    assert!(yaml.contains("retries: 1"));
    let fixture = sshd.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        fixture.drop_connections();
    });
    let run = env.run(&yaml, &[]).await;
    killer.join().unwrap();
    assert_eq!(
        run.status_of("remote"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.task("remote").attempts, 2, "{}", run.log_text());
    let first = run
        .attempts
        .iter()
        .find(|a| a.task == "remote" && a.attempt == 1)
        .expect("attempt 1 recorded");
    assert_eq!(first.status, TaskStatus::Failed, "{first:?}");
    assert!(
        run.task_log("remote")
            .iter()
            .any(|l| l.contains("finished")),
        "{}",
        run.log_text()
    );
}
