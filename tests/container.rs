//! Container steps on a real engine: Debian's podman serving the Docker
//! Engine API (tests/src/podman.rs), a busybox image built from Debian
//! packages, the `script` plugin and the host's `container` capability.
//! Each test checks that no container is left behind. They run one at a
//! time (they share the engine and its container list).

use capstan::store::{RunStatus, TaskStatus};
use capstan_tests::podman::{IMAGE, KANIKO, podman_engine};
use capstan_tests::{RunOutcome, TestEnv};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[path = "container/pull.rs"]
mod pull;

const HEADER: &str =
    "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: ctr }\nspec:\n";

/// A pipeline: write `hello.txt` into workspace `src`, then run `script`
/// (more `params:` entries in `extra`) in `image`, granted `grant`.
fn pipeline(image: &str, grant: &str, script: &str, extra: &str) -> String {
    format!(
        r#"{HEADER}  workspaces: [{{ name: src }}]
  tasks:
    - name: write
      uses: "{{{{write_file}}}}"
      params: [{{ name: path, value: hello.txt }}, {{ name: content, value: "hello from the workspace\n" }}]
      workspaces: [{{ name: output, workspace: src }}]
    - name: build
      uses: "{{{{script}}}}"
      runAfter: [write]
      params:
        - {{ name: image, value: "{image}" }}
        - name: script
          value: |
{script}
{extra}      workspaces: [{{ name: source, workspace: src }}]
      grants:
        container: [{{ image: "{grant}" }}]
"#
    )
}

/// The grant every test but the denial one gives.
const GRANT: &str = "localhost/capstan-busybox:*";

/// The `build` task failed with a message saying `says`.
fn assert_build_failed(run: &RunOutcome, says: &str) {
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Failed,
        "{}",
        run.log_text()
    );
    assert!(
        run.message("build").contains(says),
        "{}",
        run.message("build")
    );
}

fn indent(script: &str) -> String {
    script
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[tokio::test]
async fn a_script_runs_in_the_image_on_the_task_workspace() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    let script = indent(
        "cat hello.txt\necho \"cwd=$(pwd) user=$(id -u) v=$GREETING\"\necho to-stderr >&2\necho built > artifact.txt\ncp artifact.txt \"$CAPSTAN_RESULTS/ignored\"",
    );
    let extra = "        - { name: env, value: { GREETING: hi } }\n";
    let yaml = pipeline(IMAGE, GRANT, &script, extra);
    let run = env.run(&yaml, &[]).await;
    let log = run.log_text();
    assert_eq!(run.status, RunStatus::Succeeded, "{log}");
    assert_eq!(run.result("build", "exit-code"), "0");
    assert!(log.contains("hello from the workspace"), "{log}");
    assert!(log.contains("cwd=/workspace/source user=0 v=hi"), "{log}");
    assert!(log.contains("to-stderr"), "{log}");
    assert!(log.contains("result `ignored`"), "{log}");
    // The file the container wrote is in the run's workspace on the host.
    let ws = find(env.dir.path(), "artifact.txt")
        .unwrap_or_else(|| panic!("no artifact.txt under {}", env.dir.path().display()));
    assert_eq!(std::fs::read_to_string(ws).unwrap(), "built\n");
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// The first file named `name` under `dir`.
fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            Some(p)
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            find(&p, name)
        } else {
            None
        }
    })
}

#[tokio::test]
async fn a_failing_script_fails_the_task_with_its_exit_code() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    // `set -e` (Tekton's default for a script without `#!`): `false` stops it.
    let yaml = pipeline(
        IMAGE,
        GRANT,
        &indent("echo before\nfalse\necho never-printed"),
        "",
    );
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, "exited with 1");
    assert!(!run.log_text().contains("never-printed"));
    let yaml = pipeline(IMAGE, GRANT, &indent("exit 3"), "");
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, "exited with 3");
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

#[tokio::test]
async fn an_image_outside_the_grant_is_denied_before_anything_runs() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    for grant in [
        "localhost/other:*",
        "localhost/capstan-busybox-evil:*",
        "docker.io/library/capstan-busybox:*",
    ] {
        let yaml = pipeline(IMAGE, grant, &indent("echo ran"), "");
        let run = env.run(&yaml, &[]).await;
        let log = run.log_text();
        assert_eq!(run.status_of("build"), TaskStatus::Failed, "{log}");
        assert!(
            log.contains("denied: container image `localhost/capstan-busybox:bookworm`"),
            "{log}"
        );
        assert!(!log.contains("\nran"), "{log}");
    }
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

