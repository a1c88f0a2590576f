//! The sandbox attack suite: one small component per attack in
//! `tests/attacks/<name>/` (built by the test build step like every other
//! component). Each test runs its attack as task `attack`, then a `finally`
//! task `after` in the same run and process that must succeed: the attack is
//! denied (or contained), the host stays healthy, and the next task runs
//! normally. Most attacks try several tricks and report each in their
//! `outcome` result (`denied N/N …` or `ESCAPED: …`, see `attack-kit`); the
//! tests then check the host side too (files outside unchanged, listeners
//! never connected to, nothing secret in the store).
//!
//! The attack count is reported in the README (`ls tests/attacks`, less the
//! shared `kit`).

#[path = "attacks/api.rs"]
mod api;
#[path = "attacks/container.rs"]
mod container;
#[path = "attacks/disk.rs"]
mod disk;
#[path = "attacks/filesystem.rs"]
mod filesystem;
#[path = "attacks/forge.rs"]
mod forge;
#[path = "attacks/identity.rs"]
mod identity;
#[path = "attacks/kube.rs"]
mod kube;
#[path = "attacks/malformed.rs"]
mod malformed;
#[path = "attacks/network.rs"]
mod network;
#[path = "attacks/repository.rs"]
mod repository;
#[path = "attacks/resources.rs"]
mod resources;
#[path = "attacks/secrets.rs"]
mod secrets;
#[path = "attacks/ssh.rs"]
mod ssh;
#[path = "attacks/terminal.rs"]
mod terminal;

use std::path::{Path, PathBuf};

use capstan::scheduler::RunOptions;
use capstan::store::TaskStatus;
use capstan_tests::{RunOutcome, TestEnv};

/// One attack run: the component (its placeholder name, e.g. `fs_absolute`),
/// its `arg`, extra task YAML (grants, timeout …), and which workspaces to
/// bind (`ws` read-write, `ro` read-only) from which host directories.
pub struct Attack<'a> {
    pub component: &'a str,
    pub arg: String,
    pub task_extra: &'a str,
    pub ws: Option<PathBuf>,
    pub ro: Option<PathBuf>,
    /// Bind a `ws` workspace even without a host directory (the scheduler
    /// makes one under the state directory).
    pub bind_ws: bool,
}

impl<'a> Attack<'a> {
    pub fn new(component: &'a str) -> Self {
        Attack {
            component,
            arg: String::new(),
            task_extra: "",
            ws: None,
            ro: None,
            bind_ws: true,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.arg = arg.into();
        self
    }

    pub fn extra(mut self, yaml: &'a str) -> Self {
        self.task_extra = yaml;
        self
    }

    /// Bind `ws` (and `ro`, read-only) from a [`Box`]'s directories.
    pub fn in_box(mut self, b: &HostBox) -> Self {
        self.ws = Some(b.ws.clone());
        self.ro = Some(b.ro.clone());
        self
    }

    pub fn no_workspace(mut self) -> Self {
        self.bind_ws = false;
        self
    }

    pub fn pipeline(&self) -> String {
        let mut spec_ws = Vec::new();
        let mut binds = Vec::new();
        if self.bind_ws {
            spec_ws.push("{ name: ws }");
            binds.push("{ name: ws, workspace: ws }");
        }
        if self.ro.is_some() {
            spec_ws.push("{ name: ro }");
            binds.push("{ name: ro, workspace: ro, readOnly: true }");
        }
        let arg = serde_json::to_string(&self.arg).unwrap();
        let extra = self.task_extra;
        format!(
            r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: attack }}
spec:
  workspaces: [{spec_ws}]
  tasks:
    - name: attack
      uses: "{{{{{component}}}}}"
      params: [{{ name: arg, value: {arg} }}]
      workspaces: [{binds}]
{extra}
  finally:
    - name: after
      uses: "{{{{echo}}}}"
      params: [{{ name: message, value: still healthy }}]
"#,
            spec_ws = spec_ws.join(", "),
            binds = binds.join(", "),
            component = self.component,
        )
    }

    /// Run it; panics unless the `after` task ran normally.
    pub async fn run(&self, env: &TestEnv) -> RunOutcome {
        let mut opts = RunOptions::default();
        if let Some(ws) = &self.ws {
            opts.workspaces.insert("ws".into(), ws.clone());
        }
        if let Some(ro) = &self.ro {
            opts.workspaces.insert("ro".into(), ro.clone());
        }
        let run = env.run_with(&self.pipeline(), &[], opts).await;
        assert_eq!(
            run.status_of("after"),
            TaskStatus::Succeeded,
            "host unhealthy after {}:\n{}",
            self.component,
            run.log_text()
        );
        assert_eq!(run.result("after", "message"), "still healthy");
        run
    }
}

