use std::time::Duration;

use serde_json::json;

use super::*;
use crate::caps::container::engine::{Job, SecretVar};

fn pods(root: &Path, attempt: u32) -> Pods {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let target = crate::caps::kube::KubeTarget {
        client,
        namespace: "team".into(),
        impersonate: Some("system:serviceaccount:team:runner".into()),
    };
    let settings = PodSettings {
        claim: "capstan-workspaces".into(),
        root: root.to_path_buf(),
    };
    let step = StepOf {
        run: "r1".into(),
        task: "build".into(),
        attempt,
    };
    Pods::new(target, &settings, step).unwrap()
}

fn job(root: &Path) -> Job {
    Job {
        image: "localhost/busybox:1".into(),
        entrypoint: Some(vec!["/capstan/scripts/script".into()]),
        cmd: vec!["a".into()],
        env: vec!["A=b=c".into()],
        secret_vars: vec![SecretVar {
            name: "TOKEN".into(),
            secret: "tok".into(),
            value: "s3cret-value".into(),
        }],
        working_dir: Some("/workspace/src".into()),
        binds: vec![(
            root.join("tenants/team/workspaces/r1/src"),
            "/workspace/src".into(),
            false,
        )],
        network: false,
        root: false,
        nano_cpus: Some(500_000_000),
        memory: Some(64 << 20),
        timeout: Some(Duration::from_secs(90)),
    }
}

#[tokio::test]
async fn the_pod_is_locked_down_and_mounts_sub_paths_of_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/team/workspaces/r1/src")).unwrap();
    let p = pods(dir.path(), 1);
    let keys = vec![("TOKEN".to_string(), "tok".to_string(), "value".to_string())];
    let spec = p.pod_spec(&job(dir.path()), &keys).unwrap();
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["serviceAccountName"], "runner");
    assert_eq!(spec["activeDeadlineSeconds"], 90);
    assert_eq!(spec["hostNetwork"], false);
    let c = &spec["containers"][0];
    assert_eq!(c["volumeMounts"][0]["subPath"], "workspaces/r1/src");
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["env"][0], json!({"name": "A", "value": "b=c"}));
    assert_eq!(
        c["env"][1]["valueFrom"]["secretKeyRef"],
        json!({"name": "tok", "key": "value"})
    );
    assert!(!spec.to_string().contains("s3cret-value"), "{spec}");
    // Without a timeout a Pod still has a deadline.
    let mut untimed = job(dir.path());
    untimed.timeout = None;
    let spec = p.pod_spec(&untimed, &keys).unwrap();
    assert_eq!(spec["activeDeadlineSeconds"], 24 * 3600);
    // Granted root: uid 0 with a few capabilities, still unprivileged,
    // without new privileges, with the runtime's seccomp.
    let mut root = job(dir.path());
    root.root = true;
    let spec = p.pod_spec(&root, &keys).unwrap();
    assert_eq!(spec["securityContext"]["runAsUser"], 0);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], false);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &spec["containers"][0]["securityContext"];
    assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        c["capabilities"]["add"],
        json!([
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "SETUID",
            "SETGID",
            "SETFCAP"
        ])
    );
    assert_eq!(c["privileged"], false);
    assert_eq!(c["allowPrivilegeEscalation"], false);
}

#[tokio::test]
async fn nothing_outside_the_claim_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pods(dir.path(), 1);
    let mut j = job(dir.path());
    j.binds = vec![("/etc".into(), "/x".into(), true)];
    let e = p.pod_spec(&j, &[]).unwrap_err();
    assert!(
        e.contains("not on the workspace claim `capstan-workspaces`"),
        "{e}"
    );
    // A link on the claim pointing out of it is resolved first.
    std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
    j.binds = vec![(dir.path().join("out"), "/x".into(), true)];
    assert!(p.pod_spec(&j, &[]).is_err());
    // The claim's root itself is not a sub-path; nor is the state
    // directory, or another namespace's directory.
    for other in ["tenants/team", "", "tenants/other/workspaces"] {
        std::fs::create_dir_all(dir.path().join(other)).unwrap();
        j.binds = vec![(dir.path().join(other), "/x".into(), true)];
        assert!(p.pod_spec(&j, &[]).is_err(), "{other}");
    }
}

#[tokio::test]
async fn a_step_keeps_its_name_across_attempts_and_calls_differ() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2) = (pods(dir.path(), 1), pods(dir.path(), 2));
    let (c1, c2) = (a1.next_call(), a2.next_call());
    assert_eq!(c1.hash, c2.hash);
    assert_eq!(c1.scratch, c2.scratch);
    assert_ne!(c1.name, c2.name);
    assert!(
        c1.name.len() <= 63 && c1.name.ends_with("-1"),
        "{}",
        c1.name
    );
    let again = a1.next_call();
    assert_ne!(again.hash, c1.hash);
}

#[test]
fn the_pod_status_says_where_the_step_is() {
    let st = |v: serde_json::Value| match state(&v) {
        State::Waiting => "waiting".to_string(),
        State::Started => "started".to_string(),
        State::Ended(e) => format!("ended {} {}", e.exit_code, e.timed_out),
        State::Stuck(why) => format!("stuck {why}"),
    };
    assert_eq!(st(json!({"status": {"phase": "Pending"}})), "waiting");
    let running = json!({"status": {"phase": "Running",
        "containerStatuses": [{"state": {"running": {"startedAt": "x"}}}]}});
    assert_eq!(st(running), "started");
    let exited = json!({"status": {"phase": "Failed",
        "containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}});
    assert_eq!(st(exited), "ended 3 false");
    let deadline = json!({"status": {"phase": "Failed", "reason": "DeadlineExceeded"}});
    assert_eq!(st(deadline), "ended 137 true");
    let pull = json!({"status": {"phase": "Pending", "containerStatuses": [{"state":
        {"waiting": {"reason": "ErrImageNeverPull", "message": "not\npresent"}}}]}});
    let s = st(pull);
    assert!(
        s.starts_with("stuck") && s.contains("ErrImageNeverPull") && !s.contains('\n'),
        "{s}"
    );
    let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted", "message": "disk"}});
    assert!(st(evicted).contains("Evicted"));
}
