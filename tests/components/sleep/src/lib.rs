//! Test component: optionally appends a marker line, then sleeps.
wit_bindgen::generate!({ path: "../../../wit", world: "base" });

use std::io::Write;

use capstan::plugin::log::{Level, log};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Sleep;

fn param(input: &TaskInput, name: &str) -> String {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

impl Guest for Sleep {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let millis: u64 = param(&input, "millis")
            .parse()
            .map_err(|_| TaskError::InvalidParams("millis".into()))?;
        let marker = param(&input, "marker");
        if !marker.is_empty() {
            let ws = input
                .workspaces
                .iter()
                .find(|w| w.name == "log")
                .ok_or(TaskError::InvalidParams("no log workspace".into()))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(format!("{}/{marker}", ws.path))
                .map_err(|e| TaskError::Failed(e.to_string()))?;
            // One write of the whole line: `writeln!` may split it into
            // several writes, and a test that kills the run as soon as the
            // marker appears would then see a line without its newline.
            let line = format!("{} attempt {}\n", input.info.task_name, input.info.attempt);
            f.write_all(line.as_bytes())
                .map_err(|e| TaskError::Failed(e.to_string()))?;
        }
        log(Level::Info, &format!("sleeping {millis} ms"));
        // In `ticks` slices, a log line after each (logs that grow while the
        // task runs, for the web UI's live logs).
        let ticks: u64 = param(&input, "ticks").parse().unwrap_or(1).max(1);
        for i in 1..=ticks {
            std::thread::sleep(std::time::Duration::from_millis(millis / ticks));
            if ticks > 1 {
                log(Level::Info, &format!("tick {i} of {ticks}"));
            }
        }
        log(Level::Info, "awake");
        Ok(vec![TaskResult {
            name: "slept".into(),
            value: millis.to_string(),
        }])
    }
}

export!(Sleep);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
