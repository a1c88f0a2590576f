//! The pipeline files of a repository at one commit, read over git's smart
//! HTTP with the `git` program (Capstan's image installs it): a bare
//! repository in a temp dir, a depth-1 fetch of the commit without blobs
//! (`--filter=blob:none`; a server that cannot filter sends them), then
//! only the matching files' blobs.
//!
//! Why the `git` program and not a crate: it is the reference client of
//! the protocol every forge serves (v2, partial clone, redirects, proxies),
//! and the pure-Rust client (gix) would add minutes to every cold build.
//! Nothing from the repository is checked out or executed: no hooks, no
//! filters, no config of the repository is read. The token reaches git
//! through the environment (`GIT_CONFIG_*`), never its command line, and
//! no user or system git config applies. Only http and https are allowed,
//! and the URL is the repository's configured one, never a payload's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::Provider;

/// At most this many pipeline files are read.
pub const MAX_FILES: usize = 50;
/// A pipeline file larger than this is refused.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The whole fetch is bounded.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Where and how to read.
pub struct Source<'a> {
    pub url: &'a str,
    pub provider: Provider,
    /// The API token, if the repository has one.
    pub token: Option<&'a [u8]>,
}

/// What was read.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The commit the files were read at.
    pub commit: String,
    /// `(path, text)`, sorted by path.
    pub files: Vec<(String, String)>,
    /// `capstan.lock` beside them, by directory (`.capstan`).
    pub locks: Vec<(String, String)>,
}

/// Run git with the safe environment; stdout, or an error with stderr.
fn git(dir: &Path, src: &Source<'_>, args: &[&str], deadline: Instant) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "http:https")
        .env("GIT_PROTOCOL_FROM_USER", "0");
    for proxy in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        if let Some(v) = std::env::var_os(proxy) {
            cmd.env(proxy, v);
        }
    }
    let mut config: Vec<(String, String)> = vec![
        ("protocol.version".to_string(), "2".to_string()),
        ("http.lowSpeedLimit".to_string(), "1000".to_string()),
        ("http.lowSpeedTime".to_string(), "30".to_string()),
        ("core.hooksPath".to_string(), "/dev/null".to_string()),
        // The token goes to the configured URL only: no redirects.
        ("http.followRedirects".to_string(), "false".to_string()),
        ("transfer.fsckObjects".to_string(), "true".to_string()),
    ];
    if let Some(token) = src.token {
        let user = match src.provider {
            Provider::Github => "x-access-token",
            Provider::Gitlab => "oauth2",
        };
        let mut cred = format!("{user}:").into_bytes();
        cred.extend_from_slice(token);
        let basic = base64::engine::general_purpose::STANDARD.encode(cred);
        // Sent to the configured URL only (git matches it as a prefix).
        config.push((
            format!("http.{}.extraHeader", src.url),
            format!("Authorization: Basic {basic}"),
        ));
    }
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (k, v)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("running git: {e}"))?;
    // Read both pipes on threads (a full pipe would stall git), wait with
    // the deadline.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("git {} took longer than {TIMEOUT:?}", args[0]));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = out_t.join().ok().and_then(Result::ok).unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let msg = String::from_utf8_lossy(&stderr);
        let msg = msg.trim().lines().last().unwrap_or("").to_string();
        Err(format!(
            "git {}: {}",
            args[0],
            crate::escape::for_terminal(&msg)
        ))
    }
}

/// The directory part of a pattern before its first glob character.
fn fixed_dir(pattern: &str) -> &str {
    let first = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    match pattern[..first].rfind('/') {
        Some(i) => &pattern[..=i],
        None => "",
    }
}

