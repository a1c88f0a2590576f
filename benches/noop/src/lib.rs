//! Benchmark component: tells the host it started (one progress call, the
//! cheapest host call, which marks the "plugin entered" time) and returns.
wit_bindgen::generate!({ path: "../../wit", world: "base" });

use capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Noop;

impl Guest for Noop {
    fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        capstan::plugin::log::progress("start", 0, Some(1));
        Ok(Vec::new())
    }
}

export!(Noop);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
