//! Attack: get revealed secrets past redaction by the side doors.
//! `arg` = `TEXT-SECRET,BINARY-SECRET` (two granted names):
//! - a log line whose 16 KiB cut falls inside the secret (the part before
//!   the cut was logged when redaction ran after the cut);
//! - a progress step name cut at 128 bytes the same way;
//! - the binary (non-UTF-8) secret written raw to stdout and stderr (its
//!   text part survived a redactor that skipped non-UTF-8 values);
//! - a result *named* after the secret: the host's error about an
//!   undeclared result quoted the name.
use attack_kit::arg;
use attack_kit::sdk::capstan::plugin::log::{Level, log, progress};
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use std::io::Write;

fn reveal(name: &str) -> Result<Vec<u8>, TaskError> {
    let s = secrets::open(name)?;
    secrets::reveal(&s)
}

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let a = arg(&input);
    let (text_name, bin_name) = a.split_once(',').unwrap_or((&a, ""));
    let text = String::from_utf8_lossy(&reveal(text_name)?).into_owned();
    // 16 KiB line cut 8 bytes into the secret.
    log(Level::Info, &format!("{}{text}", "x".repeat(16 * 1024 - 8)));
    // 128-byte step cut 8 bytes into the secret.
    progress(&format!("{}{text}", "s".repeat(120)), 1, Some(2));
    if !bin_name.is_empty() {
        let bin = reveal(bin_name)?;
        let mut line = b"raw: ".to_vec();
        line.extend_from_slice(&bin);
        line.push(b'\n');
        let _ = std::io::stdout().write_all(&line);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&line);
        log(
            Level::Info,
            &format!("lossy: {}", String::from_utf8_lossy(&bin)),
        );
    }
    Ok(vec![TaskResult {
        name: text,
        value: "the name is the secret".into(),
    }])
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
