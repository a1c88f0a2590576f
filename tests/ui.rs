//! The web UI in a real browser: Debian's headless Chromium driven over
//! WebDriver against `capstan serve` (the real CLI as a child process), with
//! runs executed by `capstan run` in other processes, as a user would.
//! Screenshots of the main pages go to `target/ui-screenshots/`.

#[path = "ui/approvals.rs"]
mod approvals;
#[path = "ui/flows.rs"]
mod flows;
#[path = "ui/forge.rs"]
mod forge;
#[path = "ui/registry.rs"]
mod registry;
#[path = "ui/security.rs"]
mod security;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan::store::RunStore;
use capstan_tests::expand;

pub const CLI: &str = env!("CARGO_BIN_EXE_capstan-cli");

/// A server on a temp state directory.
pub(crate) struct Scene {
    dir: tempfile::TempDir,
    pub state: PathBuf,
    pub url: String,
    server: Child,
    runs: Vec<Child>,
}

impl Scene {
    pub(crate) fn new() -> Scene {
        Scene::with(|_| Vec::new())
    }

    /// A scene whose server gets the extra arguments `args` makes, given
    /// the state directory (after `setup` prepared it).
    pub(crate) fn with(setup: impl FnOnce(&std::path::Path) -> Vec<String>) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        // The store exists before the server opens it.
        RunStore::open(&state).unwrap();
        let extra = setup(&state);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (server, url) = capstan_tests::serve(CLI, &state, &extra);
        Scene {
            dir,
            state,
            url,
            server,
            runs: Vec::new(),
        }
    }

    /// A new API token for `user` in `groups`.
    pub fn token(&self, user: &str, groups: &[&str]) -> String {
        let mut args = vec!["token", "add", user, "-o", "json"];
        for g in groups {
            args.extend(["--group", g]);
        }
        let out = capstan_tests::cli(CLI, &self.state, &args);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// `capstan run` of `yaml` (components expanded) in the background;
    /// the new run's id once the store has it.
    pub fn start_run(&mut self, yaml: &str, params: &[&str]) -> String {
        let before: Vec<String> = self.run_ids();
        let file = self.dir.path().join(format!("p{}.yaml", self.runs.len()));
        std::fs::write(&file, expand(yaml)).unwrap();
        let mut cmd = Command::new(CLI);
        cmd.arg("--state-dir")
            .arg(&self.state)
            .arg("run")
            .arg(&file);
        for p in params {
            cmd.args(["-p", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.runs.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(id) = self.run_ids().into_iter().find(|id| !before.contains(id)) {
                return id;
            }
            assert!(Instant::now() < deadline, "the run never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run_ids(&self) -> Vec<String> {
        RunStore::open(&self.state)
            .and_then(|s| s.list_runs(1000))
            .map(|runs| runs.into_iter().map(|r| r.id).collect())
            .unwrap_or_default()
    }

    /// The store, to check what the UI did.
    pub fn store(&self) -> RunStore {
        RunStore::open(&self.state).unwrap()
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for c in self.runs.iter_mut().chain([&mut self.server]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP request to the server (no browser): status, headers, body.
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}
