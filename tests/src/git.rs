//! A real git smart-HTTP server for tests: the standard `git http-backend`
//! (CGI) behind a small HTTP/1.1 front end on 127.0.0.1. Repositories live
//! in a temp dir. Protocol v2 is passed through (`Git-Protocol` →
//! `GIT_PROTOCOL`) unless disabled; paths under `private/` need basic auth.
//! A "stall" path accepts the request and never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct GitServer {
    pub root: tempfile::TempDir,
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Requests served (a denied task must not add any).
    pub requests: Arc<AtomicUsize>,
}

/// `user:password` for repositories under `private/`.
pub const CREDENTIALS: &str = "ci-bot:hunter2-secret";

fn need_git() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("`git` is not installed; run scripts/test-deps.sh (apt-get install git)");
    let exec = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let backend = exec.join("git-http-backend");
    assert!(
        backend.exists(),
        "git http-backend not found at {}; run scripts/test-deps.sh (apt-get install git)",
        backend.display()
    );
    backend
}

/// A pipeline (workspace `src`) whose task `clone` runs git-clone on `url`
/// with `params` after it and an `http` grant for `origin`; `rest` (more
/// task items) follows.
pub fn clone_pipeline(url: &str, origin: &str, params: &[(&str, &str)], rest: &str) -> String {
    let mut items = format!("{{ name: url, value: \"{url}\" }}");
    for (k, v) in params {
        items.push_str(&format!(", {{ name: {k}, value: \"{v}\" }}"));
    }
    format!(
        r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: clone }}
spec:
  workspaces: [{{ name: src }}]
  tasks:
    - name: clone
      uses: "{{{{git_clone}}}}"
      timeout: 20s
      params: [{items}]
      workspaces: [{{ name: output, workspace: src }}]
      grants: {{ http: ["{origin}"] }}
{rest}"#
    )
}

/// Run git in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Capstan Test")
        .env("GIT_AUTHOR_EMAIL", "test@capstan.invalid")
        .env("GIT_COMMITTER_NAME", "Capstan Test")
        .env("GIT_COMMITTER_EMAIL", "test@capstan.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // Machines set this to the system bundle; it overrides -c http.sslCAInfo.
        .env_remove("GIT_SSL_CAINFO")
        // Tests run as root over repositories the SSH test user owns.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("HOME", dir)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl GitServer {
    /// Serve `root` (bare repositories under it); `v2` passes the client's
    /// protocol request through.
    pub fn start(v2: bool) -> GitServer {
        let backend = need_git();
        let root = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r, dir) = (stop.clone(), requests.clone(), root.path().to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                r.fetch_add(1, Ordering::Relaxed);
                let (backend, dir) = (backend.clone(), dir.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &backend, &dir, v2);
                });
            }
        });
        GitServer {
            root,
            port,
            stop,
            requests,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bare repository `name` and return a work tree to fill it
    /// from (push with [`GitServer::push`]).
    pub fn repo(&self, name: &str) -> (PathBuf, tempfile::TempDir) {
        let bare = self.root.path().join(name);
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        (bare, work)
    }

    /// Serve an existing repository (bare, or a work tree's `.git`) as
    /// `name`, without copying it.
    pub fn add_existing(&self, name: &str, repo: &Path) {
        let git_dir = if repo.join(".git").is_dir() {
            repo.join(".git")
        } else {
            repo.to_path_buf()
        };
        std::os::unix::fs::symlink(git_dir.canonicalize().unwrap(), self.root.path().join(name))
            .unwrap();
    }

    pub fn push(&self, work: &Path, bare: &Path, refs: &[&str]) {
        let mut args = vec!["push", "-q", bare.to_str().unwrap()];
        args.extend_from_slice(refs);
        git(work, &args);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, backend: &Path, root: &Path, v2: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    // Body: content-length or chunked.
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path.starts_with("/stall/") {
        std::thread::sleep(std::time::Duration::from_secs(600));
        return Ok(());
    }
    if path.starts_with("/private/") {
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(CREDENTIALS)
        );
        if header("authorization").as_deref() != Some(want.as_str()) {
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
    }
    let mut cmd = Command::new(backend);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", &method)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // git gzips large request bodies (many wants); http-backend inflates
    // them when told.
    if let Some(e) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    if v2 && let Some(p) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let raw = output.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        write!(
            out,
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    let content = &raw[at + sep..];
    let mut status = "200 OK".to_string();
    let mut out_headers = String::new();
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !line.is_empty() {
            out_headers.push_str(line);
            out_headers.push_str("\r\n");
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{out_headers}content-length: {}\r\nconnection: close\r\n\r\n",
        content.len()
    )?;
    out.write_all(content)?;
    out.flush()
}
