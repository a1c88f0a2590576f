//! The `approve` plugin and durable approval gates, end to end with the real
//! CLI: N-of-M over the HTTP API with tokens, a refused non-approver,
//! rejection running `finally`, both `on-timeout` settings, SIGKILL of the
//! scheduler while waiting (a decision made while it is down is applied on
//! resume and nothing runs twice), timeouts that pass while it is down, and
//! the webhook (delivered to a local receiver; a receiver that is down does
//! not block the approval).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use capstan::store::{RunStore, TaskStatus};
use capstan_tests::expand;
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_capstan-cli");

fn capstan(state: &Path, args: &[&str]) -> Output {
    capstan_tests::cli(CLI, state, args)
}

/// `capstan approve` locally, as OS user `user`.
fn approve_as(state: &Path, user: &str, args: &[&str]) -> Output {
    let mut a = vec!["approve"];
    a.extend_from_slice(args);
    capstan_tests::cli_env(CLI, state, &a, &[("USER", std::ffi::OsStr::new(user))])
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

struct Env {
    _dir: tempfile::TempDir,
    state: PathBuf,
    file: String,
}

fn env(yaml: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, expand(yaml)).unwrap();
    Env {
        file: file.display().to_string(),
        state,
        _dir: dir,
    }
}

/// `capstan run FILE -o json` in the background (stdout to a file).
fn start(e: &Env) -> (Child, PathBuf) {
    let out = e.state.with_extension("out.json");
    let child = Command::new(CLI)
        .arg("--state-dir")
        .arg(&e.state)
        .args(["run", &e.file, "-o", "json"])
        .env("CAPSTAN_PUBLIC_URL", "http://capstan.example:7070")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, out)
}

