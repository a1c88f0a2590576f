//! Running a remote command on a channel: stdin fed while stdout/stderr
//! are read (so neither side stalls the other), output streamed into the
//! task log line by line, redacted, within the log budget.

use russh::ChannelMsg;

use super::{Session, failed};
use crate::bindings::capstan::plugin::types::TaskError;
use crate::caps::{LogLevel, TaskSink};

pub(super) const TAIL: usize = 4096;

pub(super) fn push_tail(tail: &mut Vec<u8>, data: &[u8]) {
    tail.extend_from_slice(data);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

/// Lines of output into the task log, as they complete.
pub(super) struct LineLog {
    pub(super) buf: Vec<u8>,
    pub(super) level: LogLevel,
}

impl LineLog {
    pub(super) fn feed(
        &mut self,
        sink: &dyn TaskSink,
        budget: &crate::caps::log::Budget,
        data: &[u8],
    ) {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = budget.redactor.bytes(&line);
            budget.emit(sink, self.level, String::from_utf8_lossy(&line).trim_end());
        }
        if self.buf.len() > 16 * 1024 {
            // Redacted whole, keeping back what may start a secret.
            let line = budget.redactor.take_long_line(&mut self.buf);
            budget.emit(sink, self.level, &String::from_utf8_lossy(&line));
        }
    }

    pub(super) fn flush(&mut self, sink: &dyn TaskSink, budget: &crate::caps::log::Budget) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            let line = budget.redactor.bytes(&line);
            budget.emit(sink, self.level, String::from_utf8_lossy(&line).trim_end());
        }
    }
}

/// What a remote command reads on its stdin.
pub(super) enum Stdin<'a> {
    None,
    Bytes(&'a [u8]),
    /// Chunks produced while the command runs, ended by an empty chunk.
    /// Closed without it = the producer failed: no EOF is sent, the channel
    /// is closed instead, so the command never sees a clean end of input.
    Stream(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

/// Run `command` on a new channel, feeding `stdin` while reading its output
/// (so neither side can stall the other), streaming output to the log
/// (unless `collect` — then stdout is returned, refused past that many
/// bytes), and return (exit code, stdout, stderr tail).
pub(super) async fn run(
    session: &Session,
    (sink, budget): (&dyn TaskSink, &crate::caps::log::Budget),
    command: &str,
    stdin: Stdin<'_>,
    collect: Option<usize>,
) -> Result<(i32, Vec<u8>, Vec<u8>), TaskError> {
    let lost = |e: russh::Error| failed(format!("ssh {}: {e}", session.label));
    let channel = session.handle.channel_open_session().await.map_err(lost)?;
    channel.exec(true, command).await.map_err(lost)?;
    let (mut read, write) = channel.split();
    let send = async {
        match stdin {
            Stdin::None => return Ok(()),
            Stdin::Bytes(data) => write.data(data).await.map_err(|e| (false, lost(e)))?,
            Stdin::Stream(mut chunks) => loop {
                match chunks.recv().await {
                    Some(chunk) if chunk.is_empty() => break,
                    Some(chunk) => write
                        .data_bytes(chunk)
                        .await
                        .map_err(|e| (false, lost(e)))?,
                    None => {
                        let _ = write.close().await;
                        return Err((true, failed("the input stream ended early")));
                    }
                }
            },
        }
        write.eof().await.map_err(|e| (false, lost(e)))
    };
    let receive = async {
        let mut out = LineLog {
            buf: vec![],
            level: LogLevel::Info,
        };
        let mut err = LineLog {
            buf: vec![],
            level: LogLevel::Warn,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut code = None;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(limit) = collect {
                        if stdout.len() + data.len() > limit {
                            // Host memory per call is bounded: stop here.
                            return (None, stdout, stderr, Some(limit));
                        }
                        stdout.extend_from_slice(&data);
                    } else {
                        out.feed(sink, budget, &data);
                        push_tail(&mut stdout, &data);
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    err.feed(sink, budget, &data);
                    push_tail(&mut stderr, &data);
                }
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    sink.log(
                        LogLevel::Warn,
                        &format!("remote command killed by signal {signal_name:?}"),
                    );
                    code = Some(-1);
                }
                _ => {}
            }
        }
        out.flush(sink, budget);
        err.flush(sink, budget);
        (code, stdout, stderr, None)
    };
    tokio::pin!(send, receive);
    let mut sent = None;
    let (code, stdout, stderr, over) = loop {
        tokio::select! {
            r = &mut send, if sent.is_none() => {
                // Our input failed (not the connection): the channel is
                // closed without EOF, and the command's end is not waited
                // for (a command reading stdin would wait forever).
                if let Err((true, e)) = r {
                    return Err(e);
                }
                sent = Some(r);
            }
            r = &mut receive => break r,
        }
    };
    if let Some(limit) = over {
        return Err(failed(format!(
            "ssh {}: the output is over {limit} bytes (the task's memory limit); \
             read it in parts or bring files back with exec-files",
            session.label
        )));
    }
    // The command may finish without reading all its input (that is its
    // business); a failure to send while it still ran is ours to report.
    if let Some(Err((_, e))) = sent
        && code.is_none()
    {
        return Err(e);
    }
    match code {
        Some(c) => Ok((c, stdout, stderr)),
        None => Err(failed(format!(
            "ssh {}: the connection closed before the command finished",
            session.label
        ))),
    }
}

/// Chunks of a tar stream, handed to the SSH sender as they fill.
pub(super) struct ChunkWriter {
    pub(super) tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    pub(super) buf: Vec<u8>,
}

impl ChunkWriter {
    /// Send what is left, then the end marker (an empty chunk).
    pub(super) fn finish(mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        self.flush()?;
        self.send(Vec::new())
    }

    fn send(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the remote command stopped reading",
            )
        })
    }
}

pub(super) const CHUNK: usize = 256 * 1024;
/// How often `exec-files` reports how many files it has sent.
pub(super) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(chunk)
    }
}
