//! Secret attacks: names that were not granted, reveal without the grant,
//! and a revealed value leaking through logs (every path), results, error
//! messages, and line-by-line printing of a multi-line key. The host redacts
//! every path; nothing under the state directory but the secret store ever
//! holds the value.

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::{RunOutcome, TestEnv, assert_not_in_state};

use super::{Attack, assert_all_denied};

const VALUE: &str = "s3cr3t-D3PL0Y-t0k3n";
const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\nbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQy\nNTUxOQAAACBsZWFrZWQta2V5LW1hdGVyaWFs\n-----END OPENSSH PRIVATE KEY-----\n";

fn env_with(name: &str, value: &str) -> TestEnv {
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set(name, value.as_bytes())
        .unwrap();
    env
}

const REVEAL: &str = "      grants: { secrets: [{ name: deploy-token, reveal: true }] }";

/// No form of `value` (or of any of its lines) is anywhere in the run's
/// record: logs, results, messages, the state directory.
fn assert_nowhere(env: &TestEnv, run: &RunOutcome, value: &str) {
    let pieces: Vec<&str> = std::iter::once(value.trim_end())
        .chain(
            value
                .lines()
                .filter(|l| l.len() >= 4 && !l.starts_with("-----")),
        )
        .collect();
    for p in &pieces {
        for l in &run.logs {
            assert!(!l.message.contains(p), "log line leaks: {}", l.message);
        }
        for t in run.tasks.values() {
            assert!(!t.message.as_deref().unwrap_or("").contains(p), "{t:?}");
            for v in t.results.values() {
                assert!(!v.contains(p), "result leaks: {v}");
            }
        }
        assert_not_in_state(&env.sched.state_dir, p);
    }
}

#[tokio::test]
async fn ungranted_secrets_and_unrevealed_values_stay_closed() {
    let env = env_with("deploy-token", VALUE);
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("admin-token", b"admin-value-never-granted")
        .unwrap();
    let run = Attack::new("secret_ungranted")
        .arg("deploy-token")
        .extra("      grants: { secrets: [deploy-token] }")
        .run(&env)
        .await;
    assert_all_denied(&run, 9);
    assert_nowhere(&env, &run, VALUE);
    assert_nowhere(&env, &run, "admin-value-never-granted");
}

#[tokio::test]
async fn a_revealed_secret_is_redacted_from_every_log_path() {
    let env = env_with("deploy-token", VALUE);
    let run = Attack::new("secret_leak_log")
        .arg("deploy-token")
        .extra(REVEAL)
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let log = run.log_text();
    for marker in [
        "log: ***",
        "stdout: ***",
        "stderr: ***",
        "pieces: *** end",
        "tail without newline: ***",
    ] {
        assert!(log.contains(marker), "missing {marker:?}:\n{log}");
    }
    assert_nowhere(&env, &run, VALUE);
}

#[tokio::test]
async fn a_revealed_secret_in_a_result_is_stored_redacted() {
    let env = env_with("deploy-token", VALUE);
    let yaml = Attack::new("secret_leak_result")
        .arg("deploy-token")
        .extra(REVEAL)
        .pipeline()
        .replace(
            "  finally:",
            "    - name: next\n      uses: \"{{echo}}\"\n      params: [{ name: message, value: \"got $(tasks.attack.results.outcome)\" }]\n  finally:",
        );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("attack", "outcome"), "the secret is ***!");
    assert_eq!(run.result("next", "message"), "got the secret is ***!");
    assert!(
        run.log_text()
            .contains("result `outcome` contained a secret value"),
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("after", "message"), "still healthy");
    assert_nowhere(&env, &run, VALUE);
}

#[tokio::test]
async fn a_revealed_secret_in_an_error_message_is_redacted() {
    // Both error kinds: an even-length value fails, an odd one is "invalid".
    for value in [VALUE, "s3cr3t-D3PL0Y-t0k3nX"] {
        let env = env_with("deploy-token", value);
        let run = Attack::new("secret_leak_error")
            .arg("deploy-token")
            .extra(REVEAL)
            .run(&env)
            .await;
        assert_eq!(run.status_of("attack"), TaskStatus::Failed);
        assert!(
            run.message("attack").contains("***"),
            "{}",
            run.message("attack")
        );
        assert_nowhere(&env, &run, value);
    }
}

#[tokio::test]
async fn a_multi_line_key_is_redacted_line_by_line() {
    let env = env_with("deploy-token", KEY);
    let run = Attack::new("secret_leak_multiline")
        .arg("deploy-token")
        .extra(REVEAL)
        .run(&env)
        .await;
    assert_eq!(
        run.status_of("attack"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert!(
        run.log_text().contains("key line: ***"),
        "{}",
        run.log_text()
    );
    assert_nowhere(&env, &run, KEY);
}
