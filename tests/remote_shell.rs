//! remote-shell against a real sshd: the seed scenario (git-clone →
//! remote `make` → the artifact comes back and runs), incremental sync,
//! mirrored deletions, exit codes, refused paths, no secret anywhere.

use std::path::PathBuf;

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::git::{GitServer, clone_pipeline, git};
use capstan_tests::sshd::{Sshd, USER};
use capstan_tests::{RunOutcome, TestEnv};

fn ssh_grant(sshd: &Sshd) -> String {
    format!(
        "ssh: [{{ host: 127.0.0.1, port: {}, secret: build-key, hostKey: \"{}\" }}]",
        sshd.port, sshd.fingerprint
    )
}

fn remote_task(sshd: &Sshd, remote: &str, script: &str, extra: &str) -> String {
    format!(
        r#"    - name: build
      uses: "{{{{remote_shell}}}}"
      timeout: 60s
      params:
        - {{ name: host, value: "127.0.0.1" }}
        - {{ name: port, value: "{}" }}
        - {{ name: user, value: "{USER}" }}
        - {{ name: remote-workspace, value: "{remote}" }}
        - {{ name: script, value: "{script}" }}
        - {{ name: env, value: {{ GREETING: "hi there" }} }}
{extra}      workspaces: [{{ name: source, workspace: src }}]
      grants: {{ {} }}
"#,
        sshd.port,
        ssh_grant(sshd)
    )
}

fn env(sshd: &Sshd) -> TestEnv {
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("build-key", sshd.client_key.as_bytes())
        .unwrap();
    env
}

fn remote_dir() -> String {
    format!("/tmp/capstan-rs-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

#[tokio::test]
async fn git_clone_then_remote_make_brings_the_artifact_back() {
    let sshd = Sshd::start();
    let server = GitServer::start(true);
    let (bare, work) = server.repo("hello.git");
    std::fs::write(
        work.path().join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello from the build machine\"); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("Makefile"),
        "out/hello: hello.c\n\tmkdir -p out\n\tcc -o out/hello hello.c\n",
    )
    .unwrap();
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "hello"]);
    server.push(work.path(), &bare, &["main"]);
    let env = env(&sshd);
    let remote = remote_dir();
    let yaml = clone_pipeline(
        &server.url("hello.git"),
        &server.origin(),
        &[("deleteExisting", "false")],
        &remote_task(
            &sshd,
            &remote,
            "make && echo built: $GREETING",
            "        - { name: sync-back, value: [out] }\n        - { name: exclude, value: [\".git/**\"] }\n"
        )
        .replace(
            "    - name: build\n",
            "    - name: build\n      runAfter: [clone]\n"
        )
    );
    let checkout = tempfile::tempdir().unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), checkout.path().to_path_buf())].into(),
        ..Default::default()
    };
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("build", "exit-code"), "0");
    assert!(
        run.log_text().contains("built: hi there"),
        "{}",
        run.log_text()
    );
    let ws = PathBuf::from(&run.run.spec.workspaces["src"]);
    let out = std::process::Command::new(ws.join("out/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the build machine\n"
    );
    assert!(run.result("build", "bytes-back").parse::<u64>().unwrap() > 0);

    // The stale-build case: a one-line commit. The clone updates only
    // hello.c, only hello.c goes up, the remote make rebuilds, and the new
    // binary comes back.
    let v2 =
        "#include <stdio.h>\nint main(void) { puts(\"rebuilt after the commit\"); return 0; }\n";
    std::fs::write(work.path().join("hello.c"), v2).unwrap();
    git(work.path(), &["commit", "-q", "-am", "change the greeting"]);
    server.push(work.path(), &bare, &["main"]);
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let log = run.log_text();
    assert!(log.contains("1 file(s) written"), "{log}");
    assert!(log.contains("sync up: 1 to send (hello.c)"), "{log}");
    assert_eq!(run.result("build", "bytes-up"), v2.len().to_string());
    let out = std::process::Command::new(ws.join("out/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "rebuilt after the commit\n"
    );
    let _ = std::fs::remove_dir_all(&remote);
}

fn sync_yaml(sshd: &Sshd, remote: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: sync }}\nspec:\n  workspaces: [{{ name: src }}]\n  tasks:\n{}",
        remote_task(sshd, remote, script, extra)
    )
}