#[tokio::test]
async fn a_container_past_its_timeout_is_killed_and_removed() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    let started = std::time::Instant::now();
    let yaml = pipeline(
        IMAGE,
        GRANT,
        &indent("trap '' TERM\necho sleeping\nsleep 60"),
        "        - { name: timeout, value: 2s }\n",
    );
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, "timeout passed");
    assert!(started.elapsed() < std::time::Duration::from_secs(50));
    assert_eq!(engine.leftovers(), Vec::<String>::new());
    // The task's own timeout (the call dropped mid-run) removes it too.
    let yaml = pipeline(IMAGE, GRANT, &indent("sleep 60"), "").replace(
        "      runAfter: [write]\n",
        "      runAfter: [write]\n      timeout: 2s\n",
    );
    let run = env.run(&yaml, &[]).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::TimedOut,
        "{}",
        run.log_text()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !engine.leftovers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived its task"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn without_an_engine_the_task_fails_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    let yaml = pipeline(IMAGE, GRANT, &indent("echo ran"), "");
    std::fs::write(&file, capstan_tests::expand(&yaml)).unwrap();
    let out = capstan_tests::cli_env(
        env!("CARGO_BIN_EXE_capstan-cli"),
        &dir.path().join("state"),
        &["run", file.to_str().unwrap()],
        &[(
            "CAPSTAN_CONTAINER_HOST",
            std::ffi::OsStr::new("unix:///nonexistent/engine.sock"),
        )],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no container engine: no socket at /nonexistent/engine.sock"),
        "{text}"
    );
}

