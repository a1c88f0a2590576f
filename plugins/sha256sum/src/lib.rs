//! `sha256sum`: digest of a file in the read-only `source` workspace.
wit_bindgen::generate!({ path: "../../wit", world: "base" });

use std::io::Read;
use std::path::{Component, Path};

use capstan::plugin::log::{Level, log, progress};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;
use sha2::{Digest, Sha256};

struct Sha256Sum;

impl Guest for Sha256Sum {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let ws = input
            .workspaces
            .iter()
            .find(|w| w.name == "source")
            .ok_or_else(|| TaskError::InvalidParams("workspace `source` is not bound".into()))?;
        let rel = match input
            .params
            .iter()
            .find(|p| p.name == "path")
            .map(|p| &p.value)
        {
            Some(ParamValue::String(s)) => s.clone(),
            _ => return Err(TaskError::InvalidParams("`path` must be a string".into())),
        };
        if Path::new(&rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(TaskError::InvalidParams(format!(
                "path `{rel}` must be relative, without `..`"
            )));
        }
        let path = Path::new(&ws.path).join(&rel);
        let mut f = std::fs::File::open(&path)
            .map_err(|e| TaskError::Failed(format!("opening {rel}: {e}")))?;
        let total = f.metadata().map(|m| m.len()).ok();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| TaskError::Failed(format!("reading {rel}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            done += n as u64;
            progress("hash", done, total);
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        log(Level::Info, &format!("{digest}  {rel}"));
        Ok(vec![
            TaskResult {
                name: "digest".into(),
                value: digest,
            },
            TaskResult {
                name: "bytes".into(),
                value: done.to_string(),
            },
        ])
    }
}

export!(Sha256Sum);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
