//! Test component: attempts one sandbox escape or resource abuse, chosen by
//! the `attack` param, and reports what it observed in `outcome`.
//!
//! Attacks: read, write, list, connect, env, args, memory, loop, recurse,
//! log-flood, stdout-flood, huge-result, progress-flood.
wit_bindgen::generate!({ path: "../../../wit", world: "base" });

use std::hint::black_box;

use capstan::plugin::log::{Level, log, progress};
use capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use exports::capstan::plugin::task::Guest;

struct Probe;

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

fn outcome(s: String) -> Result<Vec<TaskResult>, TaskError> {
    Ok(vec![TaskResult {
        name: "outcome".into(),
        value: s,
    }])
}

#[inline(never)]
fn recurse(n: u64, buf: [u8; 256]) -> u64 {
    let b = black_box(buf);
    if n == 0 {
        b[0] as u64
    } else {
        recurse(n + 1, b) + b[1] as u64
    }
}

impl Guest for Probe {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let arg = param(&input, "arg");
        let mib = || arg.parse::<usize>().unwrap_or(1);
        match param(&input, "attack").as_str() {
            "read" => outcome(match std::fs::read(&arg) {
                Ok(b) => format!(
                    "read {} bytes: {}",
                    b.len(),
                    String::from_utf8_lossy(&b[..b.len().min(64)])
                ),
                Err(e) => format!("denied: {e}"),
            }),
            "write" => outcome(match std::fs::write(&arg, b"pwned") {
                Ok(()) => "wrote".into(),
                Err(e) => format!("denied: {e}"),
            }),
            "list" => outcome(match std::fs::read_dir(&arg) {
                Ok(rd) => format!(
                    "listed: {}",
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Err(e) => format!("denied: {e}"),
            }),
            "connect" => outcome(match std::net::TcpStream::connect(&arg) {
                Ok(_) => "connected".into(),
                Err(e) => format!("denied: {e}"),
            }),
            "env" => outcome(format!(
                "vars={}",
                std::env::vars()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            "args" => outcome(format!("args={}", std::env::args().count())),
            "memory" => {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                for _ in 0..mib() {
                    keep.push(vec![1u8; 1 << 20]);
                }
                outcome(format!("allocated {} MiB", black_box(&keep).len()))
            }
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "recurse" => outcome(format!("{}", recurse(1, [1u8; 256]))),
            "log-flood" => {
                let line = "x".repeat(1000);
                for _ in 0..(mib() * 1024) {
                    log(Level::Info, &line);
                }
                outcome("flooded".into())
            }
            "stdout-flood" => {
                let line = "y".repeat(1000);
                for _ in 0..(mib() * 1024) {
                    println!("{line}");
                }
                outcome("flooded".into())
            }
            "huge-result" => Ok(vec![TaskResult {
                name: "big".into(),
                value: "z".repeat(mib() << 20),
            }]),
            "progress-flood" => {
                for i in 0..100_000u64 {
                    progress("flood", i, Some(100_000));
                }
                outcome("flooded".into())
            }
            other => Err(TaskError::InvalidParams(format!(
                "unknown attack `{other}`"
            ))),
        }
    }
}

export!(Probe);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
