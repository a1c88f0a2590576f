//! Capture of the guest's stdout/stderr into the task log, line by line,
//! under the same budget as the log import.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::{Budget, LogLevel, TaskSink};

/// A WASI stdout/stderr that turns complete lines into log lines.
#[derive(Clone)]
pub(crate) struct StdioCapture {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Arc<dyn TaskSink>,
    budget: Arc<Budget>,
    level: LogLevel,
    partial: Mutex<Vec<u8>>,
}

impl StdioCapture {
    pub fn new(sink: Arc<dyn TaskSink>, budget: Arc<Budget>, level: LogLevel) -> Self {
        StdioCapture {
            inner: Arc::new(Inner {
                sink,
                budget,
                level,
                partial: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Emit a trailing line without newline (call when the task ends).
    pub fn flush_partial(&self) {
        let rest = std::mem::take(&mut *self.inner.partial.lock().unwrap());
        if !rest.is_empty() {
            self.inner.emit(&rest);
        }
    }
}

impl Inner {
    fn emit(&self, line: &[u8]) {
        // Secrets are matched on the raw bytes first (a value that is not
        // UTF-8 would not survive the lossy conversion intact).
        let line = self.budget.redactor.bytes(line);
        let text = String::from_utf8_lossy(&line);
        self.budget
            .emit(&*self.sink, self.level, text.trim_end_matches('\r'));
    }

    fn write(&self, buf: &[u8]) {
        let mut partial = self.partial.lock().unwrap();
        partial.extend_from_slice(buf);
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if partial.len() > super::MAX_LINE_BYTES {
            // A line without end: emit it in pieces, redacted whole first,
            // keeping back a tail that may hold the start of a secret.
            let line = self.budget.redactor.take_long_line(&mut partial);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for StdioCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for StdioCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioCapture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