/// Read the files matching `patterns` at `revision` (fetched by id), or,
/// when `revision` is None, at the tip of `git_ref`. `work` is an empty
/// directory the caller removes.
pub fn pipelines(
    src: &Source<'_>,
    revision: Option<&str>,
    git_ref: &str,
    patterns: &[String],
    work: &Path,
) -> Result<Fetched, String> {
    let deadline = Instant::now() + TIMEOUT;
    git(work, src, &["init", "--bare", "-q", "."], deadline)?;
    git(
        work,
        src,
        &["remote", "add", "--end-of-options", "origin", src.url],
        deadline,
    )?;
    let fetch = |what: &str| {
        git(
            work,
            src,
            &[
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "--filter=blob:none",
                "--end-of-options",
                "origin",
                what,
            ],
            deadline,
        )
    };
    match revision {
        // By id first; a server that refuses ids not at a tip gets the ref,
        // which must still point there.
        Some(rev) => {
            if let Err(by_id) = fetch(rev) {
                fetch(git_ref).map_err(|e| format!("{by_id}; by {git_ref}: {e}"))?;
                let tip = String::from_utf8_lossy(&git(
                    work,
                    src,
                    &["rev-parse", "FETCH_HEAD"],
                    deadline,
                )?)
                .trim()
                .to_string();
                if tip != rev {
                    return Err(format!(
                        "commit {rev} could not be fetched ({by_id}), and {git_ref} is now at {tip}"
                    ));
                }
            }
        }
        None => {
            fetch(git_ref)?;
        }
    }
    let commit = String::from_utf8_lossy(&git(
        work,
        src,
        &["rev-parse", "FETCH_HEAD^{commit}"],
        deadline,
    )?)
    .trim()
    .to_string();
    let mut dirs: Vec<&str> = patterns.iter().map(|p| fixed_dir(p)).collect();
    dirs.sort();
    dirs.dedup();
    let mut out = Fetched {
        commit: commit.clone(),
        ..Fetched::default()
    };
    for dir in dirs {
        let mut args = vec!["ls-tree", "-r", "-z", "--full-tree", commit.as_str()];
        if !dir.is_empty() {
            args.extend(["--", dir]);
        }
        let listing = git(work, src, &args, deadline)?;
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            read_entry(
                work,
                src,
                &String::from_utf8_lossy(entry),
                patterns,
                deadline,
                &mut out,
            )?;
        }
    }
    out.files.sort();
    Ok(out)
}

/// Read one `ls-tree` entry (`MODE TYPE OID\tPATH`) into `out` if it is a
/// pipeline file or a `capstan.lock`: a regular file, small enough; at
/// most [`MAX_FILES`] of them in all.
fn read_entry(
    work: &Path,
    src: &Source<'_>,
    entry: &str,
    patterns: &[String],
    deadline: Instant,
    out: &mut Fetched,
) -> Result<(), String> {
    let Some((meta, path)) = entry.split_once('\t') else {
        return Ok(());
    };
    let meta: Vec<&str> = meta.split(' ').collect();
    let [mode, kind, oid] = meta[..] else {
        return Ok(());
    };
    let wanted = patterns.iter().any(|p| super::filter::matches(p, path));
    let lock = path.ends_with("/capstan.lock") || path == "capstan.lock";
    if !wanted && !lock {
        return Ok(());
    }
    if out.files.len() + out.locks.len() >= MAX_FILES {
        return Err(format!(
            "more than {MAX_FILES} pipeline and lock files match {patterns:?}"
        ));
    }
    if kind != "blob" || !(mode == "100644" || mode == "100755") {
        return Err(format!(
            "{path}: not a regular file in the repository (mode {mode})"
        ));
    }
    let size: u64 = String::from_utf8_lossy(&git(work, src, &["cat-file", "-s", oid], deadline)?)
        .trim()
        .parse()
        .map_err(|_| format!("{path}: git gave no size"))?;
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{path}: {size} bytes, more than the {MAX_FILE_BYTES} allowed"
        ));
    }
    let text = String::from_utf8(git(work, src, &["cat-file", "blob", oid], deadline)?)
        .map_err(|_| format!("{path}: not UTF-8"))?;
    if lock {
        let d = path.rsplit_once('/').map_or("", |(d, _)| d);
        out.locks.push((d.to_string(), text));
    } else {
        out.files.push((path.to_string(), text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_dirs() {
        assert_eq!(super::fixed_dir(".capstan/*.yaml"), ".capstan/");
        assert_eq!(super::fixed_dir("ci/x/[ab].yml"), "ci/x/");
        assert_eq!(super::fixed_dir("*.yaml"), "");
    }
}
