//! Unit tests of `ssh.rs`, side by side with real git: URLs are parsed as
//! `git` parses them (what git hands its ssh program, seen through a fake
//! one), and the stateful conversation runs against a local
//! `git-upload-pack` in v0 and v2.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

use super::*;
use crate::protocol;

/// What `git ls-remote URL` passes to its ssh program: (user@host, port,
/// command).
fn what_git_runs(url: &str) -> (String, u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("args");
    let fake = dir.path().join("fake-ssh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}\nexit 1\n",
            log.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let _ = Command::new("git")
        .args(["-c", "ssh.variant=ssh", "ls-remote", url])
        .env("GIT_SSH", &fake)
        .env("HOME", dir.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git is installed");
    let args = std::fs::read_to_string(&log).unwrap_or_else(|_| panic!("git ran no ssh for {url}"));
    let args: Vec<&str> = args.lines().collect();
    let port = args
        .iter()
        .position(|a| *a == "-p")
        .map_or(22, |i| args[i + 1].parse().unwrap());
    let n = args.len();
    (args[n - 2].to_string(), port, args[n - 1].to_string())
}

#[test]
fn urls_are_read_as_git_reads_them() {
    for url in [
        "ssh://git@example.com/org/repo.git",
        "ssh://example.com:2222/~alice/repo.git",
        "git+ssh://u@example.com/srv/r.git",
        "ssh+git://u@example.com:2200/srv/r.git",
        "git@example.com:org/repo.git",
        "example.com:repo.git",
        "deploy@example.com:it's here!.git",
        "ssh://git@[::1]:2222/x.git",
        "[::1]:x.git",
    ] {
        let ours = SshUrl::parse(url).unwrap_or_else(|| panic!("{url}: not parsed"));
        let (login, port, command) = what_git_runs(url);
        let host = login.rsplit_once('@').map_or(login.as_str(), |(_, h)| h);
        let user = login.rsplit_once('@').map_or("", |(u, _)| u);
        assert_eq!(
            (
                ours.user.as_str(),
                ours.host.as_str(),
                ours.port,
                ours.upload_pack()
            ),
            (user, host, port, command),
            "{url}"
        );
    }
    for not_ssh in [
        "https://example.com/r.git",
        "file:///srv/r.git",
        "/srv/r.git",
        "./r.git",
        "git://example.com/r.git",
    ] {
        assert_eq!(SshUrl::parse(not_ssh), None, "{not_ssh}");
    }
    // An option where the host or the path goes, or a control character,
    // is never taken.
    for bad in [
        "ssh://-oProxyCommand=x/r.git",
        "host:-u/../x",
        "ssh://host/r.git\nrm",
        "-u@host:r.git",
    ] {
        assert_eq!(SshUrl::parse(bad), None, "{bad}");
    }
}

/// A local `git-upload-pack` as the remote command.
struct Local(Child);

impl Pipe for Local {
    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.0
            .stdin
            .as_mut()
            .unwrap()
            .write_all(data)
            .map_err(|e| e.to_string())
    }
    fn close_stdin(&mut self) -> Result<(), String> {
        drop(self.0.stdin.take());
        Ok(())
    }
    fn read(&mut self) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; 8192];
        let n = self
            .0
            .stdout
            .as_mut()
            .unwrap()
            .read(&mut buf)
            .map_err(|e| e.to_string())?;
        buf.truncate(n);
        Ok(buf)
    }
    fn finish(&mut self) -> Result<(i32, String), String> {
        drop(self.0.stdin.take());
        let mut err = String::new();
        let _ = self.0.stderr.as_mut().unwrap().read_to_string(&mut err);
        let status = self.0.wait().map_err(|e| e.to_string())?;
        Ok((status.code().unwrap_or(-1), err))
    }
}

fn upload_pack(repo: &std::path::Path, v2: bool) -> Local {
    let mut cmd = Command::new("git-upload-pack");
    cmd.arg(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if v2 {
        cmd.env("GIT_PROTOCOL", "version=2");
    }
    Local(cmd.spawn().expect("git-upload-pack (git) is installed"))
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_stateful_conversation_with_upload_pack_in_v0_and_v2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("a.txt"), "one\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "one"]);
    git(d, &["tag", "-a", "v1", "-m", "v1"]);
    std::fs::write(d.join("a.txt"), "two\n").unwrap();
    git(d, &["commit", "-q", "-am", "two"]);
    let head = git(d, &["rev-parse", "HEAD"]);
    for v2 in [false, true] {
        for depth in [0, 1] {
            let mut t = SshTransport::new(upload_pack(d, v2), "ssh://h/r");
            let remote = protocol::discover(&mut t).unwrap();
            assert_eq!(remote.version, if v2 { 2 } else { 0 });
            assert_eq!(remote.head_target(), Some("refs/heads/main"));
            let main = remote
                .refs
                .iter()
                .find(|r| r.name == "refs/heads/main")
                .unwrap();
            assert_eq!(main.oid.to_string(), head);
            assert!(
                remote
                    .refs
                    .iter()
                    .any(|r| r.name == "refs/tags/v1" && r.peeled.is_some())
            );
            let fetched = protocol::fetch(
                &mut t,
                &remote,
                &[main.oid],
                depth,
                &protocol::Have::default(),
            )
            .unwrap();
            let pack = crate::pack::Pack::index(fetched.pack).unwrap();
            // depth 1: the commit, its tree, one blob; full: two of each (+tag).
            assert!(
                if depth == 1 {
                    pack.len() == 3
                } else {
                    pack.len() >= 6
                },
                "v2={v2} depth={depth}: {} objects",
                pack.len()
            );
            assert_eq!(fetched.shallow.len(), usize::from(depth == 1), "v2={v2}");
        }
    }
    // A path that is not a repository: git's own words come back.
    let mut t = SshTransport::new(upload_pack(&d.join("nope"), false), "ssh://h/nope");
    let e = protocol::discover(&mut t).unwrap_err();
    assert!(e.contains("does not appear to be a git repository"), "{e}");
}
