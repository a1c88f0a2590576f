//! Helpers of the forge tests (`tests/forge.rs`, `tests/attacks/forge.rs`):
//! the deliveries GitHub and GitLab publish (`../shared/forge-payloads/`),
//! rewritten and signed again; a `capstan serve` with a repository; the
//! status requests a recording server saw.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::git::git;
use crate::{components, httpd};
use serde_json::Value;

pub const TOKEN: &str = "forge-api-token-value";

/// The shared payloads: `CAPSTAN_FORGE_PAYLOADS`, or `shared/` beside the
/// checkout.
pub fn payloads() -> PathBuf {
    let dir = std::env::var_os("CAPSTAN_FORGE_PAYLOADS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/forge-payloads"),
        PathBuf::from,
    );
    assert!(
        dir.join("INDEX.json").is_file(),
        "the forge payloads are not at {} (set CAPSTAN_FORGE_PAYLOADS to the shared/forge-payloads directory)",
        dir.display()
    );
    dir
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A payload and its headers, by file name under the payloads directory.
pub fn delivery(name: &str) -> (Value, Value) {
    let dir = payloads();
    (
        read_json(&dir.join(format!("{name}.json"))),
        read_json(&dir.join(format!("{name}.headers.json"))),
    )
}

pub fn secret() -> String {
    read_json(&payloads().join("INDEX.json"))["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn capstan(bin: &str, state: &Path, args: &[&str]) -> Output {
    crate::cli(bin, state, args)
}

pub fn ok(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// POST `body` with `headers` (GitHub's signature recomputed when
/// `resign`); status and JSON answer.
pub fn post(url: &str, headers: &Value, body: &[u8], resign: bool) -> (u16, Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"]);
    for (k, v) in headers.as_object().unwrap() {
        let v = v.as_str().unwrap();
        if k.eq_ignore_ascii_case("X-Hub-Signature-256") && resign {
            let sig = capstan::forge::verify::github_signature(secret().as_bytes(), body);
            cmd.args(["-H", &format!("{k}: {sig}")]);
        } else if !k.eq_ignore_ascii_case("X-Hub-Signature") {
            cmd.args(["-H", &format!("{k}: {v}")]);
        }
    }
    cmd.arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(url);
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A server whose state has write-file published and the repository's
/// secrets set.
pub struct Setup {
    _dir: tempfile::TempDir,
    pub bin: String,
    pub state: PathBuf,
    server: std::process::Child,
    pub url: String,
}

impl Setup {
    pub fn start(bin: &str, serve_args: &[&str], repo_args: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut args = vec![
            "repo",
            "add",
            "-o",
            "json",
            "--webhook-secret",
            "hook",
            "--token",
            "api-token",
        ];
        args.extend_from_slice(repo_args);
        ok(&capstan(bin, &state, &args));
        Setup::start_in(bin, dir, serve_args)
    }

    /// Start on `dir/state`, whose repositories are configured.
    pub fn start_in(bin: &str, dir: tempfile::TempDir, serve_args: &[&str]) -> Setup {
        let state = dir.path().join("state");
        for plugin in [
            components::WRITE_FILE,
            components::APPROVE,
            components::SECRET_READ,
        ] {
            ok(&capstan(
                bin,
                &state,
                &["plugin", "publish", "--skip-existing", plugin],
            ));
        }
        for (name, value) in [("hook", secret()), ("api-token", TOKEN.to_string())] {
            let f = dir.path().join(name);
            std::fs::write(&f, &value).unwrap();
            ok(&capstan(
                bin,
                &state,
                &["secret", "set", name, "--from-file", f.to_str().unwrap()],
            ));
        }
        let (server, url) = crate::serve(bin, &state, serve_args);
        Setup {
            _dir: dir,
            bin: bin.to_string(),
            state,
            server,
            url,
        }
    }

    /// Kill the server (SIGKILL) and start it again on the same state.
    pub fn restart(&mut self, serve_args: &[&str]) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let (server, url) = crate::serve(&self.bin, &self.state, serve_args);
        self.server = server;
        self.url = url;
    }

    pub fn hook(&self, provider: &str) -> String {
        format!("{}/v1/hooks/{provider}", self.url)
    }

    pub fn run(&self, id: &str) -> Value {
        ok(&capstan(
            &self.bin,
            &self.state,
            &["runs", "show", id, "-o", "json"],
        ))
    }

    /// Wait until run `id` has ended; its JSON.
    pub fn ended(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.run(id);
            if ["Succeeded", "Failed", "Cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the run's task `note` wrote.
    pub fn note(&self, id: &str) -> String {
        let store = capstan::store::RunStore::open(&self.state).unwrap();
        let dir = store.run(id).unwrap().spec.workspaces["out"].clone();
        std::fs::read_to_string(Path::new(&dir).join("trigger.txt")).unwrap()
    }

    pub fn deliveries(&self, repo: &str) -> Vec<Value> {
        ok(&capstan(
            &self.bin,
            &self.state,
            &["repo", "deliveries", repo, "-o", "json"],
        ))
        .as_array()
        .unwrap()
        .clone()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A pipeline writing what its trigger was into `trigger.txt`.
pub fn pipeline(label: &str) -> String {
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: ci }}
spec:
  params:
    - name: revision
      default: $(context.trigger.revision)
  workspaces: [{{ name: out }}]
  tasks:
    - name: note
      uses: write-file@0.1
      params:
        - {{ name: path, value: trigger.txt }}
        - name: content
          value: "{label} $(params.revision) $(context.trigger.branch) $(context.trigger.event) $(context.trigger.trusted) $(context.trigger.pr-number)"
      workspaces: [{{ name: output, workspace: out }}]
"#
    )
}

/// Commit `files` on the work tree's current branch; the commit id.
pub fn commit(work: &Path, files: &[(&str, &str)]) -> String {
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(work, &["add", "-A"]);
    git(
        work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "c",
        ],
    );
    git(work, &["rev-parse", "HEAD"]).trim().to_string()
}

/// The status requests the recording forge has seen, as (head, JSON).
pub fn statuses(forge: &httpd::Server, at_least: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = forge.exchanges();
        if seen.len() >= at_least {
            return seen
                .into_iter()
                .map(|(h, b)| (h, serde_json::from_str(&b).unwrap_or(Value::Null)))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} status requests: {seen:?}",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `headers` with another delivery id.
pub fn fresh_with(headers: &Value, id: &str) -> Value {
    let mut h = headers.clone();
    h["X-GitHub-Delivery"] = id.into();
    h
}

/// A run's task status.
pub fn task_status(run: &Value, task: &str) -> String {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .map(|t| t["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

impl Setup {
    /// Wait until `check` holds for run `id`'s JSON.
    pub fn until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.run(id);
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "run {id}: not {what}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Deliver GitHub's push example moved to `sha` on `branch` as delivery
/// `id`; the run it started.
pub fn push_branch(s: &Setup, sha: &str, branch: &str, id: &str) -> String {
    let (mut body, headers) = delivery("github/push-branch");
    body["after"] = sha.into();
    body["ref"] = format!("refs/heads/{branch}").into();
    let (code, answer) = post(
        &s.hook("github"),
        &fresh_with(&headers, id),
        &serde_json::to_vec(&body).unwrap(),
        true,
    );
    assert_eq!(code, 201, "{answer}");
    answer["runs"][0].as_str().unwrap().to_string()
}

/// The soak's repositories: `r0`..`r{repos-1}` on `git_server`, each with
/// `.capstan/ci.yaml` on main and `events` branches `b0`.. of a commit
/// each; their commits (the work trees are kept alive by the caller).
pub fn soak_repositories(
    git_server: &crate::git::GitServer,
    repos: usize,
    events: usize,
) -> (Vec<Vec<String>>, Vec<tempfile::TempDir>) {
    let mut commits: Vec<Vec<String>> = Vec::new();
    let mut works = Vec::new();
    for r in 0..repos {
        let (bare, work) = git_server.repo(&format!("r{r}.git"));
        let mut shas = Vec::new();
        commit(
            work.path(),
            &[(".capstan/ci.yaml", &pipeline(&format!("r{r}")))],
        );
        for e in 0..events {
            git(
                work.path(),
                &["checkout", "-q", "-b", &format!("b{e}"), "main"],
            );
            shas.push(commit(work.path(), &[("EVENT", &e.to_string())]));
            git_server.push(work.path(), &bare, &[&format!("b{e}")]);
        }
        git_server.push(work.path(), &bare, &["main"]);
        commits.push(shas);
        works.push(work);
    }
    (commits, works)
}

/// The soak itself: every event of `commits` (repository `soak/rN`,
/// branch `bE`) delivered twice to `hook`, shuffled, from 16 senders at
/// once. Exactly one run per distinct event, all succeed, no repository
/// runs more than `limit` at once, every commit gets its final status.
pub fn soak(hook: &str, state: &Path, commits: &[Vec<String>], forge: &httpd::Server, limit: i64) {
    let total: usize = commits.iter().map(Vec::len).sum();
    let (body, headers) = delivery("github/push-branch");
    let mut deliveries = Vec::new();
    for (r, shas) in commits.iter().enumerate() {
        for (e, sha) in shas.iter().enumerate() {
            let mut b = body.clone();
            b["after"] = sha.clone().into();
            b["ref"] = format!("refs/heads/b{e}").into();
            b["repository"]["full_name"] = format!("soak/r{r}").into();
            let h = fresh_with(&headers, &format!("soak-{r}-{e}"));
            let bytes = serde_json::to_vec(&b).unwrap();
            deliveries.push((h.clone(), bytes.clone()));
            deliveries.push((h, bytes));
        }
    }
    // Mixed: a redelivery may arrive before, with or after its original.
    fastrand::seed(18);
    fastrand::shuffle(&mut deliveries);
    let answers = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((h, b)) = deliveries.get(i) else {
                        break;
                    };
                    let (code, v) = post(hook, h, b, true);
                    answers.lock().unwrap().push((
                        h["X-GitHub-Delivery"].as_str().unwrap().to_string(),
                        code,
                        v,
                    ));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), 2 * total);
    for (id, code, v) in &answers {
        assert!([200, 201, 202].contains(code), "{id}: {code} {v}");
    }
    soak_verify(state, total, limit, forge);
}

/// The soak's runs and statuses.
fn soak_verify(state: &Path, total: usize, limit: i64, forge: &httpd::Server) {
    use std::collections::{BTreeMap, BTreeSet};
    // Exactly one run per distinct event.
    let store = capstan::store::RunStore::open(state).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let runs = loop {
        let runs = store.list_runs(1000).unwrap();
        let done = runs.iter().filter(|r| r.status.is_terminal()).count();
        if runs.len() >= total && done == runs.len() {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs, {done} ended",
            runs.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(runs.len(), total);
    let mut per_event = BTreeSet::new();
    for r in &runs {
        assert_eq!(r.status.as_str(), "Succeeded", "{}: {:?}", r.id, r.message);
        assert!(
            per_event.insert(r.spec.trigger["delivery"].clone()),
            "two runs of {}",
            r.spec.trigger["delivery"]
        );
    }
    // No repository ran more than its limit at once.
    let mut by_repo: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in &runs {
        by_repo
            .entry(r.spec.trigger["repository"].clone())
            .or_default()
            .push((r.started_at.unwrap(), r.finished_at.unwrap()));
    }
    for (repo, spans) in by_repo {
        let mut edges: Vec<(i64, i64)> = spans
            .iter()
            .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
            .collect();
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, d) in edges {
            now += d;
            most = most.max(now);
        }
        assert!(most <= limit, "{repo}: {most} runs at once");
    }
    // Every commit's final status is success.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let finals: BTreeSet<String> = forge
            .exchanges()
            .iter()
            .filter(|(_, b)| b.contains("\"success\""))
            .filter_map(|(h, _)| h.split_whitespace().nth(1).map(str::to_string))
            .collect();
        if finals.len() == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} commits have their final status",
            finals.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
