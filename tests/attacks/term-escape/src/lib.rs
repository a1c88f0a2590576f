//! Attack: text meant to act on the terminal of whoever reads the run:
//! OSC 52 (writes the clipboard), a CR that overwrites the line with a
//! forged `Succeeded`, a CSI colour, a C1 CSI, a right-to-left override —
//! in log lines, stdout, a progress step, a result and the error message.
//! `arg = fail` makes the task fail with them in its message.
use attack_kit::sdk::capstan::plugin::log::{Level, log, progress};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

/// Every trick in one string.
pub const EVIL: &str = "osc52\x1b]52;c;cHduZWQ=\x07 forged\r✔ attack Succeeded csi\x1b[31m c1\u{9b}2J rlo\u{202e}exe.txt";

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    log(Level::Warn, &format!("log {EVIL}"));
    println!("stdout {EVIL}");
    progress(&format!("step {EVIL}"), 1, Some(2));
    if arg(&input) == "fail" {
        return Err(TaskError::Failed(format!("message {EVIL}")));
    }
    outcome(format!("result {EVIL}"))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
