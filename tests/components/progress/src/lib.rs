//! Test component: reports progress steps (and many more calls than the
//! host keeps, to check throttling).
wit_bindgen::generate!({ path: "../../../wit", world: "base" });

use capstan::plugin::log::{Level, log, progress};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Progress;

impl Guest for Progress {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let steps: u64 = match input
            .params
            .iter()
            .find(|p| p.name == "steps")
            .map(|p| &p.value)
        {
            Some(ParamValue::String(s)) => s
                .parse()
                .map_err(|_| TaskError::InvalidParams("steps".into()))?,
            _ => 10,
        };
        for i in 0..=steps {
            progress("work", i, Some(steps));
        }
        log(
            Level::Info,
            &format!("reported {} progress updates", steps + 1),
        );
        println!("hello from stdout");
        eprintln!("hello from stderr");
        Ok(vec![TaskResult {
            name: "reported".into(),
            value: (steps + 1).to_string(),
        }])
    }
}

export!(Progress);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
