//! Test component: uses the ssh interface although its manifest declares no
//! capabilities. The host must refuse to load it.
wit_bindgen::generate!({ path: "../../../wit", world: "ssh-task" });

use capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Undeclared;

impl Guest for Undeclared {
    fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let _session = capstan::plugin::ssh::connect("example.com", 22, "root")?;
        Ok(Vec::new())
    }
}

export!(Undeclared);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
