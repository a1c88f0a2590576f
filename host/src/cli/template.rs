//! `capstan plugin new` (a template plugin crate) and `capstan plugin build`
//! (compile a plugin crate to a component).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The plugin contract, as shipped with this build of Capstan.
const WIT: &[(&str, &str)] = &[
    ("plugin.wit", include_str!("../../../wit/plugin.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
# The plugin's version is the one in capstan.toml (embedded in the component).
version = "0.0.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.61.1"

# Small, fast components.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A standalone crate, not part of any enclosing workspace.
[workspace]
"#
    )
}

fn capstan_toml(name: &str) -> String {
    format!(
        r#"# The plugin manifest: embedded in the component (see src/lib.rs), read by
# `capstan plugin inspect|publish` and by the host before it runs a task.
name = "{name}"
version = "1.0.0"
description = "Greets someone and counts the files in its workspace."
# The WIT world (wit/plugin.wit): base | http-task | ssh-task | http-ssh-task | kube-task | container-task | approval-task.
world = "base"
# What the plugin may ever be granted (http, secrets, ssh, kube, container, approval); none here.
capabilities = []

[[params]]
name = "name"
type = "string"
default = "world"
description = "Who to greet."

[[results]]
name = "greeting"
description = "The greeting."

[[results]]
name = "files"
description = "How many entries the workspace holds."

[[workspaces]]
name = "source"
read-only = true
optional = true
description = "A directory to count entries in."
"#
    )
}

const LIB_RS: &str = r#"//! A Capstan plugin: a WebAssembly component that runs one pipeline task.
//!
//! The host calls `run` with the task's params and workspaces; the plugin
//! returns named results (declared in capstan.toml) or an error. It sees only
//! what it was granted: here, the optional `source` workspace, read-only.
wit_bindgen::generate!({ path: "wit", world: "base" });

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Plugin;

/// The plugin's logic, kept free of host calls so `cargo test` can run it.
pub fn greeting(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        return Err("`name` must not be empty".into());
    }
    Ok(format!("Hello, {}!", name.trim()))
}

impl Guest for Plugin {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let name = match input.params.iter().find(|p| p.name == "name").map(|p| &p.value) {
            Some(ParamValue::String(s)) => s.clone(),
            _ => return Err(TaskError::InvalidParams("`name` must be a string".into())),
        };
        let greeting = greeting(&name).map_err(TaskError::InvalidParams)?;
        log(Level::Info, &greeting);
        let files = match input.workspaces.iter().find(|w| w.name == "source") {
            Some(ws) => std::fs::read_dir(&ws.path)
                .map_err(|e| TaskError::Failed(format!("reading {}: {e}", ws.path)))?
                .count(),
            None => 0,
        };
        Ok(vec![
            TaskResult { name: "greeting".into(), value: greeting },
            TaskResult { name: "files".into(), value: files.to_string() },
        ])
    }
}

export!(Plugin);

// The manifest travels inside the component, covered by its digest.
#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");

#[cfg(test)]
mod tests {
    #[test]
    fn greets_and_refuses_empty_names() {
        assert_eq!(super::greeting(" Ada ").unwrap(), "Hello, Ada!");
        assert!(super::greeting("  ").is_err());
    }
}
"#;

fn pipeline_yaml(name: &str) -> String {
    format!(
        r#"# Run the freshly built plugin: capstan run {name}/pipeline.yaml
# (after `capstan plugin build {name}`). Once published, `uses: {name}@1` works too.
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata:
  name: {name}-try
spec:
  workspaces:
    - name: src
  tasks:
    - name: greet
      uses: target/wasm32-wasip2/release/{file}.wasm
      params:
        - name: name
          value: Capstan
      workspaces:
        - name: source
          workspace: src
"#,
        file = name.replace('-', "_")
    )
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Capstan plugin (a WebAssembly component for `wasm32-wasip2`).

    cargo test                       # the plugin's logic, natively
    capstan plugin build .           # → target/wasm32-wasip2/release/{file}.wasm
    capstan run pipeline.yaml        # run it in a pipeline, sandboxed
    capstan plugin publish .         # build, check and publish the version in capstan.toml

Bump `version` in capstan.toml before publishing again: versions are immutable.
The WIT contract is in `wit/` (`wit/plugin.wit`); capabilities beyond the base
world are declared in capstan.toml and granted per task by the pipeline.
"#,
        file = name.replace('-', "_")
    )
}

/// A plugin name usable as a crate name too.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plugin name: lowercase letters, digits and `-`, starting with a letter"
        ))
    }
}

/// Write a new plugin crate in `dir` (which must not exist or be empty).
pub fn create(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    if let Err(e) = check_name(name) {
        bail!(e);
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("Cargo.toml"), cargo_toml(name)),
        (dir.join("capstan.toml"), capstan_toml(name)),
        (dir.join("src/lib.rs"), LIB_RS.to_string()),
        (dir.join("pipeline.yaml"), pipeline_yaml(name)),
        (dir.join("README.md"), readme(name)),
        (dir.join(".gitignore"), "/target\n".to_string()),
    ];
    for (rel, text) in WIT {
        files.push((dir.join("wit").join(rel), text.to_string()));
    }
    let mut written = Vec::new();
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Build the plugin crate in `dir` for wasm32-wasip2 (release) and return
/// the component's path. Cargo's output goes to stderr, as progress.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(super::Invalid(format!(
            "{} has no Cargo.toml: not a plugin crate (give a .wasm file, or a directory made by \
             `capstan plugin new NAME`)",
            dir.display()
        ))
        .into());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        })
        .unwrap_or(true); // no rustup: let cargo report it
    if !installed {
        eprintln!("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
        let ok = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .context("running rustup")?
            .success();
        if !ok {
            bail!("`rustup target add wasm32-wasip2` failed");
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo (is the Rust toolchain installed?)")?;
    if !out.status.success() {
        bail!("cargo build of {} failed (see above)", dir.display());
    }
    // The cdylib artifact cargo reports for the package in `dir`.
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            && let Some(files) = msg["filenames"].as_array()
        {
            wasm = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from);
        }
    }
    wasm.with_context(|| format!("cargo built no .wasm component in {}", dir.display()))
}
