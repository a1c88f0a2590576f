//! `/ok-to-test`: an untrusted fork pull request's run is approved through
//! the API (`capstan repo ok-to-test`), and the pull request's own
//! pipeline runs at that commit with the repository's secrets.

use super::*;

#[test]
fn an_approved_fork_pull_request_runs_its_own_pipeline_with_secrets() {
    let f = fork();
    let s = &f.s;
    let (code, answer) = post(&s.hook("github"), &f.headers, &f.bytes, true);
    assert_eq!(code, 201, "{answer}");
    let untrusted = answer["runs"][0].as_str().unwrap().to_string();
    assert_eq!(s.ended(&untrusted)["status"], "Failed");
    let token = ok(&capstan(
        &s.state,
        &["token", "add", "maintainer", "-o", "json"],
    ))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ok_to_test = |run: &str, token: &str| {
        capstan(
            &s.state,
            &[
                "repo",
                "ok-to-test",
                run,
                "--server",
                &s.url,
                "--token",
                token,
                "-o",
                "json",
            ],
        )
    };
    // Without a known token: refused, nothing started.
    let out = ok_to_test(&untrusted, "forged");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let approved = ok(&ok_to_test(&untrusted, &token));
    let run = approved["runs"][0].as_str().unwrap().to_string();
    let v = s.ended(&run);
    // The pull request's own pipeline, at the approved commit, trusted: the
    // secret is there.
    assert_eq!(v["status"], "Succeeded", "{v}");
    assert_eq!(
        s.note(&run),
        format!("fork-pipeline {} build/pkg pull_request true 217", f.head)
    );
    assert_eq!(
        v["triggered_by"]["event"], "ok-to-test by maintainer",
        "{v}"
    );
    // Approving it again starts nothing more; a trusted run has nothing to
    // approve.
    let again = ok(&ok_to_test(&untrusted, &token));
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["runs"], approved["runs"]);
    let out = ok_to_test(&run, &token);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a run of an untrusted pull request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The commit heard of it, under the pipeline's context.
    let seen = statuses(&f.forge, 1);
    assert!(
        seen.iter()
            .any(|(h, b)| h.contains(&f.head) && b["state"] == "success"),
        "{seen:?}"
    );
    let runs = ok(&capstan(&s.state, &["runs", "list", "-o", "json"]));
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
}
