//! `session.start`: a remote command whose stdin and stdout the plugin
//! drives itself, for request/response protocols (git's upload-pack).
//!
//! - The command goes to the server as written: no `export …;` prefix, so a
//!   forced-command server (GitHub, GitLab, gitolite) sees exactly
//!   `git-upload-pack '…'`. Environment goes as SSH `env` requests.
//! - Host memory is bounded: `read` hands out at most what one SSH data
//!   message carried (the channel window bounds that) and at most 1 MiB.
//! - stderr streams into the task log (redacted, within the budget), as
//!   `exec`'s does.
//! - A process is read by its plugin: russh queues a bounded number of
//!   messages per channel, and one nobody reads holds up its connection's
//!   other channels (so open a session per concurrent conversation).

use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use wasmtime::component::Resource;

use super::exec::{LineLog, push_tail};
use super::{Session, SshView, failed, valid_env_name};
use crate::bindings::capstan::plugin::ssh::{ExecResult, HostProcess};
use crate::bindings::capstan::plugin::types::TaskError;
use crate::caps::LogLevel;

/// Most bytes one `read` returns.
const MAX_READ: usize = 1 << 20;

/// A started remote command (the guest holds a handle to it).
pub struct Process {
    read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
    label: String,
    /// stdout received but not yet read.
    pending: Bytes,
    stdout_done: bool,
    code: Option<i32>,
    stderr: LineLog,
    stderr_tail: Vec<u8>,
}

impl SshView<'_> {
    /// `session.start`.
    pub(super) async fn start_process(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
    ) -> Result<Resource<Process>, TaskError> {
        let session = self.table.get(&s).map_err(failed)?;
        for (k, _) in &env {
            valid_env_name(k)?;
        }
        let label = session.label.clone();
        let lost = |e: russh::Error| failed(format!("ssh {label}: {e}"));
        let channel = session.handle.channel_open_session().await.map_err(lost)?;
        for (k, v) in env {
            channel.set_env(false, k, v).await.map_err(lost)?;
        }
        channel.exec(true, command).await.map_err(lost)?;
        let (read, write) = channel.split();
        self.table
            .push(Process {
                read,
                write,
                label: session.label.clone(),
                pending: Bytes::new(),
                stdout_done: false,
                code: None,
                stderr: LineLog {
                    buf: vec![],
                    level: LogLevel::Warn,
                },
                stderr_tail: vec![],
            })
            .map_err(failed)
    }

    /// Take the next message off `p`'s channel; false when it has closed.
    async fn next_message(&mut self, p: &Resource<Process>) -> Result<bool, TaskError> {
        let (sink, budget) = (self.state.sink.clone(), self.state.budget.clone());
        let p = self.table.get_mut(p).map_err(failed)?;
        let Some(msg) = p.read.wait().await else {
            p.stdout_done = true;
            p.stderr.flush(&*sink, &budget);
            return Ok(false);
        };
        match msg {
            ChannelMsg::Data { data } if !p.stdout_done => p.pending = data,
            ChannelMsg::ExtendedData { data, .. } => {
                p.stderr.feed(&*sink, &budget, &data);
                push_tail(&mut p.stderr_tail, &data);
            }
            ChannelMsg::Eof => p.stdout_done = true,
            // The reply to `exec`: the server would not run the command.
            ChannelMsg::Failure => {
                p.stdout_done = true;
                return Err(failed(format!(
                    "ssh {}: the server refused to run the command",
                    p.label
                )));
            }
            ChannelMsg::ExitStatus { exit_status } => p.code = Some(exit_status as i32),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                sink.log(
                    LogLevel::Warn,
                    &format!("remote command killed by signal {signal_name:?}"),
                );
                p.code = Some(-1);
            }
            _ => {}
        }
        Ok(true)
    }
}

impl HostProcess for SshView<'_> {
    async fn write(&mut self, p: Resource<Process>, data: Vec<u8>) -> Result<(), TaskError> {
        let p = self.table.get(&p).map_err(failed)?;
        p.write
            .data_bytes(data)
            .await
            .map_err(|e| failed(format!("ssh {}: writing: {e}", p.label)))
    }

    async fn close_stdin(&mut self, p: Resource<Process>) -> Result<(), TaskError> {
        let p = self.table.get(&p).map_err(failed)?;
        p.write
            .eof()
            .await
            .map_err(|e| failed(format!("ssh {}: {e}", p.label)))
    }

    async fn read(&mut self, r: Resource<Process>, max: u32) -> Result<Vec<u8>, TaskError> {
        let max = (max as usize).clamp(1, MAX_READ);
        loop {
            let p = self.table.get_mut(&r).map_err(failed)?;
            if !p.pending.is_empty() {
                let n = max.min(p.pending.len());
                return Ok(p.pending.split_to(n).to_vec());
            }
            if p.stdout_done {
                return Ok(Vec::new());
            }
            if !self.next_message(&r).await? {
                return Ok(Vec::new());
            }
        }
    }

    async fn wait(&mut self, r: Resource<Process>) -> Result<ExecResult, TaskError> {
        {
            let p = self.table.get_mut(&r).map_err(failed)?;
            p.stdout_done = true;
            p.pending = Bytes::new();
            // A command still reading its input would never end otherwise.
            let _ = p.write.eof().await;
        }
        while self.next_message(&r).await? {}
        let p = self.table.get(&r).map_err(failed)?;
        match p.code {
            Some(code) => Ok(ExecResult {
                exit_code: code,
                stdout_tail: String::new(),
                stderr_tail: String::from_utf8_lossy(&p.stderr_tail).into_owned(),
            }),
            None => Err(failed(format!(
                "ssh {}: the connection closed before the command finished",
                p.label
            ))),
        }
    }

    fn drop(&mut self, p: Resource<Process>) -> wasmtime::Result<()> {
        let p = self.table.delete(p)?;
        // Closing the channel ends the command; nothing waits for it.
        tokio::spawn(async move {
            let _ = p.write.close().await;
        });
        Ok(())
    }
}
