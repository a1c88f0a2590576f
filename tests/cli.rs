//! The `capstan` command line as a user runs it: exit codes, JSON output,
//! `plugin inspect`, `runs`, `logs`, cancel from another process, and resume
//! after the scheduler process is killed with SIGKILL.

#[path = "cli/listing.rs"]
mod listing;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use capstan::store::{RunStatus, RunStore, TaskStatus};
use capstan_tests::{components, expand};
use serde_json::Value;

fn capstan(state: &Path, args: &[&str]) -> Output {
    capstan_tests::cli(env!("CARGO_BIN_EXE_capstan-cli"), state, args)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn write(dir: &Path, name: &str, yaml: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, expand(yaml)).unwrap();
    p.display().to_string()
}

#[test]
fn run_exit_codes_and_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ok = write(
        dir.path(),
        "ok.yaml",
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: ok }
spec:
  params: [{ name: msg, default: hi }]
  tasks:
    - { name: a, uses: "{{echo}}", params: [{ name: message, value: "$(params.msg)" }] }
  results: [{ name: out, value: "$(tasks.a.results.message)" }]
"#,
    );
    let out = capstan(&state, &["run", &ok, "-p", "msg=from-cli", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "Succeeded");
    assert_eq!(v["results"]["out"], "from-cli");
    assert_eq!(v["tasks"][0]["name"], "a");
    assert_eq!(v["tasks"][0]["attempts"], 1);
    assert_eq!(v["tasks"][0]["results"]["message"], "from-cli");
    assert!(v["tasks"][0]["start"].as_str().unwrap().ends_with('Z'));
    // Which plugin version and digest ran.
    assert_eq!(v["plugins"][0]["name"], "echo", "{v}");
    assert_eq!(v["plugins"][0]["version"], "0.1.0");
    assert!(
        v["plugins"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let run_id = v["run_id"].as_str().unwrap().to_string();
    let shown = capstan(&state, &["runs", "show", &run_id]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("echo 0.1.0  sha256:"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );

    let failing = write(
        dir.path(),
        "fail.yaml",
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: f }\nspec:\n  tasks:\n    - { name: x, uses: \"{{fail}}\" }\n",
    );
    let out = capstan(&state, &["run", &failing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Failed"));

    let invalid = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: b }\nspec:\n  tasks:\n    - { name: x, uses: \"{{echo}}\", runAfter: [y] }\n",
    );
    let out = capstan(&state, &["run", &invalid, "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["error"], "invalid");
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["line"] == 6 && p["message"] == "no task `y`"),
        "{v}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:6:"));

    let out = capstan(&state, &["run", &ok, "-p", "nope=1"]);
    assert_eq!(out.status.code(), Some(2));

    // runs list / show / logs
    let out = capstan(&state, &["runs", "list", "-o", "json"]);
    let list = json(&out);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == run_id.as_str())
    );
    let out = capstan(&state, &["runs", "show", &run_id, "-o", "json"]);
    let v = json(&out);
    assert_eq!(v["attempts"][0]["task"], "a");
    assert_eq!(v["attempts"][0]["status"], "Succeeded");
    let out = capstan(&state, &["logs", &run_id, "--task", "a"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("message = from-cli"));
    let out = capstan(&state, &["runs", "show", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `no-such-run`"));
}

#[test]
fn plugin_inspect_shows_manifest_and_wit() {
    let dir = tempfile::tempdir().unwrap();
    let out = capstan(
        dir.path(),
        &["plugin", "inspect", components::WRITE_FILE, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["manifest"]["name"], "write-file");
    assert_eq!(v["manifest"]["params"][0]["name"], "path");
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(imports.contains(&"capstan:plugin/log@0.1.0"), "{imports:?}");
    assert!(imports.iter().all(|i| !i.starts_with("wasi:http")));
    assert!(
        v["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "capstan:plugin/task@0.1.0")
    );

    let out = capstan(dir.path(), &["plugin", "inspect", components::SHA256SUM]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sha256sum 0.1.0") && text.contains("source (read-only)"),
        "{text}"
    );

    let out = capstan(
        dir.path(),
        &["plugin", "inspect", components::MAL_UNDECLARED_IMPORT],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs capability `ssh`"));
}

const SLOW_CHAIN: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: chain }
spec:
  workspaces: [{ name: log }]
  tasks:
    - name: a
      uses: "{{sleep}}"
      params: [{ name: millis, value: "10" }, { name: marker, value: runs.txt }]
      workspaces: [{ name: log, workspace: log }]
    - name: b
      uses: "{{sleep}}"
      runAfter: [a]
      params: [{ name: millis, value: "MILLIS" }, { name: marker, value: runs.txt }]
      workspaces: [{ name: log, workspace: log }]
    - name: c
      uses: "{{sleep}}"
      runAfter: [b]
      params: [{ name: millis, value: "10" }, { name: marker, value: runs.txt }]
      workspaces: [{ name: log, workspace: log }]
"#;

/// A temp dir holding a state dir, the `log` workspace directory and the
/// slow-chain pipeline whose task `b` sleeps `millis`.
struct Chain {
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
    ws: std::path::PathBuf,
    file: String,
}

fn chain(millis: &str) -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let file = write(
        dir.path(),
        "chain.yaml",
        &SLOW_CHAIN.replace("MILLIS", millis),
    );
    Chain {
        dir,
        state,
        ws,
        file,
    }
}

/// Start `capstan run` in the background and wait until task `b`'s plugin runs.
/// The caller owns (kills/waits for) the returned child.
#[allow(clippy::zombie_processes)]
fn start_until_b_runs(state: &Path, file: &str, ws: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
        .arg("--state-dir")
        .arg(state)
        .args(["run", file, "--workspace", &format!("log={}", ws.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("task b never started");
        }
        if let Ok(store) = RunStore::open(state)
            && let Ok(runs) = store.list_runs(1)
            && let Some(run) = runs.first()
            && store
                .tasks(&run.id)
                .unwrap()
                .iter()
                .any(|t| t.name == "b" && t.status == TaskStatus::Running)
            // ...and the plugin itself is executing (it wrote its marker).
            && std::fs::read_to_string(ws.join("runs.txt")).is_ok_and(|m| m.contains("b attempt 1\n"))
        {
            return (child, run.id.clone());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn resume_after_sigkill_does_not_rerun_succeeded_tasks() {
    let Chain {
        dir: _dir,
        state,
        ws,
        file,
    } = chain("3000");

    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = RunStore::open(&state).unwrap();
    assert_eq!(
        store.run(&run_id).unwrap().status,
        RunStatus::Running,
        "killed mid-run"
    );

    // Following the logs of a run nobody executes does not wait forever.
    let out = capstan(&state, &["logs", &run_id, "--follow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("capstan runs resume"));
    // `runs list` and `runs show` say it is orphaned and how to continue.
    let out = capstan(&state, &["runs", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Orphaned"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("capstan runs resume"));
    let out = capstan(&state, &["runs", "show", &run_id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("capstan runs resume {run_id}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        json(&capstan(&state, &["runs", "show", &run_id, "-o", "json"]))["orphaned"],
        true
    );
    // A task the run does not have is an error naming the ones it has.
    let out = capstan(&state, &["logs", &run_id, "--task", "typo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no task `typo`; its tasks: a, b, c"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Resume from another directory: paths must not depend on the cwd.
    let out = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
        .current_dir("/")
        .arg("--state-dir")
        .arg(&state)
        .args(["runs", "resume", &run_id, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "Succeeded");
    assert_eq!(
        json(&capstan(&state, &["runs", "show", &run_id, "-o", "json"]))["orphaned"],
        false
    );

    let markers = std::fs::read_to_string(ws.join("runs.txt")).unwrap();
    let lines: Vec<&str> = markers.lines().collect();
    assert_eq!(
        lines,
        ["a attempt 1", "b attempt 1", "b attempt 2", "c attempt 1"],
        "{markers}"
    );
    let tasks = store.tasks(&run_id).unwrap();
    let b = tasks.iter().find(|t| t.name == "b").unwrap();
    assert_eq!((b.status, b.attempts), (TaskStatus::Succeeded, 2));
    let attempts = store.attempts(&run_id).unwrap();
    let b1 = attempts
        .iter()
        .find(|a| a.task == "b" && a.attempt == 1)
        .unwrap();
    assert_eq!(b1.status, TaskStatus::Cancelled);
    assert_eq!(
        b1.message.as_deref(),
        Some("the scheduler stopped during this attempt")
    );
    // Logs of the first process survived.
    let logs = store.logs(&run_id, Some("a"), None, 0, 100).unwrap();
    assert!(logs.iter().any(|l| l.message == "awake"));

    // Resuming a finished run changes nothing.
    let out = capstan(&state, &["runs", "resume", &run_id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(ws.join("runs.txt")).unwrap(),
        markers
    );
}

#[test]
fn cancel_from_another_process() {
    let Chain {
        dir: _dir,
        state,
        ws,
        file,
    } = chain("60000");
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);

    // A second resume while the first process runs it is refused.
    let out = capstan(&state, &["runs", "resume", &run_id]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("being executed by another capstan process")
    );

    let out = capstan(&state, &["runs", "cancel", &run_id]);
    assert_eq!(out.status.code(), Some(0));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled run exits 1");
    let store = RunStore::open(&state).unwrap();
    assert_eq!(store.run(&run_id).unwrap().status, RunStatus::Cancelled);
    let tasks = store.tasks(&run_id).unwrap();
    assert_eq!(
        tasks.iter().find(|t| t.name == "c").unwrap().status,
        TaskStatus::Cancelled
    );
}

#[test]
fn bench_reports_every_figure_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let oci = capstan_tests::oci::OciServer::start();
    let url = oci.url("bench");
    let out = capstan(
        dir.path(),
        &[
            "bench",
            "--plugin",
            components::NOOP,
            "--start-samples",
            "20",
            "--dag-tasks",
            "30",
            "--chain",
            "5",
            "--spawn-samples",
            "5",
            "--oci-registry",
            &url,
            "--approvals",
            "40",
            "--approve-plugin",
            components::APPROVE,
            "--load-runs",
            "8",
            "--load-rounds",
            "2",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    for key in [
        "warm_start_p50_us",
        "warm_start_p99_us",
        "spawn_p50_us",
        "dag_1000_tasks_ms",
        "registry_resolve_load_p50_ms",
        "dependent_gap_p99_us",
        "oci_cold_pull_p50_ms",
        "oci_cold_pull_vs_local_cached",
    ] {
        assert!(
            v[key].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
            "{key} in {v}"
        );
    }
    let l = &v["load"];
    assert_eq!(l["runs"], 8, "{v}");
    assert_eq!(l["rss_after_round_mib"].as_array().unwrap().len(), 2, "{v}");
    assert!(l["peak_rss_mib"].as_f64().unwrap() >= l["idle_rss_mib"].as_f64().unwrap());
    assert!(l["round_ms"][1].as_f64().is_some_and(|x| x > 0.0), "{v}");
    let a = &v["approvals"];
    assert_eq!(a["waiting_tasks"], 40, "{v}");
    for key in [
        "idle_rss_mib",
        "waiting_rss_mib",
        "resume_p50_ms",
        "resume_max_ms",
        "resume_vs_warm_start",
    ] {
        assert!(
            a[key].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
            "approvals.{key} in {v}"
        );
    }
}

#[test]
fn logs_follow_streams_until_the_run_ends() {
    let Chain {
        dir: _dir,
        state,
        ws,
        file,
    } = chain("1000");
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    let out = capstan(&state, &["logs", &run_id, "--follow"]);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    // Lines written before and after `logs` started, through the last task.
    for want in [
        "a#1 info  sleeping 10 ms",
        "b#1 info  awake",
        "c#1 info  awake",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    assert_eq!(
        text.matches("c#1 info  awake").count(),
        1,
        "no line twice:\n{text}"
    );
}

/// The README's quick start: the project's plugins published to the local
/// registry, then examples/hello/pipeline.yaml run by version range.
#[test]
fn quickstart_example_runs_from_the_local_registry() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for plugin in [
        components::WRITE_FILE,
        components::SHA256SUM,
        components::WORD_COUNT,
        components::GIT_CLONE,
    ] {
        for _ in 0..2 {
            let out = capstan(&state, &["plugin", "publish", "--skip-existing", plugin]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hello/pipeline.yaml"
    );
    let out = capstan(&state, &["run", example, "-o", "json"]);
    let v = json(&out);
    assert_eq!(v["status"], "Succeeded", "{v}");
    let report = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "report")
        .expect("report task");
    assert_eq!(report["status"], "Succeeded");
    // The clone of this repository is at its HEAD.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        v["results"]["commit"],
        String::from_utf8_lossy(&head.stdout).trim(),
        "{v}"
    );
}

/// `capstan serve`, the local API: a token from `capstan token add`;
/// `capstan logs --follow --server` streams a running run until it ends; an
/// unknown token gets 401, and no token at all a clear error.
#[test]
fn serve_streams_logs_to_token_holders() {
    let Chain {
        dir: _dir,
        state,
        ws,
        file,
    } = chain("1000");
    let out = capstan(
        &state,
        &["token", "add", "alice", "--group", "release", "-o", "json"],
    );
    let token = json(&out)["token"].as_str().unwrap().to_string();
    let (mut server, url) = capstan_tests::serve(env!("CARGO_BIN_EXE_capstan-cli"), &state, &[]);
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    let out = capstan(
        &state,
        &[
            "logs", &run_id, "--follow", "--server", &url, "--token", &token,
        ],
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["a#1 info  sleeping 10 ms", "c#1 info  awake"] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    assert_eq!(text.matches("c#1 info  awake").count(), 1, "{text}");
    // The run list, as JSON over HTTP.
    let list = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{url}/v1/runs"))
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["run_id"], run_id.as_str());
    // Refusals.
    let out = capstan(
        &state,
        &[
            "logs",
            &run_id,
            "--server",
            &url,
            "--token",
            "capstan_forged",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("401: unknown token"));
    let out = capstan_tests::cli_env(
        env!("CARGO_BIN_EXE_capstan-cli"),
        &state,
        &["logs", &run_id, "--server", &url],
        &[("KUBECONFIG", std::ffi::OsStr::new("/nonexistent"))],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));
    let _ = server.kill();
    let _ = server.wait();
}

/// Output into a pipe that is already closed (`capstan … | head` once
/// `head` has gone): the program ends quietly, killed by SIGPIPE like any
/// Unix tool, instead of panicking in `println!`.
#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for args in [
        vec!["plugin", "inspect", components::ECHO],
        vec!["runs", "list"],
        vec!["plugin", "keygen", "k"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
            .current_dir(dir.path())
            .arg("--state-dir")
            .arg(&state)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before any output
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// Malformed input is exit code 2 with a message that says what is
/// expected, not an internal error (3).
#[test]
fn bad_references_and_missing_inputs_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(dir.path().join("empty-dir")).unwrap();
    let empty = dir.path().join("empty-dir").display().to_string();
    let missing = dir.path().join("missing.wasm").display().to_string();
    for (args, want) in [
        (
            vec!["plugin", "yank", "hello"],
            "needs a name and an exact version, e.g. hello@1.1.0",
        ),
        (
            vec!["plugin", "sign", "hello@1", "--sign-key", "k"],
            "e.g. hello@1.1.0",
        ),
        (
            vec!["plugin", "deprecate", "hello@x", "-m", "old"],
            "exact version",
        ),
        (
            vec!["plugin", "inspect", &missing],
            "give a component file (.wasm) or a registry reference",
        ),
        (vec!["plugin", "publish", &empty], "has no Cargo.toml"),
    ] {
        let out = capstan(&state, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `CAPSTAN_REGISTRY=` (set but empty) means unset, not "the current
/// directory"; a mistyped `--registry` directory is an error for reading,
/// not silently created and empty.
#[test]
fn registry_locations_are_not_invented() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
        .current_dir(&cwd)
        .env("CAPSTAN_REGISTRY", "")
        .arg("--state-dir")
        .arg(&state)
        .args(["plugin", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "the cwd became a registry"
    );
    let typo = dir.path().join("regsitry");
    let out = capstan(
        &state,
        &["--registry", typo.to_str().unwrap(), "plugin", "list"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Capstan registry"));
    assert!(!typo.exists());
}

/// `runs stop` lets the running task finish and starts nothing new; the
/// API's `cancel` stops it now; `runs cancel --run-finally` of a run no
/// process executes (its executor was killed) carries the stop out itself.
#[test]
fn stop_and_cancel_from_the_cli_and_the_api() {
    let Chain {
        dir: _dir,
        state,
        ws,
        file,
    } = chain("1500");
    let status_of = |run: &str| {
        let v = json(&capstan(&state, &["runs", "show", run, "-o", "json"]));
        let task = |n: &str| {
            v["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == n)
                .map(|t| t["status"].as_str().unwrap().to_string())
                .unwrap()
        };
        (
            v["status"].as_str().unwrap().to_string(),
            task("b"),
            task("c"),
        )
    };

    // Graceful stop.
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    let out = capstan(&state, &["runs", "stop", &run_id]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("StoppedRunFinally"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    child.wait().unwrap();
    assert_eq!(
        status_of(&run_id),
        ("Cancelled".into(), "Succeeded".into(), "Skipped".into())
    );

    // Cancel through the API.
    let out = capstan(&state, &["token", "add", "ops", "-o", "json"]);
    let token = json(&out)["token"].as_str().unwrap().to_string();
    let (mut server, url) = capstan_tests::serve(env!("CARGO_BIN_EXE_capstan-cli"), &state, &[]);
    std::fs::remove_file(ws.join("runs.txt")).unwrap();
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    let curl = |token: &str| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("{url}/v1/runs/{run_id}/cancel"))
            .output()
            .unwrap()
    };
    assert_eq!(
        String::from_utf8_lossy(&curl("capstan_forged").stdout),
        "401"
    );
    assert_eq!(String::from_utf8_lossy(&curl(&token).stdout), "202");
    child.wait().unwrap();
    assert_eq!(
        status_of(&run_id),
        ("Cancelled".into(), "Cancelled".into(), "Cancelled".into())
    );
    let _ = server.kill();
    let _ = server.wait();

    // The executor is killed; cancel --run-finally finishes the run here.
    std::fs::remove_file(ws.join("runs.txt")).unwrap();
    let (mut child, run_id) = start_until_b_runs(&state, &file, &ws);
    child.kill().unwrap();
    child.wait().unwrap();
    let out = capstan(&state, &["runs", "cancel", &run_id, "--run-finally"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process executes it"));
    let (run, _, c) = status_of(&run_id);
    assert_eq!((run.as_str(), c.as_str()), ("Cancelled", "Skipped"));
}

/// `capstan version` names the commit; `capstan completion` prints scripts
/// the shells accept; `-o json` is refused where there is no JSON form.
#[test]
fn version_completion_and_json_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = capstan(&state, &["version", "-o", "json"]);
    let v = json(&out);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap();
    assert!(commit.len() >= 12 || commit == "unknown", "{commit}");
    let text = capstan(&state, &["version"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(commit));

    let out = capstan(&state, &["completion", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = dir.path().join("capstan.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("runs"));
    for shell in ["zsh", "fish"] {
        let out = capstan(&state, &["completion", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }

    let out = capstan(&state, &["crds", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no JSON output"));
    // Every argument has help (checked in the unit tests); spot-check one.
    let out = capstan(&state, &["runs", "show", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("The run's id"));
}

/// `runs rerun --failed`: fix what failed (here: a missing secret), run
/// again without re-running what succeeded — its results are reused, its
/// files are where it left them, and the run says where each came from.
/// A plain `rerun` runs everything again in fresh directories; the API
/// does the same.
#[test]
fn rerun_all_or_only_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = write(
        dir.path(),
        "p.yaml",
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: rr }
spec:
  workspaces: [{ name: log }]
  tasks:
    - name: a
      uses: "{{sleep}}"
      params: [{ name: millis, value: "1" }, { name: marker, value: runs.txt }]
      workspaces: [{ name: log }]
    - name: b
      uses: "{{secret_read}}"
      runAfter: [a]
      params: [{ name: name, value: tok }, { name: reveal, value: "false" }]
      grants: { secrets: [tok] }
    - name: c
      uses: "{{echo}}"
      params: [{ name: message, value: "a slept $(tasks.a.results.slept), b read $(tasks.b.results.length)" }]
"#,
    );
    let out = capstan(&state, &["run", &file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let first = json(&out);
    let run1 = first["run_id"].as_str().unwrap().to_string();
    let task = |v: &Value, n: &str| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(task(&first, "b")["status"], "Failed");

    let out = capstan(&state, &["runs", "rerun", &run1, "--failed", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "still no secret: still failing");
    let mut secret = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
        .arg("--state-dir")
        .arg(&state)
        .args(["secret", "set", "tok"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    secret
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cr3t-value")
        .unwrap();
    assert!(secret.wait().unwrap().success());

    let out = capstan(&state, &["runs", "rerun", &run1, "--failed", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["rerun_of"], run1.as_str());
    let a = task(&v, "a");
    assert_eq!(
        (a["status"].as_str(), a["attempts"].as_u64()),
        (Some("Succeeded"), Some(0))
    );
    assert_eq!(a["reused_from"], run1.as_str());
    assert!(task(&v, "b")["reused_from"].is_null());
    assert_eq!(task(&v, "c")["results"]["message"], "a slept 1, b read 0");
    // `a` did not run again: one marker line, in the first run's workspace.
    let ws = state.join("workspaces").join(&run1).join("log/runs.txt");
    assert_eq!(std::fs::read_to_string(&ws).unwrap().lines().count(), 1);

    // Everything again: `a` runs, in a fresh workspace.
    let out = capstan(&state, &["runs", "rerun", &run1, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(task(&v, "a")["attempts"], 1);
    let run3 = v["run_id"].as_str().unwrap();
    assert!(
        state
            .join("workspaces")
            .join(run3)
            .join("log/runs.txt")
            .is_file()
    );

    // Through the API.
    let out = capstan(&state, &["token", "add", "ops", "-o", "json"]);
    let token = json(&out)["token"].as_str().unwrap().to_string();
    let (mut server, url) = capstan_tests::serve(env!("CARGO_BIN_EXE_capstan-cli"), &state, &[]);
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"failed": true}"#,
        ])
        .arg(format!("{url}/v1/runs/{run1}/rerun"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from the API");
    let api_run = v["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = json(&capstan(&state, &["runs", "show", &api_run, "-o", "json"]));
        if s["status"] == "Succeeded" {
            assert_eq!(task(&s, "a")["reused_from"], run1.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API's re-run did not finish: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// `-o json` is one JSON document on stdout for every command that has a
/// result (registry, secrets, keys, tokens), not text a program must parse.
#[test]
fn json_output_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key = dir.path().join("k");
    let key_s = key.display().to_string();
    let key_file = format!("{key_s}.key");
    let pulled = dir.path().join("e.wasm").display().to_string();
    let mut set = Command::new(env!("CARGO_BIN_EXE_capstan-cli"))
        .arg("--state-dir")
        .arg(&state)
        .args(["secret", "set", "tok", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    set.stdin.take().unwrap().write_all(b"value-1234").unwrap();
    let out = set.wait_with_output().unwrap();
    assert_eq!(json(&out)["bytes"], 10);
    let cmds: Vec<Vec<&str>> = vec![
        vec!["secret", "list"],
        vec!["secret", "rm", "tok"],
        vec!["plugin", "keygen", &key_s],
        vec!["plugin", "publish", components::ECHO],
        vec!["plugin", "list"],
        vec!["plugin", "versions", "echo"],
        vec!["plugin", "yank", "echo@0.1.0"],
        vec!["plugin", "yank", "echo@0.1.0", "--undo"],
        vec!["plugin", "deprecate", "echo@0.1.0", "-m", "old"],
        vec!["plugin", "sign", "echo@0.1.0", "--sign-key", &key_file],
        vec!["plugin", "pull", "echo@0.1.0", "--out", &pulled],
        vec!["token", "add", "u"],
        vec!["token", "list"],
        vec!["runs", "list"],
        vec!["approvals", "list"],
        vec!["version"],
    ];
    for mut args in cmds {
        args.extend(["-o", "json"]);
        let out = capstan(&state, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out);
    }
}
