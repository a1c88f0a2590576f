//! Attack: the granted secret `arg` is a multi-line private key. Print it
//! whole (stdout splits it into lines), line by line through the log
//! interface, and each line on its own.
use attack_kit::sdk::capstan::plugin::log::{Level, log};
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{arg, outcome};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let s = secrets::open(&arg(&input))?;
    let v = String::from_utf8_lossy(&secrets::reveal(&s)?).into_owned();
    println!("{v}");
    for line in v.lines() {
        log(Level::Info, &format!("key line: {line}"));
    }
    eprintln!("{}", v.replace('\n', " "));
    outcome("printed")
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