#[tokio::test]
async fn sync_is_incremental_mirrors_deletions_and_reports_exit_codes() {
    let sshd = Sshd::start();
    let env = env(&sshd);
    let remote = remote_dir();
    let local = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::create_dir_all(local.path().join("src")).unwrap();
        std::fs::write(
            local.path().join(format!("src/f{i}.txt")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), local.path().to_path_buf())].into(),
        ..Default::default()
    };
    let no_back = "        - { name: sync-back, value: [] }\n";
    let run_sync = |script: &str| sync_yaml(&sshd, &remote, script, no_back);

    let run = env.run_with(&run_sync("ls src | wc -l"), &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let first: u64 = run.result("build", "bytes-up").parse().unwrap();
    assert_eq!(
        first,
        (0..20)
            .map(|i| format!("file {i}\n").len() as u64)
            .sum::<u64>()
    );

    // Nothing changed: nothing sent.
    let run = env.run_with(&run_sync("true"), &[], opts()).await;
    assert_eq!(run.result("build", "bytes-up"), "0");

    // One file changed, one deleted.
    std::fs::write(local.path().join("src/f3.txt"), "changed!\n").unwrap();
    std::fs::remove_file(local.path().join("src/f7.txt")).unwrap();
    let run = env
        .run_with(
            &run_sync("test ! -e src/f7.txt && cat src/f3.txt"),
            &[],
            opts(),
        )
        .await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("build", "bytes-up"), "9");
    assert!(run.log_text().contains("changed!"));

    // Exit 3 fails the task with the code and stderr.
    let run = env
        .run_with(&run_sync("echo broken >&2; exit 3"), &[], opts())
        .await;
    assert_eq!(run.status_of("build"), TaskStatus::Failed);
    let msg = run.message("build");
    assert!(
        msg.contains("exited with 3") && msg.contains("broken"),
        "{msg}"
    );

    // sync-back outside the workspace: refused before connecting.
    let run = env
        .run_with(
            &sync_yaml(
                &sshd,
                &remote,
                "true",
                "        - { name: sync-back, value: [\"../etc\"] }\n",
            ),
            &[],
            opts(),
        )
        .await;
    assert_eq!(run.status_of("build"), TaskStatus::Failed);
    assert!(
        run.message("build").contains("outside the workspace"),
        "{}",
        run.message("build")
    );
    no_secret_in(&env, &run, &sshd);
}

fn no_secret_in(env: &TestEnv, run: &RunOutcome, sshd: &Sshd) {
    let key_body = sshd.client_key.lines().nth(1).unwrap().to_string();
    assert!(!run.log_text().contains(&key_body));
    capstan_tests::assert_not_in_state(&env.sched.state_dir, &key_body);
}

/// The seed use case with a matrix: one pipeline builds on two machines
/// (two real sshd, each with its own key and host key), one combination
/// each, and collects what each built and their exit codes.
#[tokio::test]
async fn a_matrix_builds_on_several_machines() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let env = TestEnv::new();
    let secrets = LocalSecrets::new(&env.sched.state_dir.join("secrets"));
    secrets.set("key-a", a.client_key.as_bytes()).unwrap();
    secrets.set("key-b", b.client_key.as_bytes()).unwrap();
    let (ra, rb) = (remote_dir(), remote_dir() + "-b");
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("main.c"), "int main(){return 0;}\n").unwrap();
    let yaml = format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: fleet }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: build
      uses: "{{{{remote_shell}}}}"
      timeout: 60s
      matrix:
        include:
          - {{ name: a, params: [{{ name: port, value: "{pa}" }}, {{ name: remote-workspace, value: "{ra}" }}] }}
          - {{ name: b, params: [{{ name: port, value: "{pb}" }}, {{ name: remote-workspace, value: "{rb}" }}] }}
        maxParallel: 1
      params:
        - {{ name: host, value: "127.0.0.1" }}
        - {{ name: user, value: "{USER}" }}
        - {{ name: script, value: 'p=$(echo $SSH_CONNECTION | cut -d" " -f4); test -f main.c && echo "built on $p" > artifact-$p' }}
      workspaces: [{{ name: source, workspace: src }}]
      grants:
        ssh:
          - {{ host: 127.0.0.1, port: {pa}, secret: key-a, hostKey: "{fa}" }}
          - {{ host: 127.0.0.1, port: {pb}, secret: key-b, hostKey: "{fb}" }}
    - name: gather
      uses: "{{{{echo}}}}"
      params:
        - {{ name: message, value: x }}
        - {{ name: items, value: ["$(tasks.build.results.exit-code[*])"] }}
"#,
        pa = a.port,
        pb = b.port,
        fa = a.fingerprint,
        fb = b.fingerprint,
    );
    let opts = capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), local.path().to_path_buf())].into(),
        ..Default::default()
    };
    let run = env.run_with(&yaml, &[], opts).await;
    assert_eq!(
        run.status,
        capstan::store::RunStatus::Succeeded,
        "{}",
        run.log_text()
    );
    for s in [&a, &b] {
        let artifact = local.path().join(format!("artifact-{}", s.port));
        assert_eq!(
            std::fs::read_to_string(&artifact).unwrap_or_default(),
            format!("built on {}\n", s.port),
            "{}",
            run.log_text()
        );
    }
    assert_eq!(run.result("gather", "items"), "0,0");
    assert!(
        PathBuf::from(&ra).join("main.c").is_file() && PathBuf::from(&rb).join("main.c").is_file()
    );
    let _ = std::fs::remove_dir_all(&ra);
    let _ = std::fs::remove_dir_all(&rb);
}

