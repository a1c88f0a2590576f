//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1, filesystem storage in a temp dir, optionally behind
//! htpasswd basic auth. Started per test, stopped on drop.
//!
//! `scripts/test-deps.sh` installs it (`apt-get install docker-registry
//! apache2-utils`); a test that needs it and cannot start it fails, naming
//! what is missing.

use base64::Engine as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OciServer {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// A docker config dir (for `DOCKER_CONFIG`) holding this server's
    /// credentials, when it requires them.
    pub docker_config: Option<PathBuf>,
}

pub const USER: &str = "capstan";
pub const PASSWORD: &str = "s3cret-test-pw";

fn need(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` is not installed; this test needs a real OCI registry. Run scripts/test-deps.sh \
         (apt-get install {package}) or scripts/test.sh, which calls it."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn status_of(host: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl OciServer {
    /// An anonymous registry.
    pub fn start() -> OciServer {
        Self::start_with(false, "127.0.0.1")
    }

    /// An anonymous registry listening on `ip` (say, a test node's
    /// gateway, for Pods to push to).
    pub fn start_on(ip: &str) -> OciServer {
        Self::start_with(false, ip)
    }

    /// An anonymous registry at `host` (`IP:PORT`, chosen beforehand).
    pub fn start_at(host: &str) -> OciServer {
        Self::start_with(false, host)
    }

    /// A registry that requires basic auth (`USER`/`PASSWORD`).
    pub fn start_with_auth() -> OciServer {
        Self::start_with(true, "127.0.0.1")
    }

    fn start_with(auth: bool, ip: &str) -> OciServer {
        need("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut auth_config = String::new();
        let mut docker_config = None;
        if auth {
            need("htpasswd", "apache2-utils");
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("running htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            auth_config = format!(
                "auth:\n  htpasswd:\n    realm: capstan-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        for attempt in 0..5 {
            // `ip` alone: a free port each attempt; `ip:port`: that one.
            let host = if ip.contains(':') {
                ip.to_string()
            } else {
                format!("{ip}:{}", free_port())
            };
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_config}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Some(code) = status_of(&host) {
                    assert!(
                        code == 200 || (auth && code == 401),
                        "docker-registry on {host} answered /v2/ with {code}"
                    );
                    if auth {
                        let cfg = dir.path().join("docker");
                        std::fs::create_dir_all(&cfg).unwrap();
                        let token = base64::engine::general_purpose::STANDARD
                            .encode(format!("{USER}:{PASSWORD}"));
                        std::fs::write(
                            cfg.join("config.json"),
                            format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#),
                        )
                        .unwrap();
                        docker_config = Some(cfg);
                    }
                    return OciServer {
                        child,
                        dir,
                        host,
                        docker_config,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken between probe and bind: retry
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("docker-registry attempt {attempt} did not come up; retrying");
        }
        panic!(
            "docker-registry did not start; log:\n{}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `oci://HOST/PREFIX`
    pub fn url(&self, prefix: &str) -> String {
        format!("oci://{}/{prefix}", self.host)
    }

    /// The registry's storage root (to corrupt it on purpose).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data/docker/registry/v2")
    }

    /// Path of a blob's data file in the storage.
    pub fn blob_file(&self, digest_hex: &str) -> PathBuf {
        blob_path(&self.storage(), digest_hex)
    }
}

fn blob_path(storage: &Path, hex: &str) -> PathBuf {
    storage
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

impl Drop for OciServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
