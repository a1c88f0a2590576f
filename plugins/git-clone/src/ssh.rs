//! Git over SSH: URL forms as git reads them, and the stateful upload-pack
//! conversation over a [`Pipe`] (the host's `ssh` process in the component,
//! a local `git-upload-pack` in unit tests).
//!
//! As `git` does, the command is exactly `git-upload-pack '<path>'` (what
//! GitHub, GitLab and gitolite accept as a forced command) and protocol v2
//! is asked for with `GIT_PROTOCOL=version=2` as an SSH env request; a
//! server that does not accept it answers in v0, which works too.

use crate::protocol::Transport;

/// An SSH remote: `ssh://[user@]host[:port]/path` (also `git+ssh://`,
/// `ssh+git://`) or git's scp-like `[user@]host:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    /// Empty: the grant's user.
    pub user: String,
    pub host: String,
    pub port: u16,
    /// As upload-pack gets it: absolute for `ssh://host/p`, `~user/p` for
    /// `ssh://host/~user/p`, relative to the login's home for scp-like.
    pub path: String,
}

impl SshUrl {
    /// None: not an SSH URL.
    pub fn parse(url: &str) -> Option<SshUrl> {
        for scheme in ["ssh://", "git+ssh://", "ssh+git://"] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let (authority, path) = rest.split_at(rest.find('/')?);
                let (user, hostport) = split_user(authority);
                let (host, port) = match hostport.strip_prefix('[') {
                    Some(v6) => {
                        let (h, after) = v6.split_once(']')?;
                        (h, after.strip_prefix(':'))
                    }
                    None => match hostport.rsplit_once(':') {
                        Some((h, p)) => (h, Some(p)),
                        None => (hostport, None),
                    },
                };
                let port = match port {
                    Some(p) => p.parse().ok()?,
                    None => 22,
                };
                // git: `ssh://host/~user/repo` means `~user/repo`.
                let path = match path.strip_prefix("/~") {
                    Some(home) => format!("~{home}"),
                    None => path.to_string(),
                };
                return SshUrl::new(user, host, port, path);
            }
        }
        // scp-like: a colon before any slash, and no scheme.
        if url.contains("://") {
            return None;
        }
        let (authority, path) = match url.find("]:") {
            Some(i) if url.starts_with('[') || url[..i].contains("@[") => {
                (&url[..=i], &url[i + 2..])
            }
            _ => url.split_once(':')?,
        };
        if authority.contains('/') || authority.is_empty() {
            return None;
        }
        let (user, host) = split_user(authority);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        SshUrl::new(user, host, 22, path.to_string())
    }

    fn new(user: &str, host: &str, port: u16, path: String) -> Option<SshUrl> {
        // An option where a host or a path goes (git blocks these: "strange
        // hostname/pathname"), and control characters anywhere.
        let odd = |s: &str| s.starts_with('-') || s.chars().any(char::is_control);
        if host.is_empty() || path.is_empty() || odd(host) || odd(&path) || odd(user) {
            return None;
        }
        Some(SshUrl {
            user: user.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The command git runs: `git-upload-pack '<path>'`, quoted as git's
    /// `sq_quote_buf` does.
    pub fn upload_pack(&self) -> String {
        let mut q = String::from("git-upload-pack '");
        for c in self.path.chars() {
            match c {
                '\'' | '!' => {
                    q.push_str("'\\");
                    q.push(c);
                    q.push('\'');
                }
                c => q.push(c),
            }
        }
        q.push('\'');
        q
    }
}

fn split_user(authority: &str) -> (&str, &str) {
    match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    }
}

/// A started remote command: its stdin, stdout and end.
pub trait Pipe {
    fn write(&mut self, data: &[u8]) -> Result<(), String>;
    fn close_stdin(&mut self) -> Result<(), String>;
    /// Some stdout bytes; empty: it ended.
    fn read(&mut self) -> Result<Vec<u8>, String>;
    /// Its exit code and the tail of its stderr.
    fn finish(&mut self) -> Result<(i32, String), String>;
}

/// upload-pack's conversation over a [`Pipe`].
pub struct SshTransport<P: Pipe> {
    pub pipe: P,
    pub url: String,
    /// stdout read but not yet consumed.
    buf: Vec<u8>,
}

impl<P: Pipe> SshTransport<P> {
    pub fn new(pipe: P, url: &str) -> Self {
        SshTransport {
            pipe,
            url: url.to_string(),
            buf: Vec::new(),
        }
    }

    /// The remote's words when its stdout ended early: what it said on
    /// stderr (git prints "fatal: '…' does not appear to be a git
    /// repository"), or its exit code.
    fn ended(&mut self, while_: &str) -> String {
        match self.pipe.finish() {
            Ok((code, err)) if !err.trim().is_empty() => {
                format!(
                    "{}: {while_}: the remote said: {} (exit {code})",
                    self.url,
                    err.trim()
                )
            }
            Ok((code, _)) => format!("{}: {while_}: upload-pack ended (exit {code})", self.url),
            Err(e) => format!("{}: {while_}: {e}", self.url),
        }
    }

    /// Read pkt-lines until a flush; returns their bytes (flush included).
    fn read_to_flush(&mut self, while_: &str) -> Result<Vec<u8>, String> {
        let mut at = 0;
        loop {
            // Walk the complete lines buffered so far.
            while self.buf.len() >= at + 4 {
                let hex = std::str::from_utf8(&self.buf[at..at + 4])
                    .ok()
                    .and_then(|h| usize::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("{}: {while_}: not git's protocol", self.url))?;
                match hex {
                    0 => {
                        let rest = self.buf.split_off(at + 4);
                        return Ok(std::mem::replace(&mut self.buf, rest));
                    }
                    1 | 2 => at += 4,
                    3 => return Err(format!("{}: {while_}: bad pkt-line length", self.url)),
                    n if self.buf.len() >= at + n => at += n,
                    _ => break,
                }
            }
            let more = self.pipe.read()?;
            if more.is_empty() {
                return Err(self.ended(while_));
            }
            self.buf.extend_from_slice(&more);
        }
    }
}

impl<P: Pipe> Transport for SshTransport<P> {
    fn url(&self) -> &str {
        &self.url
    }

    fn advertise(&mut self) -> Result<Vec<u8>, String> {
        self.read_to_flush("reading the advertisement")
    }

    fn request(&mut self, body: &[u8], _version: u8, last: bool) -> Result<Vec<u8>, String> {
        self.pipe.write(body)?;
        if !last {
            return self.read_to_flush("reading the response");
        }
        // Nothing follows: end upload-pack's input, read to its end.
        self.pipe.close_stdin()?;
        let mut out = std::mem::take(&mut self.buf);
        loop {
            let more = self.pipe.read()?;
            if more.is_empty() {
                break;
            }
            out.extend_from_slice(&more);
        }
        match self.pipe.finish()? {
            (0, _) => Ok(out),
            (code, err) => Err(format!(
                "{}: upload-pack failed (exit {code}): {}",
                self.url,
                err.trim()
            )),
        }
    }
}

#[cfg(test)]
#[path = "ssh_tests.rs"]
mod tests;
