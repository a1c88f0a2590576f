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

/// The side doors: a line or step name cut inside the secret, a secret that
/// is not UTF-8 written raw, a result *named* after the secret.
#[tokio::test]
async fn secrets_do_not_leak_through_cuts_raw_bytes_or_result_names() {
    const BINARY: &[u8] = b"\xff\xfebinary-secret-part\x80tail-part";
    let env = env_with("deploy-token", VALUE);
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("bin-token", BINARY)
        .unwrap();
    let run = Attack::new("secret_leak_paths")
        .arg("deploy-token,bin-token")
        .extra("      grants: { secrets: [{ name: deploy-token, reveal: true }, { name: bin-token, reveal: true }] }")
        .run(&env)
        .await;
    // The undeclared result fails the task; its name is redacted in the
    // message like everything else.
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    let m = run.message("attack");
    assert!(m.contains("the plugin returned result `***`"), "{m}");
    let log = run.log_text();
    assert!(log.contains("raw: "), "{log}");
    // Not even the part before a cut, or the text inside the binary value.
    for piece in [&VALUE[..8], "binary-secret-part", "tail-part"] {
        assert!(
            !log.contains(piece),
            "{piece:?} leaked:\n{}",
            &log[log.len().saturating_sub(2000)..]
        );
        assert!(!m.contains(piece));
        assert_not_in_state(&env.sched.state_dir, piece);
    }
    assert_nowhere(&env, &run, VALUE);
}

/// A secret that another task of the run was granted reaches a suspend
/// request (via a shared workspace): kind, state, approval message,
/// approvers, any field of the detail, and the error after the timeout.
/// None of it is stored, listed or notified unredacted.
#[tokio::test]
async fn secrets_do_not_leak_through_suspend_requests() {
    for mode in ["kind", "detail"] {
        let env = env_with("deploy-token", VALUE);
        let ws = env.path("shared-ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("leak.txt"), VALUE).unwrap();
        let yaml = format!(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: suspend-leak }}
spec:
  workspaces: [{{ name: ws }}]
  tasks:
    - name: holder
      uses: "{{{{secret_leak_result}}}}"
      params: [{{ name: arg, value: deploy-token }}]
{REVEAL}
    - name: attack
      runAfter: [holder]
      uses: "{{{{secret_leak_suspend}}}}"
      params: [{{ name: arg, value: {mode} }}]
      workspaces: [{{ name: ws, workspace: ws }}]
"#
        );
        let mut opts = capstan::scheduler::RunOptions::default();
        opts.workspaces.insert("ws".into(), ws.clone());
        let run = env.run_with(&yaml, &[], opts).await;
        assert_eq!(
            run.status_of("attack"),
            TaskStatus::Failed,
            "{mode}: {}",
            run.log_text()
        );
        assert!(
            run.message("attack").contains("***"),
            "{mode}: {}",
            run.message("attack")
        );
        // What `approvals list` and `/v1/approvals` show, and `runs show`.
        let store = &env.sched.store;
        for w in store.waits_of_run(&run.id).unwrap() {
            let shown = capstan::scheduler::approval::pending_json(&w, &[]).to_string();
            assert!(!shown.contains(VALUE), "{mode}: listed: {shown}");
            assert!(!format!("{w:?}").contains(VALUE), "{mode}: stored: {w:?}");
        }
        assert_nowhere(&env, &run, VALUE);
    }
}

/// Secrets too short to redact are refused when set and when read.
#[tokio::test]
async fn too_short_secrets_are_refused() {
    let env = TestEnv::new();
    let state = env.sched.state_dir.clone();
    let out = capstan_tests::cli(
        env!("CARGO_BIN_EXE_capstan-cli"),
        &state,
        &["secret", "set", "pin", "--from-file", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 4 bytes"));
    // One set before this rule (or written by hand) fails its task.
    LocalSecrets::new(&state.join("secrets"))
        .set("pin", b"123")
        .unwrap();
    let run = Attack::new("secret_leak_result")
        .arg("pin")
        .extra("      grants: { secrets: [{ name: pin, reveal: true }] }")
        .run(&env)
        .await;
    assert_eq!(run.status_of("attack"), TaskStatus::Failed);
    assert!(
        run.message("attack").contains("secret `pin` is 3 bytes"),
        "{}",
        run.message("attack")
    );
}
