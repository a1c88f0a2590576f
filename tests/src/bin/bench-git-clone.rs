//! Clone benchmark: the git-clone plugin vs `git clone --depth 1`, in one
//! run, against the same local `git http-backend` server.
//!
//!     cargo run --release -p capstan-tests --bin bench-git-clone -- [FILES] [MIB] [RUNS]
//!     cargo run --release -p capstan-tests --bin bench-git-clone -- REPO... [RUNS]
//!
//! Without REPO: generates a repository of FILES files totalling about MIB
//! MiB with three commits of history (defaults: 5000, 50, 3). With REPO
//! (paths of real repositories, bare or not, e.g. clones of ripgrep and
//! tektoncd/catalog): serves each and clones it at depth 1 and 0. Each
//! clone is timed RUNS times each way, alternating; prints the medians and
//! their ratio (plugin / git), plus JSON lines for machines.

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

/// The pipeline cloning `url` at `depth`.
fn clone_yaml(url: &str, origin: &str, depth: u32) -> String {
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: bench-clone }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      params:
        - {{ name: url, value: "{url}" }}
        - {{ name: depth, value: "{depth}" }}
        - {{ name: submodules, value: "false" }}
      workspaces: [{{ name: output, workspace: src }}]
      grants: {{ http: ["{origin}"] }}
"#
    )
}

/// Median ms of `runs` clones each way, alternating (git, plugin, git, …)
/// so a noisy neighbour hits both.
async fn compare(
    env: &TestEnv,
    server: &GitServer,
    name: &str,
    depth: u32,
    runs: usize,
) -> (f64, f64) {
    let url = server.url(name);
    let yaml = clone_yaml(&url, &server.origin(), depth);
    // One warm-up run compiles the component (cached afterwards).
    let warm = env.run(&yaml, &[]).await;
    assert_eq!(
        warm.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        warm.log_text()
    );
    let (mut git_ms, mut plugin_ms) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dest = tempfile::tempdir().unwrap();
        let mut args = vec!["clone", "-q"];
        let d = depth.to_string();
        if depth > 0 {
            args.extend(["--depth", d.as_str()]);
        }
        let target = format!("c{i}");
        args.extend([url.as_str(), target.as_str()]);
        let t = Instant::now();
        git(dest.path(), &args);
        git_ms.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let run = env.run(&yaml, &[]).await;
        plugin_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if std::env::var_os("BENCH_LOG").is_some() {
            let start = run.logs.first().map_or(0, |l| l.ts);
            for l in &run.logs {
                eprintln!(
                    "  +{:>6.1} ms  {}",
                    (l.ts - start) as f64 / 1000.0,
                    l.message
                );
            }
        }
        assert_eq!(
            run.status_of("clone"),
            TaskStatus::Succeeded,
            "{}",
            run.log_text()
        );
    }
    (median(plugin_ms), median(git_ms))
}

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // Paths (existing directories) are real repositories to clone; numbers
    // configure the generated one.
    let repos: Vec<&String> = raw.iter().filter(|a| Path::new(a).is_dir()).collect();
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let env = TestEnv::with_limits(capstan::runtime::TaskLimits {
        memory_bytes: 1 << 30,
        ..Default::default()
    });
    let server = GitServer::start(true);
    let mut rows = Vec::new();
    if repos.is_empty() {
        let files = args.first().copied().unwrap_or(5000);
        let mib = args.get(1).copied().unwrap_or(50);
        let runs = args.get(2).copied().unwrap_or(3).max(1);
        let (bare, work) = server.repo("bench.git");
        eprintln!("generating {files} files, ~{mib} MiB, 3 commits…");
        generate(work.path(), files, mib << 20);
        server.push(work.path(), &bare, &["main"]);
        let (p, g) = compare(&env, &server, "bench.git", 1, runs).await;
        rows.push((format!("generated, {files} files, ~{mib} MiB"), 1, p, g));
    } else {
        let runs = args.first().copied().unwrap_or(3).max(1);
        for (i, path) in repos.iter().enumerate() {
            let name = format!("real{i}.git");
            server.add_existing(&name, Path::new(path.as_str()));
            let label = Path::new(path.as_str())
                .canonicalize()
                .unwrap()
                .display()
                .to_string();
            let files = git(
                Path::new(path.as_str()),
                &["ls-tree", "-r", "--name-only", "HEAD"],
            )
            .lines()
            .count();
            for depth in [1, 0] {
                eprintln!("{label}: depth {depth}, {runs} runs each way…");
                let (p, g) = compare(&env, &server, &name, depth, runs).await;
                rows.push((format!("{label} ({files} files)"), depth, p, g));
            }
        }
    }
    println!("| repository | depth | git-clone plugin | git clone | ratio |");
    println!("|---|---|---|---|---|");
    for (label, depth, p, g) in &rows {
        println!(
            "| {label} | {depth} | {p:.0} ms | {g:.0} ms | {:.2}× |",
            p / g
        );
    }
    for (label, depth, p, g) in &rows {
        println!(
            "{}",
            serde_json::json!({ "repository": label, "depth": depth, "plugin_ms": p, "git_ms": g, "ratio": p / g })
        );
    }
}
