//! SSH attacks against a real OpenSSH sshd on loopback: hosts, ports and
//! users outside the grant (denied before connecting: sshd logs nothing), a
//! host key that is not the pinned one (refused every time, the command
//! never runs), and the host-side `exec-files` shipping host files from
//! outside the workspace.

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::sshd::{Sshd, USER};

use super::{Attack, HostBox, assert_all_denied};

fn env_with_key(sshd: &Sshd) -> TestEnv {
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("build-key", sshd.client_key.as_bytes())
        .unwrap();
    env
}

fn grant(sshd: &Sshd, fingerprint: &str) -> String {
    format!(
        "      timeout: 60s\n      grants:\n        ssh:\n          - {{ host: 127.0.0.1, port: {}, user: {USER}, secret: build-key, hostKey: \"{fingerprint}\" }}",
        sshd.port
    )
}

fn connections(sshd: &Sshd) -> usize {
    std::fs::read_to_string(sshd.dir.path().join("sshd.log"))
        .unwrap_or_default()
        .matches("Connection from")
        .count()
}

#[tokio::test]
async fn hosts_ports_and_users_outside_the_grant_are_denied_before_connecting() {
    let sshd = Sshd::start();
    let env = env_with_key(&sshd);
    let extra = grant(&sshd, &sshd.fingerprint);
    let before = connections(&sshd);
    let run = Attack::new("ssh_ungranted_host")
        .arg(format!("{}|{USER}", sshd.port))
        .extra(&extra)
        .run(&env)
        .await;
    assert_all_denied(&run, 12);
    assert_eq!(connections(&sshd), before, "sshd saw a connection");
    // The host's denial lines quote the plugin's host names with control
    // characters escaped (`127.0.0.1\n` cannot start a forged line).
    for l in &run.logs {
        assert!(!l.message.contains('\n'), "{:?}", l.message);
    }
    assert!(!std::path::Path::new("/tmp/capstan-pwned").exists());
}

#[tokio::test]
async fn a_host_key_mismatch_is_refused_every_time() {
    let sshd = Sshd::start();
    let env = env_with_key(&sshd);
    let mark = sshd.home.join("pwned");
    let extra = grant(&sshd, &sshd.other_fingerprint());
    let run = Attack::new("ssh_host_key_mismatch")
        .arg(format!("{}|{USER}|{}", sshd.port, mark.display()))
        .extra(&extra)
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    assert!(
        crate::outcome(&run).contains("is not the one the grant trusts"),
        "{}",
        crate::outcome(&run)
    );
    assert!(!mark.exists(), "the command ran on the server");
}

#[tokio::test]
async fn exec_files_cannot_ship_files_from_outside_the_workspace() {
    let sshd = Sshd::start();
    let env = env_with_key(&sshd);
    let b = HostBox::new(&env);
    let extra = grant(&sshd, &sshd.fingerprint);
    let run = Attack::new("ssh_files_escape")
        .arg(format!("{}|{USER}", sshd.port))
        .extra(&extra)
        .in_box(&b)
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_all_denied(&run, 6);
    assert!(!run.log_text().contains("received"), "{}", run.log_text());
    b.assert_untouched();
}
