//! A real OpenSSH `sshd` on 127.0.0.1 for tests: its own host key, config
//! and a test user with both a key and a password. Started per test,
//! stopped on drop. Needs root (to run sshd and create the user) and
//! Debian's `openssh-server` (`scripts/test-deps.sh` installs it).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "capstan-ssh";
pub const PASSWORD: &str = "pw-for-capstan-tests-4711";

pub struct Sshd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `SHA256:…` of the server's host key.
    pub fingerprint: String,
    /// The `host keytype base64` known_hosts line.
    pub known_hosts: String,
    /// The client's private key (OpenSSH format), authorized for USER.
    pub client_key: String,
    /// The user's home directory.
    pub home: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "capstan-test", "-f"])
        .arg(path));
}

fn ensure_user() -> PathBuf {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
    let home = run(Command::new("sh").args(["-c", &format!("getent passwd {USER} | cut -d: -f6")]));
    PathBuf::from(home.trim())
}

impl Sshd {
    pub fn start() -> Sshd {
        Self::start_with("")
    }

    /// [`Sshd::start`] with `extra` lines of sshd_config (`AcceptEnv …`).
    pub fn start_with(extra: &str) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "OpenSSH sshd is not installed; run scripts/test-deps.sh (apt-get install openssh-server)"
        );
        assert_eq!(
            run(Command::new("id").arg("-u")).trim(),
            "0",
            "the sshd tests run sshd and create a local user, which needs root"
        );
        let home = ensure_user();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        let fingerprint = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(d.join("host_key.pub")))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                     AuthorizedKeysFile {ak}\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nStrictModes no\nPermitRootLogin no\nAllowUsers {USER}\nLogLevel VERBOSE\n\
                     ClientAliveInterval 5\n{extra}",
                    hk = d.join("host_key").display(),
                    pid = d.join("sshd.pid").display(),
                    ak = d.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(d.join("sshd.log")).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // sshd logs this probe's connection a little later;
                    // wait for it, so tests counting connections start
                    // from a settled log.
                    let logged = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < logged
                        && !std::fs::read_to_string(d.join("sshd.log"))
                            .unwrap_or_default()
                            .contains("Connection from")
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let parts: Vec<&str> = host_pub.split_whitespace().collect();
                    return Sshd {
                        child,
                        port,
                        fingerprint,
                        known_hosts: format!("[127.0.0.1]:{port} {} {}", parts[0], parts[1]),
                        client_key: std::fs::read_to_string(d.join("client_key")).unwrap(),
                        home,
                        dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("sshd attempt {attempt} did not come up; retrying");
        }
        panic!(
            "sshd did not start; log:\n{}",
            std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
        );
    }

    /// A different host key's fingerprint (to simulate a changed key).
    pub fn other_fingerprint(&self) -> String {
        let p = self.dir.path().join("other_key");
        if !p.exists() {
            keygen(&p);
        }
        run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(p.with_extension("pub")))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
    }

    /// Kill every connection this daemon serves (their sshd processes are
    /// its descendants, with the commands they run), leaving the daemon up:
    /// a dropped connection that a reconnect can recover from. Other
    /// fixtures' connections are not touched.
    pub fn drop_connections(&self) {
        let mut pids = descendants(self.child.id());
        // Children before parents is not needed for SIGKILL; kill them all.
        pids.sort_unstable();
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// Kill the daemon and every connection it serves, as a crash or cable
    /// pull would.
    pub fn kill(&mut self) {
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every descendant process of `pid` (from `/proc/*/stat` parent links).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after `)`.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
