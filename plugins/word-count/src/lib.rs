//! `word-count`: lines, words and bytes of files, like `wc`.
wit_bindgen::generate!({ path: "../../wit", world: "base" });

mod count;

use std::path::{Component, Path};

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct WordCount;

impl Guest for WordCount {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let ws = input
            .workspaces
            .iter()
            .find(|w| w.name == "source")
            .ok_or_else(|| TaskError::InvalidParams("workspace `source` is not bound".into()))?;
        let paths = match input
            .params
            .iter()
            .find(|p| p.name == "paths")
            .map(|p| &p.value)
        {
            Some(ParamValue::Array(a)) => a.clone(),
            _ => return Err(TaskError::InvalidParams("`paths` must be an array".into())),
        };
        let mut total = count::Counts::default();
        for rel in &paths {
            if Path::new(rel)
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(TaskError::InvalidParams(format!(
                    "path `{rel}` must be relative, without `..`"
                )));
            }
            let data = std::fs::read(Path::new(&ws.path).join(rel))
                .map_err(|e| TaskError::Failed(format!("reading {rel}: {e}")))?;
            let c = count::count(&data);
            log(
                Level::Info,
                &format!("{:>7} {:>7} {:>7} {rel}", c.lines, c.words, c.bytes),
            );
            total.add(&c);
        }
        Ok(vec![
            TaskResult {
                name: "lines".into(),
                value: total.lines.to_string(),
            },
            TaskResult {
                name: "words".into(),
                value: total.words.to_string(),
            },
            TaskResult {
                name: "bytes".into(),
                value: total.bytes.to_string(),
            },
        ])
    }
}

export!(WordCount);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