/// The attack's `outcome` result.
pub fn outcome(run: &RunOutcome) -> &str {
    run.result("attack", "outcome")
}

/// Every trick the attack tried was refused (and it tried at least `min`).
pub fn assert_all_denied(run: &RunOutcome, min: usize) {
    assert_task_denied(run, "attack", min);
}

/// [`assert_all_denied`] for the attack run as task `task`.
pub fn assert_task_denied(run: &RunOutcome, task: &str, min: usize) {
    let o = run.result(task, "outcome");
    eprintln!("{o}");
    assert_eq!(
        run.status_of(task),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    let head = o.lines().next().unwrap_or("");
    let n: usize = head
        .strip_prefix("denied ")
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the attack got through:\n{o}"));
    assert!(n >= min, "only {n} tricks tried (want {min}):\n{o}");
    assert_eq!(o.lines().count(), n + 1, "{o}");
}

/// A host directory laid out for filesystem attacks:
///
/// ```text
/// box/outside.txt   "TOP-SECRET-OUTSIDE" (must never be read or changed)
/// box/ws/           the writable workspace, with planted symlinks:
///   abs -> box/outside.txt (absolute)   rel -> ../outside.txt
///   chain -> abs    root -> /    up -> ..
/// box/ro/           the read-only workspace: file = "original", dir/x
/// ```
pub struct HostBox {
    pub root: PathBuf,
    pub ws: PathBuf,
    pub ro: PathBuf,
    pub outside: PathBuf,
}

pub const OUTSIDE: &str = "TOP-SECRET-OUTSIDE";

impl HostBox {
    pub fn new(env: &TestEnv) -> HostBox {
        let root = env.path("box");
        let ws = root.join("ws");
        let ro = root.join("ro");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(ro.join("dir")).unwrap();
        std::fs::write(ro.join("file"), "original").unwrap();
        std::fs::write(ro.join("dir/x"), "x").unwrap();
        let outside = root.join("outside.txt");
        std::fs::write(&outside, OUTSIDE).unwrap();
        use std::os::unix::fs::symlink;
        symlink(&outside, ws.join("abs")).unwrap();
        symlink("../outside.txt", ws.join("rel")).unwrap();
        symlink("abs", ws.join("chain")).unwrap();
        symlink("/", ws.join("root")).unwrap();
        symlink("..", ws.join("up")).unwrap();
        HostBox {
            root,
            ws,
            ro,
            outside,
        }
    }

    /// Nothing outside the workspace changed: the outside file, the
    /// read-only workspace, and no new files beside the workspace.
    pub fn assert_untouched(&self) {
        assert_eq!(std::fs::read_to_string(&self.outside).unwrap(), OUTSIDE);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&self.outside).unwrap().permissions(),
        );
        assert_eq!(mode & 0o111, 0, "outside.txt became executable");
        let mut beside: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        assert_eq!(beside, ["outside.txt", "ro", "ws"], "files appeared beside");
        assert_eq!(
            std::fs::read_to_string(self.ro.join("file")).unwrap(),
            "original"
        );
        let mut ro: Vec<String> = std::fs::read_dir(&self.ro)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ro.sort();
        assert_eq!(ro, ["dir", "file"], "the read-only workspace changed");
        assert!(!Path::new("/tmp/capstan-pwned").exists());
    }
}