/// A hostile script (what a pull request can change): it tries to mount,
/// to reach a listener on the host, to gain privileges, and to have the
/// host read a host file for it by leaving a link in the results directory.
#[tokio::test]
async fn a_hostile_script_stays_in_its_container() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    let tripwire = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tripwire.set_nonblocking(true).unwrap();
    let port = tripwire.local_addr().unwrap().port();
    let script = indent(&format!(
        "set +e\n\
         mount -t tmpfs none /mnt && echo ESCAPED-mount\n\
         wget -q -T 2 -O- http://127.0.0.1:{port}/ && echo ESCAPED-net\n\
         wget -q -T 2 -O- http://10.0.2.2:{port}/ && echo ESCAPED-net2\n\
         mknod /tmp/sda b 8 0 && echo ESCAPED-mknod\n\
         chown 1:1 /workspace/source/hello.txt && echo ESCAPED-chown\n\
         ln -s /etc/shadow \"$CAPSTAN_RESULTS/shadow\"\n\
         ln -s /workspace/source/hello.txt \"$CAPSTAN_RESULTS/inner\"\n\
         echo done-trying"
    ));
    let yaml = pipeline(IMAGE, GRANT, &script, "");
    let run = env.run(&yaml, &[]).await;
    let log = run.log_text();
    assert_eq!(run.status, RunStatus::Succeeded, "{log}");
    assert!(log.contains("done-trying"), "{log}");
    assert!(!log.contains("ESCAPED"), "{log}");
    // Links in the results directory are never followed (nor passed on).
    assert!(
        !log.contains("result `shadow`") && !log.contains("result `inner`"),
        "{log}"
    );
    assert!(
        matches!(tripwire.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the container reached a listener on the host"
    );
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

#[tokio::test]
async fn results_over_the_cap_fail_the_task() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    let script = indent("head -c 2000000 /dev/zero > \"$CAPSTAN_RESULTS/big\"");
    let yaml = pipeline(IMAGE, GRANT, &script, "");
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, "over 1048576 bytes");
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// Publish the `script` plugin into `env`'s local registry (what a
/// container step, `image:` + `script:`, runs).
fn publish_script(env: &TestEnv) {
    let out = capstan_tests::cli(
        env!("CARGO_BIN_EXE_capstan-cli"),
        &env.sched.state_dir,
        &["plugin", "publish", capstan_tests::components::SCRIPT],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tekton's own example of results (`examples/v1/taskruns/task-result.yaml`
/// in tektoncd/pipeline: `date +%s | tee $(results.….path)`), as a
/// container step, with a second step reading the result and a secret
/// passed by name; the values are what the command wrote, byte for byte.
#[tokio::test]
async fn a_container_step_runs_like_a_tekton_step() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    publish_script(&env);
    capstan::caps::secrets::LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("api-token", b"s3cr3t-value-99")
        .unwrap();
    let yaml = format!(
        r#"{HEADER}  workspaces: [{{ name: src }}]
  tasks:
    - name: print-date
      image: {IMAGE}
      results:
        - {{ name: current-date-unix-timestamp, description: The current date in unix timestamp format }}
        - {{ name: current-date-human-readable }}
      script: |
        #!/bin/sh
        date +%s | tee $(results.current-date-unix-timestamp.path)
        date | tee $(results.current-date-human-readable.path)
        printf '%s' "$TOKEN" | wc -c > $(workspaces.source.path)/token-length
        touch "$(results.current-date-human-readable.path)-$TOKEN"
        echo "the token is $TOKEN"
      env:
        - {{ name: TOKEN, secret: api-token }}
      workspaces: [{{ name: source, workspace: src }}]
    - name: read
      image: {IMAGE}
      command: [sh, -c]
      args: ["echo \"got $(tasks.print-date.results.current-date-unix-timestamp)\"; cat token-length"]
      workspaces: [{{ name: source, workspace: src }}]
"#
    );
    // A Tekton step's own workspace name: the error says which it may use.
    let last = yaml.rfind("name: source, workspace: src").unwrap();
    let other = format!(
        "{}name: output{}",
        &yaml[..last],
        &yaml[last + "name: source".len()..]
    );
    assert_ne!(other, yaml);
    let err = env.prepare(&other, &[]).err().unwrap();
    assert!(
        err.contains(
            "plugin `script` has no workspace `output` (its workspaces: `source`, `cache`)"
        ),
        "{err}"
    );
    let run = env.run(&yaml, &[]).await;
    let log = run.log_text();
    assert_eq!(run.status, RunStatus::Succeeded, "{log}");
    let stamp = run.result("print-date", "current-date-unix-timestamp");
    // `tee` wrote the line with its newline, and the result is that text.
    assert!(stamp.ends_with('\n'), "{stamp:?}");
    let secs: u64 = stamp.trim().parse().unwrap_or_else(|_| panic!("{stamp:?}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(secs) < 600, "{secs} vs {now}");
    assert!(
        !run.result("print-date", "current-date-human-readable")
            .is_empty(),
        "{log}"
    );
    assert!(log.contains(&format!("got {}", stamp.trim())), "{log}");
    // The container had the secret (15 bytes); the log never shows it.
    assert!(log.contains("the token is ***"), "{log}");
    assert!(
        run.task_log("read").iter().any(|l| l.trim() == "15"),
        "{log}"
    );
    capstan_tests::assert_not_in_state(&env.sched.state_dir, "s3cr3t-value-99");
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// The platform policy's `[container]` ceilings: a registry not listed and
/// a network are refused when the pipeline is checked, naming the field;
/// a container gets the memory ceiling as its limit when it sets none, and
/// one asking for more is denied by layer `policy`.
#[tokio::test]
async fn the_policy_sets_container_ceilings() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let mut env = TestEnv::new();
    publish_script(&env);
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        "[container]\nregistries = [\"localhost\"]\nmax-memory = \"64Mi\"\n",
    )
    .unwrap();
    env.sched.policy = std::sync::Arc::new(capstan::policy::PolicyFile::load(&policy).unwrap());
    let step = |image: &str, extra: &str| {
        format!(
            "{HEADER}  tasks:\n    - name: build\n      image: {image}\n      script: |\n        cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max\n{extra}"
        )
    };
    let err = env.prepare(&step("golang:1.22", ""), &[]).err().unwrap();
    assert!(
        err.contains("spec.tasks[0].grants.container[0].image")
            && err.contains("registry `docker.io` is not one the platform policy allows"),
        "{err}"
    );
    let net = step(
        IMAGE,
        &format!("      grants: {{ container: [{{ image: \"{IMAGE}\", network: true }}] }}\n"),
    );
    let err = env.prepare(&net, &[]).err().unwrap();
    assert!(
        err.contains("grants.container[0].network") && err.contains("no network"),
        "{err}"
    );
    let root = step(
        IMAGE,
        &format!("      grants: {{ container: [{{ image: \"{IMAGE}\", root: true }}] }}\n"),
    );
    let err = env.prepare(&root, &[]).err().unwrap();
    assert!(
        err.contains("grants.container[0].root") && err.contains("container.root = false"),
        "{err}"
    );
    let run = env.run(&step(IMAGE, ""), &[]).await;
    let log = run.log_text();
    assert_eq!(run.status, RunStatus::Succeeded, "{log}");
    assert!(
        run.task_log("build").iter().any(|l| l.trim() == "67108864"),
        "{log}"
    );
    let run = env
        .run(
            &step(IMAGE, "      resources: { limits: { memory: 1Gi } }\n"),
            &[],
        )
        .await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Failed,
        "{}",
        run.log_text()
    );
    assert!(
        run.log_text()
            .contains("(layer: policy; a memory limit of 1073741824 bytes is over"),
        "{}",
        run.log_text()
    );
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// A named cache outlives the run: the second run of the pipeline finds
/// what the first wrote; `capstan cache list` shows it and `clear` empties
/// the state of it.
#[tokio::test]
async fn a_named_cache_is_kept_across_runs() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    publish_script(&env);
    let yaml = format!(
        "{HEADER}  tasks:\n    - name: build\n      image: {IMAGE}\n      caches: [{{ name: deps, path: /root/.cache/deps }}]\n      script: |\n        echo run >> /root/.cache/deps/runs\n        echo \"runs so far: $(wc -l < /root/.cache/deps/runs)\"\n"
    );
    for n in 1..=2 {
        let run = env.run(&yaml, &[]).await;
        let log = run.log_text();
        assert_eq!(run.status, RunStatus::Succeeded, "{log}");
        assert!(log.contains(&format!("runs so far: {n}")), "{log}");
    }
    let cli = |args: &[&str]| {
        let out = capstan_tests::cli(
            env!("CARGO_BIN_EXE_capstan-cli"),
            &env.sched.state_dir,
            args,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let list = cli(&["cache", "list", "-o", "json"]);
    // The local runs' caches are not a namespace's.
    assert_eq!(
        cli(&["cache", "list", "--namespace", "team-a", "-o", "json"]),
        serde_json::json!([])
    );
    assert_eq!(list[0]["pipeline"], "ctr", "{list}");
    assert_eq!(list[0]["name"], "deps", "{list}");
    assert!(list[0]["bytes"].as_u64().unwrap() > 0, "{list}");
    let cleared = cli(&["cache", "clear", "deps", "--pipeline", "ctr", "-o", "json"]);
    assert_eq!(cleared.as_array().unwrap().len(), 1, "{cleared}");
    assert_eq!(cli(&["cache", "list", "-o", "json"]), serde_json::json!([]));
    let run = env.run(&yaml, &[]).await;
    assert!(
        run.log_text().contains("runs so far: 1"),
        "{}",
        run.log_text()
    );
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// `kaniko-build` on the container capability, on the local engine: the
/// executor (a stand-in, see tests/fixtures/kaniko-standin: no registry is
/// reachable to pull kaniko) gets the `source` workspace mounted by the
/// host, its flags, and the credentials placed by the plugin's script from
/// the granted secret; its digest comes back as IMAGE_DIGEST. A failing
/// build fails the task; a Dockerfile path out of the workspace is refused.
#[tokio::test]
async fn kaniko_build_runs_the_executor_on_the_workspace() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = TestEnv::new();
    capstan::caps::secrets::LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set(
            "docker-config",
            br#"{"auths":{"registry.example":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
    let task = |name: &str, content: &str, dockerfile: &str| {
        format!(
            r#"    - name: write-{name}
      uses: "{{{{write_file}}}}"
      params: [{{ name: path, value: "{name}/Dockerfile" }}, {{ name: content, value: "{content}" }}]
      workspaces: [{{ name: output, workspace: src }}]
    - name: {name}
      uses: "{{{{kaniko_build}}}}"
      runAfter: [write-{name}]
      onError: continue
      params:
        - {{ name: destination, value: registry.example/team/{name} }}
        - {{ name: tag, value: abc123 }}
        - {{ name: context, value: {name} }}
        - {{ name: dockerfile, value: "{dockerfile}" }}
        - {{ name: executor-image, value: "{KANIKO}" }}
        - {{ name: docker-config-secret, value: docker-config }}
        - {{ name: extra-args, value: [--no-push] }}
      workspaces: [{{ name: source, workspace: src }}]
      grants:
        container: [{{ image: "localhost/capstan-kaniko-standin:*", network: true, secrets: [docker-config] }}]
"#
        )
    };
    let yaml = format!(
        "{HEADER}  workspaces: [{{ name: src }}]\n  tasks:\n{}{}{}",
        task("app", "FROM scratch\\n", "Dockerfile"),
        task("broken", "FROM scratch\\nRUN FAIL\\n", "Dockerfile"),
        task("escape", "FROM scratch\\n", "../../etc/passwd"),
    );
    let run = env.run(&yaml, &[]).await;
    let log = run.log_text();
    assert_eq!(
        run.status_of("app"),
        TaskStatus::Succeeded,
        "{log}\n{}",
        run.message("app")
    );
    assert_eq!(
        run.result("app", "IMAGE_URL"),
        "registry.example/team/app:abc123"
    );
    let digest = run.result("app", "IMAGE_DIGEST");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        log.contains("--context=dir:///workspace/source/app"),
        "{log}"
    );
    assert!(log.contains("credentials: 46 bytes"), "{log}");
    assert!(log.contains("not pushed: --no-push"), "{log}");
    assert!(
        !log.contains("dTpw"),
        "the credentials reached the log:\n{log}"
    );
    assert_eq!(run.status_of("broken"), TaskStatus::Failed, "{log}");
    assert!(
        run.message("broken").contains("exited with 1"),
        "{}",
        run.message("broken")
    );
    assert!(log.contains("RUN returned a non-zero code"), "{log}");
    assert_eq!(run.status_of("escape"), TaskStatus::Failed, "{log}");
    assert!(
        run.message("escape")
            .contains("relative path inside the workspace"),
        "{}",
        run.message("escape")
    );
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}
