//! Live progress of a run on stderr: a status line per task with progress
//! bars on a terminal; plain timestamped lines otherwise.

use crate::escape::for_terminal;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::caps::LogLevel;
use crate::scheduler::{Event, Prepared};
use crate::store::TaskStatus;

pub struct Renderer {
    handle: JoinHandle<()>,
}

impl Renderer {
    /// Start rendering events. `text` = false (JSON output) renders nothing
    /// unless `verbose`.
    pub fn start(
        run_id: &str,
        prepared: &Prepared,
        rx: UnboundedReceiver<Event>,
        text: bool,
        verbose: u8,
    ) -> Renderer {
        let tty = std::io::stderr().is_terminal();
        let names: Vec<String> = prepared
            .plan
            .tasks
            .iter()
            .map(|t| t.spec.name.clone())
            .collect();
        let run_id = run_id.to_string();
        let handle = if text && tty {
            tokio::spawn(interactive(run_id, names, rx))
        } else if text || verbose > 0 {
            tokio::spawn(plain(run_id, rx, verbose))
        } else {
            tokio::spawn(drain(rx))
        };
        Renderer { handle }
    }

    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

async fn drain(mut rx: UnboundedReceiver<Event>) {
    while rx.recv().await.is_some() {}
}

fn stamp() -> String {
    let now = std::time::SystemTime::now();
    let s = humantime::format_rfc3339_seconds(now).to_string();
    s.get(11..19).unwrap_or(&s).to_string()
}

async fn plain(run_id: String, mut rx: UnboundedReceiver<Event>, verbose: u8) {
    eprintln!("{} run {run_id} started", stamp());
    let mut last_pct: HashMap<(String, String), u64> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Run { status } => eprintln!("{} run {run_id}: {status}", stamp()),
            Event::Task {
                task,
                status,
                attempt,
                message,
            } => {
                let msg = message
                    .map(|m| format!(": {}", for_terminal(&m)))
                    .unwrap_or_default();
                eprintln!("{} task {task} (attempt {attempt}): {status}{msg}", stamp());
            }
            Event::Log {
                task,
                level,
                message,
            } => {
                if level >= LogLevel::Info || verbose > 0 {
                    eprintln!("{} {task} | {}", stamp(), for_terminal(&message));
                }
            }
            Event::Progress {
                task,
                step,
                current,
                total,
            } => {
                // Plain output: report every 25% of a known total.
                if let Some(t) = total.filter(|t| *t > 0) {
                    let pct = (current.min(t) * 100 / t) / 25 * 25;
                    let key = (task.clone(), step.clone());
                    if last_pct.get(&key) != Some(&pct) {
                        last_pct.insert(key, pct);
                        let step = for_terminal(&step);
                        eprintln!("{} {task} | {step}: {current}/{t} ({pct}%)", stamp());
                    }
                }
            }
        }
    }
}

async fn interactive(run_id: String, names: Vec<String>, mut rx: UnboundedReceiver<Event>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let width = names.iter().map(String::len).max().unwrap_or(4);
    let waiting =
        ProgressStyle::with_template(&format!("  {{prefix:{width}}}  {{msg}}")).expect("template");
    let spinning = ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:{width}}}  {{msg}} {{elapsed}}"
    ))
    .expect("template");
    let bar = ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:{width}}}  [{{bar:30}}] {{pos}}/{{len}} {{msg}}"
    ))
    .expect("template")
    .progress_chars("=> ");
    let _ = multi.println(format!("run {run_id}"));
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    for n in &names {
        let pb = multi.add(ProgressBar::new_spinner());
        pb.set_style(waiting.clone());
        pb.set_prefix(n.clone());
        pb.set_message("Pending");
        bars.insert(n.clone(), pb);
    }
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Run { .. } => {}
            Event::Task {
                task,
                status,
                attempt,
                message,
            } => {
                let Some(pb) = bars.get(&task) else { continue };
                let extra = message
                    .map(|m| format!(" — {}", for_terminal(&m)))
                    .unwrap_or_default();
                match status {
                    TaskStatus::Running => {
                        pb.set_style(spinning.clone());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        pb.set_message(if attempt > 1 {
                            format!("Running (attempt {attempt})")
                        } else {
                            "Running".into()
                        });
                    }
                    s if s.is_terminal() => {
                        pb.set_style(waiting.clone());
                        pb.finish_with_message(format!("{s}{extra}"));
                    }
                    s => pb.set_message(format!("{s}{extra}")),
                }
            }
            Event::Log {
                task,
                level,
                message,
            } => {
                if level >= LogLevel::Warn {
                    let _ = multi.println(format!("  {task} | {}", for_terminal(&message)));
                }
            }
            Event::Progress {
                task,
                step,
                current,
                total,
            } => {
                let Some(pb) = bars.get(&task) else { continue };
                let step = for_terminal(&step).into_owned();
                match total {
                    Some(t) => {
                        pb.set_style(bar.clone());
                        pb.set_length(t);
                        pb.set_position(current);
                        pb.set_message(step);
                    }
                    None => pb.set_message(format!("{step} {current}")),
                }
            }
        }
    }
    for pb in bars.values() {
        if !pb.is_finished() {
            pb.abandon();
        }
    }
}