/// The stale-build bug: files sent up used to arrive dated 1970, so after a
/// change the remote `make` found its target newer and shipped the old
/// binary. Times now travel both ways: a change is rebuilt and comes back,
/// the artifact brought back is not sent up again, and an unchanged tree
/// is not rebuilt.
#[tokio::test]
async fn a_changed_source_is_rebuilt_remotely_and_only_it_is_sent() {
    use std::os::unix::fs::MetadataExt;
    let sshd = Sshd::start();
    let env = env(&sshd);
    let remote = remote_dir();
    let local = tempfile::tempdir().unwrap();
    let source =
        |v: &str| format!("#include <stdio.h>\nint main(void) {{ puts(\"{v}\"); return 0; }}\n");
    std::fs::write(local.path().join("hello.c"), source("version one")).unwrap();
    std::fs::write(
        local.path().join("Makefile"),
        "out/hello: hello.c\n\tmkdir -p out\n\tcc -o out/hello hello.c\n",
    )
    .unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), local.path().to_path_buf())].into(),
        ..Default::default()
    };
    let yaml = sync_yaml(
        &sshd,
        &remote,
        "make",
        "        - { name: sync-back, value: [out] }\n",
    );
    let run_hello = || {
        String::from_utf8_lossy(
            &std::process::Command::new(local.path().join("out/hello"))
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };

    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run_hello(), "version one\n");
    // Times are kept both ways, to the nanosecond.
    for (here, there) in [
        (
            local.path().join("hello.c"),
            PathBuf::from(&remote).join("hello.c"),
        ),
        (
            local.path().join("out/hello"),
            PathBuf::from(&remote).join("out/hello"),
        ),
    ] {
        let (h, t) = (
            std::fs::metadata(&here).unwrap(),
            std::fs::metadata(&there).unwrap(),
        );
        assert_eq!(
            (h.mtime(), h.mtime_nsec()),
            (t.mtime(), t.mtime_nsec()),
            "{}",
            here.display()
        );
    }
    let binary = std::fs::metadata(local.path().join("out/hello"))
        .unwrap()
        .len();
    assert_eq!(run.result("build", "bytes-back"), binary.to_string());

    // One source changes: only it goes up, make rebuilds, the new binary
    // comes back.
    let v2 = source("version two");
    std::fs::write(local.path().join("hello.c"), &v2).unwrap();
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(run.result("build", "bytes-up"), v2.len().to_string());
    assert!(
        run.log_text().contains("sync up: 1 to send"),
        "{}",
        run.log_text()
    );
    assert_eq!(run_hello(), "version two\n");

    // Nothing changes: nothing goes up and make has nothing to do.
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(run.result("build", "bytes-up"), "0");
    assert!(
        run.log_text().contains("is up to date"),
        "{}",
        run.log_text()
    );
    let _ = std::fs::remove_dir_all(&remote);
}

/// The seed scenario on a real project nobody here wrote (antirez/kilo,
/// from `tests/fixtures/kilo.bundle`), served by `git http-backend`: clone,
/// `make` on the build machine over a real sshd, the binary back; then a
/// one-line commit: the checkout rewrites one file, one file goes up, make
/// rebuilds, the new binary comes back — no stale build.
#[tokio::test]
async fn a_real_project_is_rebuilt_after_a_commit() {
    let sshd = Sshd::start();
    let server = GitServer::start(true);
    let bundle = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kilo.bundle");
    let bare = server.root.path().join("kilo.git");
    git(
        server.root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            bundle.to_str().unwrap(),
            "kilo.git",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    let env = env(&sshd);
    let remote = remote_dir();
    let yaml = clone_pipeline(
        &server.url("kilo.git"),
        &server.origin(),
        &[("deleteExisting", "false")],
        &remote_task(
            &sshd,
            &remote,
            "make",
            "        - { name: sync-back, value: [kilo] }\n        - { name: exclude, value: [\".git/**\"] }\n"
        )
        .replace("    - name: build\n", "    - name: build\n      runAfter: [clone]\n")
    );
    let checkout = tempfile::tempdir().unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), checkout.path().to_path_buf())].into(),
        ..Default::default()
    };
    let usage = || {
        let out = std::process::Command::new(checkout.path().join("kilo"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    assert_eq!(usage(), "Usage: kilo <filename>\n");
    assert_eq!(
        git(checkout.path(), &["diff-files", "--name-only"]),
        "",
        "{}",
        run.log_text()
    );

    let source = std::fs::read_to_string(work.path().join("kilo.c")).unwrap();
    std::fs::write(
        work.path().join("kilo.c"),
        source.replace("Usage: kilo <filename>", "Usage: kilo-rebuilt <filename>"),
    )
    .unwrap();
    git(work.path(), &["commit", "-q", "-am", "a one-line change"]);
    git(work.path(), &["push", "-q", "origin", "HEAD"]);
    let run = env.run_with(&yaml, &[], opts()).await;
    assert_eq!(
        run.status_of("build"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let log = run.log_text();
    assert!(log.contains("1 file(s) written"), "{log}");
    assert!(log.contains("sync up: 1 to send (kilo.c)"), "{log}");
    assert_eq!(usage(), "Usage: kilo-rebuilt <filename>\n");
    let _ = std::fs::remove_dir_all(&remote);
}
