//! `write-file`: write text into the `output` workspace.
//!
//! The logic is plain Rust over `std::fs`; the sandbox makes `/workspace/output`
//! the only writable place.
wit_bindgen::generate!({ path: "../../wit", world: "base" });

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct WriteFile;

fn string_param(input: &TaskInput, name: &str) -> Result<String, TaskError> {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => Ok(s.clone()),
        _ => Err(TaskError::InvalidParams(format!(
            "`{name}` must be a string"
        ))),
    }
}

/// Join a relative path under `root`, refusing absolute paths and `..`.
fn under(root: &str, rel: &str) -> Result<PathBuf, TaskError> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(TaskError::InvalidParams(format!(
            "path `{rel}` must be relative, without `..`"
        )));
    }
    Ok(Path::new(root).join(p))
}

impl Guest for WriteFile {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let ws = input
            .workspaces
            .iter()
            .find(|w| w.name == "output")
            .ok_or_else(|| TaskError::InvalidParams("workspace `output` is not bound".into()))?;
        let rel = string_param(&input, "path")?;
        let content = string_param(&input, "content")?;
        let append = match string_param(&input, "append")?.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(TaskError::InvalidParams(format!(
                    "append must be true or false, not `{other}`"
                )));
            }
        };
        let path = under(&ws.path, &rel)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TaskError::Failed(format!("creating {}: {e}", dir.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .map_err(|e| TaskError::Failed(format!("opening {rel}: {e}")))?;
        f.write_all(content.as_bytes())
            .map_err(|e| TaskError::Failed(format!("writing {rel}: {e}")))?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        log(
            Level::Info,
            &format!("wrote {} bytes to {rel} ({bytes} bytes now)", content.len()),
        );
        Ok(vec![
            TaskResult {
                name: "path".into(),
                value: rel,
            },
            TaskResult {
                name: "bytes".into(),
                value: bytes.to_string(),
            },
        ])
    }
}

export!(WriteFile);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
