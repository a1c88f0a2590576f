//! Attack: reveal the granted secret `arg` and put it in the log: the log
//! interface, stdout, stderr, a progress step name, a line written in
//! pieces, and a line with no newline at the end of the task. The host must
//! store none of it unredacted (the test reads the store).
use attack_kit::sdk::capstan::plugin::log::{Level, log, progress};
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};
use std::io::Write;

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let s = secrets::open(&arg(&input))?;
    let v = String::from_utf8_lossy(&secrets::reveal(&s)?).into_owned();
    log(Level::Info, &format!("log: {v}"));
    log(Level::Error, &v);
    println!("stdout: {v}");
    eprintln!("stderr: {v}");
    progress(&format!("step {v}"), 1, Some(2));
    let (a, b) = v.split_at(v.len() / 2);
    let mut out = std::io::stdout();
    let _ = out.write_all(format!("pieces: {a}").as_bytes());
    let _ = out.flush();
    let _ = out.write_all(format!("{b} end\n").as_bytes());
    let _ = out.flush();
    print!("tail without newline: {v}");
    let _ = out.flush();
    outcome("logged")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
