//! Clone benchmark: the git-clone plugin vs `git clone --depth 1`, in one
//! run, against the same local `git http-backend` server.
//!
//!     cargo run --release -p capstan-tests --bin bench-git-clone -- [FILES] [MIB] [RUNS]
//!
//! Generates a repository of FILES files totalling about MIB MiB with three
//! commits of history (defaults: 5000, 50, 3), then times each clone RUNS
//! times and prints the medians and their ratio (plugin / git), plus a JSON
//! line for machines.

use std::path::Path;
use std::time::Instant;

use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::git::{GitServer, git};

/// Deterministic, moderately compressible text.
fn content(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "capstan",
        "pipeline",
        "task",
        "sandbox",
        "plugin",
        "registry",
        "digest",
        "commit",
        "tree",
        "blob",
        "delta",
        "workspace",
        "grant",
        "secret",
        "kube",
        "ssh",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
        if x.is_multiple_of(5) {
            out.extend_from_slice(format!("{:x}", x >> 20).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn generate(work: &Path, files: usize, bytes: usize) {
    let per = bytes / files;
    for round in 0..3u64 {
        for i in 0..files {
            // Later rounds change one file in ten.
            if round > 0 && i % 10 != round as usize {
                continue;
            }
            let dir = work.join(format!("d{:02}/s{:02}", i % 50, (i / 50) % 20));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(format!("f{i}.txt")),
                content(i as u64 * 7 + round, per),
            )
            .unwrap();
        }
        git(work, &["add", "-A"]);
        git(work, &["commit", "-q", "-m", &format!("round {round}")]);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let files = args.first().copied().unwrap_or(5000);
    let mib = args.get(1).copied().unwrap_or(50);
    let runs = args.get(2).copied().unwrap_or(3).max(1);

    let server = GitServer::start(true);
    let (bare, work) = server.repo("bench.git");
    eprintln!("generating {files} files, ~{mib} MiB, 3 commits…");
    generate(work.path(), files, mib << 20);
    server.push(work.path(), &bare, &["main"]);
    let url = server.url("bench.git");

    let mut git_ms = Vec::new();
    for i in 0..runs {
        let dest = tempfile::tempdir().unwrap();
        let t = Instant::now();
        git(
            dest.path(),
            &["clone", "-q", "--depth", "1", &url, &format!("c{i}")],
        );
        git_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let env = TestEnv::with_limits(capstan::runtime::TaskLimits {
        memory_bytes: 1 << 30,
        ..Default::default()
    });
    let yaml = format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: bench-clone }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      params: [{{ name: url, value: "{url}" }}]
      workspaces: [{{ name: output, workspace: src }}]
      grants: {{ http: ["{}"] }}
"#,
        server.origin()
    );
    // One warm-up run compiles the component (cached afterwards).
    let warm = env.run(&yaml, &[]).await;
    assert_eq!(
        warm.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        warm.log_text()
    );
    let mut plugin_ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let run = env.run(&yaml, &[]).await;
        plugin_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            run.status_of("clone"),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
    }
    let (p, g) = (median(plugin_ms), median(git_ms));
    println!("clone of {files} files (~{mib} MiB, depth 1), median of {runs}:");
    println!("  git-clone plugin   {p:>8.0} ms");
    println!("  git clone --depth 1 {g:>7.0} ms");
    println!("  ratio              {:>8.2}×   (target ≤ 1.2×)", p / g);
    println!(
        "{}",
        serde_json::json!({ "files": files, "mib": mib, "plugin_ms": p, "git_ms": g, "ratio": p / g })
    );
}