/// Wait until `task` of the newest run is Waiting; its run id.
fn until_waiting(state: &Path, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "{task} never waited");
        if let Ok(store) = RunStore::open(state)
            && let Ok(runs) = store.list_runs(1)
            && let Some(run) = runs.first()
            && store
                .tasks(&run.id)
                .unwrap()
                .iter()
                .any(|t| t.name == task && t.status == TaskStatus::Waiting)
        {
            return run.id.clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a background run to end; its JSON summary.
fn finish(mut child: Child, out: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

fn task<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {v:#}"))
}

const GATED: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: gated }
spec:
  tasks:
    - name: build
      uses: "{{echo}}"
      params: [{ name: message, value: built }]
    - name: gate
      uses: "{{approve}}"
      runAfter: [build]
      params:
        - { name: approvers, value: [alice, bob, release-team] }
        - { name: required, value: "2" }
        - { name: message, value: "deploy to prod?" }
    - name: deploy
      uses: "{{echo}}"
      runAfter: [gate]
      params: [{ name: message, value: "approved by $(tasks.gate.results.decided-by)" }]
  finally:
    - name: report
      uses: "{{echo}}"
      params: [{ name: message, value: "gate was $(tasks.gate.status)" }]
"#;

/// Start `capstan serve` on a free port; (child, URL).
fn serve(state: &Path) -> (Child, String) {
    capstan_tests::serve(CLI, state, &[])
}

fn token(state: &Path, user: &str, groups: &[&str]) -> String {
    let mut args = vec!["token", "add", user, "-o", "json"];
    for g in groups {
        args.extend(["--group", g]);
    }
    json(&capstan(state, &args))["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Two of three: one approval keeps it waiting, a second (by group)
/// completes it and the pipeline continues; a non-approver is refused and
/// recorded as refused; every decision shows in `runs show`.
#[test]
fn two_of_three_approvers_over_the_api() {
    let e = env(GATED);
    std::fs::create_dir_all(&e.state).unwrap();
    let alice = token(&e.state, "alice", &[]);
    let carol = token(&e.state, "carol", &["release-team"]);
    let mallory = token(&e.state, "mallory", &["outsiders"]);
    let (mut server, url) = serve(&e.state);
    let (child, out) = start(&e);
    let run = until_waiting(&e.state, "gate");
    let remote = |tok: &str, extra: &[&str]| {
        let mut a = vec![
            "approve",
            run.as_str(),
            "--task",
            "gate",
            "--server",
            &url,
            "--token",
            tok,
        ];
        a.extend_from_slice(extra);
        capstan(&e.state, &a)
    };
    // Not an approver: refused (exit 4), recorded.
    let o = remote(&mallory, &["--comment", "let me"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("`mallory` is not an approver"));
    // One of two.
    let o = remote(&alice, &["--comment", "lgtm"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    let list = json(&capstan(
        &e.state,
        &[
            "approvals",
            "list",
            "--server",
            &url,
            "--token",
            &alice,
            "-o",
            "json",
        ],
    ));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["task"], "gate");
    assert_eq!(list[0]["required"], 2);
    assert_eq!(list[0]["message"], "deploy to prod?");
    // The same approver again is not a second approval.
    assert!(remote(&alice, &[]).status.success());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        RunStore::open(&e.state).unwrap().tasks(&run).unwrap()[1].status,
        TaskStatus::Waiting
    );
    // Two of two, by group membership.
    assert!(remote(&carol, &["--comment", "ship it"]).status.success());
    let v = finish(child, &out);
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let gate = task(&v, "gate");
    assert_eq!(gate["results"]["decision"], "approved");
    assert_eq!(gate["results"]["decided-by"], "alice,carol");
    assert_eq!(gate["results"]["comment"], "alice: lgtm; carol: ship it");
    assert_eq!(
        task(&v, "deploy")["results"]["message"],
        "approved by alice,carol"
    );
    assert_eq!(task(&v, "build")["attempts"], 1);
    // Who, when, what: every decision, the refused one too.
    let show = json(&capstan(&e.state, &["runs", "show", &run, "-o", "json"]));
    let a = &show["approvals"][0];
    assert_eq!(a["phase"], "approved");
    let ds = a["decisions"].as_array().unwrap();
    let users: Vec<&str> = ds.iter().map(|d| d["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["mallory", "alice", "alice", "carol"]);
    assert_eq!(ds[0]["accepted"], false);
    assert!(
        ds[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not an approver")
    );
    assert!(ds[3]["groups"][0] == "release-team" && ds[3]["comment"] == "ship it");
    let phases: Vec<&str> = a["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["pending", "approved"]);
    let text =
        String::from_utf8_lossy(&capstan(&e.state, &["runs", "show", &run]).stdout).to_string();
    assert!(
        text.contains("approve by mallory") && text.contains("REFUSED"),
        "{text}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// One rejection by a listed approver fails the gate at once; the next task
/// is skipped and `finally` runs. A decision on a task that is not waiting
/// is refused.
#[test]
fn a_rejection_fails_the_gate_and_runs_finally() {
    let e = env(GATED);
    let (child, out) = start(&e);
    let run = until_waiting(&e.state, "gate");
    let o = approve_as(
        &e.state,
        "bob",
        &[
            &run,
            "--task",
            "gate",
            "--reject",
            "--comment",
            "not on a Friday",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = finish(child, &out);
    assert_eq!(v["status"], "Failed", "{v:#}");
    let gate = task(&v, "gate");
    assert_eq!(gate["status"], "Failed");
    assert!(
        gate["message"]
            .as_str()
            .unwrap()
            .contains("rejected by bob: not on a Friday")
    );
    assert_eq!(task(&v, "deploy")["status"], "Skipped");
    assert_eq!(task(&v, "report")["results"]["message"], "gate was Failed");
    let show = json(&capstan(&e.state, &["runs", "show", &run, "-o", "json"]));
    assert_eq!(show["approvals"][0]["phase"], "rejected");
    // Too late now.
    let o = approve_as(&e.state, "alice", &[&run, "--task", "gate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not waiting for approval"));
}

/// `on-timeout: approve` succeeds and `reject` fails, at the deadline.
#[test]
fn timeouts_approve_or_reject_as_configured() {
    let e = env(r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: timeouts }
spec:
  tasks:
    - name: lenient
      uses: "{{approve}}"
      params: [{ name: approvers, value: [alice] }, { name: timeout, value: 1s }, { name: on-timeout, value: approve }]
    - name: strict
      uses: "{{approve}}"
      params: [{ name: approvers, value: [alice] }, { name: timeout, value: 2s }]
"#);
    let started = Instant::now();
    let out = capstan(&e.state, &["run", &e.file, "-o", "json"]);
    let took = started.elapsed();
    let v = json(&out);
    assert_eq!(v["status"], "Failed", "{v:#}");
    let lenient = task(&v, "lenient");
    assert_eq!(lenient["status"], "Succeeded");
    assert_eq!(lenient["results"]["decision"], "approved");
    assert_eq!(lenient["results"]["comment"], "approved on timeout");
    let strict = task(&v, "strict");
    assert_eq!(strict["status"], "Failed");
    assert!(
        strict["message"]
            .as_str()
            .unwrap()
            .contains("rejected (on-timeout: reject)")
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let show = json(&capstan(
        &e.state,
        &["runs", "show", v["run_id"].as_str().unwrap(), "-o", "json"],
    ));
    let phases: Vec<&str> = show["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["timed-out", "timed-out"]);
}

/// SIGKILL the scheduler while the gate waits; approve while it is down
/// (the decision goes to the store); `runs resume` applies it, and the task
/// before the gate does not run again. A second gate's deadline passes
/// while the scheduler is down: on resume it fires at once.
#[test]
fn a_decision_made_while_the_scheduler_is_down_is_applied_on_resume() {
    let e = env(GATED);
    let (mut child, _out) = start(&e);
    let run = until_waiting(&e.state, "gate");
    child.kill().unwrap();
    child.wait().unwrap();
    for user in ["alice", "bob"] {
        let o = approve_as(&e.state, user, &[&run, "--task", "gate"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let list = json(&capstan(&e.state, &["approvals", "list", "-o", "json"]));
    assert_eq!(list[0]["decisions"].as_array().unwrap().len(), 2);
    let out = capstan(&e.state, &["runs", "resume", &run, "-o", "json"]);
    let v = json(&out);
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_eq!(task(&v, "build")["attempts"], 1);
    assert_eq!(task(&v, "gate")["attempts"], 1);
    assert_eq!(task(&v, "gate")["results"]["decided-by"], "alice,bob");
    let logs = String::from_utf8_lossy(&capstan(&e.state, &["logs", &run]).stdout).to_string();
    assert_eq!(logs.matches("message = built").count(), 1, "{logs}");
    assert_eq!(logs.matches("waiting for 2 of").count(), 1, "{logs}");

    // A deadline that passes while nobody runs the scheduler.
    let e = env(r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: late }
spec:
  tasks:
    - name: gate
      uses: "{{approve}}"
      params: [{ name: approvers, value: [alice] }, { name: timeout, value: 2s }]
"#);
    let (mut child, _out) = start(&e);
    let run = until_waiting(&e.state, "gate");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    let v = json(&capstan(&e.state, &["runs", "resume", &run, "-o", "json"]));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the overdue timeout did not fire at once"
    );
    assert_eq!(task(&v, "gate")["status"], "Failed", "{v:#}");
    assert!(
        task(&v, "gate")["message"]
            .as_str()
            .unwrap()
            .contains("on-timeout: reject")
    );
}

/// A one-request HTTP receiver: the body of the first request.
fn receiver() -> (String, std::thread::JoinHandle<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .unwrap();
                    return body.to_string();
                }
            }
            if n == 0 {
                return text;
            }
        }
    });
    (url, h)
}

/// The webhook reaches a receiver with the run, task, message and the
/// approve/reject endpoints; one that is down is retried in the background
/// and does not block the approval; an ungranted URL is denied.
#[test]
fn the_webhook_is_delivered_and_a_dead_receiver_does_not_block() {
    let (url, got) = receiver();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = env(&format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: hooks }}
spec:
  tasks:
    - name: gate
      uses: "{{{{approve}}}}"
      params: [{{ name: approvers, value: [alice] }}, {{ name: message, value: "release 1.2?" }}, {{ name: notify-url, value: "{url}/hook" }}]
      grants: {{ http: ["{url}"] }}
    - name: gate-dead
      uses: "{{{{approve}}}}"
      params: [{{ name: approvers, value: [alice] }}, {{ name: notify-url, value: "{dead}/hook" }}]
      grants: {{ http: ["{dead}"] }}
    - name: gate-ungranted
      uses: "{{{{approve}}}}"
      params: [{{ name: approvers, value: [alice] }}, {{ name: notify-url, value: "{url}/hook" }}]
"#
    ));
    let (child, out) = start(&e);
    let run = until_waiting(&e.state, "gate-dead");
    until_waiting(&e.state, "gate-ungranted");
    let body: Value = serde_json::from_str(&got.join().unwrap()).unwrap();
    assert_eq!(body["run_id"], run.as_str());
    assert_eq!(body["task"], "gate");
    assert_eq!(body["message"], "release 1.2?");
    assert_eq!(body["approvers"][0], "alice");
    assert_eq!(
        body["approve_url"],
        format!("http://capstan.example:7070/v1/runs/{run}/tasks/gate/approve")
    );
    assert_eq!(
        body["reject_url"],
        format!("http://capstan.example:7070/v1/runs/{run}/tasks/gate/reject")
    );
    assert_eq!(
        body["approve_command"],
        format!("capstan approve {run} --task gate")
    );
    assert_eq!(
        body["reject_command"],
        format!("capstan approve {run} --task gate --reject")
    );
    // The dead receiver is being retried; approvals go through meanwhile.
    for t in ["gate", "gate-ungranted"] {
        assert!(
            approve_as(&e.state, "alice", &[&run, "--task", t])
                .status
                .success()
        );
    }
    // After four tries the failure is recorded; the gate still waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = RunStore::open(&e.state)
            .unwrap()
            .wait(&run, "gate-dead")
            .unwrap()
            .unwrap();
        if w.phase == "notify-failed" {
            assert!(w.open);
            break;
        }
        assert!(Instant::now() < deadline, "no notify-failed: {w:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        approve_as(&e.state, "alice", &[&run, "--task", "gate-dead"])
            .status
            .success()
    );
    let v = finish(child, &out);
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let show = json(&capstan(&e.state, &["runs", "show", &run, "-o", "json"]));
    let phases = |t: &str| -> Vec<String> {
        show["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["task"] == t)
            .unwrap()["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["phase"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        phases("gate"),
        ["pending", "notifying", "notified", "approved"]
    );
    assert_eq!(
        phases("gate-dead"),
        ["pending", "notifying", "notify-failed", "approved"]
    );
    assert_eq!(
        phases("gate-ungranted"),
        ["pending", "notifying", "notify-failed", "approved"]
    );
    let logs = String::from_utf8_lossy(&capstan(&e.state, &["logs", &run]).stdout).to_string();
    assert!(logs.contains("approval notification delivered"), "{logs}");
    assert!(
        logs.contains("gate-dead#1 warn  approval notification to"),
        "{logs}"
    );
    assert!(logs.contains("denied: http POST"), "{logs}");
}

/// The README's example (examples/approval/pipeline.yaml), from the local
/// registry as scripts/quickstart.sh publishes it: two approvals and the
/// release task runs.
#[test]
fn the_approval_example_runs_with_two_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for plugin in [
        capstan_tests::components::WRITE_FILE,
        capstan_tests::components::APPROVE,
    ] {
        let out = capstan(&state, &["plugin", "publish", "--skip-existing", plugin]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ws = dir.path().join("out");
    std::fs::create_dir_all(&ws).unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/approval/pipeline.yaml"
    );
    let out_file = dir.path().join("out.json");
    let child = Command::new(CLI)
        .arg("--state-dir")
        .arg(&state)
        .args([
            "run",
            example,
            "-w",
            &format!("out={}", ws.display()),
            "-o",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = until_waiting(&state, "gate");
    for user in ["alice", "release-managers-member"] {
        let o = if user == "alice" {
            approve_as(&state, user, &[&run, "--task", "gate", "--comment", "lgtm"])
        } else {
            // Not listed (locally there are no groups): refused.
            approve_as(&state, user, &[&run, "--task", "gate"])
        };
        assert_eq!(o.status.code(), Some(if user == "alice" { 0 } else { 4 }));
    }
    assert!(
        approve_as(&state, "bob", &[&run, "--task", "gate"])
            .status
            .success()
    );
    let v = finish(child, &out_file);
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_eq!(
        std::fs::read_to_string(ws.join("release.txt")).unwrap(),
        "release 1.2.0 approved by alice,bob"
    );
}

/// A gate whose resume cannot start (the secret its grant names was
/// removed while it waited) fails at once, with the reason — it does not
/// retry every turn of the scheduler.
#[test]
fn a_gate_that_cannot_resume_fails_instead_of_spinning() {
    let e = env(&GATED.replace(
        r#"        - { name: message, value: "deploy to prod?" }"#,
        r#"        - { name: message, value: "deploy to prod?" }
      grants: { http: [{ url: "https://hooks.example.com", secret: hook-token, auth: bearer }] }"#,
    ));
    std::fs::create_dir_all(&e.state).unwrap();
    let mut set = Command::new(CLI)
        .arg("--state-dir")
        .arg(&e.state)
        .args(["secret", "set", "hook-token"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    set.stdin
        .take()
        .unwrap()
        .write_all(b"token-value-1")
        .unwrap();
    assert!(set.wait().unwrap().success());
    let (child, out) = start(&e);
    let run = until_waiting(&e.state, "gate");
    assert!(
        capstan(&e.state, &["secret", "rm", "hook-token"])
            .status
            .success()
    );
    for user in ["alice", "bob"] {
        approve_as(&e.state, user, &[&run, "--task", "gate"]);
    }
    let v = finish(child, &out);
    assert_eq!(v["status"], "Failed", "{v:#}");
    let gate = task(&v, "gate");
    assert_eq!(gate["status"], "Failed");
    let msg = gate["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot resume") && msg.contains("hook-token"),
        "{msg}"
    );
    assert_eq!(task(&v, "report")["status"], "Succeeded");
}
