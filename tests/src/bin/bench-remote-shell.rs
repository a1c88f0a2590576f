//! Sync benchmark: remote-shell's first sync of a generated tree vs
//! `rsync -a -e ssh`, against the same local sshd, plus a no-change resync.
//!
//!     cargo run --release -p capstan-tests --bin bench-remote-shell -- [FILES] [MIB]
//!
//! Needs root (the sshd fixture), openssh-server and rsync.

use std::process::Command;
use std::time::Instant;

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::sshd::{Sshd, USER};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let files = args.first().copied().unwrap_or(2000);
    let mib = args.get(1).copied().unwrap_or(50);
    let sshd = Sshd::start();
    let tree = tempfile::tempdir().unwrap();
    let per = (mib << 20) / files;
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..files {
        let dir = tree.path().join(format!("d{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..per)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}.txt")), data).unwrap();
    }

    // rsync over ssh with the same key and a verified host key.
    let d = sshd.dir.path();
    std::fs::write(d.join("known_hosts"), format!("{}\n", sshd.known_hosts)).unwrap();
    let ssh = format!(
        "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        sshd.port,
        d.join("client_key").display(),
        d.join("known_hosts").display()
    );
    let rsync_dest = format!("/tmp/capstan-bench-rsync-{}", std::process::id());
    let t = Instant::now();
    let st = Command::new("rsync")
        .args(["-a", "-e", &ssh])
        .arg(format!("{}/", tree.path().display()))
        .arg(format!("{USER}@127.0.0.1:{rsync_dest}/"))
        .status()
        .unwrap();
    assert!(st.success(), "rsync failed");
    let rsync_ms = t.elapsed().as_secs_f64() * 1000.0;

    let env = TestEnv::with_limits(capstan::runtime::TaskLimits {
        memory_bytes: 1 << 30,
        ..Default::default()
    });
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("build-key", sshd.client_key.as_bytes())
        .unwrap();
    let remote = format!("/tmp/capstan-bench-rs-{}", std::process::id());
    let yaml = format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: bench-sync }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: sync
      uses: "{{{{remote_shell}}}}"
      params:
        - {{ name: host, value: "127.0.0.1" }}
        - {{ name: port, value: "{}" }}
        - {{ name: user, value: "{USER}" }}
        - {{ name: remote-workspace, value: "{remote}" }}
        - {{ name: script, value: "true" }}
        - {{ name: sync-back, value: [] }}
      workspaces: [{{ name: source, workspace: src }}]
      grants: {{ ssh: [{{ host: 127.0.0.1, port: {}, secret: build-key, hostKey: "{}" }}] }}
"#,
        sshd.port, sshd.port, sshd.fingerprint
    );
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), tree.path().to_path_buf())].into(),
        ..Default::default()
    };
    // Compile (or load the cached compile of) the component before timing.
    env.sched
        .runtime
        .load_file(std::path::Path::new(
            capstan_tests::components::REMOTE_SHELL,
        ))
        .unwrap();
    let t = Instant::now();
    let run = env.run_with(&yaml, &[], opts()).await;
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        run.status_of("sync"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let first_bytes = run.result("sync", "bytes-up").to_string();
    if std::env::var_os("BENCH_LOG").is_some() {
        for l in &run.logs {
            eprintln!("{} {}", l.ts, l.message);
        }
    }
    let t = Instant::now();
    let run = env.run_with(&yaml, &[], opts()).await;
    let again_ms = t.elapsed().as_secs_f64() * 1000.0;
    let again_bytes = run.result("sync", "bytes-up").to_string();
    println!("first sync of {files} files (~{mib} MiB):");
    println!("  remote-shell        {first_ms:>8.0} ms  ({first_bytes} bytes sent)");
    println!("  rsync -a -e ssh     {rsync_ms:>8.0} ms");
    println!(
        "  ratio               {:>8.2}×   (target ≤ 1.2×)",
        first_ms / rsync_ms
    );
    println!("no-change resync      {again_ms:>8.0} ms  ({again_bytes} file bytes sent)");
    println!(
        "{}",
        serde_json::json!({"files": files, "mib": mib, "plugin_first_ms": first_ms, "rsync_first_ms": rsync_ms,
            "ratio": first_ms / rsync_ms, "resync_ms": again_ms, "resync_bytes": again_bytes})
    );
    let _ = std::fs::remove_dir_all(&rsync_dest);
    let _ = std::fs::remove_dir_all(&remote);
}
